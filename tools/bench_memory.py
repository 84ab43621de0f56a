"""Peak memory of `nmt translate` against input size: streaming keeps it flat.

Builds inputs of each size by cycling the lines of a source file, translates each with the
same checkpoint as a whole process, and prints lines, seconds and peak RSS. Options after
`--` go to `nmt translate`: a short output limit (`--max-len-ratio 0 --max-len-offset 3`)
makes a million lines affordable on a CPU, and the streaming is what is measured.

usage: python tools/bench_memory.py CKPT SOURCE [--lines 10000 1000000] [--beam-size 1]
       [-- TRANSLATE OPTIONS]
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import joey  # noqa: E402


def make_input(source: Path, n: int, out: Path) -> None:
    lines = [x for x in source.read_text(encoding="utf-8").splitlines() if x.strip()]
    with out.open("w", encoding="utf-8") as f:
        f.writelines(line + "\n" for line in itertools.islice(itertools.cycle(lines), n))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("source", type=Path)
    ap.add_argument("--lines", type=int, nargs="+", default=[10_000, 1_000_000])
    ap.add_argument("--beam-size", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", type=Path, default=Path(".bench-cache/bench_memory"))
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    args, extra = ap.parse_args(argv[:cut]), argv[cut + 1 :]
    args.work.mkdir(parents=True, exist_ok=True)
    for n in args.lines:
        src = args.work / f"in.{n}.txt"
        if not src.exists():
            make_input(args.source, n, src)
        out = args.work / f"out.{n}.txt"
        cmd = [sys.executable, "-m", "nmt", "translate", str(args.checkpoint), str(src)]
        cmd += ["-o", str(out), "-q", "--beam-size", str(args.beam_size), *extra]
        log, err = args.work / f"translate.{n}.log", args.work / f"translate.{n}.err"
        code, seconds, rss = joey._timed(cmd, joey._thread_env(args.threads), None, log, err)
        if code != 0:
            raise SystemExit(f"nmt translate failed:\n{joey._tail(err)}")
        produced = sum(1 for _ in out.open(encoding="utf-8"))
        assert produced == n, f"{produced} output lines for {n} input lines"
        print(f"{n:>9,} lines  {seconds:8.1f} s  peak RSS {rss:7.1f} MB", flush=True)


if __name__ == "__main__":
    main()
