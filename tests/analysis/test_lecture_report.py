"""recipes/lectures/report.py: the verdicts follow the rules written on the page."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

PATH = Path(__file__).resolve().parents[2] / "recipes" / "lectures" / "report.py"


@pytest.fixture(scope="module")
def report():
    spec = importlib.util.spec_from_file_location("lectures_report", PATH)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def acc(**runs: float) -> dict:
    return {name.replace("_", " "): {"accuracy": a, "loss": [1.0] * 5} for name, a in runs.items()}


def test_jordan_needs_the_echo_gap_and_the_control(report):
    def verdict(echo: tuple[float, float], total: tuple[float, float]) -> str:
        result = {
            "delay": {"elman": {"accuracy": echo[0]}, "jordan": {"accuracy": echo[1]}},
            "sum": {"elman": {"accuracy": total[0]}, "jordan": {"accuracy": total[1]}},
        }
        return report.syn_jordan(result)[1]

    assert verdict((1.0, 0.2), (1.0, 1.0)) == "**supported**"
    assert verdict((1.0, 0.8), (1.0, 1.0)).startswith("inconclusive")  # gap 0.2 < 0.3
    # Jordan failing the control too: the echo gap may be its training, not its memory
    assert verdict((1.0, 0.2), (1.0, 0.5)).startswith("inconclusive: Elman wins the echo")
    assert verdict((0.2, 1.0), (1.0, 1.0)).startswith("**not supported**")


def test_bptt_needs_both_learners_above_the_short_truncation(report):
    def verdict(full: float, short: float, long: float) -> str:
        result = {"full BPTT": {"accuracy": full}, "truncated (k1=4, k2=4)": {"accuracy": short},
                  "truncated (k1=4, k2=12)": {"accuracy": long}}  # fmt: skip
        return report.syn_bptt(result)[1]

    assert verdict(0.98, 0.26, 0.99) == "**supported**"
    assert verdict(0.98, 0.26, 0.4).startswith("inconclusive")  # k2 > d did not learn
    assert verdict(0.3, 0.9, 0.9).startswith("**not supported**")


def test_depth_and_direction_rules(report):
    def depth(s: float, d: float, w: float) -> tuple[str, str]:
        runs = {"shallow": (s, 16, 1), "deep": (d, 16, 2), "shallow, wider": (w, 24, 1)}
        return report.syn_depth({k: {"accuracy": a, "hidden": h, "layers": n, "parameters": 1}
                                 for k, (a, h, n) in runs.items()})  # fmt: skip

    measured, verdict = depth(0.5, 0.84, 0.85)
    assert verdict == "**supported**" and "wider single layer did as well" in measured
    measured, verdict = depth(0.5, 0.84, 0.6)
    assert verdict == "**supported**" and "did as well" not in measured
    assert depth(0.8, 0.82, 0.8)[1].startswith("inconclusive")
    bi = report.syn_bidirectional(acc(unidirectional=0.29, bidirectional=1.0))
    assert bi[1] == "**supported**" and "unidirectional 0.29, bidirectional 1.00" in bi[0]
    assert report.syn_bidirectional(acc(unidirectional=0.29, bidirectional=0.49))[1].startswith(
        "inconclusive"
    )


def test_free_running_rule(report):
    assert report.syn_free_running(acc(teacher_forcing=0.81, free_running=0.67))[1] == (
        "**supported**"
    )
    assert report.syn_free_running(acc(teacher_forcing=0.81, free_running=0.79))[1].startswith(
        "inconclusive"
    )


def test_a_length_claim_multi30k_cannot_show_is_explained(report, tmp_path):
    def bucket(label: str, count: int, att: float, plain: float) -> dict:
        scores = {f"{c}-{k}/test.hyp": {"bleu": b} for c in ("elman", "gru", "lstm")
                  for k, b in (("attention", att), ("plain", plain))}  # fmt: skip
        return {"label": label, "count": count, "scores": scores}

    # attention's advantage shrinks with length: the opposite of the claim
    buckets = [bucket("0-9", 600, 35, 5), bucket("10-19", 380, 30, 4), bucket("20+", 20, 20, 3)]
    (tmp_path / "by-length.json").write_text(json.dumps(buckets))
    measured, verdict = report.by_length(tmp_path)
    assert verdict.startswith("**not supported**")
    assert "98% of its lines under 20 words" in verdict and "20+ words, holds 20" in verdict
    # where it grows, no excuse is added
    buckets = [bucket("0-9", 600, 10, 5), bucket("10-19", 380, 30, 4), bucket("20+", 20, 20, 3)]
    (tmp_path / "by-length.json").write_text(json.dumps(buckets))
    assert report.by_length(tmp_path)[1] == "**supported**"
