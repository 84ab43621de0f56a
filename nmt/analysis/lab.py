"""Small experiments that let the lectures' claims show in minutes on a laptop's CPU.

Real corpora (Multi30k) have short sentences and need long runs before a model without
attention translates at all; the effects the lectures describe then hide. Here the data is
synthetic and its length is chosen: `task` makes copy and reverse pairs of symbols, the
package's own seq2seq network (`nmt.model.Seq2Seq`, any cell, with or without attention,
source reversed or not) is trained on them by `train` (a plain loop: no tokenizer, no run
folder), and the measures read what a lecture claims:

- `accuracy_by_length`: greedy outputs scored token by token against the reference, by
  source length (Bahdanau et al.'s figure, with accuracy for BLEU);
- `gradient_by_distance`: how far back through time an encoder's gradient reaches;
- `History`: each update's loss and gradient norm before clipping (exploding gradients);
- `nmt.analysis.exposure.recovery`: what one injected mistake does to the next steps.

Shapes: B batch, S source length, T target length, V vocabulary (4 specials + symbols).
"""

from __future__ import annotations

import bisect
import math
import random
import time
from dataclasses import dataclass, field

import torch

from nmt.batching import make_batch
from nmt.config import ModelConfig
from nmt.encoder import Encoder
from nmt.model import Seq2Seq
from nmt.tokenizer import BOS, EOS, PAD

SPECIALS = 4  # PAD, UNK, BOS, EOS: symbol k is token id SPECIALS + k
TASKS = ("copy", "reverse")

Pairs = tuple[list[list[int]], list[list[int]]]


def task(kind: str, n: int, low: int, high: int, *, symbols: int = 20, seed: int = 0) -> Pairs:
    """n (source, target) pairs of random symbols, lengths uniform in [low, high]; the target
    is the source copied (`copy`) or reversed (`reverse`)."""
    if kind not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {kind!r}")
    if not 1 <= low <= high:
        raise ValueError(f"need 1 <= low <= high, got {low}, {high}")
    rng = random.Random(seed)
    src = [
        [SPECIALS + rng.randrange(symbols) for _ in range(rng.randint(low, high))] for _ in range(n)
    ]
    tgt = [list(s) if kind == "copy" else s[::-1] for s in src]
    return src, tgt


@dataclass
class History:
    """Per update: the training loss (nats a token) and the gradient norm before clipping."""

    loss: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def spikes(self, factor: float = 2.0) -> int:
        """Updates whose loss is over `factor` times the lowest loss so far: a gradient step
        that threw the model back (finite losses only; a NaN counts as a spike)."""
        best, count = math.inf, 0
        for x in self.loss:
            if not math.isfinite(x) or x > factor * best:
                count += 1
            elif x < best:
                best = x
        return count


def build(
    *,
    symbols: int = 20,
    cell: str = "gru",
    attention: str = "bahdanau",
    reverse_source: bool = False,
    hidden: int = 64,
    layers: int = 1,
    bidirectional: bool = True,
    recurrent_gain: float = 1.0,
    seed: int = 0,
) -> Seq2Seq:
    """A small Seq2Seq for `symbols` symbols. `recurrent_gain` scales every recurrent matrix
    (W_hh) after the usual initialization: above 1 an Elman net's gradient can explode."""
    torch.manual_seed(seed)
    config = ModelConfig(
        cell=cell,
        attention=attention,
        reverse_source=reverse_source,
        embed_dim=32,
        enc_hidden_size=hidden,
        hidden_size=hidden,
        enc_layers=layers,
        dec_layers=layers,
        bidirectional=bidirectional,
        dropout=0.0,  # the tasks are noise-free: nothing to regularize
        tie_output=False,
    )
    vocab = SPECIALS + symbols
    model = Seq2Seq(config, src_vocab=vocab, tgt_vocab=vocab)
    with torch.no_grad():
        for name, weight in model.named_parameters():
            if "weight_hh" in name:
                weight.mul_(recurrent_gain)
    return model


