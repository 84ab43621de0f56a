"""Translation speed and BLEU on the 1,000 Multi30k test sentences (de->en), greedy and beam 5,
each timed as a whole process as a user runs it; with --vs-joey, JoeyNMT's model of the same
architecture (--arch rnn: the peers' reference RNN; transformer: tools/joey.py's Transformer of
the recipe's sizes) translates the same file in the same run. Start-up alone (the same command
on one sentence) is timed too, and the ratio without it printed.

Models: --ours CKPT and --joey-model DIR (a tools/joey.py cache dir holding model/*.ckpt).
When missing, each config (ours: recipes/multi30k/reference.yaml or transformer.yaml) is
trained for --steps updates into --cache first, so a second run only times. Run it with nothing
else busy on the machine.

usage: MULTI30K_DIR=../shared/data/multi30k python tools/bench_translate.py --vs-joey
       [--arch rnn|transformer] [--ours CKPT] [--joey-model DIR] [--steps 300]
       [--quantize int8] [--threads 2]
       [--workers N]   (ours: N processes of threads/N threads each; default one a thread)
       [--repeat 3]    (rounds alternating the toolkits; each figure is the median)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import joey  # noqa: E402
from bench_train import CONFIGS, REPO, train_ours  # noqa: E402

from nmt.metrics import score  # noqa: E402


def words(path: Path) -> int:
    """Output size: a model that writes longer outputs needs more decoder steps."""
    return len(path.read_text(encoding="utf-8").split())


def bleu_of(hyp: Path, ref: Path) -> float:
    hyps = hyp.read_text(encoding="utf-8").splitlines()
    refs = ref.read_text(encoding="utf-8").splitlines()
    return score(hyps, refs, ("bleu",))[0].score


def translate_ours(
    ckpt: Path, src: Path, out: Path, beam: int, threads: int, workers: int, quantize: str
):
    # the same cores as the peer: `workers` processes sharing `threads` threads
    cmd = [sys.executable, "-m", "nmt", "translate", str(ckpt), str(src), "-o", str(out)]
    cmd += ["--beam-size", str(beam), "--quantize", quantize, "-q"]
    cmd += ["--workers", str(workers), "--threads", str(max(1, threads // workers))]
    # the reference config's decoding limit (max_output_length 80), so both stop alike
    cmd += ["--max-len-ratio", "0", "--max-len-offset", "80"]
    log = out.with_suffix(".log")
    code, seconds, rss = joey._timed(
        cmd, joey._thread_env(threads), None, log, log.with_suffix(".err")
    )
    if code != 0:
        raise SystemExit(f"nmt translate failed:\n{joey._tail(log.with_suffix('.err'))}")
    return seconds, rss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--ours", type=Path, help="our checkpoint (trained when missing)")
    ap.add_argument("--joey-model", type=Path, help="tools/joey.py cache dir with a model")
    ap.add_argument("--vs-joey", action="store_true")
    ap.add_argument("--arch", choices=CONFIGS, default="rnn", help="which recipe's model")
    ap.add_argument("--steps", type=int, default=300, help="training steps when a model is missing")
    ap.add_argument("--quantize", default="none", choices=["none", "int8"])
    ap.add_argument("--threads", type=int, default=2, help="CPU threads of each toolkit")
    ap.add_argument("--workers", type=int, default=0, help="our processes (0: --threads)")
    ap.add_argument("--cache", type=Path, default=REPO / ".bench-cache")
    ap.add_argument("--repeat", type=int, default=3, help="rounds; figures are medians")
    args = ap.parse_args()
    data = Path(os.environ.get("MULTI30K_DIR", joey.DEFAULT_DATA))
    src, ref = data / "test_2016_flickr.de", data / "test_2016_flickr.en"
    if not src.is_file():
        raise SystemExit(f"no Multi30k at {data}: set MULTI30K_DIR")
    n = sum(1 for _ in src.open(encoding="utf-8"))
    work = args.cache / "bench_translate"
    work.mkdir(parents=True, exist_ok=True)

    ours = args.ours
    if ours is None:
        ours_dir = work / ("nmt" if args.arch == "rnn" else f"nmt-{args.arch}")
        ours = ours_dir / "run" / "last.pt"
        if not ours.is_file():
            print(f"training our {args.arch} model for {args.steps} steps", flush=True)
            train_ours(data, ours_dir, args.steps, args.threads, [], CONFIGS[args.arch])
    workers = args.workers or args.threads
    cache = None
    if args.vs_joey or args.joey_model:
        cache = args.joey_model or work / ("joey" if args.arch == "rnn" else f"joey-{args.arch}")
        joey.ensure_joey(cache)
        if not any((cache / "model").glob("*.ckpt")):
            print(f"training JoeyNMT's {args.arch} model for {args.steps} steps", flush=True)
            joey.ensure_spm(cache, data)
            joey.train(
                cache, data, args.steps, threads=args.threads, validation_freq=0, arch=args.arch
            )
    # rounds alternate the toolkits, so that a slow spell of this shared machine falls on
    # both; each figure is the median of the rounds. "beam 0" is start-up alone: the same
    # command on the first test sentence (greedy), to tell start-up from translating.
    one = work / "first_sentence.de"
    one.write_text(src.read_text(encoding="utf-8").splitlines()[0] + "\n", encoding="utf-8")
    runs: dict[tuple[str, int], list[tuple[float, float]]] = {}
    outputs = {("nmt", b): work / f"nmt.{args.arch}.beam{b}.{args.quantize}.en" for b in (0, 1, 5)}
    outputs |= {("joey", b): work / f"joey.{args.arch}.beam{b}.en" for b in (0, 1, 5)}
    for r in range(args.repeat):
        for beam in (0, 1, 5):
            source, k = (one, 1) if beam == 0 else (src, beam)
            out = outputs["nmt", beam]
            took = translate_ours(ours, source, out, k, args.threads, workers, args.quantize)
            runs.setdefault(("nmt", beam), []).append(took)
            print(f"round {r + 1} nmt     beam {beam}: {took[0]:.2f} s", flush=True)
            if cache is None:
                continue
            res = joey.translate(cache, data, source, k, outputs["joey", beam], args.threads)
            runs.setdefault(("joey", beam), []).append((res["seconds"], res["peak_rss_mb"]))
            print(f"round {r + 1} joeynmt beam {beam}: {res['seconds']:.2f} s", flush=True)
    rows = {}
    label = {"nmt": "nmt", "joey": "joeynmt"}
    median = {key: statistics.median(t for t, _ in timings) for key, timings in runs.items()}
    for (name, beam), timings in runs.items():
        seconds = median[name, beam]
        if beam == 0:
            print(f"{label[name]:8s} start-up: {seconds:.2f} s (one sentence, median)")
            continue
        rss = max(m for _, m in timings)
        out = outputs[name, beam]
        rows[name, beam] = (n / seconds, bleu_of(out, ref), rss)
        print(
            f"{label[name]:8s} beam {beam}: {n / seconds:7.1f} sent/s  "
            f"BLEU {rows[name, beam][1]:5.2f}  {words(out):,} words  peak RSS {rss:5.0f} MB  "
            f"(median {seconds:.1f} s of " + ", ".join(f"{t:.1f}" for t, _ in timings) + ")",
            flush=True,
        )
    if cache is None:
        return
    ratios = [
        (median["joey", b] - median["joey", 0]) / (median["nmt", b] - median["nmt", 0])
        for b in (1, 5)
    ]
    print(f"without start-up: greedy {ratios[0]:.2f}x, beam 5 {ratios[1]:.2f}x")
    print(f"greedy speedup vs joeynmt: {rows['nmt', 1][0] / rows['joey', 1][0]:.2f}x")
    print(f"speedup vs joeynmt: {rows['nmt', 5][0] / rows['joey', 5][0]:.2f}x")


if __name__ == "__main__":
    main()
