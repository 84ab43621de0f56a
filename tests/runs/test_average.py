"""Checkpoint averaging: the mean of the weights, written as an export; refusals."""

from __future__ import annotations

import math

import pytest
import torch

from nmt import NmtError
from nmt.checkpoint import load_checkpoint, read_state, require_training_state, save_checkpoint
from nmt.config import config_from_dict
from nmt.model import build_model
from nmt.runs.average import average_checkpoints, best_checkpoints, last_checkpoints
from nmt.runs.export import checkpoint_info
from nmt.search import SearchOptions
from nmt.tokenizer import train_tokenizer
from nmt.train import train

MODELS = {
    "rnn": {"embed_dim": 16, "enc_hidden_size": 16, "hidden_size": 24},
    "transformer": {"arch": "transformer", "d_model": 16, "heads": 2, "ff_size": 32},
}


@pytest.fixture(scope="module")
def tokenizer(toy_dir):
    src = (toy_dir / "train.en").read_text(encoding="utf-8").splitlines()[:300]
    tgt = (toy_dir / "train.pt").read_text(encoding="utf-8").splitlines()[:300]
    return train_tokenizer(src, tgt, vocab_size=120)


def _save(path, tokenizer, *, seed, step, arch="rnn", **model):
    config = config_from_dict({"model": {**MODELS[arch], "share_embeddings": True, **model}})
    torch.manual_seed(seed)
    net = build_model(
        config.model, src_vocab=tokenizer.src_vocab_size, tgt_vocab=tokenizer.tgt_vocab_size
    )
    state = {"step": step, "optimizer": {}, "rng": torch.get_rng_state()}
    save_checkpoint(path, model=net, config=config, tokenizer=tokenizer, train_state=state)
    return path


@pytest.mark.parametrize("arch", MODELS)
def test_the_average_is_the_mean_of_the_weights(arch, tokenizer, tmp_path):
    paths = [_save(tmp_path / f"{i}.pt", tokenizer, seed=i, step=10 * i, arch=arch) for i in (1, 2)]
    result = average_checkpoints(paths, tmp_path / "avg.pt")
    assert result.steps == [10, 20]
    a, b = (read_state(p)["model"] for p in paths)
    avg = read_state(tmp_path / "avg.pt")
    assert avg["kind"] == "export" and avg["train_state"] is None
    assert avg["trained"]["step"] == 20
    assert set(avg["model"]) == set(a)
    for name, value in avg["model"].items():
        torch.testing.assert_close(value, (a[name] + b[name]) / 2, msg=name)
    # a normal checkpoint for translation, the shared embedding still one matrix
    ckpt = load_checkpoint(tmp_path / "avg.pt")
    assert ckpt.model.src_embed.weight is ckpt.model.tgt_embed.weight
    torch.testing.assert_close(ckpt.model.src_embed.weight, avg["model"]["src_embed.weight"])
    with pytest.raises(NmtError, match="cannot resume"):
        require_training_state(ckpt, tmp_path / "avg.pt")
    # `nmt info` counts the parameters of the checkpoint's own architecture
    info = checkpoint_info(tmp_path / "avg.pt")
    assert info["parameters"] == sum(p.numel() for p in ckpt.model.parameters())
    assert (info["kind"], info["step"], info["model"]["arch"]) == ("export", 20, arch)


def test_checkpoints_of_other_models_or_tokenizers_are_refused(tokenizer, toy_dir, tmp_path):
    base = _save(tmp_path / "a.pt", tokenizer, seed=1, step=1)
    wider = _save(tmp_path / "b.pt", tokenizer, seed=1, step=2, hidden_size=32)
    with pytest.raises(NmtError, match=r"b\.pt has another model config"):
        average_checkpoints([base, wider], tmp_path / "avg.pt")
    lines = (toy_dir / "train.en").read_text(encoding="utf-8").splitlines()[300:600]
    other = _save(tmp_path / "c.pt", train_tokenizer(lines, lines, vocab_size=120), seed=1, step=2)
    with pytest.raises(NmtError, match=r"c\.pt has another tokenizer"):
        average_checkpoints([base, other], tmp_path / "avg.pt")
    arch = _save(tmp_path / "d.pt", tokenizer, seed=1, step=2, arch="transformer")
    with pytest.raises(NmtError, match="another model config"):
        average_checkpoints([base, arch], tmp_path / "avg.pt")
    with pytest.raises(NmtError, match="at least two"):
        average_checkpoints([base], tmp_path / "avg.pt")
    with pytest.raises(NmtError, match="would overwrite"):
        average_checkpoints([base, base], base)
    with pytest.raises(NmtError, match="given twice"):
        average_checkpoints([base, tmp_path / "." / "a.pt"], tmp_path / "avg.pt")
    with pytest.raises(NmtError, match="is a folder: give a file name"):
        average_checkpoints([base, wider], str(tmp_path) + "/")
    assert not (tmp_path / "avg.pt").exists()


def test_the_last_checkpoints_of_a_run_folder(tokenizer, tmp_path):
    for name, step in [("step-10.pt", 10), ("step-20.pt", 20), ("last.pt", 30), ("best.pt", 30)]:
        _save(tmp_path / name, tokenizer, seed=step, step=step)
    assert last_checkpoints(tmp_path, 2) == [tmp_path / "step-20.pt", tmp_path / "last.pt"]
    with pytest.raises(NmtError, match="3 distinct training steps, fewer than --last 4"):
        last_checkpoints(tmp_path, 4)


