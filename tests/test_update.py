"""One update: learning-rate schedules (plateau, noam) and the options that pick and tune them;
the loss and gradients of one batch or of several accumulated."""

from __future__ import annotations

import json
import math

import pytest
import yaml
from conftest import tiny_config

from nmt import NmtError
from nmt.config import TrainConfig, config_from_dict, load_config
from nmt.train import train
from nmt.update import after_validation, learning_rate


def test_noam_rises_to_train_lr_at_the_end_of_warm_up_then_falls_as_inverse_sqrt():
    t = TrainConfig(lr=0.002, schedule="noam", warmup_steps=4)
    # update n = step + 1: lr * min(n / 4, sqrt(4 / n))
    expected = {0: 0.0005, 1: 0.001, 2: 0.0015, 3: 0.002, 15: 0.001, 63: 0.0005, 399: 0.0002}
    for step, lr in expected.items():
        assert learning_rate(t, step) == pytest.approx(lr, rel=1e-12), step
    # the plateau state has no say: not the scale of a decay, not the floor
    assert learning_rate(t, 63, lr_scale=0.01) == pytest.approx(0.0005, rel=1e-12)
    assert learning_rate(TrainConfig(lr=0.002, schedule="noam", warmup_steps=4, min_lr=1), 63) < 1


def test_noam_is_the_vaswani_form_with_its_peak_as_train_lr():
    d_model, w = 512, 4000
    t = TrainConfig(lr=(d_model * w) ** -0.5, schedule="noam", warmup_steps=w)
    for n in (1, 100, 3999, 4000, 4001, 10_000, 100_000):
        vaswani = d_model**-0.5 * min(n**-0.5, n * w**-1.5)
        assert learning_rate(t, n - 1) == pytest.approx(vaswani, rel=1e-9), n


def test_noam_ignores_validation():
    t = TrainConfig(schedule="noam", warmup_steps=10, lr_patience=1)
    assert after_validation(t, False, 1.0, 0) == (1.0, 0)
    assert after_validation(t, False, 1.0, 5) == (1.0, 0)


def test_plateau_is_the_formula_it_always_was():
    t = TrainConfig(lr=0.003, warmup_steps=5, min_lr=1e-4)
    for scale in (1.0, 0.5, 0.25, 0.01):
        # same expression as the training loop always had: compared exactly, not approximately
        expected = [max(0.003 * scale, 1e-4) * min(1.0, (s + 1) / 5) for s in range(12)]
        assert [learning_rate(t, s, scale) for s in range(12)] == expected
    assert learning_rate(t, 4, 0.01) == 1e-4  # the floor
    no_warmup = TrainConfig(lr=0.003)
    assert [learning_rate(no_warmup, s) for s in range(3)] == [0.003] * 3


def test_plateau_decays_after_lr_patience_bad_validations():
    t = TrainConfig(lr_patience=2, lr_decay=0.5)
    scale, bad = 1.0, 0
    trace = []
    for improved in (False, False, False, True, False, False):
        scale, bad = after_validation(t, improved, scale, bad)
        trace.append((scale, bad))
    assert trace == [(1.0, 1), (0.5, 0), (0.5, 1), (0.5, 0), (0.5, 1), (0.25, 0)]
    # lr_patience 0: every bad validation decays
    assert after_validation(TrainConfig(lr_patience=0), False, 1.0, 0) == (0.5, 0)


