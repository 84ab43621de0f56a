"""Shared fixtures: a small toy corpus and a small model trained on it once per session."""

from __future__ import annotations

import os
from pathlib import Path

# OpenMP threads that spin while waiting make a busy machine many times slower
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
torch.set_num_threads(min(2, os.cpu_count() or 1))


TINY_SIZES = {
    "rnn": {"embed_dim": 64, "enc_hidden_size": 64, "hidden_size": 128},
    "transformer": {"d_model": 64, "heads": 4, "ff_size": 128},
}


def tiny_config(data_dir: Path, run_dir: Path, **model):
    """A config small enough to train in seconds on the toy corpus (model.arch rnn, or
    transformer with `arch="transformer"`)."""
    from nmt.config import config_from_dict

    sizes = TINY_SIZES[model.get("arch", "rnn")]

    return config_from_dict(
        {
            "data": {
                "train_src": str(data_dir / "train.en"),
                "train_tgt": str(data_dir / "train.pt"),
                "valid_src": str(data_dir / "valid.en"),
                "valid_tgt": str(data_dir / "valid.pt"),
                "vocab_size": 300,
                "max_len": 40,
            },
            "model": {**sizes, "dropout": 0.0, **model},
            "train": {
                "run_dir": str(run_dir),
                "batch_tokens": 2000,
                "lr": 0.01,
                "max_steps": 250,
                "valid_every": 250,
                "log_every": 50,
            },
        }
    )


@pytest.fixture(scope="session")
def toy_dir(tmp_path_factory) -> Path:
    from nmt.toy import write_corpus

    d = tmp_path_factory.mktemp("toy")
    write_corpus(d, size=3000, seed=7)
    return d


@pytest.fixture(scope="session")
def trained(toy_dir, tmp_path_factory) -> Path:
    """best.pt of a small GRU/Bahdanau model trained for 250 steps (BLEU well above 0)."""
    from nmt.train import train

    run_dir = tmp_path_factory.mktemp("run")
    train(tiny_config(toy_dir, run_dir))
    return run_dir / "best.pt"


def search_reads_model_state() -> bool:
    """Whether search asks the model to pick rows of its state, as a Transformer needs, rather
    than indexing RNN states itself (tests that train one in a subprocess skip until then)."""
    from nmt.model import Seq2Seq

    return hasattr(Seq2Seq, "select_state")


@pytest.fixture
def transformer_search(monkeypatch) -> None:
    """Lets the search of validation and translation pick the rows of a Transformer's state,
    for as long as search.py indexes states itself instead of asking the model."""
    import nmt.search
    from nmt.transformer import DecoderCache, Encoded, Transformer

    if search_reads_model_state():
        return
    free = nmt.search.select

    def select(tree, index):
        if isinstance(tree, DecoderCache):
            return Transformer.select_state(None, tree, index)
        if isinstance(tree, Encoded):
            return Transformer.select_encoded(None, tree, index)
        return free(tree, index)

    monkeypatch.setattr(nmt.search, "select", select)
