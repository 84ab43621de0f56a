"""nmt: neural machine translation with attention RNNs and Transformers.

The package root is the textbook (config, tokenizer, batching, the networks, search, the
training loop); the machinery lives in wings: `data`, `runs`, `translation`, `analysis`,
`serving` and `cli` (docs/architecture.md maps them). Importing nmt imports no torch: the
public names below load their modules when first used.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import math
import reprlib
import sys
import warnings
from typing import Any

__version__ = "0.1.0"


class NmtError(Exception):
    """An error caused by the user's input (files, options, checkpoints).

    `option` names the option the error concerns, as the library calls it (`beam_size`); the
    message then reads "OPTION MESSAGE", and the CLI names the flag the user typed instead
    (`--beam-size`). The CLI prints the message as one line on stderr and exits with code 2.
    """

    def __init__(self, message: str, *, option: str | None = None) -> None:
        super().__init__(f"{option} {message}" if option else message)
        self.option = option
        self.detail = message  # the message without the option's name


def require_whole(option: str, value: Any, low: int = 1) -> int:
    """`value` if it is a whole number >= `low` (not a bool), else NmtError naming `option`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise NmtError(f"must be a whole number >= {low}, got {value!r}", option=option)
    return value


def require_finite(option: str, value: Any, what: str = "a finite number >= 0") -> float:
    """`value` as a float if it is finite and >= 0, else NmtError naming `option` and `what`
    it must be."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number) or number < 0:
        raise NmtError(f"must be {what}, got {value!r}", option=option)
    return number


# what error messages quote of a value: a YAML file of nested aliases expands to billions of
# items, whose full repr would take gigabytes
_QUOTE = reprlib.Repr()
_QUOTE.maxlevel, _QUOTE.maxstring, _QUOTE.maxother = 3, 80, 80


def quote(value: Any) -> str:
    """A short repr of `value` for an error message (at most about 200 characters)."""
    try:
        text = _QUOTE.repr(value)
    except ValueError:  # an integer past Python's 4,300 digits of str()
        return f"<an integer of {value.bit_length()} bits>"
    return text if len(text) <= 200 else text[:197] + "..."


# the public API, imported on first use so that `import nmt` (and `nmt --help`) stays fast
_PUBLIC = {
    "Translator": "nmt.translation.translator",
    "Translation": "nmt.translation.translator",
    "StreamOptions": "nmt.translation.streaming",
    "translate_file": "nmt.translation.streaming",
    "translate_stream": "nmt.translation.streaming",
    "SearchOptions": "nmt.search",
    "load_config": "nmt.config",
    "score": "nmt.metrics",
    "plot_curves": "nmt.analysis.curves",
    "save_attention_maps": "nmt.analysis.heatmaps",
}


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'nmt' has no attribute {name!r}")
    return getattr(importlib.import_module(_PUBLIC[name]), name)


__all__ = ["NmtError", "__version__", *_PUBLIC]

# Module paths from before the package was cut into wings (0.1): importing one gives the
# module at its new place, with a DeprecationWarning naming it.
_MOVED = {
    "atomic": "files",
    "heap": "cli.heap",
    "buckets": "analysis.length_buckets",
    "batcher": "serving.batcher",
    "serve": "serving.app",
    "encoding": "data.token_ids",
    "corpus": "data.corpus",
    "toy": "data.toy",
    "cache": "data.cache",
    "prepare": "data.prepare",
    "epochs": "data.epochs",
    "translate": "translation.translator",
    "stream": "translation.streaming",
    "outfile": "translation.partial",
    "workers": "translation.workers",
    "ensemble": "translation.ensemble",
    "quantize": "translation.quantize",
    "rundir": "runs.folder",
    "runlog": "runs.log",
    "progress": "runs.progress",
    "average": "runs.average",
    "export": "runs.export",
    "gradflow": "analysis.gradient_flow",
    "exposure": "analysis.exposure",
    "heatmaps": "analysis.heatmaps",
    "curves": "analysis.curves",
    "figures": "analysis.figures",
    "render": "analysis.render",
    "cli_common": "cli.common",
    "cli_data": "cli.data",
    "cli_train": "cli.train",
    "cli_translate": "cli.translate",
    "cli_models": "cli.models",
    "cli_eval": "cli.evaluate",
    "schedule": "update",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds `nmt.OLD` for the names of `_MOVED` and loads it as the module `nmt.NEW`."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        old = fullname.removeprefix("nmt.")
        if fullname.startswith("nmt.") and old in _MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec: Any) -> Any:
        new = "nmt." + _MOVED[spec.name.removeprefix("nmt.")]
        warnings.warn(f"{spec.name} is now {new}", DeprecationWarning, stacklevel=3)
        module = importlib.import_module(new)
        spec.loader_state = module.__spec__  # the import system sets __spec__ to `spec` next
        return module

    def exec_module(self, module: Any) -> None:
        # the module at its new place is executed already: give it back its own spec
        module.__spec__ = module.__spec__.loader_state


if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
    sys.meta_path.append(_MovedModules())
