"""Tests for nmt.analysis.curves: training curves from log.jsonl of one or more runs."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from nmt.analysis import curves
from nmt.analysis.curves import plot_curves


def _no_temp_files(out: Path) -> bool:
    return not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def _write_log(run: Path, records: list[dict], extra: str = "") -> None:
    run.mkdir(parents=True)
    lines = [json.dumps(r) for r in records]
    (run / "log.jsonl").write_text("\n".join(lines) + "\n\n" + extra, encoding="utf-8")


def _fake_run(run: Path, scale: float, truncated: bool = False) -> None:
    records: list[dict] = [{"kind": "config", "model": "rnn"}]
    for step in range(100, 1100, 100):
        records.append(
            {"kind": "train", "step": step, "time": step * 0.12, "epoch": 1,
             "loss": scale * 5 / (1 + step / 300), "lr": 1e-3 * min(1, step / 300),
             "tokens_per_s": 5000.0, "unknown_key": [1, 2]}
        )  # fmt: skip
        if step % 500 == 0:
            records.append(
                {"kind": "valid", "step": step, "time": step * 0.12 + 5, "epoch": 2,
                 "valid_loss": scale * 3 / (1 + step / 500), "valid_ppl": 8.2,
                 "bleu": 10 + step / 100, "chrf": 40 + step / 50, "lr": 1e-3}
            )  # fmt: skip
    # A half-written last line, as while the run is still training.
    _write_log(run, records, extra='{"kind": "train", "st' if truncated else "")


def test_plot_curves(tmp_path: Path) -> None:
    import matplotlib.image

    _fake_run(tmp_path / "run-a", 1.0)
    _fake_run(tmp_path / "run-b", 1.3, truncated=True)
    out = plot_curves([tmp_path / "run-a", str(tmp_path / "run-b")], tmp_path / "figs" / "c.png")
    assert out == tmp_path / "figs" / "c.png"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert matplotlib.image.imread(out)[..., :3].std() > 0.05

    svg = plot_curves([tmp_path / "run-a"], tmp_path / "t.svg", x="time")
    text = svg.read_text(encoding="utf-8")
    ET.fromstring(text)
    assert "time (s)" in text and "run-a" in text and "chrF" in text
    assert _no_temp_files(tmp_path / "figs")


def test_plot_curves_errors(tmp_path: Path) -> None:
    _fake_run(tmp_path / "ok", 1.0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no log.jsonl.*empty"):
        plot_curves([tmp_path / "ok", tmp_path / "empty"], tmp_path / "c.png")
    with pytest.raises(ValueError, match="step|time"):
        plot_curves([tmp_path / "ok"], tmp_path / "c.png", x="epoch")
    with pytest.raises(ValueError, match="suffix"):
        plot_curves([tmp_path / "ok"], tmp_path / "c.gif")
    assert not (tmp_path / "c.png").exists()


def test_plot_curves_resumed_run_replaces_steps(tmp_path: Path) -> None:
    run = tmp_path / "r"
    records = [{"kind": "train", "step": s, "time": s, "loss": 5.0, "lr": 1.0} for s in (1, 2, 3)]
    records += [{"kind": "train", "step": s, "time": s + 9, "loss": 1.0, "lr": 1.0} for s in (2, 3)]
    _write_log(run, records)
    series = curves._read_log(run, "step")
    assert series[("train", "loss")] == ([1.0, 2.0, 3.0], [5.0, 1.0, 1.0])


def test_a_huge_line_in_the_log_is_one_error_naming_it(tmp_path: Path, monkeypatch) -> None:
    import nmt.data.corpus
    from nmt import NmtError

    monkeypatch.setattr(nmt.data.corpus, "MAX_LINE_BYTES", 64 << 10)
    _fake_run(tmp_path / "run", 1.0)
    with (tmp_path / "run" / "log.jsonl").open("a", encoding="utf-8") as f:
        f.write('{"kind": "train", "note": "' + "x" * (1 << 20) + '"}\n')
    with pytest.raises(NmtError, match=r"log.jsonl:\d+: line longer than 65,536 bytes"):
        plot_curves([tmp_path / "run"], tmp_path / "c.png")
    assert not (tmp_path / "c.png").exists()
