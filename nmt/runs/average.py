"""Checkpoint averaging: the element-wise mean of the weights of several checkpoints.

Averaging the last checkpoints of a run smooths the noise of the final updates; Transformers
trained with the inverse-square-root schedule usually translate better from the average than
from any one of them. The result is an export (weights, config, tokenizer; no optimizer or
RNG state): `translate`, `attention` and `info` read it like any checkpoint, and
`train --resume` refuses it, as an average was never a point that training went through.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nmt import NmtError
from nmt.checkpoint import is_checkpoint, model_parts, read_state
from nmt.files import output_file, write_atomic

log = logging.getLogger(__name__)


@dataclass
class AverageResult:
    path: Path
    inputs: list[Path]
    steps: list[int | None]  # the training step of each input, in the order given


def _step(state: dict[str, Any]) -> int | None:
    train_state = state.get("train_state") or {}
    step = train_state.get("step")
    if step is None and isinstance(state.get("trained"), dict):  # an export
        step = state["trained"].get("step")
    return step if isinstance(step, int) else None


def last_checkpoints(run_dir: str | Path, count: int) -> list[Path]:
    """The `count` checkpoints of a run folder with the highest training steps, one per step.

    A run keeps last.pt, best.pt and, with train.keep_best N, its N best validations
    (best-step-STEP.pt); checkpoints copied into the folder (`step-N.pt`, ...) count as well.
    Files are checkpoints by what they hold, whatever their names (`test.hyp.pt` is text).
    """
    folder = Path(run_dir)
    if count < 1:
        raise NmtError(f"--last must be at least 1, got {count}")
    by_step: dict[int, Path] = {}
    found = [p for p in sorted(folder.iterdir()) if is_checkpoint(p)]
    for path in sorted(set(folder.iterdir()) - set(found)):
        if _starts_like_a_checkpoint(path):  # a zip cut short: a checkpoint's, likely
            log.warning("%s is skipped: it starts as a checkpoint but is not a whole one", path)
    for path in found:
        step = _step(read_state(path, mmap=True))
        # best.pt is a copy of the last.pt of its step: one of the two is enough
        if step is not None and (step not in by_step or path.name == "last.pt"):
            by_step[step] = path
    if len(by_step) < count:
        raise NmtError(
            f"run dir {folder} holds checkpoints of {len(by_step)} distinct training steps, "
            f"fewer than --last {count}: name the checkpoint files, or train with "
            "train.keep_best N to keep more"
        )
    return [by_step[s] for s in sorted(by_step)[-count:]]


def best_checkpoints(run_dir: str | Path, count: int) -> list[Path]:
    """The `count` best validations of a run trained with train.keep_best >= `count`, best
    first: the best-step-STEP.pt files of the ranking that the run's last.pt holds."""
    folder = Path(run_dir)
    if count < 1:
        raise NmtError(f"--best must be at least 1, got {count}")
    state = read_state(folder / "last.pt", mmap=True)
    kept = (state.get("train_state") or {}).get("kept") or []
    if len(kept) < count:
        raise NmtError(
            f"run dir {folder} keeps {len(kept)} best checkpoints (best-step-STEP.pt), fewer "
            f"than --best {count}: train with train.keep_best {count} or more"
        )
    paths = [folder / f"best-step-{int(step)}.pt" for _, step in kept[:count]]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise NmtError(f"{missing[0]} is missing, though {folder / 'last.pt'} ranks it kept")
    return paths


def _same_model(first: dict[str, Any], state: dict[str, Any], path: Path, base: Path) -> None:
    """Refuse a checkpoint whose model config, tokenizer or weight names differ from the first."""
    model_a = (first.get("config") or {}).get("model")
    model_b = (state.get("config") or {}).get("model")
    if model_a != model_b:
        raise NmtError(f"checkpoint {path} has another model config than {base}: cannot average")
    if first.get("tokenizer") != state.get("tokenizer"):
        raise NmtError(f"checkpoint {path} has another tokenizer than {base}: cannot average")
    if not isinstance(state["model"], dict) or set(state["model"]) != set(first["model"]):
        raise NmtError(f"checkpoint {path} has other weights than {base}: cannot average")
    for name, value in first["model"].items():
        other = state["model"][name]
        if not torch.is_tensor(other) or other.shape != value.shape:
            raise NmtError(f"checkpoint {path}: weight {name} differs in shape from {base}")


