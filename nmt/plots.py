"""Attention heatmaps and training curves.

This module only renders data: it imports neither torch nor any other nmt module, and it imports
matplotlib lazily, so `import nmt.plots` is cheap and works on its own.

Fonts: labels use a per-glyph fallback list built from the fonts installed among DejaVu Sans, Noto
Sans, Noto Sans CJK JP, WenQuanYi Micro Hei, Noto Sans Arabic and Noto Sans Devanagari. Without a
CJK font, CJK tokens draw as boxes and one warning is logged (``apt-get install fonts-wqy-microhei``
fixes it; then delete ``~/.cache/matplotlib``). Matplotlib does no Arabic/Hebrew shaping or bidi, so
use the HTML export for right-to-left languages.
"""

from __future__ import annotations

import contextlib
import functools
import html
import json
import logging
import math
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

__all__ = ["FORMATS", "AttentionMap", "merge_words", "plot_curves", "save_attention"]

log = logging.getLogger(__name__)

FORMATS = ("png", "svg", "pdf", "html", "npz", "json")
_IMAGE_FORMATS = ("png", "svg", "pdf")
_X_AXES = ("step", "time")

_WORD_START = "\u2581"  # sentencepiece's "▁"
# Control symbols such as </s>, <unk> or <2de>: a real text "<b>" is split into several pieces.
_SPECIAL = re.compile(r"<[^<>\s]+>")

_WANTED_FONTS = (
    "DejaVu Sans",
    "Noto Sans",
    "Noto Sans CJK JP",
    "WenQuanYi Micro Hei",
    "Noto Sans Arabic",
    "Noto Sans Devanagari",
)
_CJK_FONTS = ("Noto Sans CJK JP", "WenQuanYi Micro Hei")
_CJK = re.compile(
    "[\u2e80-\u2fdf\u3040-\u30ff\u3100-\u312f\u3130-\u318f\u31f0-\u31ff\u3400-\u4dbf"
    "\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0003134f]"
)
_MISSING_GLYPH = re.compile(r"Glyph (\d+) .*missing from font")
# Warnings already logged in this process, so a batch export run chunk by chunk says it once.
_WARNED: set[str] = set()

_DPI = 150
_INCH_PER_TOKEN = 0.45
# Beyond this the label font shrinks instead of the figure growing (Agg caps images at 2**16 px).
_MAX_INCHES = 40.0


@dataclass
class AttentionMap:
    """Attention of one translated sentence.

    `weights[i, j]` is the attention of target token i on source token j; rows sum to 1. `index`
    is the sentence number in the input (1-based) and names the output files. Tokens are
    sentencepiece pieces as they are (``"▁the"``, ``"</s>"``); see `merge_words` for words.
    Raises ValueError if the shape of `weights` does not match the token counts.
    """

    index: int
    src_tokens: list[str]
    tgt_tokens: list[str]
    weights: np.ndarray

    def __post_init__(self) -> None:
        self.index = int(self.index)
        self.src_tokens = [str(t) for t in self.src_tokens]
        self.tgt_tokens = [str(t) for t in self.tgt_tokens]
        w = np.asarray(self.weights)
        if not np.issubdtype(w.dtype, np.floating):
            w = w.astype(np.float64)
        shape = (len(self.tgt_tokens), len(self.src_tokens))
        if w.size == 0 and 0 in shape:
            w = w.reshape(shape)
        if w.shape != shape:
            raise ValueError(
                f"sentence {self.index}: weights have shape {w.shape}, expected "
                f"(len(tgt_tokens), len(src_tokens)) = {shape}"
            )
        self.weights = w


