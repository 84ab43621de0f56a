"""What training says at the start and as it goes: the plan, the stopping rule, the ETA."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from nmt.config import TrainConfig
from nmt.data.corpus import FilterStats
from nmt.runs.progress import describe_plan, eta_seconds, format_duration, stopping_rule


def test_the_default_epoch_limit_alone_is_called_out():
    rule = stopping_rule(TrainConfig(), batches=100)
    assert rule.startswith("stops after 30 epochs (3,000 updates)")
    assert "the default train.max_epochs, the only limit" in rule
    assert "default" not in stopping_rule(TrainConfig(max_minutes=35), batches=100)
    assert "default" not in stopping_rule(TrainConfig(patience=3), batches=100)


@pytest.mark.parametrize(
    "options, expected",
    [
        ({"max_steps": 600}, "stops after 600 updates or 30 epochs (3,000 updates), whichever"),
        ({"max_epochs": 0, "max_minutes": 35}, "stops after 35 minutes"),
        ({"max_epochs": 0}, "has no limit"),
        ({"max_steps": 10, "patience": 2}, "or after 2 validations without a better bleu"),
    ],
)
def test_stopping_rules(options, expected):
    assert expected in stopping_rule(TrainConfig(**options), batches=100)


def test_the_plan_names_pairs_batches_and_validation():
    plan = describe_plan(
        TrainConfig(max_steps=600),
        FilterStats(read=3000, kept=2900, empty=60, too_long=30, duplicate=10),
        batches=120,
    )
    assert plan.startswith("2,900 training pairs (100 dropped), 120 batches an epoch")
    assert "validation every 500 updates" in plan and "stops after 600 updates" in plan


def _state(step=0, epoch=0, batch_in_epoch=0, elapsed=0.0):
    return SimpleNamespace(step=step, epoch=epoch, batch_in_epoch=batch_in_epoch, elapsed=elapsed)


def test_eta_is_the_nearest_limit():
    t = TrainConfig(max_steps=1000, max_epochs=2, max_minutes=0)
    # 2 epochs of 100 batches come before 1,000 updates: 150 batches left at 10 a second
    assert eta_seconds(t, _state(step=50, batch_in_epoch=50), 100, 10.0) == 15.0
    t = TrainConfig(max_steps=0, max_epochs=0, max_minutes=1)
    assert eta_seconds(t, _state(elapsed=45.0), 100, 10.0) == 15.0
    assert eta_seconds(TrainConfig(max_epochs=0), _state(), 100, 10.0) is None
    assert eta_seconds(TrainConfig(max_steps=10), _state(), 100, 0.0) is None


def test_durations_read_naturally():
    assert [format_duration(s) for s in (7, 75, 3725)] == ["7 s", "1 min 15 s", "1 h 02 min"]


def test_the_plan_counts_updates_of_accumulated_batches():
    """train.accumulate 4: an epoch of 100 batches makes 25 updates, the last one of what is
    left when 4 does not divide the batches."""
    assert "2 epochs (50 updates)" in stopping_rule(TrainConfig(max_epochs=2, accumulate=4), 100)
    assert "1 epochs (26 updates)" in stopping_rule(TrainConfig(max_epochs=1, accumulate=4), 102)
    state = _state(step=0, epoch=0, batch_in_epoch=0, elapsed=0.0)
    one = eta_seconds(TrainConfig(max_epochs=1), state, 100, 10.0)
    four = eta_seconds(TrainConfig(max_epochs=1, accumulate=4), state, 100, 10.0)
    assert (one, four) == (10.0, 2.5)
