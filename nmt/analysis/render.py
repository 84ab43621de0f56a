"""Matplotlib set-up shared by the heatmaps and the training curves: backend, fonts, warnings.

It imports matplotlib lazily, so importing it (or the modules that draw) costs nothing until a
figure is drawn.

Fonts: labels use a per-glyph fallback list built from the fonts installed among DejaVu Sans, Noto
Sans, Noto Sans CJK JP, WenQuanYi Micro Hei, Noto Sans Arabic and Noto Sans Devanagari. Without a
CJK font, CJK tokens draw as boxes and one warning is logged (``apt-get install fonts-wqy-microhei``
fixes it; then delete ``~/.cache/matplotlib``). Matplotlib does no Arabic/Hebrew shaping or bidi, so
use the HTML export of attention maps for right-to-left languages.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import sys
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

log = logging.getLogger(__name__)

IMAGE_FORMATS = ("png", "svg", "pdf")
DPI = 150

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


def _matplotlib() -> Any:
    import matplotlib

    # Switching backends once pyplot is loaded would close the caller's figures (a notebook's,
    # say); we draw on bare Figure objects, which never need the pyplot backend anyway.
    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    return matplotlib


@functools.lru_cache(maxsize=1)
def fonts() -> tuple[tuple[str, ...], bool]:
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


@functools.cache
def warn_once(message: str, *args: str) -> None:
    """Log a warning the first time these arguments come, so that a batch export run chunk by
    chunk says it once a process (the cache remembers what was said)."""
    log.warning(message, *args)


@contextlib.contextmanager
def _quiet_fonttools() -> Iterator[None]:
    """fontTools logs every step of subsetting the fonts a PDF embeds (about 150 INFO lines a
    file) through the root logger; only its warnings are worth showing."""
    logger = logging.getLogger("fontTools")
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def render_context(texts: Iterable[str]) -> Iterator[None]:
    """Fonts and rc settings for drawing `texts`; turns matplotlib's per-glyph warnings into one
    logged warning, and keeps fontTools' progress logs out of the caller's logging."""
    mpl = _matplotlib()
    family, has_cjk = fonts()
    cjk_warned = False
    if not has_cjk and any(_CJK.search(t) for t in texts):
        warn_once(
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
    with (
        mpl.rc_context(rc),
        _quiet_fonttools(),
        warnings.catch_warnings(record=True) as caught,
    ):
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
        warn_once(
            "no installed font has glyphs for %s; they show as boxes (fonts tried: %s)",
            " ".join(sorted(missing)),
            ", ".join(family) or "matplotlib default",
        )
