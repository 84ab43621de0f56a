"""The train records' gradient norm (before clipping) and the fraction of updates clipped,
and the curves panel that draws them."""

from __future__ import annotations

import json

from conftest import tiny_config

from nmt.analysis.curves import _read_log
from nmt.train import train


def _train_records(toy_dir, run_dir, clip_norm: float) -> list[dict]:
    cfg = tiny_config(toy_dir, run_dir)
    cfg.train.max_steps, cfg.train.valid_every, cfg.train.log_every = 4, 4, 2
    cfg.train.batch_tokens, cfg.train.clip_norm = 800, clip_norm
    train(cfg)
    records = [json.loads(x) for x in (run_dir / "log.jsonl").read_text().splitlines()]
    return [r for r in records if r["kind"] == "train"]


def test_train_records_log_the_norm_and_how_often_clipping_fired(toy_dir, tmp_path):
    tiny = _train_records(toy_dir, tmp_path / "tiny", clip_norm=1e-4)
    off = _train_records(toy_dir, tmp_path / "off", clip_norm=0.0)
    # a threshold far below any norm clips every update; no threshold clips none
    assert [r["clipped"] for r in tiny] == [1.0, 1.0]
    assert [r["clipped"] for r in off] == [0.0, 0.0]
    # measured before clipping: far above the threshold that scaled it down
    assert tiny[0]["grad_norm"] > 1e-4 and off[0]["grad_norm"] > 0
    series = _read_log(tmp_path / "off", "step")
    assert series[("train", "grad_norm")][0] == [2.0, 4.0]
    assert series[("train", "clipped")][1] == [0.0, 0.0]
