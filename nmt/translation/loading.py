"""A translator for what the user names: checkpoint files (torch) or exported model folders
(the runtime, no torch). `nmt translate` and `nmt serve` open models here; torch is imported
only for checkpoints, so that a runtime-only install translates exports."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from nmt import NmtError
from nmt.runtime.base import TranslatorBase
from nmt.runtime.folder import MANIFEST, is_export


def open_translator(
    paths: Sequence[str | Path],
    *,
    device: str = "auto",
    quantize: str | None = None,
    threads: int = 0,
    workers: int | str = 1,
    weights: Sequence[float] | None = None,
    attention_layer: int = -1,
    attention_head: int | None = None,
) -> TranslatorBase:
    """The runtime's translator when every path is an exported folder, torch's when none
    is; options the export fixed (precision, device, attention layer) are refused for it."""
    exports = [is_export(p) for p in paths]
    for p, export in zip(paths, exports):
        if not export and Path(p).is_dir():
            raise NmtError(
                f"{p} is a folder without {MANIFEST}: give a checkpoint file (best.pt) or a "
                "folder written by nmt export --format onnx"
            )
    if any(exports):
        if not all(exports):
            odd = next(p for p, e in zip(paths, exports) if not e)
            raise NmtError(
                f"{odd} is not an exported model folder: an ensemble is all checkpoints or all "
                "exports"
            )
        if quantize not in (None, "none"):
            raise NmtError(
                "is fixed when a folder is exported: export again with --quantize int8",
                option="quantize",
            )
        if device not in ("auto", "cpu"):
            raise NmtError("an exported folder runs on the CPU", option="device")
        if attention_layer != -1 or attention_head is not None:
            raise NmtError(
                "an exported Transformer shows the mean over its last layer's heads",
                option="attention_layer" if attention_layer != -1 else "attention_head",
            )
        from nmt.runtime.translator import RuntimeTranslator

        return RuntimeTranslator(paths, threads=threads, workers=workers, weights=weights)
    from nmt.translation.translator import Translator

    return Translator(
        paths,
        device=device,
        quantize=quantize,
        threads=threads,
        workers=workers,
        weights=weights,
        attention_layer=attention_layer,
        attention_head=attention_head,
    )
