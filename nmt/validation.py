"""Validation during training: loss and perplexity under teacher forcing, BLEU and chrF of
greedy translations, and the ranking of the checkpoints worth keeping (train.keep_best).

Shapes: B batch, T target length, V target vocab.
"""

from __future__ import annotations

import math
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from nmt.batching import make_batch, plan_batches
from nmt.metrics import score
from nmt.search import SearchModel, SearchOptions, search_ids
from nmt.tokenizer import PAD, Tokenizer


@torch.inference_mode()
def validate(
    model: nn.Module,
    tokenizer: Tokenizer,
    src_ids: list[list[int]],
    tgt_ids: list[list[int]],
    references: list[str],
    *,
    batch_tokens: int,
    device: torch.device,
    sources: list[str] | None = None,
    examples: int = 3,
) -> tuple[dict[str, float], list[dict[str, str]]]:
    """valid_loss (per target token), valid_ppl, bleu and chrf of a model in eval mode, and the
    first `examples` sentences' source (from `sources`), reference and greedy hypothesis: the
    same sentences at every validation, so that a reader sees them improve."""
    total, n_tokens = 0.0, 0
    lengths = [len(s) for s in src_ids]
    tgt_lengths = [len(t) for t in tgt_ids]
    for idxs in plan_batches(lengths, tgt_lengths, batch_tokens):
        batch = make_batch([src_ids[i] for i in idxs], [tgt_ids[i] for i in idxs]).to(device)
        logits, _ = model(batch.src, batch.src_lengths, batch.tgt_in)  # (B, T, V)
        total += float(
            F.cross_entropy(
                logits.float().flatten(0, 1),
                batch.tgt_out.flatten(),
                ignore_index=PAD,
                reduction="sum",
            )
        )
        n_tokens += batch.n_tokens
    # BLEU needs the tokens only: greedy search without scores
    hyps = search_ids(
        cast(SearchModel, model), src_ids, SearchOptions(beam_size=1, scores=False), batch_tokens
    )
    outputs = tokenizer.decode_tgt([h[0].tokens for h in hyps])
    bleu, chrf = score(outputs, references, ("bleu", "chrf"))
    loss = total / max(n_tokens, 1)
    metrics = {
        "valid_loss": loss,
        "valid_ppl": math.exp(min(loss, 50)),
        "bleu": bleu.score,
        "chrf": chrf.score,
    }
    shown = [
        {"source": src, "reference": ref, "hypothesis": hyp}
        for src, ref, hyp in zip(sources or [""] * len(outputs), references, outputs)
    ]
    return metrics, shown[:examples]


def rank_kept(
    kept: list[list[float]], value: float, step: int, keep_best: int, metric: str
) -> tuple[list[list[float]], list[int]]:
    """Enter the validation (value, step) into the ranking of the `keep_best` best, `kept`
    ([value, step] best first, saved in the training state so a resumed run goes on with it)
    -> the new ranking and the steps whose checkpoint files fall out of it."""
    sign = 1 if metric == "loss" else -1
    # a stable sort: among equal values the earlier checkpoint stays, as for best.pt
    ranked = sorted([*kept, [value, step]], key=lambda vs: sign * vs[0])
    return ranked[:keep_best], [int(s) for _, s in ranked[keep_best:]]
