"""`nmt info`: what a training checkpoint or an export holds, read without loading the model."""

from __future__ import annotations

import json

import pytest
from conftest import nmt, ok, user_error, write

import nmt as nmt_package
from nmt.checkpoint import load_checkpoint, read_state
from nmt.runs.export import checkpoint_info, export_checkpoint


@pytest.fixture(scope="module")
def kinds(trained, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("info") / "export.pt"
    export_checkpoint(trained, out, dtype="float16")
    return {"best": trained, "last": trained.parent / "last.pt", "export": out}


@pytest.mark.parametrize("name", ["best", "last", "export"])
def test_info_json_on_every_kind(kinds, name):
    path = kinds[name]
    r = nmt("info", path, "--json")
    ok(r)
    found = json.loads(r.stdout)
    ckpt = load_checkpoint(path)
    train_state = read_state(kinds["best"] if name == "export" else path)["train_state"]
    assert found["kind"] == ("export" if name == "export" else "training")
    assert found["parameters"] == sum(p.numel() for p in ckpt.model.parameters())
    assert found["step"] == train_state["step"] == 250
    assert found["epoch"] == train_state["epoch"]
    assert found["best"] == train_state["best"] and found["metric"] == "bleu"
    assert found["size_bytes"] == path.stat().st_size
    assert found["src_vocab"] == ckpt.tokenizer.src_vocab_size
    assert found["model"]["cell"] == ckpt.config.model.cell
    assert found["versions"]["nmt"] == nmt_package.__version__
    assert found["has_optimizer_state"] == (name != "export")
    assert found["dtype"] == ("float16" if name == "export" else "float32")


def test_info_text(kinds):
    r = nmt("info", kinds["export"])
    ok(r)
    fields = dict(line.split(":", 1) for line in r.stdout.splitlines())
    assert fields["kind"].strip() == "export"
    assert fields["step"].strip() == "250"
    assert fields["parameters"].strip() == f"{checkpoint_info(kinds['export'])['parameters']:,}"
    assert fields["best"].strip().endswith("(bleu)")


def test_info_of_files_that_are_no_checkpoint(tmp_path):
    yml = write(tmp_path / "config.yaml", "model:\n  cell: gru\n")
    line = user_error(nmt("info", yml), "config.yaml is not an nmt checkpoint")
    assert "code" not in line
    # the same plain wording wherever a checkpoint is read
    line = user_error(nmt("translate", yml, input="a\n"), "config.yaml is not an nmt checkpoint")
    assert "code" not in line
    user_error(nmt("info", tmp_path / "none.pt"), "none.pt", "does not exist")


def _tampered(src, dst, change):
    """A copy of checkpoint `src` at `dst` with `change(state)` applied."""
    import torch

    state = read_state(src)
    change(state)
    torch.save(state, dst)
    return dst


def test_info_of_a_checkpoint_whose_weights_are_a_list(trained, tmp_path):
    bad = _tampered(trained, tmp_path / "list.pt", lambda s: s.update(model=[1, 2]))
    user_error(nmt("info", bad), "list.pt", "model is a list")
    user_error(nmt("translate", bad, input="a\n"), "list.pt", "model is a list")


def test_a_config_claiming_a_larger_model_than_its_weights_is_refused(trained, tmp_path):
    def wider(state):
        state["config"]["model"]["hidden_size"] = 4096  # the weights are of 128

    bad = _tampered(trained, tmp_path / "wide.pt", wider)
    user_error(nmt("info", bad), "wide.pt", "inconsistent with its config", "decoder")
    user_error(nmt("translate", bad, input="a\n"), "wide.pt", "inconsistent with its config")
    user_error(nmt("export", bad, "-o", tmp_path / "e.pt"), "inconsistent with its config")
    assert not (tmp_path / "e.pt").exists()


@pytest.mark.parametrize(("option", "value"), [("enc_layers", 100_000), ("embed_dim", 2**20)])
def test_a_config_of_absurd_sizes_is_refused_before_any_model_is_built(
    trained, tmp_path, option, value
):
    def huge(state):
        state["config"]["model"][option] = value

    bad = _tampered(trained, tmp_path / "huge.pt", huge)
    user_error(nmt("info", bad), "huge.pt", f"model.{option} must be at most")
    user_error(nmt("translate", bad, input="a\n"), "huge.pt", f"model.{option}")
