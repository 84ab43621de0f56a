"""Models to ship and inspect: exports (weights, config, tokenizer) and checkpoint summaries.

An export is a checkpoint of kind "export": the same layout, read by the same loader, without
the optimizer's moments and RNG state, which are two thirds of a training checkpoint.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nmt import NmtError
from nmt.checkpoint import model_parts, read_state
from nmt.files import output_file, write_atomic

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
QUANTIZE = ("none", "int8")


@dataclass
class ExportResult:
    path: Path
    size_bytes: int
    source_size_bytes: int
    dtype: str


def export_checkpoint(
    checkpoint: str | Path, out: str | Path, *, dtype: str = "float32", quantize: str = "none"
) -> ExportResult:
    """Write the weights, config and tokenizer of `checkpoint` to `out` (atomically).

    Floating weights are stored in `dtype`; the loader casts half precision back to float32.
    int8 is refused: dynamically quantized recurrent layers keep their weights in TorchScript
    objects that a safe (`weights_only`) load rejects, and rebuilding them from plain int8
    tensors needs the quantizer of nmt/translation/quantize.py, above the loader. `translate
    --quantize int8` quantizes any export at load instead.
    """
    if dtype not in DTYPES:
        raise NmtError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if quantize not in QUANTIZE:
        raise NmtError(f"--quantize must be none or int8, got {quantize!r}")
    if quantize == "int8":
        raise NmtError(
            "--quantize int8 cannot be stored as plain data (quantized recurrent layers are "
            "TorchScript objects): export in float32 and translate with --quantize int8"
        )
    output_file(out)  # a device or FIFO is written in place, never renamed over
    src, out = Path(checkpoint), Path(out)
    if src.resolve() == out.resolve():
        raise NmtError(f"export {out} would overwrite its checkpoint: choose another -o")
    state = read_state(src, mmap=True)
    # refuse what the loader would refuse, before writing anything
    config = model_parts(state, src)[0]
    weights = state["model"]
    exported = {
        "format": state["format"],
        "kind": "export",
        "versions": state.get("versions", {}),
        "config": state["config"],
        "tokenizer": state["tokenizer"],
        "model": _cast(weights, DTYPES[dtype]),
        "train_state": None,
        "trained": _trained(state, config.train.valid_metric),
    }
    buf = io.BytesIO()
    torch.save(exported, buf)
    write_atomic(out, buf.getvalue())
    return ExportResult(out, buf.tell(), src.stat().st_size, dtype)


def _cast(weights: dict[str, Any], dtype: torch.dtype) -> dict[str, Any]:
    """Floating tensors in `dtype`; tensors that share memory (tied embeddings) still share
    it, so that the file holds them once."""
    done: dict[tuple, torch.Tensor] = {}
    out = {}
    for name, value in weights.items():
        if torch.is_tensor(value) and value.is_floating_point():
            key = (
                value.untyped_storage().data_ptr(),
                value.storage_offset(),
                tuple(value.shape),
                value.stride(),
            )
            if key not in done:
                done[key] = value.to(dtype)
            value = done[key]
        out[name] = value
    return out


def _trained(state: dict[str, Any], metric: str) -> dict[str, Any]:
    """Step, epoch and best validation score (of `metric`), kept from the training state an
    export drops."""
    if "trained" in state and isinstance(state["trained"], dict):  # an export of an export
        return state["trained"]
    train_state = state.get("train_state") or {}
    return {
        "step": train_state.get("step"),
        "epoch": train_state.get("epoch"),
        "best": train_state.get("best"),
        "metric": metric,
    }


def checkpoint_info(path: str | Path) -> dict[str, Any]:
    """What a checkpoint or export holds: kind, architecture, sizes, training progress."""
    p = Path(path)
    state = read_state(p, mmap=True)
    config, tokenizer, model = model_parts(state, p, meta=True)
    assert model is not None  # meta=True: always built
    trained = _trained(state, config.train.valid_metric)
    dtypes = sorted(
        {str(v.dtype).removeprefix("torch.") for v in state["model"].values() if torch.is_tensor(v)}
    )
    return {
        "path": str(p),
        "kind": state["kind"],
        "format": state["format"],
        "size_bytes": p.stat().st_size,
        "parameters": sum(t.numel() for t in model.parameters()),
        "dtype": ",".join(dtypes),
        "src_vocab": tokenizer.src_vocab_size,
        "tgt_vocab": tokenizer.tgt_vocab_size,
        "joint_tokenizer": tokenizer.joint,
        "step": trained["step"],
        "epoch": trained["epoch"],
        "best": trained["best"],
        "metric": trained["metric"],
        "has_optimizer_state": bool((state.get("train_state") or {}).get("optimizer")),
        "versions": state.get("versions", {}),
        "model": config.to_dict()["model"],
        "config": config.to_dict(),
    }
