"""Fine-tuning (`nmt train --init`): a new run from a checkpoint's weights and tokenizer."""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from conftest import nmt, user_error

from nmt.checkpoint import init_config, read_state, saved_config
from nmt.train import train
from nmt.translation.translator import Translator


def _new_domain(toy_dir: Path, out: Path) -> Path:
    """The toy corpus in a keyboard domain: every "key" is a "tecla", not a "chave"."""
    out.mkdir()
    for split in ("train", "valid"):
        (out / f"{split}.en").write_text((toy_dir / f"{split}.en").read_text())
        text = (toy_dir / f"{split}.pt").read_text()
        (out / f"{split}.pt").write_text(re.sub(r"\bchave", "tecla", text))
    return out


def _init(trained: Path, data: Path, run_dir: Path, **train_options):
    given = {
        "data": {f"{s}_{side}": str(data / f"{s}.{ext}") for s in ("train", "valid")
                 for side, ext in (("src", "en"), ("tgt", "pt"))},
        "train": {"run_dir": str(run_dir), "batch_tokens": 2000, "threads": 1, "log_every": 10,
                  **train_options},
    }  # fmt: skip
    return init_config(saved_config(trained), given, str(trained))


def _valid_losses(run_dir: Path) -> list[float]:
    lines = (run_dir / "log.jsonl").read_text().splitlines()
    return [r["valid_loss"] for r in map(json.loads, lines) if r["kind"] == "valid"]


def test_a_fine_tuned_model_starts_at_the_checkpoint_and_learns_the_new_data(
    trained, toy_dir, tmp_path
):
    data = _new_domain(toy_dir, tmp_path / "keys")
    # a learning rate too small to move the weights: what the run starts from
    start = tmp_path / "start"
    cfg = _init(trained, data, start, lr=1e-12, min_lr=0.0, max_steps=1, valid_every=1)
    train(cfg, init=trained)
    before, after = read_state(trained)["model"], read_state(start / "last.pt")["model"]
    assert all(torch.allclose(before[k], after[k], atol=1e-6) for k in before)
    cfg = _init(trained, data, tmp_path / "tuned", lr=0.003, max_steps=80, valid_every=80)
    train(cfg, init=trained)
    assert _valid_losses(tmp_path / "tuned")[0] < 0.7 * _valid_losses(start)[0]
    old = Translator(trained).translate(["The cat sees the key."])[0].text
    new = Translator(tmp_path / "tuned" / "best.pt").translate(["The cat sees the key."])[0].text
    assert "chave" in old and "tecla" not in old
    assert "tecla" in new, new


def test_init_refuses_options_that_would_not_fit_the_weights(trained, tmp_path):
    run = ("train", "--init", trained, "--set", f"train.run_dir={tmp_path / 'r'}")
    user_error(nmt(*run, "--set", "model.hidden_size=32"), "model.hidden_size", "--init")
    user_error(nmt(*run, "--set", "data.vocab_size=500"), "data.vocab_size")
    user_error(nmt(*run, "--resume", trained), "--init", "--resume")
    assert not (tmp_path / "r").exists()


def test_init_takes_the_model_options_of_the_checkpoint(trained):
    cfg = init_config(saved_config(trained), {"model": {"dropout": 0.5}}, str(trained))
    saved = saved_config(trained)
    assert (cfg.model.hidden_size, cfg.model.dropout) == (saved.model.hidden_size, 0.5)
    assert cfg.data.vocab_size == saved.data.vocab_size and cfg.data.tokenizer == ""
