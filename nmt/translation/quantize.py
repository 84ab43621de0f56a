"""Dynamic int8 quantization of a model for CPU inference."""

from __future__ import annotations

import warnings
from copy import deepcopy

import torch
from torch import nn

from nmt.output import TiedOutput

QUANTIZED = (nn.Linear, nn.GRU, nn.LSTM, nn.GRUCell, nn.LSTMCell)


def quantize_int8(model: nn.Module, copy: bool = True) -> nn.Module:
    """Dynamic int8 quantization of the Linear and recurrent layers (CPU inference).

    A tied output layer multiplies by the embedding matrix, which quantization would not
    see: it is replaced by an int8 Linear of its own, as it is the largest matmul of a step.
    Bahdanau's energy (A -> 1) stays float: quantizing its (B, S, A) input at every step
    costs more than the product saves.
    """
    from torch.ao.quantization import default_dynamic_qconfig, quantize_dynamic

    if copy:  # otherwise `model` itself becomes the quantized one
        model = deepcopy(model)
    model.eval()
    # torch.ao.quantization warns that it is deprecated, and an empty Linear that its init
    # does nothing: both are known here
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        output = getattr(model, "output", None)
        if isinstance(output, TiedOutput):
            model.output = output.as_linear()
        spec = {
            name: default_dynamic_qconfig
            for name, module in model.named_modules()
            if isinstance(module, QUANTIZED) and not name.endswith("attention.energy")
        }
        return quantize_dynamic(model, spec, dtype=torch.qint8, inplace=True)
