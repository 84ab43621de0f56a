"""Attention maps: what a translation attended to, and its export as images, HTML, npz or JSON.

`attention_maps` turns translations (`Translator.translate(..., return_attention=True)`) into
`AttentionMap`s, `merge_words` merges their sentencepiece pieces into words, `save_attention`
writes them; `save_attention_maps` does all three, as `nmt attention` does. This module imports
neither torch nor any model module, and matplotlib only when drawing (see nmt/analysis/render.py for
fonts), so `import nmt.analysis.heatmaps` is cheap and works on its own.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol, cast

import numpy as np

from nmt.analysis.render import DPI, IMAGE_FORMATS, render_context
from nmt.files import atomic_open, write_atomic

__all__ = [
    "FORMATS",
    "AttentionMap",
    "attention_maps",
    "merge_words",
    "save_attention",
    "save_attention_maps",
]

FORMATS = (*IMAGE_FORMATS, "html", "npz", "json")

_WORD_START = "\u2581"  # sentencepiece's "▁"
# Control symbols such as </s>, <unk> or <2de>: a real text "<b>" is split into several pieces.
_SPECIAL = re.compile(r"<[^<>\s]+>")

_INCH_PER_TOKEN = 0.45
# Beyond this the label font shrinks instead of the figure growing (Agg caps images at 2**16 px).
_MAX_INCHES = 40.0
# Attention weights in JSON: float32 carries about 7 significant digits, and a reader of the
# weights needs far fewer than the 17 that a float64's shortest repr can take.
_JSON_DIGITS = 6


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


class HypothesisLike(Protocol):
    """What `attention_maps` reads of a hypothesis (`nmt.translation.translator.Output`)."""

    @property
    def tokens(self) -> Sequence[str]: ...  # target pieces, EOS included

    @property
    def attention(self) -> Any: ...  # (len(tokens), source pieces) weights, or None


class TranslationLike(Protocol):
    """What `attention_maps` reads of a translation (`nmt.translation.translator.Translation`)."""

    @property
    def src_tokens(self) -> Sequence[str]: ...  # source pieces, EOS included

    @property
    def hypotheses(self) -> Sequence[HypothesisLike]: ...  # best first


def attention_maps(
    translations: Iterable[TranslationLike], first_line: int = 1, *, words: bool = False
) -> list[AttentionMap]:
    """The attention of each translation's best hypothesis, numbered from `first_line`.

    `translations` are what `Translator.translate(..., return_attention=True)` returns; the map
    of the i-th gets index ``first_line + i`` (its line in the input, which names its files). A
    translation without hypotheses (an empty line) or without attention gets no map. Weights are
    float32; with `words`, pieces are merged into words (`merge_words`).
    """
    maps = []
    for i, t in enumerate(translations):
        if t.hypotheses and t.hypotheses[0].attention is not None:
            best = t.hypotheses[0]
            weights = np.asarray(best.attention, dtype=np.float32)  # (target, source) pieces
            amap = AttentionMap(first_line + i, list(t.src_tokens), list(best.tokens), weights)
            maps.append(merge_words(amap) if words else amap)
    return maps


def save_attention_maps(
    translations: Iterable[TranslationLike],
    out_dir: str | Path,
    fmt: str = "png",
    *,
    first_line: int = 1,
    words: bool = False,
) -> list[Path]:
    """Write the attention of `translations` to `out_dir` and return the paths written, as
    `nmt attention` does: `attention_maps` then `save_attention` (see both)."""
    return save_attention(attention_maps(translations, first_line, words=words), out_dir, fmt)


# --------------------------------------------------------------------------------------------
# export


def _draw_heatmap(amap: AttentionMap, fmt: str, fh: IO[bytes]) -> None:
    """Draw `amap` as a heatmap in image format `fmt` into `fh` (inside `render_context`)."""
    from matplotlib.figure import Figure

    n_tgt, n_src = amap.weights.shape
    want_w = _INCH_PER_TOKEN * n_src + 1.5
    want_h = _INCH_PER_TOKEN * n_tgt + 1.2
    width, height = min(max(4.0, want_w), _MAX_INCHES), min(max(3.0, want_h), _MAX_INCHES)
    label_size = max(3.0, 10.0 * min(1.0, _MAX_INCHES / max(want_w, want_h)))
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
    fig.savefig(fh, format=fmt, dpi=DPI, bbox_inches="tight")


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


def _write_text(path: Path, text: str) -> Path:
    write_atomic(path, text.encode("utf-8"))
    return path


def _write_npz(path: Path, maps: Sequence[AttentionMap]) -> Path:
    arrays: dict[str, np.ndarray] = {}
    for m in maps:
        arrays[f"weights_{m.index}"] = m.weights
        # Fixed-width unicode arrays load back with np.load's default allow_pickle=False.
        arrays[f"src_{m.index}"] = np.array(m.src_tokens, dtype=str)
        arrays[f"tgt_{m.index}"] = np.array(m.tgt_tokens, dtype=str)
    with atomic_open(path) as fh:
        # as Any: mypy reads a **dict as one that may also fill savez_compressed's allow_pickle
        np.savez_compressed(fh, **cast("dict[str, Any]", arrays))
    return path


def _rounded(weights: np.ndarray) -> list[list[float]]:
    """(T, S) weights as nested lists of floats with `_JSON_DIGITS` significant digits."""
    return [[float(f"{w:.{_JSON_DIGITS}g}") for w in row] for row in weights.tolist()]


def _write_json(path: Path, maps: Sequence[AttentionMap]) -> Path:
    records = [
        {
            "index": m.index,
            "src_tokens": m.src_tokens,
            "tgt_tokens": m.tgt_tokens,
            "weights": _rounded(m.weights),
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
    - json: one ``attention.json``, a list of ``{index, src_tokens, tgt_tokens, weights}``, the
      weights rounded to 6 significant digits.

    Tokens are drawn as given: pass maps through `merge_words` first to show words. Every file
    is written atomically (`nmt.files`). Raises ValueError for an unknown format or
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
    with render_context(tokens):
        for m, n in zip(maps, names, strict=True):
            with atomic_open(out / n) as fh:
                _draw_heatmap(m, fmt, fh)
    return [out / n for n in names]
