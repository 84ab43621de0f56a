"""One-file checkpoints: weights, config, tokenizer bytes, training state and versions.

Everything is plain data (tensors, numbers, strings, bytes), saved with torch.save and read
with `weights_only=True`, so loading a checkpoint never runs code from it.

Two kinds share the layout: "training" checkpoints (best.pt, last.pt: with the optimizer and
RNG state that `train --resume` needs) and "export" files (`nmt export`: weights, config and
tokenizer only, possibly in half precision), which load for translation but never resume.
"""

from __future__ import annotations

import dataclasses
import io
import itertools
import pickle
import re
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sentencepiece
import torch
from torch import nn

import nmt
from nmt import NmtError, quote
from nmt.config import SECTIONS, Config, coerced_options, config_from_dict
from nmt.files import write_atomic
from nmt.model import build_model, parameter_bound
from nmt.tokenizer import Tokenizer

FORMAT = 1  # bump when the layout changes; older readers refuse newer files
KINDS = ("training", "export")
HALF_DTYPES = (torch.float16, torch.bfloat16)
# zip (torch.save's format since 1.6) or a pickle of protocol 2 or more (older torch.save)
_TORCH_MAGIC = (b"PK\x03\x04", b"\x80")
_DATA_RECORD = re.compile(r"[^/]+/data/\d+")  # a tensor storage's record in torch's zip
_MAPPINGS = ("model", "config", "tokenizer", "train_state", "trained", "versions")

# options a resumed run may change: when and how often it stops, logs and validates, and where
# it runs; every other option shapes the model or the updates and comes from the checkpoint
RESUMABLE = frozenset(
    {
        "train.run_dir", "train.max_steps", "train.max_epochs", "train.max_minutes",
        "train.valid_every", "train.log_every", "train.patience", "train.max_bad_steps",
        "train.threads", "train.device", "train.tensorboard", "data.cache_dir",
    }
)  # fmt: skip


def _refuse_resume_change(where: str, saved: Any, given: Any, checkpoint: str) -> None:
    raise NmtError(
        f"--resume {checkpoint}: {where} is {quote(saved)} in the checkpoint, {quote(given)} "
        "here (config file or --set); a resumed run keeps it: drop the option (or resume "
        "without --config: the checkpoint holds the config), or train a new run elsewhere"
    )


def resume_config(saved: Config, given: dict[str, Any], checkpoint: str) -> Config:
    """The config of a run resumed from `checkpoint`: its `saved` config, with the options
    `given` again (a mapping read by `load_raw`) that may change mid-run (RESUMABLE); another
    given option that differs from the saved one is refused, naming both values."""
    merged = saved.to_dict()
    for section, values in coerced_options(given).items():
        for key, value in values.items():
            old = getattr(getattr(saved, section), key)
            if value == old:
                continue
            if f"{section}.{key}" not in RESUMABLE:
                _refuse_resume_change(f"{section}.{key}", old, value, checkpoint)
            merged[section][key] = value
    return config_from_dict(merged)


# a fine-tuned run (train --init) takes its data and training options anew; of the model it
# may change only the dropouts (they act in training, not on the weights' shapes or meaning),
# and of the data options none that make the tokenizer (the checkpoint's is kept)
TUNABLE_MODEL = frozenset({"dropout", "attention_dropout", "activation_dropout"})
TOKENIZER_OPTIONS = ("tokenizer", "vocab_size", "joint_vocab", "model_type")


def _refuse_init_change(where: str, saved: Any, given: Any, checkpoint: str) -> None:
    raise NmtError(
        f"--init {checkpoint}: {where} is {quote(saved)} in the checkpoint, {quote(given)} "
        "here (config file or --set); a fine-tuned model keeps the checkpoint's architecture, "
        "sizes and tokenizer: drop the option"
    )


def init_config(saved: Config, given: dict[str, Any], checkpoint: str) -> Config:
    """The config of a run fine-tuned from `checkpoint` (train --init): the data and training
    options `given` (a mapping read by `load_raw`; defaults for the others), the model and
    tokenizer options of its `saved` config. A given option that would not fit the weights
    (the model's architecture and sizes, the tokenizer's settings) is refused, naming it."""
    options = coerced_options(given)
    model = dataclasses.asdict(saved.model)
    for key, value in options["model"].items():
        if value != model[key] and key not in TUNABLE_MODEL:
            _refuse_init_change(f"model.{key}", model[key], value, checkpoint)
        model[key] = value
    data = dict(options["data"])
    for key in TOKENIZER_OPTIONS:
        old = getattr(saved.data, key)
        if key in data and data[key] != old:
            _refuse_init_change(f"data.{key}", old, data[key], checkpoint)
        data[key] = old
    # the tokenizer is the checkpoint's bytes (saved into RUN_DIR/tokenizer), not a folder
    # that may have moved since
    data["tokenizer"] = ""
    return config_from_dict({"data": data, "model": model, "train": options["train"]})


