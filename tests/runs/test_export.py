"""`nmt export`: a smaller file that translates exactly like its checkpoint and never resumes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from conftest import nmt, ok, tiny_config, user_error, write

from nmt import NmtError
from nmt.checkpoint import load_checkpoint, read_state
from nmt.runs.export import export_checkpoint

SENTENCES = ["The red cat sees the dog.", "", "Two big houses.", "The girl reads a book."]


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "model.pt"
    ok(nmt("export", trained, "-o", out))
    return out


def test_export_translates_byte_for_byte_like_its_checkpoint(trained, exported, tmp_path):
    src = write(tmp_path / "in.txt", "\n".join(SENTENCES) + "\n")
    outputs = []
    for ckpt in (trained, exported):
        r = nmt("translate", ckpt, src, "-b", "3", "--format", "jsonl", "-q")
        ok(r)
        outputs.append(r.stdout)
    assert outputs[0] == outputs[1]
    assert len(outputs[0].splitlines()) == len(SENTENCES) and '"log_prob"' in outputs[0]


def test_export_plots_attention(exported, tmp_path):
    r = nmt("attention", exported, "--text", "The red cat.", "-o", tmp_path / "att", "-b", "2")
    ok(r)
    assert Path(r.stdout.strip()).read_bytes().startswith(b"\x89PNG")


def test_export_holds_no_training_state_and_is_much_smaller(trained, exported):
    state = read_state(exported)
    assert state["kind"] == "export" and state["train_state"] is None
    assert state["trained"]["step"] == read_state(trained)["train_state"]["step"]
    # Adam keeps two moments per weight: the export is about a third of the checkpoint
    assert exported.stat().st_size < 0.4 * trained.stat().st_size
    ckpt, original = load_checkpoint(exported), load_checkpoint(trained)
    assert ckpt.kind == "export" and original.kind == "training"
    for name, tensor in original.model.state_dict().items():
        assert torch.equal(ckpt.model.state_dict()[name], tensor), name


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_export_loads_as_float32(trained, exported, tmp_path, dtype):
    out = tmp_path / f"{dtype}.pt"
    result = export_checkpoint(trained, out, dtype=dtype)
    assert result.size_bytes < exported.stat().st_size
    stored, full = read_state(out)["model"], read_state(exported)["model"]
    assert {v.dtype for v in stored.values() if v.is_floating_point()} == {getattr(torch, dtype)}
    # the weights take half the bytes (the tiny model's file is mostly tokenizer and zip)
    assert sum(v.nbytes for v in stored.values()) == sum(v.nbytes for v in full.values()) // 2
    model = load_checkpoint(out).model
    original = load_checkpoint(trained).model.state_dict()
    for name, tensor in model.state_dict().items():
        assert tensor.dtype == torch.float32, name
        # float16 keeps 11 significant bits, bfloat16 8
        torch.testing.assert_close(tensor, original[name], rtol=1e-2, atol=1e-3)
    r = nmt("translate", out, "-b", "2", "-q", input="The red cat sees the dog.\n")
    ok(r)
    assert r.stdout.strip()


def test_resume_refuses_an_export(toy_dir, exported, tmp_path):
    cfg = tiny_config(toy_dir, tmp_path / "run").to_dict()
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(cfg))
    r = nmt("train", "-q", "-c", config, "--resume", exported)
    user_error(r, "model.pt is an export", "cannot resume training", "last.pt")


def test_int8_export_is_refused_with_the_way_to_int8(trained, tmp_path):
    out = tmp_path / "q.pt"
    user_error(nmt("export", trained, "-o", out, "--quantize", "int8"), "translate", "int8")
    assert not out.exists()


@pytest.mark.parametrize(
    "args, mentions",
    [
        (["--dtype", "float64"], ["--dtype", "float16"]),
        (["--quantize", "int4"], ["--quantize"]),
    ],
)
def test_export_bad_options(trained, tmp_path, args, mentions):
    user_error(nmt("export", trained, "-o", tmp_path / "x.pt", *args), *mentions)
    assert list(tmp_path.iterdir()) == []


def test_export_of_a_foreign_file_or_onto_itself(trained, tmp_path):
    yml = write(tmp_path / "c.yaml", "model:\n  cell: gru\n")
    user_error(nmt("export", yml, "-o", tmp_path / "x.pt"), "c.yaml is not an nmt checkpoint")
    with pytest.raises(NmtError, match="overwrite"):
        export_checkpoint(trained, trained)
    bad = tmp_path / "bad.pt"
    torch.save({"format": 1, "model": {}, "config": {"model": {"cell": "transformer"}}}, bad)
    user_error(nmt("export", bad, "-o", tmp_path / "x.pt"), "bad.pt", "model.cell")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pt", "c.yaml"]


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_shared_embeddings_are_stored_once(toy_dir, tmp_path, dtype):
    from nmt.checkpoint import save_checkpoint
    from nmt.config import config_from_dict
    from nmt.model import Seq2Seq
    from nmt.tokenizer import train_tokenizer

    lines = (toy_dir / "train.en").read_text(encoding="utf-8").splitlines()[:300]
    tok = train_tokenizer(lines, lines, vocab_size=120)
    model = {"embed_dim": 8, "enc_hidden_size": 8, "hidden_size": 16, "share_embeddings": True}
    config = config_from_dict({"data": {"joint_vocab": True}, "model": model})
    model = Seq2Seq(config.model, src_vocab=tok.src_vocab_size, tgt_vocab=tok.tgt_vocab_size)
    save_checkpoint(tmp_path / "c.pt", model=model, config=config, tokenizer=tok)
    export_checkpoint(tmp_path / "c.pt", tmp_path / "e.pt", dtype=dtype)
    stored = read_state(tmp_path / "e.pt")["model"]
    src, tgt = stored["src_embed.weight"], stored["tgt_embed.weight"]
    assert src.untyped_storage().data_ptr() == tgt.untyped_storage().data_ptr()
    loaded = load_checkpoint(tmp_path / "e.pt").model
    assert loaded.src_embed.weight is loaded.tgt_embed.weight


@pytest.mark.parametrize(
    "where, message",
    [
        ("missing/x.pt", "the folder .*missing does not exist"),
        ("folder", "-o .*folder is a folder: give a file name"),
        ("folder/", "is a folder: give a file name"),
    ],
)
def test_export_checks_its_output_before_the_work(trained, tmp_path, where, message):
    (tmp_path / "folder").mkdir()
    with pytest.raises(NmtError, match=message):
        export_checkpoint(trained, str(tmp_path) + "/" + where)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder"]
    assert not list((tmp_path / "folder").iterdir())


def _read_fifo_in_background(fifo: Path) -> list[bytes]:
    import threading

    got: list[bytes] = []
    threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True).start()
    return got


def test_export_to_a_fifo_writes_it_in_place(trained, tmp_path):
    import os
    import time

    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    got = _read_fifo_in_background(fifo)
    ok(nmt("export", trained, "-o", fifo))
    deadline = time.monotonic() + 30
    while not got and time.monotonic() < deadline:
        time.sleep(0.01)
    assert fifo.is_fifo(), "the FIFO was replaced by a file"
    assert got and got[0].startswith(b"PK")  # the export went through the FIFO
    assert [p.name for p in tmp_path.iterdir()] == ["out.fifo"]


def test_export_to_dev_null_or_dev_full_leaves_the_devices_alone(trained):
    if not Path("/dev/full").is_char_device():
        pytest.skip("no /dev/full here")
    ok(nmt("export", trained, "-o", "/dev/null"))
    user_error(nmt("export", trained, "-o", "/dev/full"), "/dev/full", "No space left")
    assert Path("/dev/null").is_char_device() and Path("/dev/full").is_char_device()
