"""What training tells as it goes: the plan at the start, and where it stands after each update.

Pure functions of the config and the counts; nmt/train.py calls them and the CLI shows them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from nmt.config import TrainConfig

DEFAULT_MAX_EPOCHS = TrainConfig().max_epochs


@dataclass
class Progress:
    """Where a training stands, after an update ("train") or before a validation ("valid")."""

    phase: str
    step: int  # updates made
    epoch: int  # the epoch in progress, from 1
    batch: int  # batches of this epoch used
    batches: int  # batches an epoch
    tokens_per_s: float  # target tokens a second since this process started training
    elapsed: float  # training seconds, over every run resumed from this one
    eta: float | None  # seconds to the nearest limit (max_steps, max_epochs, max_minutes)


def eta_seconds(t: TrainConfig, state: Any, batches: int, steps_per_s: float) -> float | None:
    """Seconds left to the nearest of the run's limits at `steps_per_s` (None: no limit or no
    pace yet). `state` has step, epoch (completed), batch_in_epoch and elapsed (TrainState).
    Early stopping (train.patience) may end the run sooner."""
    left = []
    if steps_per_s > 0 and t.max_steps:
        left.append(max(t.max_steps - state.step, 0) / steps_per_s)
    if steps_per_s > 0 and t.max_epochs:
        batches_left = (t.max_epochs - state.epoch) * batches - state.batch_in_epoch
        updates_left = math.ceil(max(batches_left, 0) / t.accumulate)
        left.append(updates_left / steps_per_s)
    if t.max_minutes:
        left.append(max(t.max_minutes * 60 - state.elapsed, 0.0))
    return min(left) if left else None


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def stopping_rule(t: TrainConfig, batches: int) -> str:
    """When the run stops, in words; says so when only the default epoch limit bounds it."""
    limits = []
    if t.max_steps:
        limits.append(f"{t.max_steps:,} updates")
    if t.max_epochs:
        updates = t.max_epochs * math.ceil(batches / t.accumulate)  # train.accumulate a step
        limits.append(f"{t.max_epochs} epochs ({updates:,} updates)")
    if t.max_minutes:
        limits.append(f"{t.max_minutes:g} minutes")
    rule = "stops after " + " or ".join(limits) if limits else "has no limit (stop it yourself)"
    if len(limits) > 1:
        rule += ", whichever comes first"
    if t.patience:
        rule += f", or after {t.patience} validations without a better {t.valid_metric}"
    elif not t.max_steps and not t.max_minutes and t.max_epochs == DEFAULT_MAX_EPOCHS:
        rule += (
            " (the default train.max_epochs, the only limit: set train.max_steps, "
            "train.max_minutes or train.patience for a shorter run)"
        )
    return rule


def describe_plan(t: TrainConfig, stats: Any, batches: int, step: int = 0) -> str:
    """One line: the pairs kept (and dropped), batches an epoch, validation, the stopping rule.
    `stats` counts the pairs kept and those each filter dropped (nmt.data.corpus.FilterStats)."""
    dropped = stats.empty + stats.too_long + stats.ratio + stats.identical + stats.duplicate
    start = f"from update {step:,}; " if step else ""
    return (
        f"{start}{stats.kept:,} training pairs ({dropped:,} dropped), {batches:,} batches an "
        f"epoch, validation every {t.valid_every:,} updates; {stopping_rule(t, batches)}"
    )


@dataclass
class SpeedWatch:
    """Says when training runs far slower than it did at first: other work has taken the
    cores its threads wait on (a thread count that suited an idle machine can then run many
    times slower than one thread would)."""

    reference_windows: int = 3  # the first windows' best speed is the reference
    ratio: float = 0.5  # slower than this times the reference is said
    every: int = 20  # windows between two warnings
    _seen: list[float] | None = None
    _quiet_until: int = 0

    def check(self, tokens_per_s: float, threads: int) -> str | None:
        """A warning for this log window's speed, or None."""
        seen = self._seen = self._seen or []
        seen.append(tokens_per_s)
        n = len(seen)
        if n <= self.reference_windows or n < self._quiet_until:
            return None
        reference = max(seen[: self.reference_windows])
        if tokens_per_s >= self.ratio * reference:
            return None
        self._quiet_until = n + self.every
        advice = " (train.threads 1 may be faster)" if threads > 1 else ""
        return (
            f"training runs at {tokens_per_s:,.0f} tokens/s, {tokens_per_s / reference:.0%} of "
            f"the {reference:,.0f} of its first updates: the machine is busy with other work"
            + advice
        )
