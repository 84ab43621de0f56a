"""Line plots of the inspection tools: gradient norm by source position, teacher forcing
against free running by target position, and scores by source length, one line per system.

They take plain numbers (lists and dicts, as the tools' JSON holds them), import matplotlib
only when drawing, and write the file atomically; the format follows the suffix of `out`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nmt import NmtError
from nmt.analysis.render import DPI, IMAGE_FORMATS, render_context
from nmt.files import atomic_open, check_dir, output_file

# one line of a panel: (label, xs, ys)
_Line = tuple[str, Sequence[Any], Sequence[Any]]
# one panel: (title, x label, y label, log scale, lines as (label, xs, ys))
_Panel = tuple[str, str, str, bool, list[_Line]]


def _image(out: str | Path) -> tuple[Path, str]:
    out = Path(out)
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in IMAGE_FORMATS:
        raise NmtError(f"cannot tell the image format from {str(out)!r}; use .png, .svg or .pdf")
    check_dir(out.parent, "-o")
    out.parent.mkdir(parents=True, exist_ok=True)
    output_file(out)  # before the figure is drawn
    return out, fmt


def _draw(panels: list[_Panel], out: str | Path, suptitle: str = "") -> Path:
    from matplotlib.figure import Figure

    out, fmt = _image(out)
    labels = [label for panel in panels for label, _, _ in panel[4]]
    with render_context(labels), atomic_open(out) as fh:
        fig = Figure(figsize=(6 * len(panels), 4.5), layout="constrained")
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        for ax, (title, xlabel, ylabel, log_scale, lines) in zip(axes, panels):
            for i, (label, xs, ys) in enumerate(lines):
                points = [(x, y) for x, y in zip(xs, ys) if y is not None]
                ax.plot(*zip(*points), marker="o", markersize=3, color=f"C{i % 10}", label=label)
            if log_scale:
                ax.set_yscale("log")
            ax.set_title(title)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            ax.grid(True, alpha=0.3)
            ax.legend(frameon=False)
        if suptitle:
            fig.suptitle(suptitle)
        fig.savefig(fh, format=fmt, dpi=DPI)
    return out


def plot_gradient_flow(flow: dict[str, Any], out: str | Path) -> Path:
    """`flow`: a GradientFlow as a dict -> ||dL/dh_s|| by source position and by distance from
    the end, one line per encoder direction, log scale."""
    panels: list[_Panel] = []
    for key, xlabel in [
        ("by_position", "source position (0: first token)"),
        ("by_distance_from_end", "distance from the end (0: EOS)"),
    ]:
        lines: list[_Line] = [(d, range(len(ys)), ys) for d, ys in flow[key].items()]
        panels.append(("", xlabel, "mean ||dL/dh||", True, lines))
    return _draw(panels, out, gradient_flow_title(flow))


# model.cell's values as the lecture names them ("rnn" alone would not say which recurrence)
_CELL_NAMES = {"rnn": "Elman RNN", "gru": "GRU", "lstm": "LSTM"}
_ATTENTION_NAMES = {"bahdanau": "Bahdanau", "dot": "dot-product", "general": "Luong general"}


def gradient_flow_title(flow: dict[str, Any]) -> str:
    """The gradient figure's title: cell, attention, source direction, sentences measured."""
    cell = _CELL_NAMES.get(flow["cell"], flow["cell"])
    attention = _ATTENTION_NAMES.get(flow["attention"], flow["attention"])
    title = f"{cell}, no attention" if attention == "none" else f"{cell}, {attention} attention"
    title += ", reversed source" if flow["reverse_source"] else ""
    n = flow["sentences"]
    return f"{title}: {n} sentence{'' if n == 1 else 's'}"


def plot_exposure(result: dict[str, Any], out: str | Path) -> Path:
    """`result`: an Exposure as a dict -> loss and accuracy by target position, teacher forced
    and free running."""
    xs = range(len(result["counts"]))
    panels: list[_Panel] = [
        ("loss of the reference token", "target position", "cross-entropy", False,
         [("teacher forced", xs, result["teacher_loss"]),
          ("free running", xs, result["free_loss"])]),
        ("accuracy", "target position", "argmax = reference", False,
         [("teacher forced", xs, result["teacher_accuracy"]),
          ("free running", xs, result["free_accuracy"])]),
    ]  # fmt: skip
    return _draw(panels, out, f"greedy BLEU {result['bleu']:.1f}: {result['sentences']} sentences")


def plot_by_length(buckets: list[dict[str, Any]], out: str | Path) -> Path:
    """`buckets`: Bucket dicts (label, lines, scores) -> BLEU and chrF by source-length
    bucket, one line per system."""
    labels = [b["label"] for b in buckets]
    systems = list(buckets[0]["scores"]) if buckets else []
    panels: list[_Panel] = []
    for metric, name in [("bleu", "BLEU"), ("chrf", "chrF")]:
        lines: list[_Line] = [
            (s, labels, [b["scores"][s][metric] for b in buckets]) for s in systems
        ]
        panels.append((f"{name} by source length", "source words", name, False, lines))
    return _draw(panels, out)
