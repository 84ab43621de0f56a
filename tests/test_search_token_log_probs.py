"""Each hypothesis's per-token log-probabilities (what confidence and token probabilities are
made of): they sum to its log_prob, in both searches, and the torch search and the runtime's
numpy search agree on them for an exported model."""

from __future__ import annotations

import math

import pytest

from nmt.batching import source_tensor
from nmt.checkpoint import load_checkpoint
from nmt.search import beam_search, greedy
from nmt.search_options import SearchOptions

SENTENCES = ["The tall girl sees two red cars.", "A boy runs.", "The cats eat."]


@pytest.fixture(scope="module", params=["trained", "trained_transformer"])
def checkpoint(request):
    return request.getfixturevalue(request.param)


def _ids(ckpt_path):
    ckpt = load_checkpoint(ckpt_path)
    return ckpt, ckpt.tokenizer.encode_src(SENTENCES)


def _check_sums(results, nbest: int) -> None:
    for hyps in results:
        assert len(hyps) == nbest
        for h in hyps:
            assert h.token_log_probs is not None
            assert len(h.token_log_probs) == len(h.tokens) + 1  # EOS included
            assert all(lp <= 0 for lp in h.token_log_probs)
            assert math.isclose(sum(h.token_log_probs), h.log_prob, abs_tol=1e-4)


@pytest.mark.parametrize("beam_size", [1, 4])
def test_token_log_probs_sum_to_the_log_prob(checkpoint, beam_size) -> None:
    ckpt, ids = _ids(checkpoint)
    src, lengths = source_tensor(ids)
    fn = greedy if beam_size == 1 else beam_search
    nbest = 1 if beam_size == 1 else 3
    _check_sums(
        fn(ckpt.model, src, lengths, SearchOptions(beam_size=beam_size, nbest=nbest)), nbest
    )


def test_greedy_without_scores_has_no_token_log_probs(checkpoint) -> None:
    ckpt, ids = _ids(checkpoint)
    src, lengths = source_tensor(ids)
    for hyps in greedy(ckpt.model, src, lengths, SearchOptions(beam_size=1, scores=False)):
        assert hyps[0].token_log_probs is None


@pytest.mark.parametrize("beam_size", [1, 4])
def test_runtime_search_agrees_with_torch_on_an_export(checkpoint, tmp_path, beam_size) -> None:
    pytest.importorskip("onnxruntime")
    from nmt.runs.graphs import export_onnx
    from nmt.runtime import folder
    from nmt.runtime.model import OnnxModel
    from nmt.runtime.search import search_batch

    ckpt, ids = _ids(checkpoint)
    out = tmp_path / "onnx"
    export_onnx(checkpoint, out)
    model = OnnxModel(out, folder.read_manifest(out), threads=1)
    opts = SearchOptions(beam_size=beam_size, nbest=min(2, beam_size))
    src, lengths = source_tensor(ids)
    expected = (greedy if beam_size == 1 else beam_search)(ckpt.model, src, lengths, opts)
    found = search_batch(model, ids, opts)
    _check_sums(found, opts.nbest)
    for want, got in zip(expected, found):
        for a, b in zip(want, got):
            assert a.tokens == b.tokens
            assert b.token_log_probs == pytest.approx(a.token_log_probs, abs=1e-4)
