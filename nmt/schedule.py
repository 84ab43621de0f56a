"""Learning-rate schedules (`train.schedule`): the rate of each update, and what validation does.

Updates are numbered n = 1, 2, ... (the update made after `step` = n - 1 updates);
w = `train.warmup_steps`.

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

import math

from nmt.config import TrainConfig


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