def _records(run_dir, kind):
    lines = (run_dir / "log.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def test_training_follows_the_plateau_schedule(toy_dir, tmp_path):
    cfg = tiny_config(toy_dir, tmp_path)
    t = cfg.train
    t.max_steps, t.valid_every, t.log_every, t.batch_tokens = 8, 2, 1, 800
    t.lr, t.warmup_steps, t.lr_patience, t.lr_decay, t.min_lr = 0.01, 3, 1, 0.5, 0.002
    train(cfg)  # BLEU stays near 0 this early: validations without a new best decay the rate
    # replay the validations' verdicts (a new best or not) through the formula
    best, scale, expected = None, 1.0, []
    valid = {r["step"]: r for r in _records(tmp_path, "valid")}
    for step in range(8):
        expected.append(max(0.01 * scale, 0.002) * min(1.0, (step + 1) / 3))
        if step + 1 in valid:
            improved = valid[step + 1]["best"] != best
            best = valid[step + 1]["best"]
            scale = scale if improved else scale * 0.5
            assert valid[step + 1]["lr"] == max(0.01 * scale, 0.002) * min(1.0, (step + 2) / 3)
    assert [r["lr"] for r in _records(tmp_path, "train")] == expected
    assert scale < 1  # the run did decay


def test_training_follows_the_noam_schedule(toy_dir, tmp_path):
    cfg = tiny_config(toy_dir, tmp_path)
    t = cfg.train
    t.max_steps, t.valid_every, t.log_every, t.batch_tokens = 6, 6, 1, 800
    t.lr, t.schedule, t.warmup_steps = 0.01, "noam", 2
    train(cfg)
    lrs = [r["lr"] for r in _records(tmp_path, "train")]
    assert lrs == pytest.approx([0.01 * min(n / 2, math.sqrt(2 / n)) for n in range(1, 7)])


def test_adam_options_reach_the_optimizer(toy_dir, tmp_path):
    from nmt.checkpoint import read_state

    cfg = tiny_config(toy_dir, tmp_path)
    cfg.train.max_steps, cfg.train.valid_every, cfg.train.batch_tokens = 1, 1, 800
    cfg.train.adam_betas, cfg.train.adam_eps = (0.8, 0.98), 1e-6
    train(cfg)
    (group,) = read_state(tmp_path / "last.pt")["train_state"]["optimizer"]["param_groups"]
    assert tuple(group["betas"]) == (0.8, 0.98) and group["eps"] == 1e-6


def test_new_train_options_load_and_validate(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  adam_betas: [0.9, 0.98]\n  adam_eps: 1e-9\n", encoding="utf-8")
    cfg = load_config(path, ["train.schedule=noam", "train.warmup_steps=4000"])
    assert cfg.train.adam_betas == (0.9, 0.98) and cfg.train.adam_eps == 1e-9
    assert cfg.train.schedule == "noam"
    assert load_config(None, ["train.adam_betas=[0, 0.5]"]).train.adam_betas == (0.0, 0.5)
    # the dict form is plain data: YAML writes it and reading it back gives the same config
    assert config_from_dict(yaml.safe_load(yaml.safe_dump(cfg.to_dict()))) == cfg
    assert TrainConfig().adam_betas == (0.9, 0.999) and TrainConfig().schedule == "plateau"


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["train.adam_betas=[0.9, 1.0]"], r"train\.adam_betas\[1\] must be in \[0, 1\)"),
        (["train.adam_betas=[-0.1, 0.9]"], r"train\.adam_betas\[0\] must be in \[0, 1\)"),
        (["train.adam_betas=[0.9]"], r"train\.adam_betas must be a list \[float, float\]"),
        (["train.adam_betas=0.9"], r"train\.adam_betas must be a list"),
        (["train.adam_betas=[0.9, x]"], r"train\.adam_betas must be float"),
        (["train.adam_eps=0"], r"train\.adam_eps must be > 0"),
        (["train.schedule=cosine"], r"train\.schedule must be one of plateau, noam"),
        (["train.schedule=noam"], r"train\.schedule noam needs train\.warmup_steps > 0"),
    ],
)
def test_bad_new_train_options_are_refused(overrides, message):
    with pytest.raises(NmtError, match=message):
        load_config(None, overrides)


def _model_and_batches(seed: int = 0):
    import random

    import torch

    from nmt.batching import make_batch
    from nmt.config import ModelConfig
    from nmt.model import build_model

    torch.manual_seed(seed)
    cfg = ModelConfig(embed_dim=8, enc_hidden_size=8, hidden_size=16, dropout=0.0)
    model = build_model(cfg, src_vocab=30, tgt_vocab=30)
    rng = random.Random(seed)
    pairs = [
        ([rng.randrange(4, 30) for _ in range(rng.randint(1, 7))],
         [rng.randrange(4, 30) for _ in range(rng.randint(1, 9))])
        for _ in range(9)
    ]  # fmt: skip
    return model, pairs, make_batch


@pytest.mark.parametrize("split", [[9], [4, 5], [3, 3, 3], [1, 7, 1]])
def test_accumulated_batches_update_as_one_batch_of_them_all(split):
    """The gradients an update sums over batches are those of one batch holding all their
    pairs (the loss is per target token of the whole update), whatever the split."""
    import torch

    from nmt.update import update

    t = TrainConfig(clip_norm=0.0, label_smoothing=0.1)
    grads, losses = [], []
    for parts in ([9], split):
        model, pairs, make_batch = _model_and_batches()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: the grads stay
        batches, start = [], 0
        for n in parts:
            chunk = pairs[start : start + n]
            batches.append(make_batch([s for s, _ in chunk], [t for _, t in chunk]))
            start += n
        done = update(model, optimizer, batches, 0.0, t)
        assert done.n_tokens == sum(len(t) + 1 for _, t in pairs)
        grads.append([p.grad.clone() for p in model.parameters()])
        losses.append(done.mean_loss)
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_groups_take_the_batches_an_update_at_a_time():
    from nmt.update import groups

    assert list(groups(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(groups(range(2), 1)) == [[0], [1]]
    assert list(groups([], 4)) == []