def check_init(saved: Config, config: Config, checkpoint: str) -> None:
    """Refuse to fine-tune the weights of a checkpoint trained with `saved` under a `config`
    whose model or tokenizer options differ (but for TUNABLE_MODEL)."""
    for f in dataclasses.fields(saved.model):
        old, new = getattr(saved.model, f.name), getattr(config.model, f.name)
        if f.name not in TUNABLE_MODEL and old != new:
            _refuse_init_change(f"model.{f.name}", old, new, checkpoint)
    for key in TOKENIZER_OPTIONS[1:]:
        old, new = getattr(saved.data, key), getattr(config.data, key)
        if old != new:
            _refuse_init_change(f"data.{key}", old, new, checkpoint)


def check_resumable(saved: Config, config: Config, checkpoint: str) -> None:
    """Refuse to resume with a `config` that differs from the `saved` one beyond RESUMABLE."""
    for section in SECTIONS:
        a, b = getattr(saved, section), getattr(config, section)
        for f in dataclasses.fields(a):
            where = f"{section}.{f.name}"
            if where not in RESUMABLE and getattr(a, f.name) != getattr(b, f.name):
                _refuse_resume_change(where, getattr(a, f.name), getattr(b, f.name), checkpoint)


@dataclass
class Checkpoint:
    model: nn.Module  # Seq2Seq or Transformer (build_model)
    config: Config
    tokenizer: Tokenizer
    train_state: dict[str, Any] | None
    versions: dict[str, str]
    kind: str = "training"


def save_checkpoint(
    path: str | Path,
    *,
    model: nn.Module,
    config: Config,
    tokenizer: Tokenizer,
    train_state: dict[str, Any] | None = None,
) -> None:
    state = {
        "format": FORMAT,
        "kind": "training",
        "versions": {
            "nmt": nmt.__version__,
            "torch": str(torch.__version__),
            "sentencepiece": sentencepiece.__version__,
        },
        "config": config.to_dict(),
        "tokenizer": tokenizer.to_state(),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "train_state": train_state,
    }
    buf = io.BytesIO()
    torch.save(state, buf)
    write_atomic(path, buf.getvalue())


def read_state(path: str | Path, mmap: bool = False) -> dict[str, Any]:
    """The checkpoint's plain data; with `mmap`, tensors are read from disk when first used."""
    p = Path(path)
    if p.is_dir():
        raise NmtError(f"checkpoint {p} is a directory, not a file")
    if not p.is_file():
        raise NmtError(f"checkpoint {p} does not exist")
    # mmap needs torch's zip format; anything else goes through the checks below
    mmap = mmap and zipfile.is_zipfile(p)
    with p.open("rb") as f:
        head = f.read(4)
    if head and not head.startswith(_TORCH_MAGIC):
        # text, YAML, images...: not torch.save output at all, so no code to fear either
        raise NmtError(f"{p} is not an nmt checkpoint")
    try:
        with warnings.catch_warnings():
            # torch warns about the pickle protocol of foreign files: the error below says it all
            warnings.simplefilter("ignore")
            # bytes: how pickle writes an empty byte string (a damaged tokenizer, say), so
            # that the checks below name what is wrong instead of calling it code
            with torch.serialization.safe_globals([bytes]):
                state = torch.load(p, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL (\S+)", str(e))
        if found:
            reason = f"loading it would run code (it asks for {found.group(1)})"
        else:
            reason = "it is not plain data (loading it might run code, or it is no checkpoint)"
        raise NmtError(
            f"checkpoint {p} was refused: {reason}; nmt checkpoints hold only plain data"
        ) from None
    except Exception as e:  # a foreign file fails in many ways: KeyError, EOFError, zip errors
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise NmtError(f"checkpoint {p} is damaged or not a checkpoint ({first[:120]})") from None
    if mmap:
        _check_records(p, state)
    if not isinstance(state, dict) or "format" not in state or "model" not in state:
        raise NmtError(f"checkpoint {p} is not an nmt checkpoint")
    if not isinstance(state["format"], int) or isinstance(state["format"], bool):
        raise NmtError(f"checkpoint {p} is not an nmt checkpoint (format {state['format']!r})")
    if state["format"] > FORMAT:
        raise NmtError(
            f"checkpoint {p} has format {state['format']}, newer than this nmt "
            f"({nmt.__version__}, format {FORMAT}) reads: upgrade nmt"
        )
    if state.setdefault("kind", "training") not in KINDS:
        raise NmtError(f"checkpoint {p} is of an unknown kind {state['kind']!r}")
    for key in _MAPPINGS:  # what every reader indexes by name: a list or text is damage
        if state.get(key) is not None and not isinstance(state[key], dict):
            kind = type(state[key]).__name__
            raise NmtError(f"checkpoint {p} is inconsistent (its {key} is a {kind}, not a mapping)")
    return state


def _check_records(p: Path, state: Any) -> None:
    """torch.load with mmap takes each tensor's size from the pickle and reads that many bytes
    from where its record starts, without the check of the record's size that a plain load
    makes: a damaged file would give tensors of bytes from elsewhere. Each distinct storage
    must match one record, byte for byte in size."""
    with zipfile.ZipFile(p) as z:
        records = [i.file_size for i in z.infolist() if _DATA_RECORD.fullmatch(i.filename)]
    storages = {}
    for tensor in _tensors(state):
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
    if sorted(n for n in storages.values() if n) != sorted(n for n in records if n):
        raise NmtError(f"checkpoint {p} is damaged (its tensors do not match its records)")


def _tensors(value: Any) -> list[torch.Tensor]:
    if torch.is_tensor(value):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list | tuple):
        return [t for v in value for t in _tensors(v)]
    return []


