"""The tied output layer that both architectures use: logits from the target embedding.

Shapes: E the size the embedding has (the RNN's embed_dim, the Transformer's d_model),
V target vocabulary.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class TiedOutput(nn.Module):
    """The tied output layer: x (..., E) -> x @ embedding.T + bias (..., V).

    It holds the target embedding and the bias without owning them: they stay the model's
    parameters (`tgt_embed.weight`, `output_bias` in checkpoints), and a tuple keeps
    nn.Module from registering them a second time. Being a module of its own, it can be
    swapped for another (an int8 copy: nmt.translation.quantize) like an untied Linear.
    """

    def __init__(self, embed: nn.Embedding, bias: nn.Parameter) -> None:
        super().__init__()
        self.tied = (embed, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        embed, bias = self.tied
        return F.linear(x, embed.weight, bias)

    def as_linear(self) -> nn.Linear:
        """A Linear(E, V) holding copies of the tied matrix and bias."""
        embed, bias = self.tied
        weight = embed.weight  # (V, E)
        # built empty and given the weights: a Linear(E, V) would first draw V x E random
        # numbers only to overwrite them
        linear = nn.Linear(0, 0)
        linear.in_features, linear.out_features = weight.size(1), weight.size(0)
        linear.weight = nn.Parameter(weight.detach().clone())
        linear.bias = nn.Parameter(bias.detach().clone())
        return linear
