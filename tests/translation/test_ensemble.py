"""Tests for nmt.translation.ensemble on the trained RNN and Transformer (which share one
tokenizer): an ensemble of one model is the model, of a model with itself gives its tokens and
log-probabilities, a mixed one searches batch-invariantly and scores like its forward pass;
weights are checked; tokenizers must match; worker processes and the CLI take ensembles."""

from __future__ import annotations

import random

import pytest
import torch
from conftest import tiny_config
from typer.testing import CliRunner

from nmt import NmtError
from nmt.batching import source_tensor
from nmt.checkpoint import load_checkpoint, save_checkpoint
from nmt.cli.main import app
from nmt.model import Seq2Seq
from nmt.search import SearchOptions, beam_search, greedy, score_tokens
from nmt.tokenizer import train_tokenizer
from nmt.translation.ensemble import Ensemble, ensemble_weights
from nmt.translation.translator import Translator


@pytest.fixture(scope="module")
def models(trained, trained_transformer):
    return {
        "rnn": load_checkpoint(trained).model,
        "transformer": load_checkpoint(trained_transformer).model,
    }


@pytest.fixture(scope="module")
def ids(trained, toy_dir) -> list[list[int]]:
    lines = (toy_dir / "test.en").read_text(encoding="utf-8").splitlines()[:40]
    return [seq for seq in load_checkpoint(trained).tokenizer.encode_src(lines) if seq]


def _run(fn, model, ids, opts):
    src, src_lengths = source_tensor(ids)
    return fn(model, src, src_lengths, opts)


def _same(a, b, abs_tol: float = 1e-5) -> None:
    for x, y in zip(a, b, strict=True):
        assert [h.tokens for h in x] == [h.tokens for h in y]
        assert [h.log_prob for h in x] == pytest.approx([h.log_prob for h in y], abs=abs_tol)


@pytest.mark.parametrize("arch", ["rnn", "transformer"])
@pytest.mark.parametrize("beam_size", [1, 4])
def test_an_ensemble_of_one_model_is_the_model(models, ids, arch, beam_size) -> None:
    model = models[arch]
    fn = greedy if beam_size == 1 else beam_search
    opts = SearchOptions(beam_size=beam_size, nbest=min(beam_size, 2), return_attention=True)
    alone, ensemble = _run(fn, model, ids, opts), _run(fn, Ensemble([model]), ids, opts)
    _same(alone, ensemble)
    a, b = alone[0][0].attention, ensemble[0][0].attention
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("arch", ["rnn", "transformer"])
def test_a_model_with_itself_gives_its_tokens_and_log_probs(models, ids, arch) -> None:
    model = models[arch]
    opts = SearchOptions(beam_size=4, nbest=2)
    _same(
        _run(beam_search, model, ids, opts), _run(beam_search, Ensemble([model, model]), ids, opts)
    )


def test_the_mix_is_the_renormalized_weighted_mean_of_log_probs(models, ids) -> None:
    rnn, transformer = models["rnn"], models["transformer"]
    ensemble = Ensemble([rnn, transformer], weights=[3, 1])
    assert ensemble.weights == [0.75, 0.25]
    src, src_lengths = source_tensor(ids[:5])
    prev = torch.tensor([2] * 5)  # BOS
    with torch.inference_mode():
        enc, state = ensemble.encode(src, src_lengths)
        mixed, _, weights = ensemble.decode_step(state, prev, enc)
        unnormalized, _, _ = ensemble.decode_step(state, prev, enc, normalize=False)
        parts = []
        for m in (rnn, transformer):
            e, s = m.encode(src, src_lengths)
            parts.append(m.decode_step(s, prev, e))
    expected = (0.75 * parts[0][0] + 0.25 * parts[1][0]).log_softmax(-1)
    torch.testing.assert_close(mixed, expected)
    assert torch.equal(unnormalized.argmax(-1), mixed.argmax(-1))
    torch.testing.assert_close(weights, parts[0][2])  # the first model's attention


@pytest.mark.parametrize("beam_size", [1, 5])
def test_a_mixed_ensemble_is_batch_invariant_and_rescores(models, ids, beam_size) -> None:
    ensemble = Ensemble([models["transformer"], models["rnn"]], weights=[0.6, 0.4])
    fn = greedy if beam_size == 1 else beam_search
    opts = SearchOptions(beam_size=beam_size, nbest=min(beam_size, 3))
    batched = _run(fn, ensemble, ids, opts)
    alone = [_run(fn, ensemble, [s], opts)[0] for s in ids]
    order = list(range(len(ids)))
    random.Random(1).shuffle(order)
    shuffled = _run(fn, ensemble, [ids[i] for i in order], opts)
    unshuffled = [shuffled[order.index(i)] for i in range(len(ids))]
    _same(batched, alone)
    _same(batched, unshuffled)
    rows = [s for s, hyps in zip(ids, batched) for _ in hyps]
    src, src_lengths = source_tensor(rows)
    rescored = score_tokens(ensemble, src, src_lengths, [h.tokens for hs in batched for h in hs])
    assert [h.log_prob for hs in batched for h in hs] == pytest.approx(rescored, abs=1e-4)
    if beam_size == 1:  # beam 1 is greedy for an ensemble too
        _same(
            batched, _run(beam_search, ensemble, ids, SearchOptions(beam_size=1, length_penalty=0))
        )


