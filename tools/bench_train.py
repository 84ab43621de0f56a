"""Training speed on Multi30k de->en of the reference RNN (recipes/multi30k/reference.yaml) or,
with --arch transformer, of the Transformer recipe (recipes/multi30k/transformer.yaml).

Prints target tokens/s, peak RSS and the fraction of this machine's fp32 matmul peak (measured
in the same run) that the training step reaches; with --vs-joey, trains JoeyNMT's config of the
same architecture (the peers' reference RNN, or tools/joey.py's Transformer with the recipe's
sizes) for the same number of steps in the same run and prints the ratio. Run it with nothing
else busy on the machine.

usage: MULTI30K_DIR=../shared/data/multi30k python tools/bench_train.py [--steps N] [--vs-joey]
       [--arch rnn|transformer]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import joey  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FLOP_PER_TARGET_TOKEN = 47e6  # forward + backward of the reference model (../shared/peers)
CONFIGS = {"rnn": "reference.yaml", "transformer": "transformer.yaml"}


def transformer_flop_per_target_token(recipe: Path, vocab: int = 8000) -> float:
    """Forward + backward (3 x the forward's 2 x multiply-adds) of a training step per target
    token, from the recipe's sizes, counting the matmuls of the projections, feed-forward
    layers and output layer; the attention scores (S or T x D a token) are left out, and the
    source is taken as long as the target (Multi30k's German is slightly longer)."""
    m = joey._recipe(recipe)["model"]
    d, ff = int(m["d_model"]), int(m["ff_size"])
    enc = int(m["enc_layers"]) * (4 * d * d + 2 * d * ff)
    # self-attention (4 D^2), cross-attention queries/outputs and keys/values (2 + 2 D^2), FF
    dec = int(m["dec_layers"]) * (8 * d * d + 2 * d * ff)
    return 6.0 * (enc + dec + d * vocab)


def matmul_peak(threads: int, n: int = 2048, repeats: int = 10) -> float:
    """fp32 GFLOP/s of a large matmul on `threads` threads (best of `repeats`)."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def train_ours(
    data: Path, out: Path, steps: int, threads: int, extra: list[str], config: str
) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    run_dir = out / "run"
    if (run_dir / "log.jsonl").exists():
        (run_dir / "log.jsonl").unlink()
    for name in ("last.pt", "best.pt"):
        (run_dir / name).unlink(missing_ok=True)
    sets = {
        "data.train_src": data / "train.de",
        "data.train_tgt": data / "train.en",
        "data.valid_src": data / "val.de",
        "data.valid_tgt": data / "val.en",
        "train.run_dir": run_dir,
        "train.max_steps": steps,
        "train.valid_every": steps,
        "train.log_every": 10,
        "train.threads": threads,
    }
    cmd = [sys.executable, "-m", "nmt", "train", "-q"]
    cmd += ["--config", str(REPO / "recipes/multi30k" / config)]
    for key, value in sets.items():
        cmd += ["--set", f"{key}={value}"]
    for item in extra:
        cmd += ["--set", item]
    code, seconds, rss = joey._timed(
        cmd, joey._thread_env(threads), None, out / "train.stdout", out / "train.stderr"
    )
    if code != 0:
        raise SystemExit(f"nmt training failed:\n{joey._tail(out / 'train.stderr')}")
    records = [json.loads(x) for x in (run_dir / "log.jsonl").read_text().splitlines() if x]
    speeds = [r["tokens_per_s"] for r in records if r["kind"] == "train"]
    return {
        "steps": steps,
        "seconds": seconds,
        # the first window includes warm-up, as Joey's first reading does
        "tokens_per_s": statistics.median(speeds[1:] or speeds),
        "peak_rss_mb": rss,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--vs-joey", action="store_true", help="run JoeyNMT's reference too")
    ap.add_argument("--arch", choices=CONFIGS, default="rnn", help="which recipe to train")
    ap.add_argument("--cache", type=Path, default=REPO / ".bench-cache")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="override for ours")
    args = ap.parse_args()
    data = Path(os.environ.get("MULTI30K_DIR", joey.DEFAULT_DATA))
    if not (data / "train.de").is_file():
        raise SystemExit(f"no Multi30k at {data}: set MULTI30K_DIR")
    peak = matmul_peak(args.threads)
    print(f"fp32 matmul peak, {args.threads} threads: {peak:,.0f} GFLOP/s", flush=True)
    config = CONFIGS[args.arch]
    flop = FLOP_PER_TARGET_TOKEN
    if args.arch == "transformer":
        flop = transformer_flop_per_target_token(REPO / "recipes/multi30k" / config)
    out = args.cache / f"bench_train_nmt_{args.arch}"
    ours = train_ours(data, out, args.steps, args.threads, args.sets, config)
    frac = ours["tokens_per_s"] * flop / (peak * 1e9)
    print(
        f"nmt      {ours['tokens_per_s']:8,.0f} target tok/s  "
        f"peak RSS {ours['peak_rss_mb']:6,.0f} MB"
        f"  {frac:6.1%} of matmul peak  ({args.steps} steps, {ours['seconds']:.0f} s)",
        flush=True,
    )
    if not args.vs_joey:
        return
    # a cache of its own (venv, spm, model) for the Transformer: joey.train wipes the model dir
    cache = args.cache / ("joey" if args.arch == "rnn" else f"joey-{args.arch}")
    joey.ensure_joey(cache)
    joey.ensure_spm(cache, data)
    theirs = joey.train(
        cache, data, args.steps, threads=args.threads, validation_freq=0, arch=args.arch
    )
    jfrac = theirs["tokens_per_s"] * flop / (peak * 1e9)
    print(
        f"joeynmt  {theirs['tokens_per_s']:8,.0f} target tok/s  peak RSS "
        f"{theirs['peak_rss_mb']:6,.0f} MB  {jfrac:6.1%} of matmul peak  "
        f"({args.steps} steps, {theirs['seconds']:.0f} s)"
    )
    print(f"speedup vs joeynmt: {ours['tokens_per_s'] / theirs['tokens_per_s']:.2f}x")


if __name__ == "__main__":
    main()
