"""Crash safety of training: kill -9 part-way, resume, and end at the same model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from conftest import tiny_config

from nmt.checkpoint import load_checkpoint, read_state

STEPS, EVERY = 80, 20


# the transformer with dropout, so that only a restored RNG continues the same way
MODELS = {"rnn": {}, "transformer": {"arch": "transformer", "dropout": 0.1}}
SCHEDULES = {"rnn": {}, "transformer": {"schedule": "noam", "warmup_steps": 20, "lr": 0.003}}


def _config_file(toy_dir, run_dir, path, arch):
    cfg = tiny_config(toy_dir, run_dir, **MODELS[arch]).to_dict()
    cfg["train"].update(
        max_steps=STEPS, valid_every=EVERY, log_every=10, threads=1, batch_tokens=1200
    )
    cfg["train"].update(SCHEDULES[arch])
    path.write_text(yaml.safe_dump(cfg))
    return path


def _train(config, *extra):
    cmd = [sys.executable, "-m", "nmt", "train", "-q", "-c", str(config), *extra]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for_checkpoint(run_dir, proc, min_step):
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        log = run_dir / "log.jsonl"
        if log.is_file():
            steps = [
                json.loads(x)["step"]
                for x in log.read_text().splitlines()
                if x.strip() and '"valid"' in x
            ]
            if steps and max(steps) >= min_step:
                return
        time.sleep(0.05)
    pytest.fail("the training never wrote the checkpoint to kill after")


@pytest.mark.slow
@pytest.mark.parametrize("arch", MODELS)
def test_kill_and_resume_reaches_the_same_model(arch, toy_dir, tmp_path):
    straight = _config_file(toy_dir, tmp_path / "straight", tmp_path / "straight.yaml", arch)
    assert _train(straight).wait() == 0

    crashed_dir = tmp_path / "crashed"
    crashed = _config_file(toy_dir, crashed_dir, tmp_path / "crashed.yaml", arch)
    proc = _train(crashed)
    _wait_for_checkpoint(crashed_dir, proc, STEPS // 2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # whatever moment the kill hit, both checkpoints load
    killed_at = read_state(crashed_dir / "last.pt")["train_state"]["step"]
    assert 0 < killed_at < STEPS
    load_checkpoint(crashed_dir / "best.pt")
    assert not list(crashed_dir.glob(".*.tmp"))

    # the tokenized training pairs were cached before training: the resumed run reads them
    (cache,) = (crashed_dir / "cache").iterdir()
    built = (cache / "meta.json").stat().st_mtime_ns

    resumed = _train(crashed, "--resume", str(crashed_dir / "last.pt"))
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err.decode()[-2000:]
    assert list((crashed_dir / "cache").iterdir()) == [cache]
    assert (cache / "meta.json").stat().st_mtime_ns == built

    a = read_state(tmp_path / "straight" / "last.pt")
    b = read_state(crashed_dir / "last.pt")
    assert a["train_state"]["step"] == b["train_state"]["step"] == STEPS
    assert a["train_state"]["epoch"] == b["train_state"]["epoch"]
    for name, tensor in a["model"].items():
        torch.testing.assert_close(b["model"][name], tensor, rtol=0, atol=1e-6, msg=name)
    # the log holds each step once: records after the checkpoint were dropped on resume
    steps = [
        json.loads(x)["step"]
        for x in (crashed_dir / "log.jsonl").read_text().splitlines()
        if '"train"' in x
    ]
    assert steps == sorted(set(steps)) == list(range(10, STEPS + 1, 10))