def test_weights_are_checked() -> None:
    assert ensemble_weights(None, 4) == [0.25] * 4
    assert ensemble_weights([1, 3], 2) == [0.25, 0.75]
    for bad, message in [
        ([1.0], "weights must be one a model: 1 given for 2 models"),
        ([1.0, 0.0], "weights must be finite numbers > 0, got 0.0"),
        ([1.0, -1.0], "got -1.0"),
        ([1.0, float("nan")], "got nan"),
        ([1.0, True], "got True"),
    ]:
        with pytest.raises(NmtError, match=message):
            ensemble_weights(bad, 2)
    with pytest.raises(NmtError, match="at least one model"):
        Ensemble([])


@pytest.fixture(scope="module")
def other_tokenizer_ckpt(toy_dir, tmp_path_factory):
    """A checkpoint whose tokenizer differs from the trained models' one."""
    src = (toy_dir / "train.en").read_text(encoding="utf-8").splitlines()[:300]
    tgt = (toy_dir / "train.pt").read_text(encoding="utf-8").splitlines()[:300]
    tokenizer = train_tokenizer(src, tgt, vocab_size=120)
    path = tmp_path_factory.mktemp("other") / "other.pt"
    config = tiny_config(toy_dir, path.parent)
    model = Seq2Seq(
        config.model, src_vocab=tokenizer.src_vocab_size, tgt_vocab=tokenizer.tgt_vocab_size
    )
    save_checkpoint(path, model=model, config=config, tokenizer=tokenizer)
    return path


def test_mismatched_tokenizers_are_refused(trained, other_tokenizer_ckpt) -> None:
    with pytest.raises(NmtError) as err:
        Translator([trained, other_tokenizer_ckpt])
    message = str(err.value)
    assert str(trained) in message and str(other_tokenizer_ckpt) in message
    assert "different target tokenizers" in message and "\n" not in message


def test_translator_takes_a_list_and_workers_fork_the_ensemble(
    trained, trained_transformer, toy_dir
) -> None:
    sentences = (toy_dir / "test.en").read_text(encoding="utf-8").splitlines()[:16]
    one = Translator(trained_transformer).translate(sentences, SearchOptions(beam_size=3))
    pair = Translator([trained_transformer, trained], weights=[2, 1])
    assert isinstance(pair.model, Ensemble) and pair.model.weights == pytest.approx([2 / 3, 1 / 3])
    together = pair.translate(sentences, SearchOptions(beam_size=3, return_attention=True))
    parallel = Translator([trained_transformer, trained], workers=2, weights=[2, 1])
    try:
        forked = parallel.translate(sentences, SearchOptions(beam_size=3), batch_tokens=60)
    finally:
        parallel.close()
    assert [t.text for t in forked] == [t.text for t in together]
    lps = [t.hypotheses[0].log_prob for t in together]
    assert [t.hypotheses[0].log_prob for t in forked] == pytest.approx(lps, abs=1e-5)
    # the ensemble is not the single model: its scores differ
    assert lps != pytest.approx([t.hypotheses[0].log_prob for t in one], abs=1e-3)
    hyp = together[0].hypotheses[0]
    assert len(hyp.attention) == len(hyp.tokens)  # the first model's, one row a target piece


def test_translate_command_takes_ensemble_and_weights(
    trained, trained_transformer, toy_dir, tmp_path
) -> None:
    sentences = (toy_dir / "test.en").read_text(encoding="utf-8").splitlines()[:6]
    src = tmp_path / "in.txt"
    src.write_text("\n".join(sentences) + "\n", encoding="utf-8")
    runner = CliRunner()
    args = ["translate", str(trained), str(src), "--ensemble", str(trained_transformer), "-q"]
    result = runner.invoke(app, [*args, "--weights", "1,3"])
    assert result.exit_code == 0, result.stderr
    expected = Translator([trained, trained_transformer], weights=[1, 3]).translate(sentences)
    assert result.stdout.splitlines() == [t.text for t in expected]
    bad = runner.invoke(app, [*args, "--weights", "1,x"])
    assert bad.exit_code == 2 and "--weights must be numbers" in bad.stderr
    bad = runner.invoke(app, [*args, "--weights", "1"])
    assert bad.exit_code == 2 and "--weights must be one a model: 1 given for 2" in bad.stderr
