"""The training data path against corpus size: preparation speed, cache size, flat memory.

For each size, builds a corpus by repeating Multi30k de->en train with a per-copy marker (so
that no two lines are the same), tokenizes it into its cache (`prepare_data`, in a process of
its own) and trains a small model for 20 updates from it (another process). Prints per size:
preparation seconds and pairs/s, the cache's size on disk, peak RSS at the 20th update and
the time from the training process's start to its first update; then the ratio of the largest
size's peak RSS to the smallest's. One tokenizer, trained once on Multi30k, serves every size.

usage: MULTI30K_DIR=../shared/data/multi30k python tools/bench_data.py \
           [--pairs 100000 1000000 10000000] [--threads 2] [--work DIR]
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()  # before the imports: time to the first update counts them

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "multi30k"
STEPS = 20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def make_corpus(data: Path, n: int, out: Path) -> None:
    """n pairs: Multi30k train again and again, copy k's lines ending in ` @k`."""
    src = (data / "train.de").read_text(encoding="utf-8").splitlines()
    tgt = (data / "train.en").read_text(encoding="utf-8").splitlines()
    out.mkdir(parents=True, exist_ok=True)
    with (out / "train.de").open("w") as fs, (out / "train.en").open("w") as ft:
        for i in range(n):
            copy, line = divmod(i, len(src))
            fs.write(f"{src[line]} @{copy}\n")
            ft.write(f"{tgt[line]} @{copy}\n")
    for ext in ("de", "en"):  # a small validation set: the run validates once, at the end
        lines = (data / f"val.{ext}").read_text(encoding="utf-8").splitlines()[:50]
        (out / f"valid.{ext}").write_text("".join(x + "\n" for x in lines), encoding="utf-8")


def write_config(corpus: Path, tokenizer: Path, run_dir: Path, threads: int) -> Path:
    import yaml

    config = {
        "data": {
            "train_src": str(corpus / "train.de"),
            "train_tgt": str(corpus / "train.en"),
            "valid_src": str(corpus / "valid.de"),
            "valid_tgt": str(corpus / "valid.en"),
            "tokenizer": str(tokenizer),
        },
        "model": {"embed_dim": 64, "enc_hidden_size": 64, "hidden_size": 128},
        "train": {
            "run_dir": str(run_dir),
            "batch_tokens": 2000,
            "max_steps": STEPS,
            "valid_every": STEPS,
            "log_every": 1,
            "threads": threads,
            "device": "cpu",
        },
    }
    path = run_dir.parent / f"{run_dir.name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def child_prepare(config: Path) -> None:
    """(child process) Build the cache; print seconds, pairs and cache bytes as JSON."""
    from nmt.config import load_config
    from nmt.data.prepare import prepare_data

    start = time.perf_counter()
    data, _ = prepare_data(load_config(config))
    seconds = time.perf_counter() - start
    cache = data.train_ids
    size = sum(f.stat().st_size for f in cache.path.iterdir())
    print(json.dumps({"seconds": seconds, "pairs": cache.stats.read, "bytes": size}))


def child_train(config: Path) -> None:
    """(child process) Train STEPS updates; print the time to the first and the peak RSS at
    the last as JSON."""
    from nmt.config import load_config
    from nmt.train import train

    seen: dict[str, float] = {}

    def on_log(record: dict) -> None:
        if record.get("kind") != "train":
            return
        if record["step"] == 1:
            seen["first"] = time.perf_counter() - STARTED
        if record["step"] == STEPS:
            seen["rss"] = _peak_rss_mb()
            seen["tokens_per_s"] = record["tokens_per_s"]

    train(load_config(config), on_log=on_log)
    print(json.dumps(seen))


def run_child(*args: str, threads: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=str(REPO))
    cmd = [sys.executable, __file__, *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pairs", type=int, nargs="+", default=[100_000, 1_000_000, 10_000_000])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", type=Path, default=Path(".bench-cache/bench_data"))
    args = ap.parse_args()
    data = Path(os.environ.get("MULTI30K_DIR", DEFAULT_DATA))
    if not (data / "train.de").is_file():
        raise SystemExit(f"no Multi30k at {data}: set MULTI30K_DIR")
    args.work.mkdir(parents=True, exist_ok=True)
    tokenizer = args.work / "tokenizer"
    if not (tokenizer / "src.model").is_file():
        from nmt.data.corpus import read_parallel
        from nmt.tokenizer import train_tokenizer

        train_tokenizer(*read_parallel(data / "train.de", data / "train.en")).save(tokenizer)
    rss = {}
    print(
        f"{'pairs':>11} {'prepare s':>9} {'pairs/s':>9} {'cache MB':>9} "
        f"{'peak RSS MB':>11} {'first update s':>14} {'tok/s':>7}",
        flush=True,
    )
    for n in args.pairs:
        corpus = args.work / f"corpus-{n}"
        if not (corpus / "train.en").is_file():
            make_corpus(data, n, corpus)
        run_dir = args.work / f"run-{n}"
        subprocess.run(["rm", "-rf", str(run_dir)], check=True)
        config = write_config(corpus, tokenizer, run_dir, args.threads)
        prep = run_child("_prepare", str(config), threads=args.threads)
        trained = run_child("_train", str(config), threads=args.threads)
        rss[n] = trained["rss"]
        print(
            f"{n:>11,} {prep['seconds']:>9.1f} {prep['pairs'] / prep['seconds']:>9,.0f} "
            f"{prep['bytes'] / 2**20:>9.1f} {trained['rss']:>11.1f} {trained['first']:>14.1f} "
            f"{trained['tokens_per_s']:>7,.0f}",
            flush=True,
        )
    largest, smallest = max(rss), min(rss)
    print(f"peak RSS largest/smallest: {rss[largest] / rss[smallest]:.2f}x")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] in ("_prepare", "_train"):
        {"_prepare": child_prepare, "_train": child_train}[sys.argv[1]](Path(sys.argv[2]))
    else:
        main()