def _word_groups(pieces: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Word labels and a (len(pieces), len(words)) 0/1 matrix assigning each piece to its word."""
    groups: list[list[str]] = []
    owner: list[int] = []
    prev_special = False
    for piece in pieces:
        special = _SPECIAL.fullmatch(piece) is not None
        if special or prev_special or not groups or piece.startswith(_WORD_START):
            groups.append([])
        groups[-1].append(piece)
        owner.append(len(groups) - 1)
        prev_special = special
    labels = []
    for group in groups:
        word = "".join(group).replace(_WORD_START, " ").strip()
        # A lone "▁" piece (before punctuation or CJK) would otherwise get an invisible label.
        labels.append(word or _WORD_START)
    onehot = np.zeros((len(pieces), len(groups)))
    onehot[np.arange(len(pieces)), owner] = 1.0
    return labels, onehot


def merge_words(amap: AttentionMap) -> AttentionMap:
    """Return a copy of `amap` with sentencepiece pieces merged into words.

    A word starts at a piece beginning with "▁" (U+2581); special tokens such as ``</s>`` or
    ``<unk>`` are words of their own. Source side: a word's weight is the sum of its pieces'
    columns. Target side: a word's row is the mean of its pieces' rows. Rows still sum to 1.
    Labels are the words with "▁" removed (``["▁re", "d"]`` -> ``"red"``).
    """
    src_words, src_group = _word_groups(amap.src_tokens)
    tgt_words, tgt_group = _word_groups(amap.tgt_tokens)
    dtype = amap.weights.dtype
    tgt_mean = tgt_group.T / np.maximum(tgt_group.sum(axis=0), 1.0)[:, None]
    weights = tgt_mean.astype(dtype) @ amap.weights @ src_group.astype(dtype)
    return AttentionMap(amap.index, src_words, tgt_words, weights)


# --------------------------------------------------------------------------------------------
# writing files


def _atomic_write(path: Path, write: Callable[[IO[bytes]], Any]) -> Path:
    """Write `path` through a temp file in the same directory and os.replace it into place."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    # os.open with 0o666 lets the umask decide the mode, as a plain open() would (mkstemp: 0600).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _write_text(path: Path, text: str) -> Path:
    return _atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


# --------------------------------------------------------------------------------------------
# matplotlib setup


def _matplotlib() -> Any:
    import matplotlib

    # Switching backends once pyplot is loaded would close the caller's figures (a notebook's,
    # say); we draw on bare Figure objects, which never need the pyplot backend anyway.
    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    return matplotlib


@functools.lru_cache(maxsize=1)
def _fonts() -> tuple[tuple[str, ...], bool]:
    """The installed fonts of the fallback list, and whether one of them covers CJK."""
    from matplotlib import font_manager

    have = {f.name for f in font_manager.fontManager.ttflist}
    family = [f for f in _WANTED_FONTS if f in have]
    has_cjk = any(f in have for f in _CJK_FONTS)
    if not has_cjk:
        # Another CJK face (Noto Sans CJK SC, KR...) still beats tofu boxes.
        other = sorted(name for name in have if "CJK" in name)
        if other:
            family.append(other[0])
            has_cjk = True
    return tuple(family), has_cjk


def _warn_once(key: str, message: str, *args: object) -> None:
    if key not in _WARNED:
        _WARNED.add(key)
        log.warning(message, *args)


@contextlib.contextmanager
def _render_context(texts: Iterable[str]) -> Iterator[None]:
    """Fonts and rc settings for drawing `texts`; turns matplotlib's per-glyph warnings into one
    logged warning."""
    mpl = _matplotlib()
    family, has_cjk = _fonts()
    cjk_warned = False
    if not has_cjk and any(_CJK.search(t) for t in texts):
        _warn_once(
            "cjk",
            "tokens contain CJK characters but no CJK font is installed (looked for %s); they "
            "will show as boxes. Install one, e.g. `apt-get install fonts-wqy-microhei`, then "
            "delete ~/.cache/matplotlib",
            ", ".join(_CJK_FONTS),
        )
        cjk_warned = True
    rc: dict[str, Any] = {
        "pdf.fonttype": 42,  # embed TrueType: PDF text stays selectable and searchable
        "svg.fonttype": "none",  # keep <text>: the viewer does its own font fallback
    }
    if family:
        rc["font.family"] = list(family)
    missing: set[str] = set()
    with mpl.rc_context(rc), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for w in caught:
        m = _MISSING_GLYPH.search(str(w.message))
        if m:
            missing.add(chr(int(m.group(1))))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
    if cjk_warned:
        missing = {c for c in missing if not _CJK.match(c)}
    if missing:
        _warn_once(
            "glyphs:" + "".join(sorted(missing)),
            "no installed font has glyphs for %s; they show as boxes (fonts tried: %s)",
            " ".join(sorted(missing)),
            ", ".join(family) or "matplotlib default",
        )


# --------------------------------------------------------------------------------------------
# attention maps


def _heatmap(amap: AttentionMap, fmt: str) -> Callable[[IO[bytes]], None]:
    from matplotlib.figure import Figure

    n_tgt, n_src = amap.weights.shape
    want_w = _INCH_PER_TOKEN * n_src + 1.5
    want_h = _INCH_PER_TOKEN * n_tgt + 1.2
    width, height = min(max(4.0, want_w), _MAX_INCHES), min(max(3.0, want_h), _MAX_INCHES)
    label_size = max(3.0, 10.0 * min(1.0, _MAX_INCHES / max(want_w, want_h)))

    def write(fh: IO[bytes]) -> None:
        # A bare Figure is not registered with pyplot, so nothing leaks across a batch export.
        fig = Figure(figsize=(width, height), layout="constrained")
        ax = fig.subplots()
        if amap.weights.size:
            im = ax.imshow(
                amap.weights,
                cmap="viridis",
                vmin=0.0,
                vmax=1.0,
                aspect="auto",
                interpolation="nearest",
            )
            ax.set_xticks(
                range(n_src),
                labels=amap.src_tokens,
                rotation=60,
                ha="right",
                rotation_mode="anchor",
                fontsize=label_size,
            )
            ax.set_yticks(range(n_tgt), labels=amap.tgt_tokens, fontsize=label_size)
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="attention weight")
        else:
            ax.text(0.5, 0.5, "(no tokens)", ha="center", va="center", transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_yticks([])
        ax.set_xlabel("source")
        ax.set_ylabel("target")
        ax.set_title(f"sentence {amap.index}")
        fig.savefig(fh, format=fmt, dpi=_DPI, bbox_inches="tight")

    return write


def _weight_title(w: float) -> str:
    """How a weight is written in the HTML title (hover) attribute."""
    return f"{w:.3f}"


def _detok(tokens: Sequence[str]) -> str:
    """Readable text for pieces (``"▁the", "▁re", "d"``) or for `merge_words` output (words)."""
    if any(_WORD_START in t for t in tokens):
        return "".join(tokens).replace(_WORD_START, " ").strip()
    return " ".join(tokens)


_CSS = (
    "body{font-family:system-ui,'DejaVu Sans','Noto Sans','Noto Sans CJK JP',"
    "'WenQuanYi Micro Hei','Noto Sans Arabic','Noto Sans Devanagari',sans-serif;margin:1.5em}"
    "table.att{border-collapse:collapse}"
    "table.att td{width:2.4em;height:1.6em;text-align:center;font-size:10px;"
    "border:1px solid #eee;color:#222}"
    "table.att td.dark{color:#fff}"
    # The most-attended source token of each target row.
    "table.att td.max{outline:2px solid #e6550d;outline-offset:-2px;font-weight:bold}"
    "table.att th{font-weight:normal;padding:2px 4px;white-space:nowrap}"
    "table.att th.t{text-align:right}"
    "table.att th.s{writing-mode:vertical-rl;transform:rotate(180deg);text-align:left}"
    "p.note{color:#555;font-size:90%}"
)


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html>\n<html><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>\n"
        f"<body>\n{body}\n</body></html>\n"
    )


