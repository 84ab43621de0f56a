"""A run dir holds one run: training again refuses it unless told to resume or start over."""

from __future__ import annotations

import json

import pytest
from conftest import tiny_config

from nmt import NmtError
from nmt.train import train


def _config(toy_dir, run_dir, **train_options):
    cfg = tiny_config(toy_dir, run_dir)
    cfg.train.max_steps, cfg.train.valid_every, cfg.train.log_every = 2, 2, 1
    cfg.train.batch_tokens = 800
    for key, value in train_options.items():
        setattr(cfg.train, key, value)
    return cfg


def _records(run_dir):
    return [json.loads(x) for x in (run_dir / "log.jsonl").read_text().splitlines() if x]


@pytest.fixture
def finished(toy_dir, tmp_path):
    run_dir = tmp_path / "run"
    train(_config(toy_dir, run_dir))
    return run_dir


def test_training_again_into_a_run_is_refused_and_changes_nothing(toy_dir, finished):
    before = {p.name: p.read_bytes() for p in finished.iterdir() if p.is_file()}
    with pytest.raises(NmtError) as e:
        train(_config(toy_dir, finished, seed=2))
    message = str(e.value)
    assert str(finished) in message and "\n" not in message
    assert f"--resume {finished / 'last.pt'}" in message
    assert "--overwrite (removes best.pt, last.pt, log.jsonl, tokenizer/)" in message
    assert {p.name: p.read_bytes() for p in finished.iterdir() if p.is_file()} == before


def test_overwrite_starts_a_new_run(toy_dir, finished):
    (finished / "notes.txt").write_text("mine")
    train(_config(toy_dir, finished, max_steps=3, valid_every=3), overwrite=True)
    records = _records(finished)
    assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2, 3]
    assert [r["step"] for r in records if r["kind"] == "valid"] == [3]
    assert (finished / "notes.txt").read_text() == "mine"  # not a file of the run


def test_overwrite_keeps_a_tokenizer_the_config_names(toy_dir, finished):
    cfg = _config(toy_dir, finished)
    cfg.data.tokenizer = str(finished / "tokenizer")
    made = (finished / "tokenizer" / "src.model").stat().st_mtime_ns
    train(cfg, overwrite=True)
    assert (finished / "tokenizer" / "src.model").stat().st_mtime_ns == made


def test_a_run_dir_without_a_run_needs_no_flag(toy_dir, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "data.txt").write_text("x")
    assert train(_config(toy_dir, tmp_path / "run"))["step"] == 2


