"""Run the lectures' notebooks at full size, as a student would, and time each one.

usage: python tools/bench_notebooks.py [--out DIR] [NAME ...]

Executes recipes/lectures/notebooks/*.py (jupytext percent format; NAME picks some by file
stem) with nbclient in a fresh kernel, writes each executed notebook, outputs and figures
included, to DIR/NAME.ipynb (default build/notebooks-run), and prints one line per notebook
with its wall-clock minutes; the last line says whether every one kept within the 10 minutes
a notebook may take. Run it alone: timing on a busy machine means nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

LIMIT_MINUTES = 10.0
NOTEBOOKS = Path(__file__).resolve().parents[1] / "recipes" / "lectures" / "notebooks"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="notebook file stems (default: all)")
    parser.add_argument("--out", type=Path, default=Path("build/notebooks-run"))
    args = parser.parse_args()
    import jupytext
    import nbclient
    import nbformat

    paths = sorted(NOTEBOOKS.glob("*.py"))
    if args.names:
        unknown = set(args.names) - {p.stem for p in paths}
        if unknown:
            print(f"error: no notebook named {', '.join(sorted(unknown))}", file=sys.stderr)
            return 2
        paths = [p for p in paths if p.stem in args.names]
    os.environ.pop("NMT_NOTEBOOK_TINY", None)  # full size
    os.environ.pop("MPLBACKEND", None)  # the kernel draws inline
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a file, a device, no permission: one line, before any notebook runs
        print(f"error: --out {args.out}: {e.strerror}", file=sys.stderr)
        return 2
    worst = 0.0
    for path in paths:
        notebook = jupytext.read(path)
        client = nbclient.NotebookClient(
            notebook, timeout=3600, kernel_name="python3",
            resources={"metadata": {"path": str(path.parent)}},
        )  # fmt: skip
        start = time.perf_counter()
        client.execute()
        minutes = (time.perf_counter() - start) / 60
        worst = max(worst, minutes)
        nbformat.write(notebook, args.out / f"{path.stem}.ipynb")
        print(f"{path.stem}: {minutes:.1f} min", flush=True)
    verdict = "within" if worst <= LIMIT_MINUTES else "OVER"
    print(f"slowest notebook: {worst:.1f} min ({verdict} the {LIMIT_MINUTES:g}-minute limit)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