def _attention_table(amap: AttentionMap) -> str:
    esc = html.escape
    head = "".join(f'<th class="s" dir="auto">{esc(t)}</th>' for t in amap.src_tokens)
    rows = []
    for tgt, row in zip(amap.tgt_tokens, amap.weights, strict=True):
        best = int(np.argmax(row)) if row.size else -1
        cells = []
        for j, (src, w) in enumerate(zip(amap.src_tokens, row, strict=True)):
            a = float(w)
            classes = [c for c, on in (("dark", a >= 0.5), ("max", j == best)) if on]
            shade = min(max(a, 0.0), 1.0) if math.isfinite(a) else 0.0
            cells.append(
                f'<td class="{" ".join(classes)}" style="background:rgba(30,90,200,{shade:.3f})"'
                f' title="{esc(src)} \u2192 {esc(tgt)}: {_weight_title(a)}">{a:.2f}</td>'
            )
        rows.append(f'<tr><th class="t" dir="auto">{esc(tgt)}</th>{"".join(cells)}</tr>')
    return f'<table class="att">\n<tr><th></th>{head}</tr>\n' + "\n".join(rows) + "\n</table>"


def _sentence_page(amap: AttentionMap) -> str:
    esc = html.escape
    body = (
        f'<p><a href="index.html">all sentences</a></p>\n<h1>Sentence {amap.index}</h1>\n'
        f'<p><b>source:</b> <span dir="auto">{esc(_detok(amap.src_tokens))}</span><br>'
        f'<b>output:</b> <span dir="auto">{esc(_detok(amap.tgt_tokens))}</span></p>\n'
        '<p class="note">Rows: output tokens; columns: source tokens. The outlined cell is the '
        "source token each output token attends to most. Hover a cell for its weight.</p>\n"
        + _attention_table(amap)
    )
    return _page(f"attention: sentence {amap.index}", body)


