"""The runtime: an exported folder translates like its checkpoint, without torch, through the
same commands; what is not an export gets one clear line. (The search itself is tested
against both implementations in tests/test_search.py.)"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import nmt, ok, user_error, write

from nmt import NmtError
from nmt.runtime.translator import RuntimeTranslator
from nmt.search_options import SearchOptions
from nmt.translation.translator import Translator

SENTENCES = ["The red cat sees the dog.", "", "Two big houses.", "The girl reads a book."]


@pytest.fixture(scope="module")
def lines(toy_dir) -> list[str]:
    return (toy_dir / "test.en").read_text(encoding="utf-8").splitlines()[:40] + SENTENCES


@pytest.mark.parametrize("arch", ["rnn", "transformer"])
@pytest.mark.parametrize("beam_size", [1, 5])
def test_export_translates_like_its_checkpoint(request, arch, beam_size, lines) -> None:
    names = (
        ("trained", "exported")
        if arch == "rnn"
        else ("trained_transformer", "exported_transformer")
    )
    ckpt, folder = (request.getfixturevalue(n) for n in names)
    opts = SearchOptions(beam_size=beam_size, nbest=min(beam_size, 2), return_attention=True)
    ours = RuntimeTranslator(folder, threads=1).translate(lines, opts)
    theirs = Translator(ckpt, threads=1).translate(lines, opts)
    for a, b in zip(ours, theirs):
        assert [h.text for h in a.hypotheses] == [h.text for h in b.hypotheses]
        assert a.src_tokens == b.src_tokens
        for x, y in zip(a.hypotheses, b.hypotheses):
            assert x.tokens == y.tokens
            assert x.log_prob == pytest.approx(y.log_prob, abs=1e-3)
            np.testing.assert_allclose(np.array(x.attention), np.array(y.attention), atol=1e-4)


def test_cli_translates_an_export_as_its_checkpoint(trained, exported, tmp_path) -> None:
    src = write(tmp_path / "in.txt", "\n".join(SENTENCES) + "\n")
    outputs = []
    for model in (trained, exported):
        r = nmt("translate", model, src, "-b", "3", "-q", "--workers", "1")
        ok(r)
        outputs.append(r.stdout)
    assert outputs[0] == outputs[1]
    assert len(outputs[0].splitlines()) == len(SENTENCES)


def test_ensemble_of_exports_equals_ensemble_of_checkpoints(
    trained, trained_transformer, exported, exported_transformer, lines
) -> None:
    opts = SearchOptions(beam_size=3)
    ours = RuntimeTranslator([exported, exported_transformer], weights=[0.7, 0.3]).translate(
        lines, opts
    )
    theirs = Translator([trained, trained_transformer], weights=[0.7, 0.3]).translate(lines, opts)
    assert [t.text for t in ours] == [t.text for t in theirs]


def test_worker_processes_give_the_same_output(exported, lines) -> None:
    opts = SearchOptions(beam_size=2)
    alone = RuntimeTranslator(exported, threads=1).translate(lines, opts)
    pool = RuntimeTranslator(exported, workers=2)
    try:
        together = pool.translate(lines * 3, opts, batch_tokens=64)
    finally:
        pool.close()
    assert [t.text for t in together] == [t.text for t in alone] * 3


def test_runtime_imports_no_torch(exported, tmp_path) -> None:
    """The runtime's whole path, CLI included, with torch made unimportable."""
    src = write(tmp_path / "in.txt", "\n".join(SENTENCES) + "\n")
    script = (
        "import sys; sys.modules['torch'] = None\n"  # `import torch` now raises ImportError
        "from nmt.cli import run\n"
        "import nmt.serving.app\n"
        f"sys.argv = ['nmt', 'translate', {str(exported)!r}, {str(src)!r}, '-q', '-b', '2']\n"
        "run()\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == len(SENTENCES)
    assert done.stdout.splitlines()[1] == ""


def test_export_options_and_precisions(trained, tmp_path, lines) -> None:
    float32 = RuntimeTranslator(_export(trained, tmp_path / "f32"))
    reference = [t.text for t in float32.translate(lines, SearchOptions(beam_size=1))]
    sizes = {"float32": _size(tmp_path / "f32")}
    for flags, name in (
        (["--quantize", "int8"], "int8"),
        (["--dtype", "float16"], "float16"),
    ):
        ok(nmt("export", trained, "--format", "onnx", "-o", tmp_path / name, *flags))
        manifest = json.loads((tmp_path / name / "model.json").read_text())
        assert manifest["precision"] == name
        sizes[name] = _size(tmp_path / name)
        texts = [
            t.text
            for t in RuntimeTranslator(tmp_path / name).translate(lines, SearchOptions(beam_size=1))
        ]
        same = sum(a == b for a, b in zip(texts, reference))
        assert same >= 0.8 * len(lines), (name, same)
    assert sizes["float16"] < 0.7 * sizes["float32"]
    assert sizes["int8"] < 0.7 * sizes["float32"]


def _export(ckpt: Path, out: Path) -> Path:
    ok(nmt("export", ckpt, "--format", "onnx", "-o", out))
    return out


def _size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.iterdir())