def test_a_folder_is_searched_for_checkpoints_by_content_not_suffix(tokenizer, tmp_path):
    """After `make demo`, runs/demo holds test.hyp.pt (Portuguese text) beside the checkpoints;
    a checkpoint without the suffix counts."""
    _save(tmp_path / "best.pt", tokenizer, seed=1, step=10)
    _save(tmp_path / "step-20.ckpt", tokenizer, seed=2, step=20)
    (tmp_path / "test.hyp.pt").write_text("Um gato vermelho.\n", encoding="utf-8")
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "data").mkdir()
    assert last_checkpoints(tmp_path, 2) == [tmp_path / "best.pt", tmp_path / "step-20.ckpt"]


def test_the_average_command(tokenizer, tmp_path):
    from typer.testing import CliRunner

    from nmt.cli.main import app

    def nmt(*args):
        return CliRunner().invoke(app, [str(a) for a in args])

    run = tmp_path / "run"
    run.mkdir()
    a = _save(run / "best.pt", tokenizer, seed=1, step=10)
    b = _save(run / "last.pt", tokenizer, seed=2, step=20)
    r = nmt("average", a, b, "-o", tmp_path / "avg.pt")
    assert r.exit_code == 0, r.stderr
    assert "mean of 2 checkpoints (steps 10, 20)" in r.stderr
    r = nmt("average", run, "--last", "2", "-o", tmp_path / "avg2.pt")
    assert r.exit_code == 0, r.stderr
    one, two = (read_state(tmp_path / n)["model"] for n in ("avg.pt", "avg2.pt"))
    assert all(torch.equal(one[k], two[k]) for k in one)
    for args, mention in [
        ((run,), "say which of its checkpoints with --last N or --best N"),
        ((a, b, "--last", "2"), "need one run folder"),
        ((run, "--last", "3"), "fewer than --last 3"),
        ((run, "--best", "2"), "keeps 0 best checkpoints"),
        ((run, "--last", "2", "--best", "2"), "exclude each other"),
    ]:
        r = nmt("average", *args, "-o", tmp_path / "x.pt")
        assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert mention in r.stderr
    assert not (tmp_path / "x.pt").exists()


def test_the_best_checkpoints_of_a_run_average_into_a_translator(toy_dir, tmp_path):
    from conftest import tiny_config

    from nmt.translation.translator import Translator

    run = tmp_path / "run"
    cfg = tiny_config(toy_dir, run, arch="transformer")
    t = cfg.train
    t.max_steps, t.valid_every, t.keep_best, t.batch_tokens = 6, 2, 2, 800
    t.schedule, t.warmup_steps, t.lr = "noam", 2, 0.002
    train(cfg)
    kept = read_state(run / "last.pt")["train_state"]["kept"]
    best = [run / f"best-step-{int(step)}.pt" for _, step in kept]
    assert best_checkpoints(run, 2) == best and best_checkpoints(run, 1) == best[:1]
    with pytest.raises(NmtError, match="keeps 2 best checkpoints.*train.keep_best 3"):
        best_checkpoints(run, 3)
    average_checkpoints(best, tmp_path / "avg.pt")
    [translation] = Translator(tmp_path / "avg.pt").translate(
        ["The red cat."], SearchOptions(beam_size=2)
    )
    assert translation.hypotheses and math.isfinite(translation.hypotheses[0].log_prob)


def test_average_to_a_fifo_writes_it_in_place(tokenizer, tmp_path):
    import os
    import threading
    import time

    from conftest import nmt, ok

    a = _save(tmp_path / "a.pt", tokenizer, seed=1, step=10)
    b = _save(tmp_path / "b.pt", tokenizer, seed=2, step=20)
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True).start()
    ok(nmt("average", a, b, "-o", fifo))
    deadline = time.monotonic() + 30
    while not got and time.monotonic() < deadline:
        time.sleep(0.01)
    assert fifo.is_fifo() and got and got[0].startswith(b"PK")


def test_average_to_a_full_device_is_one_line_and_leaves_it_alone(tokenizer, tmp_path):
    from pathlib import Path

    from conftest import nmt, user_error

    if not Path("/dev/full").is_char_device():
        pytest.skip("no /dev/full here")
    a = _save(tmp_path / "a.pt", tokenizer, seed=1, step=10)
    b = _save(tmp_path / "b.pt", tokenizer, seed=2, step=20)
    user_error(nmt("average", a, b, "-o", "/dev/full"), "/dev/full", "No space left")
    assert Path("/dev/full").is_char_device()


def test_a_checkpoint_whose_config_is_text_is_one_line(tokenizer, tmp_path):
    from conftest import nmt, user_error

    a = _save(tmp_path / "a.pt", tokenizer, seed=1, step=10)
    b = _save(tmp_path / "b.pt", tokenizer, seed=2, step=20)
    state = read_state(a)
    state["config"] = "model: big"
    torch.save(state, tmp_path / "text-config.pt")
    for first, second in [(tmp_path / "text-config.pt", b), (b, tmp_path / "text-config.pt")]:
        user_error(nmt("average", first, second, "-o", tmp_path / "x.pt"), "text-config.pt")
    assert not (tmp_path / "x.pt").exists()


def test_a_checkpoint_cut_short_in_a_folder_is_skipped_with_a_warning(tokenizer, tmp_path, caplog):
    _save(tmp_path / "best.pt", tokenizer, seed=1, step=10)
    _save(tmp_path / "step-20.pt", tokenizer, seed=2, step=20)
    whole = (tmp_path / "step-20.pt").read_bytes()
    _save(tmp_path / "last.pt", tokenizer, seed=3, step=30)
    (tmp_path / "last.pt").write_bytes((tmp_path / "last.pt").read_bytes()[: len(whole) // 2])
    with caplog.at_level("WARNING"):
        assert last_checkpoints(tmp_path, 2) == [tmp_path / "best.pt", tmp_path / "step-20.pt"]
    assert f"{tmp_path / 'last.pt'} is skipped" in caplog.text
