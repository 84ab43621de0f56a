"""`nmt export --format ctranslate2`: CTranslate2 computes what our Transformer computes, in
every form the config offers, and searches greedily as nmt translate does."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import nmt, user_error

from nmt import NmtError
from nmt.checkpoint import load_checkpoint, save_checkpoint
from nmt.config import config_from_dict
from nmt.model import build_model
from nmt.runs.ctranslate2 import export_ctranslate2
from nmt.runtime.ctranslate2 import load_ctranslate2, translate_ctranslate2
from nmt.search_options import SearchOptions
from nmt.tokenizer import BOS, EOS
from nmt.translation.translator import Translator

ctranslate2 = pytest.importorskip("ctranslate2")


def _lines(toy_dir: Path, n: int = 60) -> list[str]:
    return (toy_dir / "valid.en").read_text(encoding="utf-8").splitlines()[:n]


@pytest.fixture(scope="module")
def folder(trained_transformer, tmp_path_factory) -> Path:
    return export_ctranslate2(trained_transformer, tmp_path_factory.mktemp("ct2") / "tf").path


@pytest.mark.parametrize(
    "options",
    [
        SearchOptions(beam_size=1),
        # short limits: outputs cut at the max length, where our search allows only EOS
        SearchOptions(beam_size=1, max_len_ratio=0.5, max_len_offset=1),
    ],
    ids=["greedy", "greedy-at-max-length"],
)
def test_greedy_outputs_equal_torch_greedy(trained_transformer, folder, toy_dir, options):
    lines = _lines(toy_dir) + [""]
    expected = [t.text for t in Translator(trained_transformer).translate(lines, options)]
    assert translate_ctranslate2(folder, lines, options) == expected


def test_beam_search_with_avg_length_penalty_mostly_agrees(trained_transformer, folder, toy_dir):
    # the stopping rules differ (search_arguments): equal on most lines, not on all
    lines = _lines(toy_dir)
    options = SearchOptions(beam_size=4, length_penalty="avg")
    expected = [t.text for t in Translator(trained_transformer).translate(lines, options)]
    found = translate_ctranslate2(load_ctranslate2(folder, threads=1), lines, options)
    assert sum(a == b for a, b in zip(found, expected)) >= 0.9 * len(lines)


def _variant(trained_transformer: Path, path: Path, **model) -> Path:
    """A checkpoint of random weights (layer norms and biases too) in another model form."""
    ckpt = load_checkpoint(trained_transformer)
    raw = ckpt.config.to_dict()
    raw["model"].update(model)
    config = config_from_dict(raw)
    tok = ckpt.tokenizer
    torch.manual_seed(1)
    net = build_model(config.model, src_vocab=tok.src_vocab_size, tgt_vocab=tok.tgt_vocab_size)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.3)
    save_checkpoint(path, model=net, config=config, tokenizer=tok)
    return path


@pytest.mark.parametrize(
    "model",
    [
        {"norm": "pre", "positions": "sinusoidal", "tie_output": True, "share_embeddings": True},
        {"norm": "post", "positions": "sinusoidal", "tie_output": True, "share_embeddings": True},
        {"norm": "pre", "positions": "learned", "tie_output": False, "share_embeddings": False},
        {"norm": "post", "positions": "learned", "tie_output": True, "share_embeddings": False},
    ],
    ids=lambda m: "-".join(str(v) for v in m.values()),
)
def test_token_log_probs_equal_ours_in_every_model_form(
    trained_transformer, toy_dir, tmp_path, model
):
    ckpt_path = _variant(trained_transformer, tmp_path / "v.pt", **model)
    out = export_ctranslate2(ckpt_path, tmp_path / "ct2").path
    ckpt = load_checkpoint(ckpt_path)
    tok = ckpt.tokenizer
    src = tok.encode_src(_lines(toy_dir, 4))
    tgt = tok.encode_tgt((toy_dir / "valid.pt").read_text(encoding="utf-8").splitlines()[:4])
    translator = ctranslate2.Translator(str(out), device="cpu", intra_threads=1)
    scored = translator.score_batch(
        [tok.src_pieces(s) for s in src], [tok.tgt_pieces(t) for t in tgt]
    )
    for s, t, result in zip(src, tgt, scored):
        with torch.no_grad():
            logits, _ = ckpt.model(
                torch.tensor([s + [EOS]]), torch.tensor([len(s) + 1]), torch.tensor([[BOS] + t])
            )
        expected = logits[0].log_softmax(-1)[torch.arange(len(t) + 1), torch.tensor(t + [EOS])]
        torch.testing.assert_close(torch.tensor(result.log_probs), expected, atol=2e-4, rtol=1e-4)


def test_an_rnn_is_refused_with_one_line(trained, tmp_path):
    with pytest.raises(NmtError) as e:
        export_ctranslate2(trained, tmp_path / "out")
    assert "\n" not in str(e.value) and "Transformers only" in str(e.value)
    assert not (tmp_path / "out").exists()
    message = user_error(nmt("export", trained, "--format", "ctranslate2", "-o", tmp_path / "o"))
    assert "Transformers only" in message


def test_an_export_is_replaced_and_anything_else_refused(trained_transformer, tmp_path):
    out = tmp_path / "ct2"
    first = export_ctranslate2(trained_transformer, out)
    int8 = export_ctranslate2(trained_transformer, out, precision="int8")
    assert int8.precision == "int8" and int8.size_bytes < first.size_bytes / 2
    assert translate_ctranslate2(out, ["The red cat sees the dog."])[0]
    assert [p.name for p in tmp_path.iterdir()] == ["ct2"]  # no temporary folder left
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(NmtError, match="not a CTranslate2 model folder"):
        export_ctranslate2(trained_transformer, other)
    assert (other / "notes.txt").read_text(encoding="utf-8") == "mine"