def require_training_state(ckpt: Checkpoint, path: str | Path) -> None:
    """Refuse to resume training from an export or another file without training state."""
    if ckpt.kind == "export":
        raise NmtError(
            f"checkpoint {path} is an export (weights only, no optimizer state): it cannot "
            "resume training; resume from the run's last.pt"
        )
    if ckpt.train_state is None:
        raise NmtError(f"checkpoint {path} has no training state to resume from")


def load_resumable(path: str | Path, config: Config) -> Checkpoint:
    """The checkpoint at `path`, refused unless it can resume a run of `config`."""
    ckpt = load_checkpoint(path)
    require_training_state(ckpt, path)
    check_resumable(ckpt.config, config, str(path))
    return ckpt


def saved_config(path: str | Path) -> Config:
    """The config a checkpoint was trained with (its weights are not read)."""
    state = read_state(path, mmap=True)
    try:
        return config_from_dict(state["config"])
    except (NmtError, KeyError, TypeError) as e:
        raise NmtError(f"checkpoint {path} holds no usable config ({e})") from None


def load_checkpoint(
    path: str | Path, device: str | torch.device = "cpu", mmap: bool = False
) -> Checkpoint:
    """The model (on `device`, in eval mode), config and tokenizer of a checkpoint file.

    With `mmap` the parts left unused are never read: translation skips the training state
    (the optimizer's moments, two thirds of the file): reading the recipe's 76 MB checkpoint
    took 0.017 to 0.025 s instead of 0.031 to 0.069 s here (page cache warm).
    Exports load the same way; float16 and bfloat16 weights are cast back to float32, as CPU
    inference in half precision is slow or unsupported.
    """
    state = read_state(path, mmap=mmap)
    config, tokenizer, _ = model_parts(state, path)  # before a real model is built
    try:
        model = build_model(
            config.model, src_vocab=tokenizer.src_vocab_size, tgt_vocab=tokenizer.tgt_vocab_size
        )
        weights = {
            k: v.float() if torch.is_tensor(v) and v.dtype in HALF_DTYPES else v
            for k, v in state["model"].items()
        }
        _check_finite(weights)
        model.load_state_dict(weights)
    except NmtError as e:
        raise NmtError(f"checkpoint {path}: {e}") from None
    except (KeyError, RuntimeError, TypeError, ValueError, AttributeError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise NmtError(f"checkpoint {path} is inconsistent ({first[:160]})") from None
    model.to(device).eval()
    versions = state.get("versions")
    if not isinstance(versions, dict):
        versions = {}
    return Checkpoint(
        model, config, tokenizer, state.get("train_state"), versions, kind=state["kind"]
    )


def model_parts(
    state: dict[str, Any], path: str | Path, *, meta: bool = False
) -> tuple[Config, Tokenizer, nn.Module | None]:
    """The config, tokenizer and model of a checkpoint's `state` (read_state), the model on
    the meta device (shapes only: nothing is allocated), once the weights the file holds are
    those its config implies, name for name and shape for shape. A config claiming a larger
    model than its file holds (100,000 layers in 4 MB) is refused here, before building it
    for real would take minutes and gigabytes."""
    try:
        config = config_from_dict(state["config"])
        tokenizer = Tokenizer.from_state(state["tokenizer"])
        vocab = {"src_vocab": tokenizer.src_vocab_size, "tgt_vocab": tokenizer.tgt_vocab_size}
        stored = sum(v.numel() for v in state["model"].values() if torch.is_tensor(v))
        if not meta and parameter_bound(config.model, **vocab) <= 8 * stored + 10**7:
            # sizes the file could hold: the real build's strict load compares the shapes,
            # without the meta device (whose first use imports a second of torch)
            return config, tokenizer, None
        with torch.device("meta"):
            model = build_model(
                config.model,
                src_vocab=tokenizer.src_vocab_size,
                tgt_vocab=tokenizer.tgt_vocab_size,
            )
        _check_shapes(model.state_dict(), state["model"])
    except NmtError as e:
        raise NmtError(f"checkpoint {path}: {e}") from None
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise NmtError(f"checkpoint {path} is inconsistent ({first[:160]})") from None
    return config, tokenizer, model


def _check_shapes(expected: dict[str, torch.Tensor], weights: dict[str, Any]) -> None:
    """The `weights` a file holds are the `expected` ones (a model's state_dict)."""
    for name in itertools.chain(expected, weights):
        if name not in expected or name not in weights:
            where = "is not in the config's model" if name in weights else "is missing"
            raise NmtError(f"its weights are inconsistent with its config ({quote(name)} {where})")
        value, shape = weights[name], tuple(expected[name].shape)
        if not torch.is_tensor(value) or tuple(value.shape) != shape:
            found = tuple(value.shape) if torch.is_tensor(value) else type(value).__name__
            raise NmtError(
                f"its weights are inconsistent with its config ({name}: {found} stored, {shape} "
                "implied by the config)"
            )


def _check_finite(weights: dict[str, Any]) -> None:
    """Refuse NaN or infinite weights (a damaged file, a diverged run): searching with them
    gives empty or garbage outputs instead of an error."""
    for name, value in weights.items():
        if torch.is_tensor(value) and value.is_floating_point() and not value.isfinite().all():
            raise NmtError(f"weight {name} holds NaN or infinite values (damaged or diverged)")


def load_tokenizer(path: str | Path) -> Tokenizer:
    """The tokenizer of a folder made by `nmt tokenizer train`, or embedded in a checkpoint."""
    p = Path(path)
    if p.is_dir():
        return Tokenizer.load(p)
    state = read_state(p, mmap=True)
    try:
        return Tokenizer.from_state(state["tokenizer"])
    except (KeyError, TypeError, RuntimeError) as e:
        raise NmtError(f"checkpoint {p} has no usable tokenizer ({type(e).__name__})") from None


@dataclass
class TrainState:
    """Where training stands; checkpoints hold it as a plain dict (`to_dict`)."""

    step: int = 0  # updates made
    epoch: int = 0  # epochs completed
    batch_in_epoch: int = 0  # batches of this epoch's plan used (skipped ones included)
    lr_scale: float = 1.0  # plateau decays so far (a product of train.lr_decay)
    best: float | None = None  # best validation value of train.valid_metric
    best_step: int = 0  # the step of that validation (what best.pt holds)
    bad_valids: int = 0  # validations since the best (early stopping)
    bad_since_decay: int = 0  # validations without improvement since the last decay
    # train.keep_best > 1: [value, step] of the validations kept as best-step-STEP.pt, best first
    kept: list[list[float]] = dataclasses.field(default_factory=list)
    elapsed: float = 0.0  # training seconds, over every run resumed from this one
    # the key of the token cache trained on (corpus files, tokenizer, filters); "" in memory
    data_key: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrainState:
        """The state of a checkpoint's dict; other keys (optimizer, RNG) are left out."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in names})


def is_checkpoint(path: str | Path) -> bool:
    """Whether `path` is a file torch.save wrote (a zip archive holding a data.pkl): what a
    command that picks checkpoints from a folder looks at, not the name (the toy corpus's
    Portuguese side ends in .pt too)."""
    p = Path(path)
    try:
        if not p.is_file() or not zipfile.is_zipfile(p):
            return False
        with zipfile.ZipFile(p) as archive:
            return any(name.endswith("/data.pkl") for name in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False
