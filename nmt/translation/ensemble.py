"""Ensembles: several trained models searched as one.

At every decoder step each member gives its log-probabilities over the shared target
vocabulary; the ensemble's are their weighted mean, renormalized (log_softmax), i.e. the
normalized weighted geometric mean of the members' distributions. Renormalizing keeps the
hypotheses' log_prob a true log-probability, equal to what `search.score_tokens` computes
from `forward`, and does not change any step's argmax.

Members may be of any architecture and config, but share one tokenizer (source and target):
a sentence is encoded to ids once, and every member reads the same ids and scores the same
target pieces. Their encoder outputs and decoder states travel as tuples, one item a member.
The attention weights returned (heatmaps, jsonl) are those of the first member.

Shapes: B batch, S source length, T target length, V target vocabulary, R decoder rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from nmt import NmtError
from nmt.runtime.model import ensemble_weights

__all__ = ["Ensemble", "ensemble_weights"]

if TYPE_CHECKING:
    from nmt.search import SearchModel


class Ensemble(nn.Module):
    """Models averaged at every step, with the decoding interface of nmt.search (SearchModel).

    `weights`: one a member (normalized to sum 1), equal by default.
    """

    def __init__(self, models: Sequence[nn.Module], weights: Sequence[float] | None = None):
        super().__init__()
        if not models:
            raise NmtError("an ensemble needs at least one model")
        self.members = nn.ModuleList(models)
        self.weights = ensemble_weights(weights, len(models))

    @property
    def _models(self) -> Sequence[SearchModel]:
        """The members as search models (nn.ModuleList types its items as plain nn.Module)."""
        return cast("Sequence[SearchModel]", self.members)

    def _mix(self, log_probs: list[torch.Tensor]) -> torch.Tensor:
        """The members' float32 log-probabilities (..., V) -> their weighted mean (..., V)."""
        mixed = log_probs[0] * self.weights[0]
        for w, lp in zip(self.weights[1:], log_probs[1:]):
            mixed = mixed + w * lp
        return mixed

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> tuple[tuple, tuple]:
        """src (B, S), src_lengths (B,) -> each member's (enc, state), as two tuples."""
        encoded = [m.encode(src, src_lengths) for m in self._models]
        return tuple(e for e, _ in encoded), tuple(s for _, s in encoded)

    def decode_step(
        self, state: tuple, prev: torch.Tensor, enc: tuple, normalize: bool = True
    ) -> tuple[torch.Tensor, tuple, torch.Tensor | None]:
        """prev (R,) -> the mixed log-probabilities (R, V) (without `normalize`: the weighted
        mean before renormalizing, which has the same argmax), the members' new states, and
        the first member's attention weights (R, S) or None."""
        log_probs, states, first_weights = [], [], None
        for i, (m, s, e) in enumerate(zip(self._models, state, enc)):
            lp, s, weights = m.decode_step(s, prev, e, normalize=True)
            log_probs.append(lp)
            states.append(s)
            if i == 0:
                first_weights = weights
        mixed = self._mix(log_probs)  # (R, V)
        return (mixed.log_softmax(-1) if normalize else mixed), tuple(states), first_weights

    def select_state(self, state: tuple, rows: torch.Tensor) -> tuple:
        return tuple(m.select_state(s, rows) for m, s in zip(self._models, state))

    def select_encoded(self, enc: tuple, sentences: torch.Tensor) -> tuple:
        return tuple(m.select_encoded(e, sentences) for m, e in zip(self._models, enc))

    def forward(
        self,
        src: torch.Tensor,
        src_lengths: torch.Tensor,
        tgt_in: torch.Tensor,
        teacher_forcing_ratio: float = 1.0,
        return_attention: bool = False,
        keep: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, Any]:
        """Teacher-forced: the mixed log-probabilities (B, T, V) (or (N, V) at `keep`), whose
        log_softmax is what decode_step gives, and the first member's attention (B, T, S)."""
        log_probs, attention = [], None
        for i, m in enumerate(self._models):
            logits, weights = m(
                src,
                src_lengths,
                tgt_in,
                teacher_forcing_ratio=teacher_forcing_ratio,
                return_attention=return_attention and i == 0,
                keep=keep,
            )
            log_probs.append(logits.float().log_softmax(-1))
            if i == 0:
                attention = weights
        return self._mix(log_probs), attention
