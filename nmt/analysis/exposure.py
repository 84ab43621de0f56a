"""Teacher forcing against free running (exposure bias), per target position.

A model trained with teacher forcing always reads the reference's previous token; at test time
it reads its own, mistakes included. For each sentence pair and target position t (0 = the
first token after BOS; the reference's EOS is the last position) this measures:

- teacher-forced loss: -log p(y_t | y_<t, x), the reference prefix as input (the training loss
  without label smoothing);
- teacher-forced accuracy: whether argmax p(. | y_<t, x) is y_t (the argmax over the tokens
  greedy search may output: PAD and BOS never);
- free-running loss: -log p(y_t | g_<t, x), where g is the model's own greedy output (each
  step reads the previous step's argmax); averaged over the sentences whose greedy output has
  not ended (emitted EOS) before t;
- free-running accuracy: whether g_t = y_t (a greedy output that ended before t counts as
  wrong), the per-position agreement of free-running decoding with the reference.

Each is averaged over the sentences whose reference reaches position t (`counts`). `bleu` is
the corpus BLEU of the greedy outputs (decoded until EOS, as `nmt translate -b 1` does).

The accuracy gap growing with t does not by itself show compounding: once a free-running
output has drifted (one word more or less), position-wise agreement falls whatever the model
does next, so almost any imperfect model shows it. `recovery` measures the claim itself: a
model trained only on gold prefixes has never read its own mistake, so one mistake in its
prefix should make the next steps worse. It injects one plausible mistake (the model's own
best wrong token) into an otherwise gold prefix and compares the accuracy of the following
steps with their accuracy on the gold prefix: same sentences, same positions, one token changed.

Shapes: B batch, S source length, T target length (BOS/EOS included), V target vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import torch

from nmt import NmtError
from nmt.batching import make_batch
from nmt.checkpoint import load_checkpoint
from nmt.data.corpus import read_parallel
from nmt.metrics import score
from nmt.search import SearchModel, SearchOptions, search_ids
from nmt.tokenizer import BOS, EOS, PAD, Tokenizer

BATCH = 32  # sentences a batch: the loops run T decoder steps of B rows


@dataclass
class Exposure:
    """Means per target position t (see the module docstring); lists of length T."""

    sentences: int
    bleu: float  # corpus BLEU of the free-running (greedy) outputs
    counts: list[int] = field(default_factory=list)  # references that reach position t
    teacher_loss: list[float] = field(default_factory=list)
    teacher_accuracy: list[float] = field(default_factory=list)
    free_loss: list[float | None] = field(default_factory=list)  # None: every output ended
    free_accuracy: list[float] = field(default_factory=list)
    free_running: list[int] = field(default_factory=list)  # outputs not ended before t
    # one injected mistake against the gold prefix (`recovery`): the measure of compounding
    recovery: Recovery | None = None


def _positions(
    model: SearchModel, src: list[list[int]], tgt: list[list[int]], free: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One pass over a batch -> per (B, T): loss of y_t, argmax == y_t, real position, and
    (free running) the output still running at t; the input at t > 0 is y_{t-1} or, when
    `free`, the previous step's argmax."""
    batch = make_batch(src, tgt)
    enc, state = model.encode(batch.src, batch.src_lengths)
    steps = batch.tgt_in.size(1)
    prev = batch.tgt_in[:, 0]  # (B,) BOS
    ended = torch.zeros_like(prev, dtype=torch.bool)
    losses, correct, running = [], [], []
    for t in range(steps):
        logp, state, _ = model.decode_step(state, prev, enc)  # (B, V)
        gold = batch.tgt_out[:, t]  # (B,)
        # as greedy search: PAD and BOS are never output (their probability stays in the loss)
        guess = logp.index_fill(1, torch.tensor([PAD, BOS]), float("-inf")).argmax(-1)
        losses.append(-logp.gather(1, gold[:, None])[:, 0])
        correct.append((guess == gold) & ~ended)
        running.append(~ended)
        if free:
            ended = ended | (guess == EOS)
            prev = guess
        elif t + 1 < steps:
            prev = batch.tgt_in[:, t + 1]
    real = batch.tgt_out != PAD  # (B, T)
    return torch.stack(losses, 1), torch.stack(correct, 1), real, torch.stack(running, 1)


