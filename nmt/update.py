"""One update of the weights: its learning rate, its loss, its gradients, the Adam step.

The loss of a batch is the label-smoothed cross-entropy of the reference's next tokens under
teacher forcing, summed over the real (non-PAD) target tokens and divided by their count in the
update; with `train.accumulate` N an update sums the gradients of N batches (each backward of
its share of that division), so that it is the update of one batch N times the size. The
gradient norm is clipped to `train.clip_norm` (measured either way, for the log), then Adam
steps. Shapes: B batch, T target length, N real target tokens of a batch, V target vocab.

The learning rate follows `train.schedule`. Updates are numbered n = 1, 2, ... (the update
made after `step` = n - 1 updates); w = `train.warmup_steps`.

plateau (the default): `train.lr`, times `train.lr_decay` each time validation has not improved
for `train.lr_patience` validations in a row, floored at `train.min_lr`; when w > 0 a linear
warm-up scales it by min(1, n / w).

noam (inverse square root with warm-up):

    lr(n) = train.lr * min(n / w, sqrt(w / n))

rises linearly to `train.lr` at update w, then falls as 1 / sqrt(n). This is the Vaswani et
al. form d_model^-0.5 * min(n^-0.5, n * w^-1.5) with its peak, (d_model * w)^-0.5, replaced by
`train.lr`, so that `train.lr` means the largest rate under both schedules. Validation does not
change it: `lr_decay`, `lr_patience` and `min_lr` belong to plateau.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple, cast

import torch
import torch.nn.functional as F

from nmt.batching import Batch
from nmt.config import TrainConfig
from nmt.distributed import all_reduce_sum
from nmt.tokenizer import PAD


def learning_rate(t: TrainConfig, step: int, lr_scale: float = 1.0) -> float:
    """The rate of the update made after `step` updates; `lr_scale`: plateau decays so far."""
    n = step + 1
    if t.schedule == "noam":
        w = t.warmup_steps
        return t.lr * min(n / w, math.sqrt(w / n))
    warm = min(1.0, n / t.warmup_steps) if t.warmup_steps else 1.0
    return max(t.lr * lr_scale, t.min_lr) * warm


def after_validation(
    t: TrainConfig, improved: bool, lr_scale: float, bad_since_decay: int
) -> tuple[float, int]:
    """(lr_scale, bad_since_decay) after a validation that did or did not improve the best.

    bad_since_decay counts the validations without improvement since the last decay (or the
    best); plateau decays the rate when it reaches `train.lr_patience`.
    """
    if t.schedule != "plateau" or improved:
        return lr_scale, 0
    bad_since_decay += 1
    if bad_since_decay >= t.lr_patience:
        return lr_scale * t.lr_decay, 0
    return lr_scale, bad_since_decay


class Update(NamedTuple):
    mean_loss: float  # per target token of the update (all ranks); not finite: no step made
    n_tokens: int  # target tokens of the update (all ranks)
    grad_norm: float  # before clipping; 0.0 when no step was made


def update(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Sequence[Batch],
    lr: float,
    t: TrainConfig,
    *,
    world: int = 1,
    parameters: Sequence[torch.nn.Parameter] = (),
) -> Update:
    """One update at rate `lr` from this rank's `batches` (their gradients summed), a part of
    the global update of all `world` ranks. `model` is the network or its DistributedDataParallel
    wrapper (which all-reduces the gradients of the last batch's backward); `parameters` are
    the network's (its own, for clipping). A non-finite loss (the same on every rank) makes
    no step."""
    device = batches[0].src.device
    for group in optimizer.param_groups:
        group["lr"] = lr
    local = torch.tensor(float(sum(b.n_tokens for b in batches)), device=device)
    n_tokens = int(all_reduce_sum(local, world))
    optimizer.zero_grad(set_to_none=True)
    loss_sum = torch.zeros((), device=device)
    for i, batch in enumerate(batches):
        last = i == len(batches) - 1
        # DDP all-reduces the gradients once, in the last backward of the update
        sync = contextlib.nullcontext() if last or world == 1 else cast(Any, model).no_sync()
        with sync:
            batch_loss = batch_loss_sum(model, batch, t)
            # DDP averages gradients over ranks, hence * world: the update is that of the mean
            # loss per token of the global batch
            (batch_loss * world / max(n_tokens, 1)).backward()
        loss_sum += batch_loss.detach().float()
    mean_loss = float(all_reduce_sum(loss_sum, world)) / max(n_tokens, 1)
    if not math.isfinite(mean_loss):
        optimizer.zero_grad(set_to_none=True)
        return Update(mean_loss, n_tokens, 0.0)
    params = list(parameters) or list(model.parameters())
    if t.clip_norm:
        norm = torch.nn.utils.clip_grad_norm_(params, t.clip_norm)
    else:  # measured all the same: the log shows what clipping would have seen
        grads = [p.grad for p in params if p.grad is not None]
        norm = torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))
    optimizer.step()
    return Update(mean_loss, n_tokens, float(norm))


def batch_loss_sum(model: torch.nn.Module, batch: Batch, t: TrainConfig) -> torch.Tensor:
    """The label-smoothed cross-entropy of `batch` under teacher forcing, summed over its real
    target tokens (a scalar)."""
    autocast = batch.src.device.type == "cuda"
    with torch.autocast(batch.src.device.type, dtype=torch.bfloat16, enabled=autocast):
        keep = batch.tgt_out != PAD  # (B, T)
        logits, _ = model(
            batch.src, batch.src_lengths, batch.tgt_in, t.teacher_forcing_ratio, keep=keep
        )  # (N, V) at real target tokens
    return F.cross_entropy(
        logits.float(),
        batch.tgt_out[keep],  # (N,): no PAD left to ignore
        label_smoothing=t.label_smoothing,
        reduction="sum",
    )


def groups(batches: Iterable[Batch], size: int) -> Iterator[list[Batch]]:
    """The batches an update at a time: `size` in a row (`train.accumulate`), the last group
    of an epoch what is left."""
    group: list[Batch] = []
    for batch in batches:
        group.append(batch)
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group
