"""`nmt attention`: a heatmap of the attention of each translated sentence."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from nmt import NmtError
from nmt.cli.common import user_errors
from nmt.cli.translate import _HEAD_HELP, _LAYER_HELP, _TRANSLATE_FLAGS, _as_flags, _head


def _line_range(spec: str) -> tuple[int, int]:
    try:
        a, _, b = spec.partition("-")
        first, last = int(a), int(b or a)
    except ValueError:
        raise NmtError(f"--lines must look like 1-20, 7 or all, got {spec!r}") from None
    if first < 1 or last < first:
        raise NmtError(f"--lines {spec}: need 1 <= first <= last")
    return first, last


def attention(
    checkpoint: Annotated[
        Path, typer.Argument(help="Checkpoint file (.pt), or a folder of nmt export --format onnx.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the heatmaps.")],
    text: Annotated[str | None, typer.Option(help="One sentence to translate.")] = None,
    input: Annotated[Path | None, typer.Option("--input", "-i", help="Input file.")] = None,
    lines: Annotated[
        str | None, typer.Option(help="Lines of --input: 1-20 (the default), 7, or all.")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="png, svg, pdf, html, npz or json.")] = "png",
    beam_size: Annotated[int, typer.Option("--beam-size", "-b", help="Beam size (1: greedy).")] = 5,
    words: Annotated[bool, typer.Option(help="Merge subword pieces into words.")] = False,
    layer: Annotated[int, typer.Option(help=_LAYER_HELP)] = -1,
    head: Annotated[str, typer.Option(help=_HEAD_HELP)] = "mean",
) -> None:
    """Translate and write one attention heatmap per sentence."""
    with user_errors(), _as_flags(_TRANSLATE_FLAGS):
        from nmt.analysis.heatmaps import FORMATS, save_attention_maps
        from nmt.data.corpus import read_lines
        from nmt.files import check_dir
        from nmt.search_options import SearchOptions
        from nmt.translation.loading import open_translator

        if fmt not in FORMATS:
            raise NmtError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        if (text is None) == (input is None):
            raise NmtError("give exactly one of --text and --input")
        if text is not None:
            first, sentences = 1, [text]
        else:
            assert input is not None  # exactly one of --text and --input, checked above
            all_lines = read_lines(input)
            spec = lines or "1-20"
            first, last = (1, len(all_lines)) if spec == "all" else _line_range(spec)
            sentences = all_lines[first - 1 : last]
            if not sentences:
                raise NmtError(f"{input} has no lines in --lines {spec}")
            log = logging.getLogger(__name__)
            if lines is not None and last > len(all_lines):
                shown = f"{first}-{len(all_lines)}"
                log.warning(
                    "--lines %s: %s has %d lines, plotting %s", lines, input, len(all_lines), shown
                )
            elif lines is None and len(all_lines) > last:
                log.warning(
                    "plotting lines 1-%d of the %d of %s (--lines all plots every line)",
                    last,
                    len(all_lines),
                    input,
                )
        check_dir(out, "-o")  # before the model is loaded and run
        translator = open_translator(
            [checkpoint], attention_layer=layer, attention_head=_head(head)
        )
        if translator.config.model.attention == "none":
            raise NmtError(
                f"{checkpoint} was trained with attention none: there is no attention to plot"
            )
        results = translator.translate(
            sentences, SearchOptions(beam_size=beam_size, return_attention=True)
        )
        paths = save_attention_maps(results, out, fmt, first_line=first, words=words)
    for p in paths:
        print(p)
