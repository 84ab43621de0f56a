"""The lectures' tools through the command line, and the recipe end to end (CI-sized)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import nmt, ok, user_error, write

ROOT = Path(__file__).resolve().parents[2]


def test_score_by_length_scores_each_system_per_bucket(tmp_path):
    src = write(tmp_path / "src", "a b\nc d e f g h i j k l m n\ne\n")
    ref = write(tmp_path / "ref", "the cat sat\nthe dog runs in the park\nhello\n")
    a = write(tmp_path / "a.txt", "the cat sat\nthe dog runs\nhello\n")
    b = write(tmp_path / "b.txt", "a cat\nthe dog runs in the park\nbye\n")
    result = nmt("score", "--by-length", src, "--hyp", a, "--hyp", b, "--ref", ref,
                 "--plot", tmp_path / "len.png", "--json")  # fmt: skip
    ok(result)
    buckets = json.loads(result.stdout)
    assert [(x["label"], x["count"]) for x in buckets] == [("0-9", 2), ("10-19", 1)]
    assert set(buckets[1]["scores"]) == {"a.txt", "b.txt"}
    assert buckets[1]["scores"]["b.txt"]["chrf"] == 100.0
    assert (tmp_path / "len.png").stat().st_size > 0
    assert f"wrote {tmp_path / 'len.png'}" in " ".join(result.stderr.split())
    user_error(nmt("score", "--hyp", a, "--hyp", b, "--ref", ref), "--by-length")
    by_length = ("score", "--by-length", src, "--hyp", a, "--ref", ref)
    user_error(nmt(*by_length, "--baseline", b), "--baseline")


def test_inspect_gradients_and_exposure(trained, toy_dir, tmp_path):
    src, tgt = toy_dir / "valid.en", toy_dir / "valid.pt"
    result = nmt("inspect", "gradients", trained, "--src", src, "--tgt", tgt, "--lines", "8",
                 "-o", tmp_path / "g.png", "--json")  # fmt: skip
    ok(result)
    flow = json.loads(result.stdout)
    assert flow["sentences"] == 8 and flow["counts"][0] == 8
    assert set(flow["by_position"]) == {"forward", "backward"}  # the fixture's encoder: bi
    assert all(v > 0 for v in flow["by_position"]["forward"])
    assert (tmp_path / "g.png").stat().st_size > 0
    result = nmt("inspect", "exposure", trained, "--src", src, "--tgt", tgt, "--lines", "8",
                 "-o", tmp_path / "e.png", "--json")  # fmt: skip
    ok(result)
    exp = json.loads(result.stdout)
    assert exp["sentences"] == 8 and exp["counts"][0] == 8
    # a trained model: the first token is mostly right under teacher forcing
    assert exp["teacher_accuracy"][0] > 0.5
    # the measure of compounding: one injected mistake, the next three steps
    rec = exp["recovery"]
    assert rec["window"] == 3 and len(rec["clean"]) == len(rec["injected"]) == 3
    assert rec["counts"][0] == 4 * 8  # four rounds, one mistake a sentence each
    assert (tmp_path / "e.png").stat().st_size > 0
    user_error(nmt("inspect", "gradients", trained, "--src", src, "--tgt", tmp_path / "no"), "no")


@pytest.mark.slow
def test_the_recipe_runs_end_to_end_on_the_toy_corpus(tmp_path):
    wrapper = write(
        tmp_path / "nmt", f'#!/bin/sh\nexec "{sys.executable}" -m nmt "$@"\n'
    )  # the nmt of this tree, whatever is installed
    wrapper.chmod(0o755)
    env = {**os.environ, "NMT": str(wrapper), "PYTHON": sys.executable, "LECTURES_STEPS": "6",
           "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}  # fmt: skip
    run = subprocess.run(
        ["bash", str(ROOT / "recipes/lectures/run.sh"), str(tmp_path / "runs")],
        env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    page = (tmp_path / "runs/RESULTS.md").read_text().split("### Runs")[0]
    verdicts = [x for x in page.splitlines() if x.startswith("| ") and "verdict" not in x]
    assert len(verdicts) == 11 + 6  # the designed experiments', then the Multi30k check's
    assert "a `--tiny` smoke test" in page
    for row in verdicts:
        assert any(v in row for v in ("supported", "not supported", "inconclusive")), row
    # every figure the page links exists
    for name in ("by-length.png", "clipping.png", "elman-plain-gradients.png",
                 "synthetic-by-length.png", "synthetic-clipping.png", "synthetic-jordan.png",
                 "synthetic-bptt.png", "synthetic-depth.png", "synthetic-bidirectional.png",
                 "synthetic-free-running.png"):  # fmt: skip
        assert (tmp_path / "runs/figures" / name).stat().st_size > 0
    records = [json.loads(x) for x in (tmp_path / "runs/elman-plain/log.jsonl").open()]
    assert all("grad_norm" in r for r in records if r["kind"] == "train")