def test_export_replaces_an_export_and_refuses_anything_else(trained, tmp_path) -> None:
    out = _export(trained, tmp_path / "model")
    (out / "stale.txt").write_text("left by hand")
    first = out.stat().st_ino
    _export(trained, out)  # an export is replaced whole: another folder, nothing of the old
    assert out.stat().st_ino != first and not (out / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # nothing left beside it

    other = tmp_path / "notes"
    other.mkdir()
    write(other / "keep.txt", "mine")
    user_error(nmt("export", trained, "--format", "onnx", "-o", other), "not an exported model")
    assert (other / "keep.txt").read_text() == "mine"
    user_error(nmt("export", out, "--format", "onnx", "-o", tmp_path / "x"), "is a folder")
    user_error(nmt("export", trained, "--format", "tflite", "-o", tmp_path / "y"), "--format")
    user_error(
        nmt("export", trained, "--format", "onnx", "--dtype", "bfloat16", "-o", tmp_path / "z"),
        "--dtype",
    )


def test_bad_folders_get_one_line(trained, exported, tmp_path) -> None:
    src = write(tmp_path / "in.txt", "a cat\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    user_error(nmt("translate", empty, src), "without model.json")
    # a graph of another format version
    other = tmp_path / "v2"
    shutil.copytree(exported, other)
    manifest = json.loads((other / "model.json").read_text())
    manifest["version"] = 99
    (other / "model.json").write_text(json.dumps(manifest))
    user_error(nmt("translate", other, src), "version 99")
    # a missing tokenizer
    shutil.copytree(exported, tmp_path / "no-spm")
    (tmp_path / "no-spm" / "src.model").unlink()
    user_error(nmt("translate", tmp_path / "no-spm", src), "src.model is missing")
    # a damaged graph
    shutil.copytree(exported, tmp_path / "cut")
    graph = tmp_path / "cut" / "decoder.onnx"
    graph.write_bytes(graph.read_bytes()[:1000])
    user_error(nmt("translate", tmp_path / "cut", src), "decoder.onnx")
    # an ensemble of exports whose tokenizers differ (here: one has a target model of its own)
    shutil.copytree(exported, tmp_path / "own-tgt")
    shutil.copy(exported / "src.model", tmp_path / "own-tgt" / "tgt.model")
    user_error(nmt("translate", exported, src, "--ensemble", tmp_path / "own-tgt"), "tokenizers")
    # an export and a checkpoint in one ensemble
    user_error(nmt("translate", exported, src, "--ensemble", trained), "all exports")
    # options an export fixed
    user_error(nmt("translate", exported, src, "--quantize", "int8"), "--quantize")
    user_error(nmt("translate", exported, src, "--layer", "0"), "--layer")
    # a checkpoint where an export is expected, and the reverse, through the API
    with pytest.raises(NmtError, match="is a file, not an exported model folder"):
        RuntimeTranslator(trained)
    with pytest.raises(NmtError, match="directory"):
        Translator(exported)


def test_info_describes_an_export(exported) -> None:
    r = nmt("info", exported, "--json")
    ok(r)
    info = json.loads(r.stdout)
    assert info["kind"].startswith("export (nmt-onnx")
    assert info["dtype"] == "float32" and info["parameters"] > 0 and info["step"]


def test_serve_answers_from_an_export_as_from_its_checkpoint(trained, exported, lines) -> None:
    from starlette.testclient import TestClient

    from nmt.serving.app import make_app, server_info

    body = {"text": lines[:8], "beam_size": 3, "nbest": 2}
    replies, infos = [], []
    for model, translator in (
        (trained, Translator(trained)),
        (exported, RuntimeTranslator(exported)),
    ):
        info = server_info(model, translator)
        with TestClient(make_app(translator, info)) as client:
            reply = client.post("/translate", json=body)
            assert reply.status_code == 200
            replies.append(reply.json())
            infos.append(client.get("/info").json())
    texts = [[[h["text"] for h in t["nbest"]] for t in r["translations"]] for r in replies]
    assert texts[0] == texts[1]
    assert infos[1]["kind"].startswith("export") and infos[1]["languages"] == infos[0]["languages"]
    assert infos[1]["parameters"] == infos[0]["parameters"]


@pytest.mark.parametrize("vocab", [1, 5, 31, 64, 331])
@pytest.mark.parametrize("width", [1, 3])
def test_top_candidates_equal_the_reference(vocab, width) -> None:
    from nmt.runtime.search import top_candidates, top_candidates_reference

    rng = np.random.default_rng(vocab * 10 + width)
    for count in (1, 2, 6):
        log_probs = rng.standard_normal((4 * width, vocab)).astype(np.float32)
        log_probs[:, 0] = -np.inf  # masked tokens, as PAD and BOS are
        beam_lp = rng.standard_normal(4 * width).astype(np.float32)
        fast = top_candidates(log_probs, beam_lp, width, count)
        slow = top_candidates_reference(log_probs, beam_lp, width, count)
        for a, b in zip(fast, slow):
            np.testing.assert_array_equal(a, b)