def _index_page(maps: Sequence[AttentionMap], names: Sequence[str]) -> str:
    esc = html.escape
    rows = "\n".join(
        f'<tr><td><a href="{esc(name)}">{m.index}</a></td>'
        f'<td dir="auto">{esc(_detok(m.src_tokens))}</td>'
        f'<td dir="auto">{esc(_detok(m.tgt_tokens))}</td></tr>'
        for m, name in zip(maps, names, strict=True)
    )
    body = (
        f"<h1>Attention maps ({len(maps)} sentences)</h1>\n"
        '<table cellpadding="4"><tr><th>#</th><th>source</th><th>output</th></tr>\n'
        f"{rows}\n</table>"
    )
    return _page("attention maps", body)


def _write_npz(path: Path, maps: Sequence[AttentionMap]) -> Path:
    arrays: dict[str, np.ndarray] = {}
    for m in maps:
        arrays[f"weights_{m.index}"] = m.weights
        # Fixed-width unicode arrays load back with np.load's default allow_pickle=False.
        arrays[f"src_{m.index}"] = np.array(m.src_tokens, dtype=str)
        arrays[f"tgt_{m.index}"] = np.array(m.tgt_tokens, dtype=str)
    return _atomic_write(path, lambda fh: np.savez_compressed(fh, **arrays))


def _write_json(path: Path, maps: Sequence[AttentionMap]) -> Path:
    records = [
        {
            "index": m.index,
            "src_tokens": m.src_tokens,
            "tgt_tokens": m.tgt_tokens,
            "weights": m.weights.tolist(),
        }
        for m in maps
    ]
    # allow_nan=False: a NaN weight (diverged model) raises rather than writing invalid JSON.
    return _write_text(path, json.dumps(records, ensure_ascii=False, allow_nan=False) + "\n")