def _storage_key(t: torch.Tensor) -> tuple:
    """Tensors with one key share memory (a tied embedding is one matrix under two names)."""
    return (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.stride())


def average_checkpoints(paths: Sequence[str | Path], out: str | Path) -> AverageResult:
    """Write the mean of the weights of `paths` (same model config and tokenizer) to `out`.

    Floating weights are summed in float64 one checkpoint at a time (only two sets of
    weights are in memory) and stored in float32; other tensors must be equal in all.
    """
    output_file(out)  # a device or FIFO is written in place, never renamed over
    inputs, out = [Path(p) for p in paths], Path(out)
    if len(inputs) < 2:
        raise NmtError("averaging needs at least two checkpoints")
    if any(p.resolve() == out.resolve() for p in inputs if p.exists()):
        raise NmtError(f"average {out} would overwrite one of its checkpoints: choose another -o")
    if len({p.resolve() for p in inputs}) < len(inputs):
        raise NmtError("averaging: a checkpoint is given twice (its weights would count double)")
    first = read_state(inputs[0], mmap=True)
    # its config and weights as the loader checks them; the others must be the same model
    metric = model_parts(first, inputs[0])[0].train.valid_metric
    names_of: dict[tuple, list[str]] = {}  # shared storage -> the names that share it
    for name, value in first["model"].items():
        if not torch.is_tensor(value):
            raise NmtError(f"checkpoint {inputs[0]} is inconsistent ({name} is no tensor)")
        names_of.setdefault(_storage_key(value), []).append(name)
    sums = {}
    for names in names_of.values():
        value = first["model"][names[0]]
        sums[names[0]] = value.double() if value.is_floating_point() else value
    steps = [_step(first)]
    for path in inputs[1:]:
        state = read_state(path, mmap=True)
        _same_model(first, state, path, inputs[0])
        steps.append(_step(state))
        for name in sums:
            value = state["model"][name]
            if sums[name].is_floating_point():
                sums[name] += value.double()
            elif not torch.equal(value, sums[name]):
                raise NmtError(f"checkpoint {path}: {name} (not a weight) differs from {inputs[0]}")
    weights: dict[str, Any] = {}
    for names in names_of.values():
        total = sums[names[0]]
        mean = (total / len(inputs)).float() if total.is_floating_point() else total
        for name in names:
            weights[name] = mean
    _write(out, first, weights, inputs, steps, metric)
    return AverageResult(out, inputs, steps)


def _write(
    out: Path,
    first: dict[str, Any],
    weights: dict[str, Any],
    inputs: list[Path],
    steps: list[int | None],
    metric: str,
) -> None:
    """The average as an export, its `trained` record naming the inputs and their steps."""
    known = [s for s in steps if s is not None]
    state = {
        "format": first["format"],
        "kind": "export",
        "versions": first.get("versions", {}),
        "config": first["config"],
        "tokenizer": first["tokenizer"],
        "model": {name: weights[name] for name in first["model"]},
        "train_state": None,
        "trained": {
            "step": max(known) if known else None,
            "epoch": None,
            "best": None,
            "metric": metric,
            "averaged": [{"path": str(p), "step": s} for p, s in zip(inputs, steps)],
        },
    }
    buf = io.BytesIO()
    torch.save(state, buf)
    write_atomic(out, buf.getvalue())


def _starts_like_a_checkpoint(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return path.is_file() and f.read(4) == b"PK\x03\x04"
    except OSError:
        return False
