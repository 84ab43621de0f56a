"""Training curves: loss, validation loss, learning rate, BLEU, chrF and the gradient norm
(before clipping, and how often clipping fired) of runs, from log.jsonl.

This module imports neither torch nor any model module, and matplotlib only when drawing (see
nmt/analysis/render.py for fonts), so `import nmt.analysis.curves` is cheap and works on its own.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from nmt.analysis.render import DPI, IMAGE_FORMATS, render_context
from nmt.data.corpus import decode_line, raw_lines
from nmt.files import atomic_open, check_dir, output_file

__all__ = ["plot_curves"]

log = logging.getLogger(__name__)

_X_AXES = ("step", "time")
# (record kind, key) -> (xs, ys) of one run
_Series = dict[tuple[str, str], tuple[list[float], list[float]]]

# (panel title, record kind, key); the learning rate falls back to valid records if need be.
_PANELS = (
    ("training loss", "train", "loss"),
    ("validation loss", "valid", "valid_loss"),
    ("learning rate", "train", "lr"),
    ("BLEU", "valid", "bleu"),
    ("chrF", "valid", "chrf"),
    ("gradient norm before clipping", "train", "grad_norm"),
    ("updates clipped (fraction)", "train", "clipped"),
)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _read_log(run_dir: Path, x: str) -> _Series:
    """Series (kind, key) -> (xs, ys) from `run_dir/log.jsonl`."""
    path = run_dir / "log.jsonl"
    if not path.is_file():
        raise ValueError(f"no log.jsonl in run directory {str(run_dir)!r}")
    series: _Series = {}
    bad = 0
    with path.open("rb") as fh:
        # line by line in bounded memory: a line over the cap is an error naming it
        for n, raw in enumerate(raw_lines(fh, str(path)), 1):
            line = decode_line(raw, f"{path}:{n}", errors="replace")
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                # Typically the half-written last line of a run still in progress.
                bad += 1
                continue
            if not isinstance(rec, dict) or rec.get("kind") not in ("train", "valid"):
                continue
            xv = _number(rec.get(x))
            if xv is None:
                continue
            for key in ("loss", "valid_loss", "bleu", "chrf", "lr", "grad_norm", "clipped"):
                yv = _number(rec.get(key))
                if yv is None:
                    continue
                xs, ys = series.setdefault((rec["kind"], key), ([], []))
                if x == "step":
                    # A run resumed from an earlier checkpoint logs those steps again: the newer
                    # records replace the abandoned stretch instead of drawing a zigzag.
                    while xs and xs[-1] >= xv:
                        xs.pop()
                        ys.pop()
                xs.append(xv)
                ys.append(yv)
    if bad:
        log.warning("%s: skipped %d line(s) that are not valid JSON", path, bad)
    return series


def _run_labels(dirs: Sequence[Path]) -> list[str]:
    labels = [d.resolve().name or str(d) for d in dirs]
    if len(set(labels)) < len(labels):
        # Same basename in different places (runs/a/ckpt, runs/b/ckpt): show more of the path.
        labels = [str(d) for d in dirs]
    return labels


def plot_curves(run_dirs: Sequence[str | Path], out: str | Path, x: str = "step") -> Path:
    """Draw training curves of one or more runs into `out` and return its path.

    Reads ``log.jsonl`` in each run directory (records of kind "train" and "valid"; other kinds,
    unknown keys, blank lines and unparsable lines are skipped) and draws panels for training
    loss, validation loss, learning rate, BLEU, chrF, the gradient norm before clipping and
    the fraction of updates clipped against ``step``, or against wall-clock
    ``time`` in seconds with ``x="time"``. Runs are overlaid, with the run directory names as
    legend. When steps go backwards (a resumed run), the later records replace the earlier ones.
    The format follows the suffix of `out` (png, svg or pdf); the file is written atomically.
    Raises ValueError if `x` is not step|time, the suffix is not an image format, no run is
    given, or a run directory has no log.jsonl.
    """
    if x not in _X_AXES:
        raise ValueError(f"x must be one of {'|'.join(_X_AXES)}, not {x!r}")
    out = Path(out)
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in IMAGE_FORMATS:
        raise ValueError(
            f"cannot tell the image format from {str(out)!r}; use a .png, .svg or .pdf suffix"
        )
    if not run_dirs:
        raise ValueError("plot_curves needs at least one run directory")
    dirs = [Path(d) for d in run_dirs]
    logs = [_read_log(d, x) for d in dirs]
    labels = _run_labels(dirs)
    check_dir(out.parent, "-o")
    out.parent.mkdir(parents=True, exist_ok=True)
    output_file(out)

    with render_context(labels), atomic_open(out) as fh:
        _draw_curves(logs, labels, x, fmt, fh)
    return out


def _draw_curves(
    logs: Sequence[_Series], labels: Sequence[str], x: str, fmt: str, fh: IO[bytes]
) -> None:
    """Draw the panels of `_PANELS` for runs' series (inside `render_context`) into `fh`."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    fig = Figure(figsize=(18, 7.5), layout="constrained")
    axes = fig.subplots(2, 4).ravel()
    for ax, (title, kind, key) in zip(axes, _PANELS, strict=False):
        drawn = False
        for i, series in enumerate(logs):
            xs, ys = series.get((kind, key), ([], []))
            if not xs and key == "lr":
                xs, ys = series.get(("valid", "lr"), ([], []))
            if not xs:
                continue
            # Validation points are few and far apart: markers keep single points visible.
            style = {"marker": "o", "markersize": 3} if kind == "valid" else {"linewidth": 1}
            ax.plot(xs, ys, color=f"C{i % 10}", **style)
            drawn = True
        if not drawn:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(title)
        ax.set_xlabel("step" if x == "step" else "time (s)")
        ax.grid(True, alpha=0.3)
        if key == "lr":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        if key == "grad_norm" and drawn:
            # exploding gradients span orders of magnitude
            ax.set_yscale("log")
    # The last cell holds the legend, so it never hides a curve.
    axes[-1].axis("off")
    handles = [Line2D([], [], color=f"C{i % 10}", label=lab) for i, lab in enumerate(labels)]
    axes[-1].legend(handles=handles, loc="center", title="run", frameon=False)
    fig.savefig(fh, format=fmt, dpi=DPI)