def save_attention(
    maps: Sequence[AttentionMap], out_dir: str | Path, fmt: str = "png"
) -> list[Path]:
    """Write attention maps to `out_dir` (created if needed) and return the paths written.

    Formats (`FORMATS`):

    - png, svg, pdf: one heatmap per sentence, ``attention-{index:05d}.{fmt}`` (source tokens on
      the x axis, target tokens on the y axis, colour bar, sentence number in the title).
    - html: one self-contained page per sentence, ``attention-{index:05d}.html`` (a table with
      cells shaded by weight, the weight shown on hover, each row's most-attended source cell
      outlined; no JavaScript or network needed), plus ``index.html`` linking them all.
    - npz: one ``attention.npz`` with arrays ``weights_{index}``, ``src_{index}`` and
      ``tgt_{index}`` per sentence; load it with ``np.load`` (no pickle needed).
    - json: one ``attention.json``, a list of ``{index, src_tokens, tgt_tokens, weights}``.

    Tokens are drawn as given: pass maps through `merge_words` first to show words. Every file
    is written atomically (temp file + os.replace). Raises ValueError for an unknown format or
    if two maps share an index.
    """
    fmt = fmt.lower().lstrip(".")
    if fmt not in FORMATS:
        raise ValueError(f"unknown attention format {fmt!r}; choose one of {', '.join(FORMATS)}")
    maps = list(maps)
    seen: set[int] = set()
    for m in maps:
        if m.index in seen:
            raise ValueError(f"two attention maps have index {m.index}; indices name the files")
        seen.add(m.index)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    if fmt == "npz":
        return [_write_npz(out / "attention.npz", maps)]
    if fmt == "json":
        return [_write_json(out / "attention.json", maps)]
    names = [f"attention-{m.index:05d}.{fmt}" for m in maps]
    if fmt == "html":
        written = [
            _write_text(out / n, _sentence_page(m)) for m, n in zip(maps, names, strict=True)
        ]
        written.append(_write_text(out / "index.html", _index_page(maps, names)))
        return written

    tokens = [t for m in maps for t in (*m.src_tokens, *m.tgt_tokens)]
    with _render_context(tokens):
        return [_atomic_write(out / n, _heatmap(m, fmt)) for m, n in zip(maps, names, strict=True)]


# --------------------------------------------------------------------------------------------
# training curves

# (panel title, record kind, key); the learning rate falls back to valid records if need be.
_PANELS = (
    ("training loss", "train", "loss"),
    ("validation loss", "valid", "valid_loss"),
    ("learning rate", "train", "lr"),
    ("BLEU", "valid", "bleu"),
    ("chrF", "valid", "chrf"),
)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _read_log(run_dir: Path, x: str) -> dict[tuple[str, str], tuple[list[float], list[float]]]:
    """Series (kind, key) -> (xs, ys) from `run_dir/log.jsonl`."""
    path = run_dir / "log.jsonl"
    if not path.is_file():
        raise ValueError(f"no log.jsonl in run directory {str(run_dir)!r}")
    series: dict[tuple[str, str], tuple[list[float], list[float]]] = {}
    bad = 0
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
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
            for key in ("loss", "valid_loss", "bleu", "chrf", "lr"):
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
    loss, validation loss, learning rate, BLEU and chrF against ``step``, or against wall-clock
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
    if fmt not in _IMAGE_FORMATS:
        raise ValueError(
            f"cannot tell the image format from {str(out)!r}; use a .png, .svg or .pdf suffix"
        )
    if not run_dirs:
        raise ValueError("plot_curves needs at least one run directory")
    dirs = [Path(d) for d in run_dirs]
    logs = [_read_log(d, x) for d in dirs]
    labels = _run_labels(dirs)
    out.parent.mkdir(parents=True, exist_ok=True)

    def write(fh: IO[bytes]) -> None:
        from matplotlib.figure import Figure
        from matplotlib.lines import Line2D

        fig = Figure(figsize=(14, 7.5), layout="constrained")
        axes = fig.subplots(2, 3).ravel()
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
        # The sixth cell holds the legend, so it never hides a curve.
        axes[-1].axis("off")
        handles = [Line2D([], [], color=f"C{i % 10}", label=lab) for i, lab in enumerate(labels)]
        axes[-1].legend(handles=handles, loc="center", title="run", frameon=False)
        fig.savefig(fh, format=fmt, dpi=_DPI)

    with _render_context(labels):
        return _atomic_write(out, write)
