"""Tests for nmt.transformer: every option builds and runs, padding and the future stay hidden,
decoding step by step (with beams sharing a sentence's encoder rows) equals the parallel
forward pass, a tiny model learns to copy sequences, and search decodes it (the search tests
of tests/test_search.py run on a trained Transformer too)."""

from __future__ import annotations

import math
import random
import warnings

import pytest
import torch
import torch.nn.functional as F

from nmt import NmtError
from nmt.batching import make_batch, source_tensor
from nmt.checkpoint import load_checkpoint, read_state, save_checkpoint
from nmt.config import config_from_dict, decoder_positions
from nmt.model import Seq2Seq, build_model
from nmt.output import TiedOutput
from nmt.search import SearchOptions, beam_search, greedy, max_lengths
from nmt.tokenizer import BOS, PAD, train_tokenizer
from nmt.transformer import Transformer, attention, sinusoids

V_SRC, V_TGT = 23, 19
SRC = [[4, 5, 6, 7, 8, 9], [10, 11], [12], [13, 14, 15, 16]]
TGT = [[4, 5, 6], [7, 8, 9, 10, 11], [12, 13], [14]]

OPTIONS = [
    {"norm": norm, "positions": positions}
    for norm in ("pre", "post")
    for positions in ("sinusoidal", "learned")
] + [
    {"share_embeddings": True, "tie_output": True},
    {"share_embeddings": True, "tie_output": False},
    {"tie_output": False},
]


def _config(**overrides):
    model = {
        "arch": "transformer",
        "d_model": 16,
        "heads": 4,
        "ff_size": 32,
        "enc_layers": 2,
        "dec_layers": 2,
        "dropout": 0.1,
        "attention_dropout": 0.1,
        "activation_dropout": 0.1,
        "max_positions": 200,
    }
    model.update(overrides)
    return config_from_dict({"data": {"max_len": 100}, "model": model}).model


def _model(seed: int = 0, **overrides) -> Transformer:
    torch.manual_seed(seed)
    config = _config(**overrides)
    tgt_vocab = V_SRC if config.share_embeddings else V_TGT
    return build_model(config, src_vocab=V_SRC, tgt_vocab=tgt_vocab).eval()


@pytest.mark.parametrize(
    "options", OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items())
)
def test_every_option_builds_and_runs(options) -> None:
    model = _model(**options)
    assert isinstance(model, Transformer)
    batch = make_batch(SRC, TGT)
    (b, s), t = batch.src.shape, batch.tgt_in.size(1)
    v = model.src_embed.num_embeddings if options.get("share_embeddings") else V_TGT
    with torch.no_grad():
        logits, att = model(batch.src, batch.src_lengths, batch.tgt_in, return_attention=True)
        enc, state = model.encode(batch.src, batch.src_lengths)
        log_probs, state, weights = model.decode_step(state, batch.tgt_in[:, 0], enc)
    assert logits.shape == (b, t, v)
    assert att.shape == (b, t, s)
    torch.testing.assert_close(att.sum(-1), torch.ones(b, t))
    assert (att.masked_select(batch.src[:, None, :] == PAD) == 0).all()
    assert log_probs.shape == (b, v) and log_probs.dtype == torch.float32
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(b))
    assert weights.shape == (b, s)
    assert state.step == 1 and all(k.shape == (b, 4, 1, 4) for k in state.keys)
    # training mode (dropout everywhere) runs and gives gradients to every parameter
    model.train()
    logits, _ = model(batch.src, batch.src_lengths, batch.tgt_in)
    logits.sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert missing == []


