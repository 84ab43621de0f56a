"""Decoding speed of an ensemble of K models against one model: `nmt translate` of the same
file with the first 1, 2, ... K of the given checkpoints, beam 5, each timed as a whole process
as a user runs it, in rounds that alternate the ensemble sizes. Start-up alone (the same command
on one sentence) is timed too and taken out of the ratio. The claim to check: an ensemble of K
decodes at most K times slower than one model (the K models' steps are the work; search,
batching and I/O are shared).

usage: python tools/bench_ensemble.py CKPT CKPT [CKPT ...] --src FILE
       [--beam 5] [--threads 2] [--workers 1] [--repeat 3]
Run it with nothing else busy on the machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def translate_seconds(
    checkpoints: list[str], src: Path, out: Path, beam: int, threads: int, workers: int
) -> float:
    cmd = [sys.executable, "-m", "nmt", "translate", checkpoints[0], str(src), "-o", str(out)]
    for extra in checkpoints[1:]:
        cmd += ["--ensemble", extra]
    cmd += ["--beam-size", str(beam), "-q", "--workers", str(workers)]
    cmd += ["--threads", str(max(1, threads // workers))]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        raise SystemExit(f"nmt translate failed: {last}")
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoints", nargs="+", help="the ensemble's members, the first alone too")
    ap.add_argument("--src", type=Path, required=True, help="source file to translate")
    ap.add_argument("--beam", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    lines = sum(1 for _ in args.src.open(encoding="utf-8"))
    sizes = range(1, len(args.checkpoints) + 1)
    whole: dict[int, list[float]] = {k: [] for k in sizes}
    startup: dict[int, list[float]] = {k: [] for k in sizes}
    with tempfile.TemporaryDirectory() as tmp:
        one = Path(tmp) / "one.txt"
        one.write_text(args.src.open(encoding="utf-8").readline(), encoding="utf-8")
        for _ in range(args.repeat):
            for k in sizes:
                members = args.checkpoints[:k]
                out = Path(tmp) / f"hyp.{k}.txt"
                whole[k].append(
                    translate_seconds(members, args.src, out, args.beam, args.threads, args.workers)
                )
                startup[k].append(
                    translate_seconds(members, one, out, args.beam, args.threads, args.workers)
                )
    base = statistics.median(whole[1]) - statistics.median(startup[1])
    print(f"{lines} sentences, beam {args.beam}, {args.threads} threads, median of {args.repeat}")
    for k in sizes:
        w, s = statistics.median(whole[k]), statistics.median(startup[k])
        print(
            f"ensemble of {k}: {w:6.1f} s ({s:.1f} s start-up), {lines / w:6.1f} sent/s, "
            f"decoding time {(w - s) / base:.2f}x one model's (bound {k}x)"
        )


if __name__ == "__main__":
    main()