def test_an_empty_run_dir_option_is_an_error(toy_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(NmtError, match="train.run_dir is empty"):
        train(tiny_config(toy_dir, ""))
    assert not list(tmp_path.iterdir())


def test_resuming_into_the_folder_of_another_run_is_refused(toy_dir, finished, tmp_path):
    other = tmp_path / "other"
    train(_config(toy_dir, other))
    log = (other / "log.jsonl").read_bytes()
    cfg = _config(toy_dir, other, max_steps=4)
    with pytest.raises(NmtError, match="holds another run"):
        train(cfg, resume=finished / "last.pt")
    assert (other / "log.jsonl").read_bytes() == log


def test_overwrite_and_resume_exclude_each_other(toy_dir, finished):
    with pytest.raises(NmtError, match="give one"):
        train(_config(toy_dir, finished), resume=finished / "last.pt", overwrite=True)


def _hold_lock(run_dir, pid="4242"):
    """What a training running in `run_dir` holds: the flock of RUN_DIR/.lock."""
    import fcntl
    import os

    fd = os.open(run_dir / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.ftruncate(fd, 0)
    os.pwrite(fd, pid.encode(), 0)
    return fd


def test_a_second_training_in_a_run_dir_is_refused(toy_dir, tmp_path):
    import os

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    fd = _hold_lock(run_dir)
    try:
        with pytest.raises(NmtError, match=r"in use by another training \(pid 4242\)"):
            train(_config(toy_dir, run_dir))
        assert sorted(p.name for p in run_dir.iterdir()) == [".lock"]
    finally:
        os.close(fd)
    assert train(_config(toy_dir, run_dir))["step"] == 2  # the lock ends with its holder


def test_overwrite_while_another_training_runs_removes_nothing(toy_dir, finished):
    import os

    run_files = lambda: {  # noqa: E731
        p.name: p.read_bytes() for p in finished.iterdir() if p.is_file() and p.name != ".lock"
    }
    before = run_files()
    fd = _hold_lock(finished)
    try:
        with pytest.raises(NmtError, match="in use by another training"):
            train(_config(toy_dir, finished), overwrite=True)
    finally:
        os.close(fd)
    assert run_files() == before


def test_an_overwrite_that_ends_before_its_first_checkpoint_gives_the_old_run_back(
    toy_dir, finished, monkeypatch
):
    import nmt.train

    best = (finished / "best.pt").read_bytes()

    def interrupted(self):
        assert not (finished / "best.pt").exists()  # the old run is out of the way...
        raise KeyboardInterrupt

    monkeypatch.setattr(nmt.train.Trainer, "train", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(_config(toy_dir, finished, seed=5), overwrite=True)
    assert (finished / "best.pt").read_bytes() == best  # ...and back
    assert not (finished / ".replaced").exists()


def test_a_killed_overwrite_is_settled_by_the_next_training(toy_dir, finished):
    """kill -9 before the new run's first checkpoint leaves the old run in .replaced and the
    new run's first files beside it: the next `nmt train` in the folder restores the old run
    (and then refuses to train over it without --overwrite)."""
    best, log = (finished / "best.pt").read_bytes(), (finished / "log.jsonl").read_bytes()
    replaced = finished / ".replaced"
    replaced.mkdir()
    for name in ("best.pt", "last.pt", "log.jsonl", "tokenizer"):
        (finished / name).rename(replaced / name)
    (finished / "log.jsonl").write_text('{"kind": "data"}\n')  # the new run's start
    with pytest.raises(NmtError, match="already holds a run"):
        train(_config(toy_dir, finished))
    assert (finished / "best.pt").read_bytes() == best
    assert (finished / "log.jsonl").read_bytes() == log
    assert not replaced.exists()


def test_a_finished_overwrite_drops_the_old_run(toy_dir, finished):
    best = (finished / "best.pt").read_bytes()
    train(_config(toy_dir, finished, seed=7), overwrite=True)
    assert (finished / "best.pt").read_bytes() != best
    assert not (finished / ".replaced").exists()


def test_a_kill_while_the_old_run_was_moved_aside_moves_it_back(toy_dir, finished):
    """Killed between two renames into .replacing: the next start puts the files back before
    anything else, so no half run is ever taken for a replaced one."""
    best = (finished / "best.pt").read_bytes()
    moving = finished / ".replacing"
    moving.mkdir()
    (finished / "log.jsonl").rename(moving / "log.jsonl")  # moved; best.pt, last.pt not yet
    with pytest.raises(NmtError, match="already holds a run"):
        train(_config(toy_dir, finished))
    assert (finished / "log.jsonl").is_file() and (finished / "best.pt").read_bytes() == best
    assert not moving.exists()


@pytest.mark.parametrize("planted", ["fifo", "symlink", "replaced-file"])
def test_planted_lock_or_replaced_files_are_refused_in_one_line(toy_dir, tmp_path, planted):
    import os

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    target = tmp_path / "elsewhere"
    target.write_text("mine")
    if planted == "fifo":
        os.mkfifo(run_dir / ".lock")
    elif planted == "symlink":
        (run_dir / ".lock").symlink_to(target)
    else:
        (run_dir / ".replaced").write_text("not a folder")
    with pytest.raises(NmtError) as e:
        train(_config(toy_dir, run_dir))
    assert "\n" not in str(e.value) and str(run_dir) in str(e.value)
    assert target.read_text() == "mine"


def test_a_restore_cut_short_is_finished_by_the_next_training(toy_dir, finished):
    """Killed while moving the old run back (best.pt back, the rest still in .restoring): the
    next start finishes the restore; a checkpoint put back is never taken for the new run's."""
    before = {n: (finished / n).read_bytes() for n in ("best.pt", "last.pt", "log.jsonl")}
    restoring = finished / ".restoring"
    restoring.mkdir()
    for name in ("last.pt", "log.jsonl", "tokenizer"):
        (finished / name).rename(restoring / name)
    with pytest.raises(NmtError, match="already holds a run"):
        train(_config(toy_dir, finished))
    assert {n: (finished / n).read_bytes() for n in before} == before
    assert (finished / "tokenizer" / "src.model").is_file() and not restoring.exists()


def test_overwrite_replaces_the_kept_best_checkpoints_and_events_too(toy_dir, tmp_path):
    run_dir = tmp_path / "run"
    train(_config(toy_dir, run_dir, max_steps=4, valid_every=1, keep_best=2, tensorboard=True))
    old = sorted(p.name for p in run_dir.glob("best-step-*.pt"))
    assert old and (run_dir / "tensorboard").is_dir()
    train(_config(toy_dir, run_dir, max_steps=1, valid_every=1, seed=3), overwrite=True)
    assert list(run_dir.glob("best-step-*.pt")) == []  # the new run keeps 1: none of these
    assert not (run_dir / "tensorboard").exists() and not (run_dir / ".replaced").exists()


@pytest.mark.slow
def test_sigterm_during_an_overwrite_gives_the_old_run_back(toy_dir, finished, tmp_path):
    """SIGTERM (timeout, Slurm, docker stop) before the new run's first checkpoint: the old run
    is back when the process has ended, as after Ctrl-C."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import yaml

    best = (finished / "best.pt").read_bytes()
    cfg = _config(toy_dir, finished, max_steps=100000, valid_every=100000, seed=4).to_dict()
    path = tmp_path / "long.yaml"
    path.write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, "-m", "nmt", "train", "-q", "-c", str(path), "--overwrite"]
    proc = subprocess.Popen(cmd, env=dict(os.environ, OMP_NUM_THREADS="1"))
    deadline = time.time() + 120
    begun = lambda: (finished / ".replaced").is_dir() and (finished / "log.jsonl").is_file()  # noqa: E731
    while time.time() < deadline and not begun():
        time.sleep(0.05)  # the new run has begun once the old is aside and a new log exists
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 128 + signal.SIGTERM
    assert (finished / "best.pt").read_bytes() == best
    assert not (finished / ".replaced").exists()
