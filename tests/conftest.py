"""Shared fixtures: a small toy corpus and a small model trained on it once per session."""

from __future__ import annotations

import os
from pathlib import Path

# OpenMP threads that spin while waiting make a busy machine many times slower
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
torch.set_num_threads(min(2, os.cpu_count() or 1))


def _data_and_train(data_dir: Path, run_dir: Path) -> dict:
    return {
        "data": {
            "train_src": str(data_dir / "train.en"),
            "train_tgt": str(data_dir / "train.pt"),
            "valid_src": str(data_dir / "valid.en"),
            "valid_tgt": str(data_dir / "valid.pt"),
            "vocab_size": 300,
            "max_len": 40,
        },
        "train": {
            "run_dir": str(run_dir),
            "batch_tokens": 2000,
            "lr": 0.01,
            "max_steps": 250,
            "valid_every": 250,
            "log_every": 50,
            # a thread count fixed, not picked by the load: float sums, hence weights, depend on it
            "threads": 1,
        },
    }


TINY_SIZES = {
    "rnn": {"embed_dim": 64, "enc_hidden_size": 64, "hidden_size": 128},
    "transformer": {"d_model": 64, "heads": 4, "ff_size": 128},
}


def tiny_config(data_dir: Path, run_dir: Path, **model):
    """A config small enough to train in seconds on the toy corpus (model.arch rnn, or
    transformer with `arch="transformer"`)."""
    from nmt.config import config_from_dict

    raw = _data_and_train(data_dir, run_dir)
    raw["model"] = {**TINY_SIZES[model.get("arch", "rnn")], "dropout": 0.0, **model}
    return config_from_dict(raw)


def tiny_transformer_config(data_dir: Path, run_dir: Path, tokenizer: str = "", **model):
    """A 2+2-layer Transformer config small enough to train in seconds on the toy corpus;
    `tokenizer`: a folder of `nmt tokenizer train` to use instead of training one."""
    from nmt.config import config_from_dict

    raw = _data_and_train(data_dir, run_dir)
    raw["data"]["tokenizer"] = tokenizer
    raw["model"] = {
        "arch": "transformer",
        "d_model": 64,
        "heads": 4,
        "ff_size": 128,
        "enc_layers": 2,
        "dec_layers": 2,
        "dropout": 0.0,
        **model,
    }
    raw["train"].update(schedule="noam", warmup_steps=60, lr=0.004)
    return config_from_dict(raw)


@pytest.fixture(scope="session")
def toy_dir(tmp_path_factory) -> Path:
    from nmt.data.toy import write_corpus

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


@pytest.fixture(scope="session")
def trained_transformer(toy_dir, trained, tmp_path_factory) -> Path:
    """best.pt of a small Transformer trained for 250 steps on the toy corpus, with the
    tokenizer of `trained` (so that the two can form an ensemble)."""
    from nmt.checkpoint import load_tokenizer
    from nmt.train import train

    run_dir = tmp_path_factory.mktemp("transformer-run")
    load_tokenizer(trained).save(run_dir / "tokenizer")
    train(tiny_transformer_config(toy_dir, run_dir, tokenizer=str(run_dir / "tokenizer")))
    return run_dir / "best.pt"


@pytest.fixture(scope="session")
def exported(trained, tmp_path_factory) -> Path:
    """The folder `nmt export --format onnx` makes of `trained`: what the runtime runs."""
    from nmt.runs.graphs import export_onnx

    return export_onnx(trained, tmp_path_factory.mktemp("export") / "rnn").path


@pytest.fixture(scope="session")
def exported_transformer(trained_transformer, tmp_path_factory) -> Path:
    from nmt.runs.graphs import export_onnx

    return export_onnx(trained_transformer, tmp_path_factory.mktemp("export") / "tf").path


# -- the CLI through typer's CliRunner, for the command tests ------------------------------
_runner = CliRunner()


def nmt(*args: str | Path, input: str | bytes | None = None):
    from nmt.cli.main import app

    return _runner.invoke(app, [str(a) for a in args], input=input)


def ok(result) -> None:
    assert result.exit_code == 0, (result.exit_code, result.stderr, result.exception)
    assert "Traceback" not in result.stderr + result.stdout


def user_error(result, *mentions: str) -> str:
    """Exit 2, exactly one line on stderr that mentions each of `mentions`, no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.stderr, result.exception)
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for text in mentions:
        assert text in lines[0], (text, lines[0])
    return lines[0]


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, str):
        text = text.encode()
    path.write_bytes(text)
    return path


# -- a browser for the page tests -------------------------------------------------------
def browser_path(name: str) -> str:
    """Chromium (name "chromium") or its driver ("chromedriver"): $NMT_CHROMIUM or
    $NMT_CHROMEDRIVER, else the first on PATH. Missing, the test skips; in CI (CI set) it
    fails, so that the browser tests never skip silently there."""
    import shutil

    names = {"chromium": ("chromium", "chromium-browser", "google-chrome"), "chromedriver": ()}
    given = os.environ.get(f"NMT_{name.upper()}")
    found = given or next(
        filter(None, (shutil.which(n) for n in (name, *names.get(name, ())))), None
    )
    if found and os.access(found, os.X_OK):
        return found
    message = (
        f"{name} not found (apt-get install chromium chromium-driver, or set NMT_{name.upper()})"
    )
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)