def exposure(
    model: torch.nn.Module,
    tokenizer: Tokenizer,
    src_lines: list[str],
    tgt_lines: list[str],
) -> Exposure:
    """Teacher-forced and free-running loss and accuracy per target position (module
    docstring) of a model in eval mode over line-aligned source and reference lines."""
    if len(src_lines) != len(tgt_lines):
        raise NmtError(f"{len(src_lines)} source lines but {len(tgt_lines)} reference lines")
    if not src_lines:
        raise NmtError("no sentence pair to measure (are --src and --tgt empty?)")
    model.eval()
    search_model = cast(SearchModel, model)  # an nn.Module with the search methods
    src, tgt = tokenizer.encode_src(src_lines), tokenizer.encode_tgt(tgt_lines)
    longest = max(len(t) for t in tgt) + 1
    sums = {k: torch.zeros(longest) for k in ("tl", "ta", "fl", "fa", "n", "fn")}
    with torch.inference_mode():
        for i in range(0, len(src), BATCH):
            s, t = src[i : i + BATCH], tgt[i : i + BATCH]
            loss, correct, real, _ = _positions(search_model, s, t, free=False)
            f_loss, f_correct, _, running = _positions(search_model, s, t, free=True)
            width = real.size(1)
            sums["n"][:width] += real.sum(0)
            sums["tl"][:width] += (loss * real).sum(0)
            sums["ta"][:width] += (correct & real).sum(0)
            sums["fa"][:width] += (f_correct & real).sum(0)
            live = running & real
            sums["fn"][:width] += live.sum(0)
            sums["fl"][:width] += torch.where(live, f_loss, 0.0).sum(0)
        hyps = search_ids(search_model, src, SearchOptions(beam_size=1, scores=False))
    outputs = tokenizer.decode_tgt([h[0].tokens for h in hyps])
    (bleu,) = score(outputs, tgt_lines, ("bleu",))
    n = sums["n"].clamp(min=1)
    return Exposure(
        sentences=len(src_lines),
        bleu=bleu.score,
        counts=[int(c) for c in sums["n"]],
        teacher_loss=(sums["tl"] / n).tolist(),
        teacher_accuracy=(sums["ta"] / n).tolist(),
        free_loss=[
            float(total / live) if live else None for total, live in zip(sums["fl"], sums["fn"])
        ],
        free_accuracy=(sums["fa"] / n).tolist(),
        free_running=[int(c) for c in sums["fn"]],
        recovery=recovery(model, src, tgt),
    )


def exposure_of_files(
    checkpoint: str | Path, src_path: str | Path, tgt_path: str | Path, lines: int
) -> Exposure:
    """exposure of a checkpoint's model over the first `lines` pairs of two files."""
    ckpt = load_checkpoint(checkpoint)
    src, tgt = read_parallel(src_path, tgt_path)
    return exposure(ckpt.model, ckpt.tokenizer, src[:lines], tgt[:lines])


@dataclass
class Recovery:
    """Teacher-forced accuracy k = 1..window steps after position j, with the gold prefix
    (`clean`) and with the token at j replaced by the model's best wrong guess (`injected`);
    `counts[k-1]` (sentence, j) cases reach step j + k. One j a sentence and repeat."""

    window: int
    counts: list[int] = field(default_factory=list)
    clean: list[float] = field(default_factory=list)
    injected: list[float] = field(default_factory=list)

    def drop(self) -> float:
        """Clean minus injected accuracy over the window (cases weighted alike)."""
        n = sum(self.counts) or 1
        pairs = zip(self.counts, self.clean, self.injected)
        return sum(c * (a - b) for c, a, b in pairs) / n


def _best(logits: torch.Tensor) -> torch.Tensor:
    """(.., V) -> (..) the argmax over the tokens a search may output (not PAD or BOS)."""
    return logits.index_fill(-1, torch.tensor([PAD, BOS]), float("-inf")).argmax(-1)


def recovery(
    model: torch.nn.Module,
    src: list[list[int]],
    tgt: list[list[int]],
    *,
    window: int = 3,
    repeats: int = 4,
    seed: int = 0,
) -> Recovery:
    """Recovery after one injected mistake (module docstring), over token-id pairs (no BOS
    or EOS: the batch adds them). Each of `repeats` rounds draws one position j a sentence."""
    gen = torch.Generator().manual_seed(seed)
    counts = torch.zeros(window)
    hits = {"clean": torch.zeros(window), "injected": torch.zeros(window)}
    model.eval()
    with torch.inference_mode():
        for i in range(0, len(src), BATCH):
            batch = make_batch(src[i : i + BATCH], tgt[i : i + BATCH])
            gold = batch.tgt_out  # (B, T): y EOS
            real = gold != PAD
            logits, _ = model(batch.src, batch.src_lengths, batch.tgt_in)  # (B, T, V)
            right = _best(logits) == gold  # (B, T)
            # the model's own most likely mistake at each step: its best token but the gold one
            wrong = _best(logits.scatter(-1, gold[..., None], float("-inf")))  # (B, T)
            lengths = real.sum(1)  # (B,) reference tokens + EOS
            rows = torch.arange(gold.size(0))
            for _ in range(repeats):
                # j: a reference token (not EOS), so the input at j + 1 is the one changed
                j = (torch.rand(gold.size(0), generator=gen) * (lengths - 1)).long()  # (B,)
                tgt_in = batch.tgt_in.clone()
                tgt_in[rows, j + 1] = wrong[rows, j]
                bent, _ = model(batch.src, batch.src_lengths, tgt_in)  # (B, T, V)
                bent_right = _best(bent) == gold
                for k in range(1, window + 1):
                    at = j + k  # (B,) the k-th step after the mistake
                    ok = at < lengths
                    at = at.clamp(max=gold.size(1) - 1)
                    counts[k - 1] += ok.sum()
                    hits["clean"][k - 1] += (right[rows, at] & ok).sum()
                    hits["injected"][k - 1] += (bent_right[rows, at] & ok).sum()
    n = counts.clamp(min=1)
    return Recovery(
        window=window,
        counts=[int(c) for c in counts],
        clean=(hits["clean"] / n).tolist(),
        injected=(hits["injected"] / n).tolist(),
    )
