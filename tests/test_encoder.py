"""Tests for nmt.encoder: shapes, padding, packing and the final states of every cell."""

from __future__ import annotations

import pytest
import torch

from nmt.encoder import Encoder

E, H = 6, 5
LENGTHS = [7, 3, 1, 5]

GRID = pytest.mark.parametrize(
    "cell, bidirectional, layers",
    [(c, b, n) for c in ("rnn", "gru", "lstm") for b in (False, True) for n in (1, 2)],
)


def _encoder(cell: str, bidirectional: bool, layers: int) -> Encoder:
    torch.manual_seed(0)
    enc = Encoder(
        cell=cell,
        embed_dim=E,
        hidden_size=H,
        num_layers=layers,
        bidirectional=bidirectional,
        dropout=0.3,  # inactive in eval mode; present so that eval mode is what is tested
    )
    return enc.eval()


def _inputs() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    lengths = torch.tensor(LENGTHS)
    embedded = torch.randn(len(LENGTHS), max(LENGTHS), E)  # (B, S, E)
    return embedded, lengths


def _top(final) -> torch.Tensor:
    return final[0] if isinstance(final, tuple) else final


@GRID
def test_shapes_and_zero_padding(cell: str, bidirectional: bool, layers: int) -> None:
    enc = _encoder(cell, bidirectional, layers)
    embedded, lengths = _inputs()
    outputs, final = enc(embedded, lengths)
    dirs = 2 if bidirectional else 1
    assert enc.output_size == dirs * H
    assert outputs.shape == (len(LENGTHS), max(LENGTHS), dirs * H)
    states = final if cell == "lstm" else (final,)
    assert isinstance(final, tuple) == (cell == "lstm")
    for state in states:
        assert state.shape == (layers, len(LENGTHS), dirs * H)
    for i, n in enumerate(LENGTHS):
        assert (outputs[i, n:] == 0).all()
        assert (outputs[i, :n].abs().sum(-1) > 0).all()


@GRID
def test_sentence_alone_equals_sentence_in_padded_batch(
    cell: str, bidirectional: bool, layers: int
) -> None:
    enc = _encoder(cell, bidirectional, layers)
    embedded, lengths = _inputs()
    with torch.no_grad():
        outputs, final = enc(embedded, lengths)
        for i, n in enumerate(LENGTHS):
            alone, alone_final = enc(embedded[i : i + 1, :n], torch.tensor([n]))
            assert torch.allclose(alone[0], outputs[i, :n], atol=1e-5)
            assert torch.allclose(_top(alone_final)[:, 0], _top(final)[:, i], atol=1e-5)
            if cell == "lstm":
                assert torch.allclose(alone_final[1][:, 0], final[1][:, i], atol=1e-5)


@GRID
def test_packed_equals_unpacked_rnn_on_unpadded_input(
    cell: str, bidirectional: bool, layers: int
) -> None:
    # packing must not change the computation, only keep padding out of it
    enc = _encoder(cell, bidirectional, layers)
    embedded, _ = _inputs()
    full = torch.full((len(LENGTHS),), max(LENGTHS))
    with torch.no_grad():
        outputs, _ = enc(embedded, full)
        plain, _ = enc.rnn(embedded)
    assert torch.allclose(outputs, plain, atol=1e-5)


@GRID
def test_final_state_is_last_step_of_each_direction(
    cell: str, bidirectional: bool, layers: int
) -> None:
    # forward half: the output at the last real token; backward half: the output at token 0
    enc = _encoder(cell, bidirectional, layers)
    embedded, lengths = _inputs()
    with torch.no_grad():
        outputs, final = enc(embedded, lengths)
    top = _top(final)[-1]  # (B, D)
    for i, n in enumerate(LENGTHS):
        assert torch.allclose(top[i, :H], outputs[i, n - 1, :H], atol=1e-6)
        if bidirectional:
            assert torch.allclose(top[i, H:], outputs[i, 0, H:], atol=1e-6)
