"""The lectures' notebooks (recipes/lectures/notebooks/*.py, jupytext percent format) run from
top to bottom in their tiny mode (NMT_NOTEBOOK_TINY=1: a few updates a model), so that an
API change that breaks one fails here instead of in a student's hands."""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).parents[2] / "recipes" / "lectures" / "notebooks").glob("*.py"))


def test_there_is_a_notebook_for_each_lecture_topic():
    names = [p.stem for p in NOTEBOOKS]
    assert names == [
        "01_cells_gradients", "02_seq2seq_reversal", "03_attention_length", "04_teacher_forcing",
        "05_elman_jordan_bptt", "06_deep_bidirectional",
    ]  # fmt: skip


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_tiny_mode(path, monkeypatch):
    jupytext = pytest.importorskip("jupytext")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    monkeypatch.setenv("NMT_NOTEBOOK_TINY", "1")
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel draws inline
    notebook = jupytext.read(path)
    client = nbclient.NotebookClient(
        notebook, timeout=60, kernel_name="python3", resources={"metadata": {"path": path.parent}}
    )
    client.execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    # figures inline: every notebook draws at least one
    assert any("image/png" in o.get("data", {}) for o in outputs)