def test_shared_and_tied_embeddings_are_one_matrix() -> None:
    model = _model(share_embeddings=True, tie_output=True)
    assert model.src_embed.weight is model.tgt_embed.weight
    assert isinstance(model.output, TiedOutput)
    torch.manual_seed(0)
    untied = build_model(_config(tie_output=False), src_vocab=V_SRC, tgt_vocab=V_SRC)
    d = model.config.d_model
    # untied: a target embedding and an output layer of their own (V x D each; the output
    # bias is there either way)
    count = sum(p.numel() for p in model.parameters())
    assert sum(p.numel() for p in untied.parameters()) == count + 2 * V_SRC * d
    hidden = torch.randn(3, d)
    with torch.no_grad():
        expected = hidden @ model.tgt_embed.weight.T + model.output_bias
    torch.testing.assert_close(model.logits(hidden), expected)


def test_embeddings_are_scaled_by_sqrt_d_model() -> None:
    model = _model(dropout=0.0)
    tokens = torch.tensor([[4, 5, 6]])
    expected = model.tgt_embed(tokens) * 4.0 + sinusoids(torch.arange(3), 16)  # sqrt(16)
    torch.testing.assert_close(model._embed(tokens, model.tgt_embed, None, 0), expected)


def test_sinusoids_follow_the_formula() -> None:
    pe = sinusoids(torch.arange(50), 16)
    for pos, i in [(0, 0), (1, 0), (7, 3), (49, 7)]:
        angle = pos / 10000 ** (2 * i / 16)
        assert pe[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-5)
        assert pe[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-5)
    assert sinusoids(torch.arange(4), 7).shape == (4, 7)  # an odd size is cut, not refused


@pytest.mark.parametrize("causal", [False, True])
def test_written_out_attention_equals_the_fused_kernel(causal: bool) -> None:
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 2, 5, 4), torch.randn(3, 2, 5, 4), torch.randn(3, 2, 5, 4)
    mask = None if causal else torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0]])
    mask = None if mask is None else mask.bool()[:, None, None, :]
    fused, none = attention(q, k, v, mask, causal=causal)
    plain, weights = attention(q, k, v, mask, causal=causal, need_weights=True)
    assert none is None
    torch.testing.assert_close(plain, fused)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 2, 5))
    hidden = weights.triu(1) if causal else weights.masked_select(~mask)
    assert (hidden == 0).all()


