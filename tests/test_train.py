"""The training loop: determinism, filtering, non-finite losses, unusable run dirs, datasets."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_config

import nmt.train
import nmt.update
from nmt import NmtError
from nmt.checkpoint import load_checkpoint, read_state
from nmt.data.corpus import PairFilter, filter_pairs
from nmt.train import train


def _config(toy_dir, run_dir, model=None, **train_options):
    cfg = tiny_config(toy_dir, run_dir, **(model or {}))
    cfg.train.max_steps, cfg.train.valid_every, cfg.train.log_every = 6, 3, 1
    cfg.train.batch_tokens = 800
    for key, value in train_options.items():
        setattr(cfg.train, key, value)
    return cfg


def _log(run_dir):
    return [json.loads(x) for x in (run_dir / "log.jsonl").read_text().splitlines() if x]


def test_same_seed_same_model(toy_dir, tmp_path):
    train(_config(toy_dir, tmp_path / "a"))
    train(_config(toy_dir, tmp_path / "b"))
    train(_config(toy_dir, tmp_path / "c", seed=2))
    a, b, c = (read_state(tmp_path / n / "last.pt")["model"] for n in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_the_log_records_training_and_validation(toy_dir, tmp_path):
    train(_config(toy_dir, tmp_path))
    log = _log(tmp_path)
    assert [r["step"] for r in log if r["kind"] == "train"] == [1, 2, 3, 4, 5, 6]
    valid = [r for r in log if r["kind"] == "valid"]
    assert [r["step"] for r in valid] == [3, 6]
    assert {"valid_loss", "valid_ppl", "bleu", "chrf", "lr"} <= set(valid[0])
    assert (tmp_path / "best.pt").is_file() and (tmp_path / "last.pt").is_file()


def test_filter_counts_empty_and_long_pairs():
    src = [[5, 6], [], [5] * 10, [7]]
    tgt = [[5], [6], [6], []]
    keep, stats = filter_pairs(src, tgt, PairFilter(max_len=5))
    assert keep == [0]
    assert (stats.kept, stats.empty, stats.too_long) == (1, 2, 1)


def _nan_after(calls_ok, monkeypatch, only_once=False):
    real = F.cross_entropy
    calls = {"n": 0}

    def fake(*args, **kwargs):
        calls["n"] += 1
        loss = real(*args, **kwargs)
        bad = calls["n"] > calls_ok and (not only_once or calls["n"] == calls_ok + 1)
        # only training losses carry label smoothing here; validation stays finite
        if bad and kwargs.get("label_smoothing"):
            return loss * float("nan")
        return loss

    monkeypatch.setattr(nmt.update.F, "cross_entropy", fake)


def test_a_non_finite_loss_skips_that_update(toy_dir, tmp_path, monkeypatch, caplog):
    _nan_after(2, monkeypatch, only_once=True)
    result = train(_config(toy_dir, tmp_path))
    assert result["step"] == 6  # the bad batch was not counted as an update
    assert "non-finite loss" in caplog.text
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert all(torch.isfinite(p).all() for p in ckpt.model.parameters())


def test_repeated_non_finite_losses_stop_with_the_last_good_checkpoint(
    toy_dir, tmp_path, monkeypatch
):
    cfg = _config(toy_dir, tmp_path, max_bad_steps=3)
    _nan_after(4, monkeypatch)  # steps 1-3 fine (checkpoint at 3), then only NaN
    with pytest.raises(NmtError, match="3 non-finite losses in a row"):
        train(cfg)
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert ckpt.train_state["step"] == 3
    assert all(torch.isfinite(p).all() for p in ckpt.model.parameters())


def test_an_unwritable_run_dir_fails_before_training(toy_dir, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(NmtError, match="not writable"):
        train(_config(toy_dir, blocker / "run"))


def test_a_device_name_torch_does_not_know_is_refused_by_its_key(toy_dir, tmp_path):
    # "cuda..." passes the config's check; what torch cannot parse is refused before training
    with pytest.raises(
        NmtError, match=r"train.device must be auto, cpu, cuda or cuda:N, got 'cudax'"
    ):
        train(_config(toy_dir, tmp_path / "run", device="cudax"))
    assert not (tmp_path / "run" / "last.pt").exists()


def test_a_full_disk_fails_before_training(toy_dir, tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(NmtError, match="MiB free"):
        train(_config(toy_dir, tmp_path / "run"))
    assert not list((tmp_path / "run").glob("*.pt"))


def test_trains_from_a_saved_hugging_face_dataset(toy_dir, tmp_path):
    from datasets import Dataset, DatasetDict

    def split(name):
        en = (toy_dir / f"{name}.en").read_text(encoding="utf-8").splitlines()
        pt = (toy_dir / f"{name}.pt").read_text(encoding="utf-8").splitlines()
        return Dataset.from_dict({"translation": [{"en": a, "pt": b} for a, b in zip(en, pt)]})

    DatasetDict({"train": split("train"), "validation": split("valid")}).save_to_disk(
        str(tmp_path / "ds")
    )
    cfg = _config(toy_dir, tmp_path / "run", max_steps=3)
    d = cfg.data
    d.train_src = d.train_tgt = d.valid_src = d.valid_tgt = ""
    d.dataset, d.src_lang, d.tgt_lang = str(tmp_path / "ds"), "en", "pt"
    assert train(cfg)["step"] == 3
    with pytest.raises(NmtError, match="set data.src_lang"):
        d.src_lang, cfg.train.run_dir = "de", str(tmp_path / "run-de")
        train(cfg)


def test_max_minutes_counts_training_time_once(toy_dir, tmp_path, monkeypatch):
    # a clock that advances one second per reading: the budget is spent after ~30 readings
    clock = {"now": 0.0}

    def tick():
        clock["now"] += 1.0
        return clock["now"]

    monkeypatch.setattr(nmt.train.time, "perf_counter", tick)
    cfg = _config(toy_dir, tmp_path, max_steps=0, valid_every=1000, max_minutes=0.5)
    train(cfg)
    log = _log(tmp_path)
    elapsed = log[-1]["time"]
    assert 30 <= elapsed <= 40, elapsed


def test_train_state_round_trips_through_a_checkpoint(toy_dir, tmp_path):
    from nmt.checkpoint import TrainState, save_checkpoint

    train(_config(toy_dir, tmp_path, max_steps=3))
    ckpt = load_checkpoint(tmp_path / "last.pt")
    state = TrainState(
        step=7, epoch=2, batch_in_epoch=3, lr_scale=0.25, best=1.5, bad_valids=1,
        bad_since_decay=1, elapsed=12.5,
    )  # fmt: skip
    save_checkpoint(
        tmp_path / "x.pt",
        model=ckpt.model,
        config=ckpt.config,
        tokenizer=ckpt.tokenizer,
        train_state={**state.to_dict(), "optimizer": {}, "rng": torch.get_rng_state()},
    )
    raw = load_checkpoint(tmp_path / "x.pt").train_state
    assert TrainState.from_dict(raw) == state
    # what checkpoints hold is a plain dict with one key per field
    assert read_state(tmp_path / "last.pt")["train_state"]["step"] == 3


def _trainer(cfg):
    from nmt.data.prepare import prepare_data
    from nmt.train import Trainer

    data, tokenizer = prepare_data(cfg)
    return Trainer(cfg, data, tokenizer, device=torch.device("cpu"))


def test_resuming_a_checkpoint_with_the_old_dict_state(toy_dir, tmp_path):
    from nmt.checkpoint import save_checkpoint

    train(_config(toy_dir, tmp_path, max_steps=3))
    ckpt = load_checkpoint(tmp_path / "last.pt")
    opt = ckpt.train_state["optimizer"]
    # the layout earlier versions wrote, key by key
    old = {
        "step": 3, "epoch": 0, "batch_in_epoch": 3, "lr_scale": 0.5, "best": 0.25,
        "bad_valids": 1, "bad_since_decay": 0, "elapsed": 4.0, "optimizer": opt,
        "rng": torch.get_rng_state(),
    }  # fmt: skip
    save_checkpoint(
        tmp_path / "old.pt",
        model=ckpt.model,
        config=ckpt.config,
        tokenizer=ckpt.tokenizer,
        train_state=old,
    )
    trainer = _trainer(_config(toy_dir, tmp_path))
    trainer.resume(tmp_path / "old.pt")
    s = trainer.state
    assert (s.step, s.epoch, s.batch_in_epoch, s.lr_scale, s.best) == (3, 0, 3, 0.5, 0.25)
    assert (s.bad_valids, s.bad_since_decay, s.elapsed) == (1, 0, 4.0)
    assert trainer.train()["step"] == 6


# the transformer with dropout everywhere, so that resuming must restore the RNG too
TRANSFORMER = {"arch": "transformer", "dropout": 0.1, "attention_dropout": 0.1}
ARCHS = {
    "rnn": ({}, {}),
    "transformer": (TRANSFORMER, {"schedule": "noam", "adam_betas": (0.9, 0.98)}),
}


@pytest.mark.parametrize("accumulate", [1, 2])
@pytest.mark.parametrize("arch", ARCHS)
def test_a_resumed_run_ends_with_the_same_weights(arch, accumulate, toy_dir, tmp_path):
    model, options = ARCHS[arch]
    options = {**options, "accumulate": accumulate}

    def config(name, steps):
        return _config(toy_dir, tmp_path / name, model, max_steps=steps, warmup_steps=2, **options)

    straight = config("straight", 7)
    train(straight)
    # stopped where a validation falls (valid_every 3): both runs validate at the same steps
    train(config("resumed", 3))
    again = config("resumed", 7)
    train(again, resume=tmp_path / "resumed" / "last.pt")
    a = read_state(tmp_path / "straight" / "last.pt")
    b = read_state(tmp_path / "resumed" / "last.pt")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    skip = ("optimizer", "rng", "elapsed")
    drop = lambda state: {k: v for k, v in state.items() if k not in skip}  # noqa: E731
    assert drop(a["train_state"]) == drop(b["train_state"])
    steps = [r["step"] for r in _log(tmp_path / "resumed") if r["kind"] == "train"]
    assert steps == list(range(1, 8))


def test_a_trainer_takes_its_data_and_tokenizer_from_the_caller(toy_dir, tmp_path):
    from nmt.data.prepare import TrainData
    from nmt.tokenizer import train_tokenizer
    from nmt.train import Trainer

    def lines(name):
        return (toy_dir / name).read_text(encoding="utf-8").splitlines()

    data = TrainData(lines("train.en"), lines("train.pt"), lines("valid.en"), lines("valid.pt"))
    tokenizer = train_tokenizer(data.train_src, data.train_tgt, vocab_size=300)
    cfg = _config(toy_dir, tmp_path, max_steps=2)
    cfg.data.train_src = cfg.data.train_tgt = cfg.data.valid_src = cfg.data.valid_tgt = ""
    trainer = Trainer(cfg, data, tokenizer, device=torch.device("cpu"))
    assert trainer.train()["step"] == 2
    assert not (tmp_path / "tokenizer").exists()  # nothing read or trained behind its back
    assert load_checkpoint(tmp_path / "best.pt").tokenizer.to_state() == tokenizer.to_state()


def test_best_pt_is_written_like_every_checkpoint(toy_dir, tmp_path, monkeypatch):
    import nmt.files

    written = []
    real = nmt.files.atomic_open

    def recording(path, *args, **kwargs):
        written.append(Path(path).name)
        return real(path, *args, **kwargs)

    # atomic_open is the one way to write a file whole and synced (nmt/files.py)
    monkeypatch.setattr(nmt.files, "atomic_open", recording)
    train(_config(toy_dir, tmp_path, max_steps=3, valid_every=3))
    assert written.count("last.pt") == written.count("best.pt") == 1
    assert (tmp_path / "best.pt").read_bytes() == (tmp_path / "last.pt").read_bytes()
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_kill_between_the_checkpoint_writes_keeps_best_pt_consistent(
    toy_dir, tmp_path, monkeypatch
):
    import os

    import nmt.files

    real, renames = os.replace, []

    def killed_at_the_fourth(src, dst):
        # validations at steps 3 and 6 each write best.pt and last.pt: die before the 4th
        if Path(dst).name in ("best.pt", "last.pt"):
            renames.append(Path(dst).name)
            if len(renames) == 4:
                raise KeyboardInterrupt
        return real(src, dst)

    cfg = _config(toy_dir, tmp_path, valid_metric="loss")
    monkeypatch.setattr(nmt.files.os, "replace", killed_at_the_fourth)
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    monkeypatch.setattr(nmt.files.os, "replace", real)
    result = train(cfg, resume=tmp_path / "last.pt")
    best = read_state(tmp_path / "best.pt")["train_state"]
    valid = [r for r in _log(tmp_path) if r["kind"] == "valid"]
    best_record = min(valid, key=lambda r: r["valid_loss"])
    # what the run reports as its best is what best.pt holds
    assert best["best"] == result["best"]
    assert best["step"] == best_record["step"] == result["best_step"] == 6


def test_empty_validation_files_are_refused_before_training(toy_dir, tmp_path):
    cfg = _config(toy_dir, tmp_path / "run")
    (tmp_path / "v.en").write_text("")
    (tmp_path / "v.pt").write_text("")
    cfg.data.valid_src, cfg.data.valid_tgt = str(tmp_path / "v.en"), str(tmp_path / "v.pt")
    with pytest.raises(NmtError, match="validation set is empty: .*v.en and .*v.pt"):
        train(cfg)
    assert not (tmp_path / "run" / "log.jsonl").exists()


def test_the_result_and_the_log_agree(toy_dir, tmp_path):
    result = train(_config(toy_dir, tmp_path, max_steps=4, valid_every=2))
    log = _log(tmp_path)
    assert result["epoch"] == log[-1]["epoch"] == 1
    assert result["metric"] == "bleu"
    assert result["best"] == max(r["bleu"] for r in log if r["kind"] == "valid")
    # the pairs kept and dropped are the log's first record
    data = log[0]
    assert data["kind"] == "data" and data["step"] == 0
    assert data["pairs"] + data["dropped_empty"] + data["dropped_too_long"] == 3000
    assert data["pairs"] > 0 and data["batches_per_epoch"] > 0


def test_resuming_a_finished_run_adds_no_record(toy_dir, tmp_path):
    cfg = _config(toy_dir, tmp_path, max_steps=4, valid_every=3)
    train(cfg)
    log = (tmp_path / "log.jsonl").read_text()
    assert train(cfg, resume=tmp_path / "last.pt")["step"] == 4
    assert (tmp_path / "log.jsonl").read_text() == log


def test_only_rank_0_logs(toy_dir, tmp_path, monkeypatch, caplog):
    import logging

    monkeypatch.setattr(nmt.train, "init_distributed", lambda device: (1, 1))
    level = logging.getLogger("nmt").level
    try:
        with caplog.at_level(logging.INFO):
            train(_config(toy_dir, tmp_path, max_steps=2))
    finally:
        logging.getLogger("nmt").setLevel(level)
    assert not [r for r in caplog.records if r.levelno < logging.WARNING]


def test_another_tokenizer_of_the_same_size_is_refused_on_resume(toy_dir, tmp_path):
    import shutil

    from nmt.tokenizer import Tokenizer, train_tokenizer

    cfg = _config(toy_dir, tmp_path / "run", max_steps=2)
    train(cfg)
    ours = Tokenizer.load(tmp_path / "run" / "tokenizer")
    en, pt = (
        (toy_dir / n).read_text(encoding="utf-8").splitlines() for n in ("train.en", "train.pt")
    )
    other = train_tokenizer(en, pt, vocab_size=ours.src_vocab_size, model_type="bpe")
    assert other.src_vocab_size == ours.src_vocab_size
    shutil.rmtree(tmp_path / "run" / "tokenizer")
    other.save(tmp_path / "run" / "tokenizer")
    cfg.train.max_steps = 4
    with pytest.raises(NmtError, match="not the one the checkpoint was trained with"):
        train(cfg, resume=tmp_path / "run" / "last.pt")


def test_the_largest_seed_trains_with_subword_sampling(toy_dir, tmp_path):
    cfg = _config(toy_dir, tmp_path, max_steps=1, valid_every=1, seed=2**32 - 1)
    cfg.data.sampling_alpha = 0.1
    assert train(cfg)["step"] == 1


def test_a_transformer_trains_with_the_noam_schedule(toy_dir, tmp_path):
    from nmt.transformer import Transformer

    cfg = _config(
        toy_dir, tmp_path, TRANSFORMER, max_steps=40, valid_every=40, schedule="noam",
        warmup_steps=10, lr=0.002, batch_tokens=1500, label_smoothing=0.1, clip_norm=1.0,
    )  # fmt: skip
    train(cfg)
    records = [r for r in _log(tmp_path) if r["kind"] == "train"]
    noam = [0.002 * min(n / 10, (10 / n) ** 0.5) for n in range(1, 41)]
    assert [r["lr"] for r in records] == pytest.approx(noam)
    losses = [r["loss"] for r in records]
    assert sum(losses[-5:]) < 0.8 * sum(losses[:5]), losses
    ckpt = load_checkpoint(tmp_path / "best.pt")
    assert isinstance(ckpt.model, Transformer) and ckpt.config.model.arch == "transformer"
    assert ckpt.train_state["step"] == 40


def test_keep_best_keeps_the_n_best_checkpoints_across_a_resume(toy_dir, tmp_path, monkeypatch):
    scores = iter([5.0, 9.0, 7.0, 3.0, 10.0, 1.0])  # BLEU of the validations at steps 1..6

    def scripted(self):
        return {"valid_loss": 1.0, "valid_ppl": 2.7, "bleu": next(scores), "chrf": 0.0}, []

    monkeypatch.setattr(nmt.train.Trainer, "validate", scripted)

    def kept():
        return sorted(p.name for p in tmp_path.glob("best-step-*.pt"))

    train(_config(toy_dir, tmp_path, max_steps=4, valid_every=1, keep_best=2))
    assert kept() == ["best-step-2.pt", "best-step-3.pt"]
    assert (tmp_path / "best.pt").read_bytes() == (tmp_path / "best-step-2.pt").read_bytes()
    assert read_state(tmp_path / "best-step-3.pt")["train_state"]["step"] == 3
    again = _config(toy_dir, tmp_path, max_steps=6, valid_every=1, keep_best=2)
    train(again, resume=tmp_path / "last.pt")
    assert kept() == ["best-step-2.pt", "best-step-5.pt"]
    assert (tmp_path / "best.pt").read_bytes() == (tmp_path / "best-step-5.pt").read_bytes()
    assert read_state(tmp_path / "last.pt")["train_state"]["kept"] == [[10.0, 5], [9.0, 2]]


def test_resume_refuses_a_corpus_changed_since_the_checkpoint(toy_dir, tmp_path):
    import shutil

    corpus = tmp_path / "corpus"
    shutil.copytree(toy_dir, corpus)
    train(_config(corpus, tmp_path / "run", max_steps=3))
    for name in ("train.en", "train.pt"):
        with open(corpus / name, "a", encoding="utf-8") as f:
            f.write("one more line\n")
    with pytest.raises(NmtError, match="the training data changed since .*last.pt"):
        train(_config(corpus, tmp_path / "run", max_steps=6), resume=tmp_path / "run" / "last.pt")


def test_validation_shows_examples_in_the_log(toy_dir, tmp_path):
    cfg = _config(toy_dir, tmp_path)
    train(cfg)
    valid = [r for r in _log(tmp_path) if r["kind"] == "valid"]
    sources = (toy_dir / "valid.en").read_text(encoding="utf-8").splitlines()[:3]
    references = (toy_dir / "valid.pt").read_text(encoding="utf-8").splitlines()[:3]
    for record in valid:  # the same three sentences at every validation
        assert [e["source"] for e in record["examples"]] == sources
        assert [e["reference"] for e in record["examples"]] == references
        assert all(isinstance(e["hypothesis"], str) for e in record["examples"])


def test_accumulating_n_batches_makes_one_update_a_step(toy_dir, tmp_path):
    """train.accumulate 3: every update sums 3 batches, so an epoch makes a third of the
    updates; the log counts updates, the run ends at max_steps updates."""
    one = _config(toy_dir, tmp_path / "one", max_steps=0, max_epochs=1, valid_every=1000)
    three = _config(toy_dir, tmp_path / "three", max_steps=0, max_epochs=1, valid_every=1000)
    three.train.accumulate = 3
    updates = train(one)["step"], train(three)["step"]
    assert updates[1] == math.ceil(updates[0] / 3)


def test_tensorboard_event_files_hold_the_log(toy_dir, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(_config(toy_dir, tmp_path, tensorboard=True))
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    tags = events.Tags()
    assert {"train/loss", "train/lr", "train/grad_norm", "valid/bleu", "valid/valid_loss"} <= set(
        tags["scalars"]
    )
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3, 4, 5, 6]
    assert [e.step for e in events.Scalars("valid/bleu")] == [3, 6]
    assert "examples/1/text_summary" in tags["tensors"]


def test_training_says_how_many_threads_it_takes(toy_dir, tmp_path, caplog):
    with caplog.at_level("INFO", logger="nmt"):
        train(_config(toy_dir, tmp_path / "auto", threads=0))
    assert "threads: " in caplog.text and "(auto: " in caplog.text
    caplog.clear()
    with caplog.at_level("INFO", logger="nmt"):
        train(_config(toy_dir, tmp_path / "given", threads=1))
    assert "threads: 1 (train.threads)" in caplog.text
