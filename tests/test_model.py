"""Tests for nmt.model and nmt.decoder: every configuration runs, shares what it says it
shares, decodes step by step as it does teacher-forced, and a tiny model learns."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from nmt import NmtError
from nmt.batching import make_batch
from nmt.config import ModelConfig, config_from_dict
from nmt.decoder import DecoderState, EncoderOut, select
from nmt.model import Seq2Seq, TiedOutput
from nmt.search import SearchModel, SearchOptions, greedy
from nmt.tokenizer import BOS, EOS, PAD

V_SRC, V_TGT = 23, 19
SRC = [[4, 5, 6, 7, 8, 9], [10, 11], [12], [13, 14, 15, 16]]
TGT = [[4, 5, 6], [7, 8, 9, 10, 11], [12, 13], [14]]

GRID = [
    (cell, attention, bidirectional, layers, input_feeding)
    for cell in ("rnn", "gru", "lstm")
    for attention in ("none", "dot", "general", "bahdanau")
    for bidirectional in (False, True)
    for layers in (1, 2)
    for input_feeding in (False, True)
]


def _config(**overrides) -> ModelConfig:
    model = {"embed_dim": 8, "enc_hidden_size": 6, "hidden_size": 10, "dropout": 0.2}
    model.update(overrides)
    if model.get("attention") == "dot":
        # dot attention compares the decoder state with encoder outputs directly
        model["hidden_size"] = model["enc_hidden_size"] * (
            2 if model.get("bidirectional", True) else 1
        )
    return config_from_dict({"model": model}).model


def _model(seed: int = 0, **overrides) -> Seq2Seq:
    torch.manual_seed(seed)
    return Seq2Seq(_config(**overrides), src_vocab=V_SRC, tgt_vocab=V_TGT).eval()


def _grid_model(cell, attention, bidirectional, layers, input_feeding) -> Seq2Seq:
    return _model(
        cell=cell,
        attention=attention,
        bidirectional=bidirectional,
        enc_layers=layers,
        dec_layers=layers,
        input_feeding=input_feeding,
    )


@pytest.mark.parametrize("cell, attention, bidirectional, layers, input_feeding", GRID)
def test_every_configuration_runs(cell, attention, bidirectional, layers, input_feeding) -> None:
    model = _grid_model(cell, attention, bidirectional, layers, input_feeding)
    batch = make_batch(SRC, TGT)
    (b, s), t = batch.src.shape, batch.tgt_in.size(1)
    with torch.no_grad():
        logits, att = model(batch.src, batch.src_lengths, batch.tgt_in, return_attention=True)
        assert logits.shape == (b, t, V_TGT)
        if attention == "none":
            assert att is None
        else:
            assert att.shape == (b, t, s)
            assert torch.allclose(att.sum(-1), torch.ones(b, t), atol=1e-5)
        enc, state = model.encode(batch.src, batch.src_lengths)
        log_probs, state2, weights = model.decode_step(
            state, torch.full((b,), BOS, dtype=torch.long), enc
        )
    assert log_probs.shape == (b, V_TGT) and log_probs.dtype == torch.float32
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(b), atol=1e-5)
    assert (weights is None) == (attention == "none")
    if weights is not None:
        assert weights.shape == (b, s)
    hidden = state2.hidden if cell == "lstm" else (state2.hidden,)
    assert isinstance(state2.hidden, tuple) == (cell == "lstm")
    for h in hidden:
        assert h.shape == (layers, b, model.config.hidden_size)
    assert state2.att_vec.shape == (b, model.config.hidden_size)
    # the first step of decode_step is the first step of the teacher-forced forward
    assert torch.allclose(log_probs, logits[:, 0].log_softmax(-1), atol=1e-5)


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("attention", ["none", "dot", "bahdanau"])
def test_stepwise_decoding_equals_teacher_forcing(cell: str, attention: str) -> None:
    model = _model(cell=cell, attention=attention, enc_layers=2, dec_layers=2)
    batch = make_batch(SRC, TGT)
    with torch.no_grad():
        logits, att = model(batch.src, batch.src_lengths, batch.tgt_in, return_attention=True)
        enc, state = model.encode(batch.src, batch.src_lengths)
        for t in range(batch.tgt_in.size(1)):
            log_probs, state, weights = model.decode_step(state, batch.tgt_in[:, t], enc)
            assert torch.allclose(log_probs, logits[:, t].log_softmax(-1), atol=1e-5)
            if att is not None:
                assert torch.allclose(weights, att[:, t], atol=1e-6)


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("attention", ["none", "general", "bahdanau"])
def test_sentence_alone_equals_sentence_in_padded_batch(cell: str, attention: str) -> None:
    model = _model(cell=cell, attention=attention, enc_layers=2)
    batch = make_batch(SRC, TGT)
    with torch.no_grad():
        logits, att = model(batch.src, batch.src_lengths, batch.tgt_in, return_attention=True)
        for i, (src, tgt) in enumerate(zip(SRC, TGT)):
            one = make_batch([src], [tgt])
            alone, alone_att = model(one.src, one.src_lengths, one.tgt_in, return_attention=True)
            s, t = one.src.size(1), one.tgt_in.size(1)
            assert torch.allclose(alone[0], logits[i, :t], atol=1e-5)
            if att is not None:
                assert torch.allclose(alone_att[0], att[i, :t, :s], atol=1e-5)
                assert (att[i, :t, s:] == 0).all()


def test_padding_tokens_do_not_reach_the_output() -> None:
    # padded source positions (and their content) cannot influence the real ones
    model = _model(attention="bahdanau")
    batch = make_batch(SRC, TGT)
    noisy_src = batch.src.clone()
    noisy_src[batch.src == PAD] = 5
    with torch.no_grad():
        a, _ = model(batch.src, batch.src_lengths, batch.tgt_in)
        b, _ = model(noisy_src, batch.src_lengths, batch.tgt_in)
    assert torch.allclose(a, b, atol=1e-6)


def test_keep_mask_gives_the_logits_of_the_kept_positions() -> None:
    # training computes the output layer at real target tokens only
    model = _model(attention="bahdanau")
    batch = make_batch(SRC, TGT)
    keep = batch.tgt_out != PAD
    with torch.no_grad():
        full, _ = model(batch.src, batch.src_lengths, batch.tgt_in)
        kept, _ = model(batch.src, batch.src_lengths, batch.tgt_in, keep=keep)
    assert kept.shape == (int(keep.sum()), V_TGT)
    torch.testing.assert_close(kept, full[keep])


def test_tied_output_uses_the_target_embedding() -> None:
    model = _model(tie_output=True)
    assert isinstance(model.output, TiedOutput)
    # the tied matrix and bias are saved once, under the names checkpoints have always had
    keys = set(model.state_dict())
    assert {"tgt_embed.weight", "output_bias"} <= keys
    assert not any(k.startswith("output.") for k in keys)
    assert sum(1 for p in model.parameters() if p is model.tgt_embed.weight) == 1
    assert not any(
        isinstance(m, torch.nn.Linear) and m.out_features == V_TGT for m in model.modules()
    )
    att_vec = torch.randn(3, model.config.hidden_size)
    with torch.no_grad():
        expected = model.pre_output(att_vec) @ model.tgt_embed.weight.T + model.output_bias
        assert torch.allclose(model.logits(att_vec), expected, atol=1e-6)
        model.tgt_embed.weight[7] += 1.0  # one weight, seen by the output layer at once
        changed = model.logits(att_vec)
    assert not torch.allclose(changed[:, 7], expected[:, 7])
    assert torch.allclose(changed[:, :7], expected[:, :7], atol=1e-6)


def test_untied_output_has_its_own_projection() -> None:
    model = _model(tie_output=False)
    assert model.output is not None and model.pre_output is None
    assert model.output.weight.shape == (V_TGT, model.config.hidden_size)


def test_shared_embeddings_are_one_parameter() -> None:
    torch.manual_seed(0)
    config = _config(share_embeddings=True, tie_output=True)
    model = Seq2Seq(config, src_vocab=V_SRC, tgt_vocab=V_SRC)
    assert model.src_embed.weight is model.tgt_embed.weight
    unshared = Seq2Seq(_config(tie_output=True), src_vocab=V_SRC, tgt_vocab=V_SRC)
    n = sum(p.numel() for p in model.parameters())
    assert n == sum(p.numel() for p in unshared.parameters()) - V_SRC * config.embed_dim
    # a gradient through the target side lands on the source side's matrix
    batch = make_batch(SRC, [[17, 18]] * len(SRC))
    logits, _ = model(batch.src, batch.src_lengths, batch.tgt_in)
    logits.sum().backward()
    assert model.src_embed.weight.grad is not None
    # still one matrix after a state-dict round trip (how checkpoints load)
    fresh = Seq2Seq(config, src_vocab=V_SRC, tgt_vocab=V_SRC)
    fresh.load_state_dict(model.state_dict())
    assert fresh.src_embed.weight is fresh.tgt_embed.weight
    assert torch.equal(fresh.tgt_embed.weight, model.src_embed.weight)


@pytest.mark.parametrize("share_embeddings", [False, True])
def test_same_seed_gives_same_weights(share_embeddings: bool) -> None:
    config = _config(share_embeddings=share_embeddings)
    first = None
    for i in range(10):
        ballast = [object() for _ in range(i * 7)]  # move later allocations around
        torch.manual_seed(0)
        model = Seq2Seq(config, src_vocab=V_SRC, tgt_vocab=V_SRC)
        weights = model.state_dict()
        if first is None:
            first = weights
        assert all(torch.equal(first[k], weights[k]) for k in first), i
        del ballast


def test_shared_embeddings_need_one_vocabulary() -> None:
    with pytest.raises(ValueError, match="one vocabulary"):
        Seq2Seq(_config(share_embeddings=True), src_vocab=V_SRC, tgt_vocab=V_TGT)


def test_padding_embedding_is_zero() -> None:
    model = _model()
    assert (model.src_embed.weight[PAD] == 0).all()
    assert (model.tgt_embed.weight[PAD] == 0).all()


@pytest.mark.parametrize(
    "overrides",
    [
        {"attention": "dot", "enc_hidden_size": 8, "hidden_size": 12},
        {"attention": "dot", "enc_hidden_size": 8, "bidirectional": True, "hidden_size": 8},
        {"attention": "dot", "enc_hidden_size": 8, "bidirectional": False, "hidden_size": 16},
    ],
)
def test_dot_attention_with_mismatched_sizes_is_rejected(overrides) -> None:
    with pytest.raises(NmtError, match="dot"):
        config_from_dict({"model": overrides})


def test_dot_attention_with_matching_sizes_is_accepted() -> None:
    for bidirectional, hidden in [(True, 16), (False, 8)]:
        config_from_dict(
            {
                "model": {
                    "attention": "dot",
                    "enc_hidden_size": 8,
                    "bidirectional": bidirectional,
                    "hidden_size": hidden,
                }
            }
        )


@pytest.mark.parametrize(
    "model_overrides",
    [
        {"cell": "rnn", "attention": "none"},
        {"cell": "gru", "attention": "bahdanau"},
        {"cell": "lstm", "attention": "general", "input_feeding": False},
    ],
)
def test_select_picks_rows_of_every_state(model_overrides) -> None:
    model = _model(**model_overrides)
    batch = make_batch(SRC, TGT)
    enc, state = model.encode(batch.src, batch.src_lengths)
    index = torch.tensor([2, 0, 0])
    picked_enc, picked_state = select(enc, index), select(state, index)
    # the model's own selectors, which search calls, pick the same rows
    assert isinstance(model, SearchModel)
    for a, b in zip(model.select_encoded(enc, index), picked_enc):
        assert (a is None and b is None) or torch.equal(a, b)
    by_model = model.select_state(state, index)
    assert torch.equal(by_model.att_vec, picked_state.att_vec)
    assert isinstance(picked_enc, EncoderOut) and isinstance(picked_state, DecoderState)
    assert torch.equal(picked_enc.values, enc.values[index])
    assert torch.equal(picked_enc.mask, enc.mask[index])
    hidden = state.hidden if isinstance(state.hidden, tuple) else (state.hidden,)
    picked = picked_state.hidden if isinstance(state.hidden, tuple) else (picked_state.hidden,)
    for h, p in zip(hidden, picked):
        assert torch.equal(p, h[:, index])
    assert torch.equal(picked_state.att_vec, state.att_vec[index])


# A tiny model overfits 8 fixed pairs: the learning signal reaches every part.
PAIRS = [
    ([4, 5, 6], [7, 8, 9]),
    ([5, 6], [9, 8]),
    ([6, 4, 5, 7], [10, 11, 12, 13]),
    ([7], [14]),
    ([8, 9, 10], [15, 4, 16, 5]),
    ([9, 8], [6, 6, 6]),
    ([10, 11, 12, 13, 14], [17, 18]),
    ([4, 4], [5, 7, 5]),
]


@pytest.mark.parametrize(
    "overrides",
    [
        {"cell": "gru", "attention": "bahdanau"},
        {"cell": "lstm", "attention": "general", "enc_layers": 2, "dec_layers": 2},
        {"cell": "rnn", "attention": "none", "tie_output": False},
    ],
)
def test_tiny_model_overfits_eight_pairs(overrides) -> None:
    torch.manual_seed(0)
    config = _config(embed_dim=16, enc_hidden_size=16, hidden_size=32, dropout=0.0, **overrides)
    model = Seq2Seq(config, src_vocab=V_SRC, tgt_vocab=V_TGT)
    batch = make_batch([s for s, _ in PAIRS], [t for _, t in PAIRS])
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    model.train()
    for _ in range(300):
        logits, _ = model(batch.src, batch.src_lengths, batch.tgt_in)
        loss = F.cross_entropy(logits.flatten(0, 1), batch.tgt_out.flatten(), ignore_index=PAD)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if loss.item() < 0.01:
            break
    model.eval()
    hyps = greedy(model, batch.src, batch.src_lengths, SearchOptions(beam_size=1))
    assert [h[0].tokens for h in hyps] == [t for _, t in PAIRS]
    assert all(EOS not in h[0].tokens for h in hyps)


@pytest.mark.parametrize("tie_output", [False, True])
def test_int8_quantization_covers_the_output_layer(tie_output) -> None:
    from nmt.translation.quantize import quantize_int8

    torch.manual_seed(0)
    model = _model(attention="bahdanau", tie_output=tie_output, share_embeddings=False).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing reaches the user's terminal
        quantized = quantize_int8(model)
    quantized_linear = torch.ao.nn.quantized.dynamic.Linear
    assert isinstance(quantized.output, quantized_linear)  # tied: an int8 copy of its own
    assert isinstance(quantized.decoder.cells[0], torch.ao.nn.quantized.dynamic.GRUCell)
    assert type(quantized.decoder.attention.energy) is torch.nn.Linear  # stays float
    assert isinstance(model.output, TiedOutput) == tie_output  # the float model is left as it was
    b = make_batch(SRC, TGT)
    with torch.inference_mode():
        expected, _ = model(b.src, b.src_lengths, b.tgt_in)
        got, _ = quantized(b.src, b.src_lengths, b.tgt_in)
    assert got.shape == expected.shape
    assert (got - expected).abs().max() < 0.05 * expected.abs().max()
    in_place = quantize_int8(model, copy=False)
    assert in_place is model and isinstance(model.output, quantized_linear)
    with torch.inference_mode():
        assert torch.equal(model(b.src, b.src_lengths, b.tgt_in)[0], got)


def test_a_model_too_large_for_the_memory_is_refused_naming_its_largest_option(monkeypatch):
    import nmt.model
    from nmt.model import build_model, check_fits, count_on_meta

    wide = ModelConfig(embed_dim=8192, enc_hidden_size=32, hidden_size=64)
    vocab = {"src_vocab": 1000, "tgt_vocab": 1000}
    count = count_on_meta(wide, **vocab)  # shapes only: nothing allocated
    assert count > 2 * 1000 * 8192
    monkeypatch.setattr(nmt.model, "physical_memory", lambda: 50 << 20)  # 50 MiB
    with pytest.raises(NmtError, match=r"GiB of memory: model.embed_dim \(8,192\) weighs most"):
        build_model(wide, **vocab)
    deep = ModelConfig(
        arch="transformer", d_model=512, ff_size=8192, enc_layers=12, dec_layers=12, dropout=0.1
    )
    with pytest.raises(NmtError, match=r"model.ff_size \(8,192\) weighs most"):
        check_fits(deep, src_vocab=1000, tgt_vocab=1000)
    # a model that fits is counted and built
    assert check_fits(ModelConfig(embed_dim=8, hidden_size=8), src_vocab=50, tgt_vocab=50) > 0
    # training needs the gradient and Adam's moments too: four times the weights
    small = ModelConfig(embed_dim=256, hidden_size=256)
    n = count_on_meta(small, src_vocab=8000, tgt_vocab=8000)
    monkeypatch.setattr(nmt.model, "physical_memory", lambda: 8 * n)
    check_fits(small, src_vocab=8000, tgt_vocab=8000)
    with pytest.raises(NmtError, match="more than this machine's"):
        check_fits(small, src_vocab=8000, tgt_vocab=8000, bytes_per_parameter=nmt.model.TRAIN_BYTES)


@pytest.mark.parametrize(
    "arch, sizes",
    [
        ("rnn", {}),
        ("rnn", {"cell": "lstm", "enc_layers": 3, "dec_layers": 2, "bidirectional": True}),
        ("rnn", {"cell": "rnn", "embed_dim": 300, "enc_hidden_size": 40, "hidden_size": 70}),
        ("rnn", {"attention": "general", "tie_output": False, "input_feeding": False}),
        ("transformer", {}),
        ("transformer", {"d_model": 64, "ff_size": 512, "heads": 4, "enc_layers": 4}),
        ("transformer", {"positions": "learned", "max_positions": 300, "tie_output": False}),
    ],
)
def test_the_parameter_bound_is_above_the_count(arch, sizes):
    """Loading trusts a checkpoint's sizes without building the model on the meta device when
    this bound is within reach of the file's weights (8 x them + 10M): it must never be below
    the count, and on real vocabularies within that reach."""
    from nmt.config import ModelConfig
    from nmt.model import build_model, count_parameters, parameter_bound

    config = ModelConfig(arch=arch, **sizes)
    for src, tgt in ((50, 70), (8000, 8000)):
        model = build_model(config, src_vocab=src, tgt_vocab=tgt)
        bound = parameter_bound(config, src_vocab=src, tgt_vocab=tgt)
        assert count_parameters(model) <= bound
        if src == 8000:  # and near enough, on real vocabularies, that loading trusts it
            assert bound <= 8 * count_parameters(model) + 10**7