@pytest.mark.parametrize("norm", ["pre", "post"])
def test_sentence_alone_equals_sentence_in_padded_batch(norm: str) -> None:
    model = _model(norm=norm)
    batch = make_batch(SRC, TGT)
    noisy_src = batch.src.masked_fill(batch.src == PAD, 5)  # what sits under padding is unread
    with torch.no_grad():
        logits, att = model(noisy_src, batch.src_lengths, batch.tgt_in, return_attention=True)
        for i, (src, tgt) in enumerate(zip(SRC, TGT)):
            one = make_batch([src], [tgt])
            alone, alone_att = model(one.src, one.src_lengths, one.tgt_in, return_attention=True)
            s, t = one.src.size(1), one.tgt_in.size(1)
            torch.testing.assert_close(alone[0], logits[i, :t], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(alone_att[0], att[i, :t, :s], atol=1e-6, rtol=1e-5)


def test_causal_mask_hides_the_future() -> None:
    model = _model()
    batch = make_batch(SRC, TGT)
    with torch.no_grad():
        logits, _ = model(batch.src, batch.src_lengths, batch.tgt_in)
        for t in range(batch.tgt_in.size(1) - 1):
            changed = batch.tgt_in.clone()
            changed[:, t + 1] = 17
            other, _ = model(batch.src, batch.src_lengths, changed)
            torch.testing.assert_close(other[:, : t + 1], logits[:, : t + 1])
            assert not torch.allclose(other[:, t + 1], logits[:, t + 1])


def test_keep_mask_gives_the_logits_of_the_kept_positions() -> None:
    model = _model()
    batch = make_batch(SRC, TGT)
    keep = batch.tgt_out != PAD
    with torch.no_grad():
        full, _ = model(batch.src, batch.src_lengths, batch.tgt_in)
        kept, _ = model(batch.src, batch.src_lengths, batch.tgt_in, keep=keep)
    assert kept.shape == (int(keep.sum()), V_TGT)
    torch.testing.assert_close(kept, full[keep])


@pytest.mark.parametrize("options", OPTIONS[:4], ids=lambda o: f"{o['norm']}-{o['positions']}")
@pytest.mark.parametrize("layer, head", [(-1, None), (0, 2)])
def test_stepwise_decoding_with_beams_equals_the_forward_pass(options, layer, head) -> None:
    # K = 3 hypotheses a sentence with different prefixes, reading one encoder row a sentence
    model = _model(**options)
    model.attention_layer, model.attention_head = layer, head
    k = 3
    src, src_lengths = source_tensor(SRC)
    n = src.size(0)
    torch.manual_seed(1)
    prefixes = torch.randint(4, V_TGT, (n * k, 6))
    prefixes[:, 0] = BOS
    with torch.no_grad():
        beams = torch.arange(n).repeat_interleave(k)  # (R,) sentence of each row
        logits, att = model(src[beams], src_lengths[beams], prefixes, return_attention=True)
        enc, state = model.encode(src, src_lengths)
        state = model.select_state(state, beams)
        for t in range(prefixes.size(1)):
            log_probs, state, weights = model.decode_step(state, prefixes[:, t], enc)
            assert enc.keys[0].size(0) == n  # never copied per hypothesis
            expected = logits[:, t].float().log_softmax(-1)
            torch.testing.assert_close(log_probs, expected, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(weights, att[:, t], atol=1e-6, rtol=1e-5)


def test_attention_layer_and_head_choose_the_weights_returned() -> None:
    model = _model(heads=4)
    batch = make_batch(SRC, TGT)

    def weights(layer: int, head: int | None) -> torch.Tensor:
        model.attention_layer, model.attention_head = layer, head
        with torch.no_grad():
            return model(batch.src, batch.src_lengths, batch.tgt_in, return_attention=True)[1]

    heads = torch.stack([weights(-1, h) for h in range(4)])  # (H, B, T, S)
    torch.testing.assert_close(weights(-1, None), heads.mean(0))
    torch.testing.assert_close(weights(1, 2), heads[2])
    assert not torch.allclose(heads[0], heads[1])
    assert not torch.allclose(weights(0, None), weights(1, None))


def test_select_state_and_select_encoded_pick_rows() -> None:
    model = _model()
    src, src_lengths = source_tensor(SRC)
    prev = torch.tensor([4, 5, 6, 7])
    with torch.no_grad():
        enc, state = model.encode(src, src_lengths)
        _, state, _ = model.decode_step(state, torch.full((4,), BOS), enc)
        full, _, full_w = model.decode_step(state, prev, enc)
        rows = torch.tensor([3, 1])
        picked_enc = model.select_encoded(enc, rows)
        picked_state = model.select_state(state, rows)
        assert picked_state.step == state.step
        assert torch.equal(picked_enc.mask, enc.mask[rows])
        part, _, part_w = model.decode_step(picked_state, prev[rows], picked_enc)
    torch.testing.assert_close(part, full[rows])
    torch.testing.assert_close(part_w, full_w[rows])


def test_scheduled_sampling_is_refused() -> None:
    model = _model()
    batch = make_batch(SRC, TGT)
    with pytest.raises(NmtError, match="teacher forcing only"):
        model(batch.src, batch.src_lengths, batch.tgt_in, teacher_forcing_ratio=0.5)


def test_learned_positions_refuse_a_position_past_their_table() -> None:
    model = _model(positions="learned")
    src, src_lengths = source_tensor([[4, 5]])
    with torch.no_grad():
        enc, state = model.encode(src, src_lengths)
        state = state._replace(step=model.config.max_positions - 1)
        state = model.decode_step(state, torch.tensor([4]), enc)[1]  # the last row: fine
        with pytest.raises(NmtError, match="model.max_positions 200"):
            model.decode_step(state, torch.tensor([4]), enc)


# -- a tiny model learns to copy sequences; search decodes it ---------------------------
def _copy_pairs(count: int, seed: int) -> list[tuple[list[int], list[int]]]:
    rng = random.Random(seed)
    pairs = []
    for _ in range(count):
        src = [rng.randrange(4, 14) for _ in range(rng.randint(2, 6))]
        pairs.append((src, src))
    return pairs


@pytest.fixture(scope="module")
def copier() -> tuple[Transformer, list[float]]:
    """A 1+1-layer transformer trained for 200 steps to copy sequences of 2-6 symbols."""
    torch.manual_seed(0)
    config = _config(
        d_model=32, heads=4, ff_size=64, enc_layers=1, dec_layers=1, dropout=0.0,
        attention_dropout=0.0, activation_dropout=0.0,
    )  # fmt: skip
    model = build_model(config, src_vocab=14, tgt_vocab=14)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for step in range(200):
        pairs = _copy_pairs(32, seed=step)
        batch = make_batch([s for s, _ in pairs], [t for _, t in pairs])
        logits, _ = model(batch.src, batch.src_lengths, batch.tgt_in)
        loss = F.cross_entropy(logits.transpose(1, 2), batch.tgt_out, ignore_index=PAD)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return model.eval(), losses


def test_a_tiny_transformer_learns_to_copy(copier) -> None:
    _, losses = copier
    assert sum(losses[-10:]) / 10 < 0.1 * sum(losses[:10]) / 10


def test_greedy_search_copies_unseen_sequences(copier) -> None:
    model, _ = copier
    pairs = _copy_pairs(20, seed=10_000)
    src, src_lengths = source_tensor([s for s, _ in pairs])
    opts = SearchOptions(beam_size=1, return_attention=True)
    found = greedy(model, src, src_lengths, opts)
    right = sum(hyps[0].tokens == tgt for hyps, (_, tgt) in zip(found, pairs))
    assert right >= 16
    first = found[0][0]
    assert first.attention.shape == (len(first.tokens) + 1, len(pairs[0][0]) + 1)


def test_int8_quantization_covers_every_linear_and_keeps_the_outputs(copier) -> None:
    from nmt.translation.quantize import quantize_int8

    model, _ = copier
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing reaches the user's terminal
        quantized = quantize_int8(model)
    dynamic = torch.ao.nn.quantized.dynamic.Linear
    assert isinstance(quantized.output, dynamic)  # tied: an int8 copy of its own
    assert not [n for n, m in quantized.named_modules() if type(m) is torch.nn.Linear]
    assert isinstance(model.output, TiedOutput)  # the float model is left as it was
    pairs = _copy_pairs(40, seed=30_000)
    src, src_lengths = source_tensor([s for s, _ in pairs])
    for fn, opts in [(greedy, SearchOptions(beam_size=1)), (beam_search, SearchOptions())]:
        expected = fn(model, src, src_lengths, opts)
        found = fn(quantized, src, src_lengths, opts)
        same = sum(a[0].tokens == b[0].tokens for a, b in zip(expected, found))
        assert same >= 36
        # the model is as sure of its outputs: mean log-probabilities a sentence agree
        mean = sum(h[0].log_prob for h in expected) / len(pairs)
        assert sum(h[0].log_prob for h in found) / len(pairs) == pytest.approx(mean, abs=0.05)


# -- config and checkpoints --------------------------------------------------------------
def test_arch_defaults_to_rnn_and_picks_the_model() -> None:
    rnn = build_model(config_from_dict({}).model, src_vocab=V_SRC, tgt_vocab=V_TGT)
    assert config_from_dict({}).model.arch == "rnn" and isinstance(rnn, Seq2Seq)
    assert isinstance(_model(), Transformer)


@pytest.mark.parametrize(
    "model, message",
    [
        ({"d_model": 30, "heads": 4}, "model.d_model \\(30\\) must be divisible by model.heads"),
        ({"norm": "middle"}, "model.norm must be one of pre, post"),
        ({"positions": "rotary"}, "model.positions must be one of sinusoidal, learned"),
        ({"arch": "cnn"}, "model.arch must be one of rnn, transformer"),
        ({"cell": "lstm"}, "model.cell is an option of model.arch rnn"),
        ({"hidden_size": 64}, "model.hidden_size is an option of model.arch rnn"),
        ({"attention_dropout": 1.5}, "model.attention_dropout must be between 0 and 1"),
        ({"positions": "learned", "max_positions": 100}, "model.max_positions \\(100\\) must"),
    ],
)
def test_transformer_config_errors(model, message) -> None:
    with pytest.raises(NmtError, match=message):
        config_from_dict({"model": {"arch": "transformer", **model}})


def test_transformer_options_are_refused_with_the_rnn() -> None:
    with pytest.raises(NmtError, match="model.heads is an option of model.arch transformer"):
        config_from_dict({"model": {"heads": 4}})


def test_scheduled_sampling_config_is_refused_with_the_transformer() -> None:
    with pytest.raises(NmtError, match="train.teacher_forcing_ratio below 1 needs"):
        config_from_dict(
            {"model": {"arch": "transformer"}, "train": {"teacher_forcing_ratio": 0.5}}
        )


def test_learned_positions_cover_the_longest_default_output() -> None:
    # the config's formula agrees with search's default output limit (+ the BOS position)
    for max_len in (1, 7, 40, 100):
        src_lengths = torch.tensor([max_len + 1])  # EOS included
        limit = int(max_lengths(src_lengths, SearchOptions())[0])
        assert decoder_positions(max_len) == limit + 1
    needed = decoder_positions(40)
    ok = {"arch": "transformer", "positions": "learned", "max_positions": needed}
    config_from_dict({"data": {"max_len": 40}, "model": ok})
    with pytest.raises(NmtError, match=f"must be >= {needed}"):
        config_from_dict({"data": {"max_len": 40}, "model": {**ok, "max_positions": needed - 1}})


@pytest.fixture(scope="module")
def tokenizer(toy_dir):
    src = (toy_dir / "train.en").read_text(encoding="utf-8").splitlines()[:300]
    tgt = (toy_dir / "train.pt").read_text(encoding="utf-8").splitlines()[:300]
    return train_tokenizer(src, tgt, vocab_size=120)


def test_a_transformer_checkpoint_loads_as_one(tokenizer, tmp_path) -> None:
    config = config_from_dict({"model": _config().__dict__})
    torch.manual_seed(0)
    v = tokenizer.src_vocab_size
    model = build_model(config.model, src_vocab=v, tgt_vocab=tokenizer.tgt_vocab_size).eval()
    save_checkpoint(tmp_path / "t.pt", model=model, config=config, tokenizer=tokenizer)
    loaded = load_checkpoint(tmp_path / "t.pt").model
    assert isinstance(loaded, Transformer)
    batch = make_batch(SRC, TGT)
    with torch.no_grad():
        expected, _ = model(batch.src, batch.src_lengths, batch.tgt_in)
        torch.testing.assert_close(loaded(batch.src, batch.src_lengths, batch.tgt_in)[0], expected)


def test_a_checkpoint_config_without_arch_loads_as_rnn(tokenizer, tmp_path) -> None:
    # checkpoints written before model.arch existed
    config = config_from_dict({"model": {"embed_dim": 8, "enc_hidden_size": 8, "hidden_size": 16}})
    model = Seq2Seq(
        config.model, src_vocab=tokenizer.src_vocab_size, tgt_vocab=tokenizer.tgt_vocab_size
    )
    save_checkpoint(tmp_path / "old.pt", model=model, config=config, tokenizer=tokenizer)
    state = read_state(tmp_path / "old.pt")
    del state["config"]["model"]["arch"]
    torch.save(state, tmp_path / "old.pt")
    ckpt = load_checkpoint(tmp_path / "old.pt")
    assert isinstance(ckpt.model, Seq2Seq) and ckpt.config.model.arch == "rnn"