def train(
    model: Seq2Seq,
    pairs: Pairs,
    *,
    steps: int,
    batch: int = 32,
    lr: float = 2e-3,
    optimizer: str = "adam",
    clip: float | None = 1.0,
    teacher_forcing: float = 1.0,
    curriculum: bool = False,
    seed: int = 0,
) -> History:
    """`steps` updates on random batches of `pairs`; cross-entropy on the reference (teacher
    forcing, or scheduled sampling with `teacher_forcing` < 1: that share of steps read the
    reference, the rest the model's own guess). `clip`: the largest gradient norm (None: no
    clipping). `optimizer`: adam or sgd (plain SGD shows explosions as they are; Adam's
    normalized steps soften them). `curriculum`: draw only the shortest pairs at first, the
    longest allowed length growing linearly to all of them at half the steps (a model without
    attention learns nothing from long pairs before it has learned short ones)."""
    rng = random.Random(seed)
    torch.manual_seed(seed)
    params = list(model.parameters())
    opt: torch.optim.Optimizer = (
        torch.optim.Adam(params, lr=lr) if optimizer == "adam" else torch.optim.SGD(params, lr=lr)
    )
    src, tgt = pairs
    by_length = sorted(range(len(src)), key=lambda i: len(src[i]))
    lengths = [len(src[i]) for i in by_length]
    history = History()
    start = time.perf_counter()
    model.train()
    for step in range(steps):
        allowed = len(src)
        if curriculum:
            top = lengths[0] + (lengths[-1] - lengths[0]) * min(1.0, 2 * (step + 1) / steps)
            allowed = bisect.bisect_right(lengths, top)
        rows = [by_length[rng.randrange(allowed)] for _ in range(batch)]
        b = make_batch([src[i] for i in rows], [tgt[i] for i in rows])
        keep = b.tgt_out != PAD  # (B, T)
        logits, _ = model(b.src, b.src_lengths, b.tgt_in, teacher_forcing, keep=keep)  # (N, V)
        loss = torch.nn.functional.cross_entropy(logits, b.tgt_out[keep])
        opt.zero_grad()
        loss.backward()
        # clip_grad_norm_ returns the norm before clipping; inf as the limit clips nothing
        norm = torch.nn.utils.clip_grad_norm_(params, clip if clip is not None else math.inf)
        if torch.isfinite(norm):
            opt.step()  # a NaN/inf gradient would wreck every weight: the step is skipped
        history.loss.append(loss.item())
        history.grad_norm.append(float(norm))
    history.seconds = time.perf_counter() - start
    model.eval()
    return history


@torch.no_grad()
def greedy(model: Seq2Seq, src: list[list[int]], extra: int = 5) -> list[list[int]]:
    """Greedy outputs (EOS dropped), at most source length + `extra` tokens each."""
    model.eval()
    out: list[list[int]] = []
    for i in range(0, len(src), 128):
        chunk = src[i : i + 128]
        b = make_batch(chunk, [[] for _ in chunk])
        enc, state = model.encode(b.src, b.src_lengths)
        prev = torch.full((len(chunk),), BOS, dtype=torch.long)  # (B,)
        steps: list[torch.Tensor] = []
        for _ in range(max(map(len, chunk)) + extra):
            logp, state, _ = model.decode_step(state, prev, enc)  # (B, V)
            logp[:, [PAD, BOS]] = -math.inf  # never output
            prev = logp.argmax(-1)
            steps.append(prev)
        tokens = torch.stack(steps, 1).tolist()  # (B, T)
        out += [row[: row.index(EOS)] if EOS in row else row for row in tokens]
    return out


def token_accuracy(hyp: list[int], ref: list[int]) -> float:
    """Share of reference positions the output gets right, position by position (a missing
    or extra token shifts nothing: the tasks align target positions to source positions)."""
    return sum(h == r for h, r in zip(hyp, ref)) / max(len(ref), len(hyp), 1)


def accuracy_by_length(
    model: Seq2Seq, pairs: Pairs, edges: list[int]
) -> list[tuple[str, float, int]]:
    """Mean token accuracy of greedy outputs per source-length bucket [edges[k], edges[k+1])
    -> (label, accuracy, sentences) per bucket that holds any."""
    src, tgt = pairs
    hyps = greedy(model, src)
    rows = []
    for lo, hi in zip(edges, edges[1:]):
        accs = [token_accuracy(h, r) for s, h, r in zip(src, hyps, tgt) if lo <= len(s) < hi]
        if accs:
            rows.append((f"{lo}-{hi - 1}", sum(accs) / len(accs), len(accs)))
    return rows


def gradient_by_distance(
    cell: str, *, length: int = 40, gain: float = 1.0, seed: int = 0
) -> list[float]:
    """How far back through time the gradient reaches in an untrained one-layer encoder
    (`cell`: rnn (Elman), gru or lstm; `gain` scales its recurrent matrix): over 16 random
    input sequences, ||dL/dx_t|| with L = ||h_T||^2 the last state's size, by distance from
    the end (0: the last input), relative to distance 0."""
    torch.manual_seed(seed)
    encoder = Encoder(cell=cell, embed_dim=32, hidden_size=64, num_layers=1,
                      bidirectional=False, dropout=0.0)  # fmt: skip
    with torch.no_grad():
        encoder.rnn.weight_hh_l0.mul_(gain)
    x = torch.randn(16, length, 32, requires_grad=True)  # (B, S, E)
    _, final = encoder(x, torch.full((16,), length))
    h = final[0] if isinstance(final, tuple) else final  # (L, B, H): an LSTM gives (h, c)
    h[-1].pow(2).sum().backward()
    assert x.grad is not None  # x requires grad and reaches the loss
    norms = x.grad.norm(dim=-1).mean(0).flip(0)  # (S,) by distance from the end
    return (norms / norms[0]).tolist()
