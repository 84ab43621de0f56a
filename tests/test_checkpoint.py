"""Checkpoints: one file round trips; foreign, damaged, newer and malicious files are refused."""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import pytest
import sentencepiece
import torch

import nmt
from nmt import NmtError
from nmt.checkpoint import FORMAT, load_checkpoint, read_state, save_checkpoint
from nmt.config import config_from_dict
from nmt.model import Seq2Seq
from nmt.tokenizer import train_tokenizer


@pytest.fixture(scope="module")
def small(toy_dir):
    """A tiny untrained model with a real tokenizer: enough to test the file format."""
    src = (toy_dir / "train.en").read_text(encoding="utf-8").splitlines()[:300]
    tgt = (toy_dir / "train.pt").read_text(encoding="utf-8").splitlines()[:300]
    tok = train_tokenizer(src, tgt, vocab_size=120)
    config = config_from_dict(
        {"model": {"embed_dim": 8, "enc_hidden_size": 8, "hidden_size": 16, "cell": "lstm"}}
    )
    torch.manual_seed(0)
    model = Seq2Seq(config.model, src_vocab=tok.src_vocab_size, tgt_vocab=tok.tgt_vocab_size)
    return model, config, tok


@pytest.fixture
def saved(small, tmp_path) -> Path:
    model, config, tok = small
    path = tmp_path / "model.pt"
    save_checkpoint(path, model=model, config=config, tokenizer=tok, train_state={"step": 3})
    return path


def test_round_trip(small, saved):
    model, config, tok = small
    ckpt = load_checkpoint(saved)
    assert ckpt.config == config
    assert ckpt.train_state == {"step": 3}
    assert ckpt.tokenizer.src_proto == tok.src_proto and ckpt.tokenizer.joint
    assert ckpt.tokenizer.encode_src(["the red cat"]) == tok.encode_src(["the red cat"])
    assert not ckpt.model.training
    loaded = ckpt.model.state_dict()
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded[name], tensor), name


def test_save_leaves_no_temp_files(saved):
    assert sorted(p.name for p in saved.parent.iterdir()) == ["model.pt"]


def test_versions_are_recorded(saved):
    versions = load_checkpoint(saved).versions
    assert versions == {
        "nmt": nmt.__version__,
        "torch": str(torch.__version__),
        "sentencepiece": sentencepiece.__version__,
    }
    assert read_state(saved)["format"] == FORMAT


def _rewrite(path: Path, **changes) -> None:
    state = torch.load(path, weights_only=True)
    state.update(changes)
    torch.save(state, path)


def test_newer_format_is_refused(saved):
    _rewrite(saved, format=FORMAT + 1)
    with pytest.raises(NmtError, match=f"format {FORMAT + 1}, newer than this nmt"):
        load_checkpoint(saved)


def test_format_of_the_wrong_type_is_refused(saved):
    _rewrite(saved, format="1")
    with pytest.raises(NmtError, match="not an nmt checkpoint"):
        load_checkpoint(saved)


def test_inconsistent_contents_are_refused(saved):
    _rewrite(saved, config={"model": {"cell": "transformer"}})
    with pytest.raises(NmtError, match=r"model.pt: config: model.cell"):
        load_checkpoint(saved)


def test_weights_of_another_shape_are_refused(saved):
    state = torch.load(saved, weights_only=True)
    state["model"] = {k: torch.zeros(1) for k in state["model"]}
    torch.save(state, saved)
    with pytest.raises(NmtError, match="inconsistent"):
        load_checkpoint(saved)


def test_missing_file(tmp_path):
    with pytest.raises(NmtError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


def test_truncated_checkpoint(saved):
    data = saved.read_bytes()
    for cut in (0, 10, len(data) // 2, len(data) - 100):
        saved.write_bytes(data[:cut])
        with pytest.raises(NmtError, match="model.pt"):
            load_checkpoint(saved)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"hello world\n",
        bytes(range(256)) * 20,
        os.urandom(4096),
        b"PK\x03\x04" + os.urandom(200),
    ],
    ids=["empty", "text", "bytes", "random", "fake-zip"],
)
def test_foreign_bytes(tmp_path, content):
    path = tmp_path / "foreign.pt"
    path.write_bytes(content)
    with pytest.raises(NmtError, match="foreign.pt"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    "obj",
    [torch.zeros(3), {"weights": torch.ones(2)}, [1, 2, 3], "a string", {"format": 1}],
    ids=["tensor", "dict", "list", "str", "no-model"],
)
def test_plain_torch_save_of_something_else(tmp_path, obj):
    path = tmp_path / "other.pt"
    torch.save(obj, path)
    with pytest.raises(NmtError, match="other.pt is not an nmt checkpoint"):
        load_checkpoint(path)


class OpenForWriting:
    """Unpickling this under plain torch.load creates (truncates) a file."""

    target = ""

    def __reduce__(self):
        return (open, (self.target, "w"))


class RunShell:
    target = ""

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def _malicious(kind: str, target: Path) -> bytes:
    payload = OpenForWriting() if kind.startswith("open") else RunShell()
    payload.target = str(target)
    state = {"format": FORMAT, "model": payload, "config": {}}
    if kind.endswith("pickle"):
        return pickle.dumps(state, protocol=2)
    if kind.endswith("pickle4"):
        return pickle.dumps(state, protocol=4)
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def test_crafted_pickle_really_is_dangerous(tmp_path):
    """Guard for the test below: the payload does act when loaded without protection."""
    target = tmp_path / "created-by-pickle"
    pickle.loads(_malicious("open-pickle", target))
    assert target.exists()


@pytest.mark.parametrize(
    "kind", ["open-torch", "open-pickle", "open-pickle4", "system-torch", "system-pickle"]
)
def test_malicious_pickle_is_refused_without_side_effects(tmp_path, kind):
    target = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    path.write_bytes(_malicious(kind, target))
    with pytest.raises(NmtError) as e:
        load_checkpoint(path)
    msg = str(e.value)
    assert "evil.pt was refused" in msg
    if kind != "open-pickle4":  # protocol 4 hides the name from torch's error
        assert "would run code" in msg
    assert not target.exists()


def test_weights_that_do_not_fit_the_config_are_refused_before_a_model_is_built(saved, monkeypatch):
    """A config claiming a larger model than the file holds is refused from the shapes alone:
    no model is built for real (that took minutes and gigabytes for 100,000 layers)."""
    import nmt.checkpoint

    state = torch.load(saved, weights_only=True)
    state["config"]["model"]["hidden_size"] = 4096  # the weights are of 16
    torch.save(state, saved)
    built_on: list[str] = []
    real = nmt.checkpoint.build_model

    def build(*args, **kwargs):
        built_on.append(torch.get_default_device().type)
        return real(*args, **kwargs)

    monkeypatch.setattr(nmt.checkpoint, "build_model", build)
    with pytest.raises(NmtError, match="inconsistent with its config .*decoder"):
        load_checkpoint(saved)
    assert built_on and set(built_on) == {"meta"}


@pytest.mark.parametrize(
    ("key", "value"), [("model", [1]), ("config", "model: big"), ("train_state", [3])]
)
def test_parts_that_are_no_mapping_are_refused_when_read(saved, key, value):
    _rewrite(saved, **{key: value})
    with pytest.raises(NmtError, match=f"inconsistent \\(its {key} is a"):
        read_state(saved)
