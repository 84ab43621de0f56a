"""The lectures' claims on synthetic tasks designed so that each effect can show in minutes.

usage: python recipes/lectures/synthetic.py OUT_DIR [--tiny]

Writes OUT_DIR/synthetic.json (every number report.py judges) and one figure per experiment
(OUT_DIR/synthetic-*.png). Each experiment trains the package's seq2seq network on copy or
reverse pairs of random symbols (nmt/analysis/lab.py), or labels streams of symbols
(nmt/analysis/streams.py); one thread, fixed seeds; about 40 minutes on one core in all.
`--tiny` shrinks every run to a few updates: a smoke test whose
numbers mean nothing. Finished experiments are kept in synthetic.json and not run again
(delete an entry, or the file, to rerun).
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import torch

from nmt.analysis import lab, streams
from nmt.analysis.exposure import recovery
from nmt.cells import Tagger
from nmt.model import Seq2Seq

TINY = "--tiny" in sys.argv


def steps(n: int) -> int:
    return 3 if TINY else n


def vanishing() -> dict:
    """The gradient reaching back through 40 steps of an untrained Elman, GRU and LSTM
    encoder (random inputs): no training, a few seconds."""
    cells = {"elman": "rnn", "gru": "gru", "lstm": "lstm"}  # the lecture's names -> nmt's
    return {name: lab.gradient_by_distance(cell) for name, cell in cells.items()}


def attention_by_length() -> dict:
    """Bahdanau et al.'s figure: a fixed-size encoding (no attention) against attention, by
    length. Reverse task (the easiest order for a model without attention, so that its failure
    is the encoding's, not the optimizer's), 3-30 symbols, lengths growing during training."""
    pairs = lab.task("reverse", 20000, 3, 30, symbols=10, seed=1)
    test = lab.task("reverse", 400, 3, 30, symbols=10, seed=2)
    out = {}
    for attention in ("none", "bahdanau"):
        model = lab.build(symbols=10, attention=attention, cell="gru", hidden=128)
        history = lab.train(model, pairs, steps=steps(1500), lr=3e-3, batch=64, curriculum=True)
        buckets = lab.accuracy_by_length(model, test, [3, 9, 15, 21, 27, 31])
        out[attention] = {"buckets": buckets, "seconds": history.seconds}
    return out


def clipping() -> dict:
    """An Elman net (no attention, the usual initialization) trained by plain SGD at a large
    learning rate on 10-30 symbol reversals, with and without clipping the gradient norm at
    1. (With its recurrent matrices at twice the scale, the first design, the unclipped run
    exploded at once and stayed exploded, so its own median could not show the explosion.)"""
    pairs = lab.task("reverse", 5000, 10, 30, symbols=10, seed=1)
    out = {}
    for name, clip in (("unclipped", None), ("clipped", 1.0)):
        model = lab.build(symbols=10, attention="none", cell="rnn", hidden=64)
        h = lab.train(model, pairs, steps=steps(400), lr=1.0, optimizer="sgd", clip=clip)
        out[name] = {
            "loss": h.loss,
            "grad_norm": h.grad_norm,
            "spikes": h.spikes(),
            "final_loss": statistics.median(h.loss[-50:]),
            "seconds": h.seconds,
        }
    return out


def reversal(bidirectional: bool = False) -> dict:
    """Sutskever et al.'s trick on the copy task: a no-attention GRU reads the source as
    written (the first word to output was read longest ago) or reversed (it was read last).
    Unidirectional, as theirs: a bidirectional encoder's final state has read both ends last,
    so reversing it changes little (`reversal_bidirectional` measures that). A GRU rather
    than their LSTM: it learns to copy in fewer updates (an LSTM was still at 13-24% accuracy
    after 800), and the claim is about the encoding, not the cell."""
    pairs = lab.task("copy", 20000, 3, 16, symbols=10, seed=1)
    test = lab.task("copy", 400, 3, 16, symbols=10, seed=2)
    out = {}
    for name, reverse in (("as written", False), ("reversed", True)):
        model = lab.build(symbols=10, attention="none", cell="gru", hidden=128,
                          reverse_source=reverse, bidirectional=bidirectional)  # fmt: skip
        history = lab.train(model, pairs, steps=steps(2000), lr=3e-3, batch=64, curriculum=True)
        buckets = lab.accuracy_by_length(model, test, [3, 7, 11, 17])
        accuracy = sum(a * n for _, a, n in buckets) / sum(n for _, _, n in buckets)
        out[name] = {"accuracy": accuracy, "buckets": buckets, "loss": history.loss,
                     "seconds": history.seconds}  # fmt: skip
    return out


COPY_TEST = lab.task("copy", 300, 3, 12, symbols=10, seed=2)


def copying_gru(teacher_forcing: float) -> tuple[Seq2Seq, lab.History]:
    """The GRU (no attention) of the exposure experiments, trained to copy 3-12 symbols with
    `teacher_forcing` of the steps reading the reference (1: teacher forcing, 0: free
    running, in between: scheduled sampling)."""
    pairs = lab.task("copy", 20000, 3, 12, symbols=10, seed=1)
    model = lab.build(symbols=10, attention="none", cell="gru", hidden=128)
    history = lab.train(model, pairs, steps=steps(600), lr=3e-3, batch=64,
                        teacher_forcing=teacher_forcing, curriculum=True)  # fmt: skip
    return model, history


def exposure() -> dict:
    """Errors compounding along the model's own prefix: one injected mistake (the model's own
    best wrong token) and the accuracy of the next 3 steps, for a no-attention GRU trained
    with teacher forcing and one trained with scheduled sampling (a quarter of the steps read
    the model's own guess)."""
    src, tgt = COPY_TEST
    out = {}
    for name, ratio in (("teacher forcing", 1.0), ("scheduled sampling", 0.75)):
        model, history = copying_gru(ratio)
        rec = recovery(model, src, tgt, window=3)
        out[name] = {"clean": rec.clean, "injected": rec.injected, "counts": rec.counts,
                     "drop": rec.drop(), "seconds": history.seconds}  # fmt: skip
    return out


def free_running() -> dict:
    """Teacher forcing against free running as the training regime (every step reads the
    model's own guess, ratio 0): the same GRU, task and updates as `exposure`; greedy token
    accuracy on held-out pairs and the training loss."""
    out = {}
    for name, ratio in (("teacher forcing", 1.0), ("free running", 0.0)):
        model, history = copying_gru(ratio)
        buckets = lab.accuracy_by_length(model, COPY_TEST, [3, 13])
        out[name] = {"accuracy": buckets[0][1], "loss": history.loss, "seconds": history.seconds}
    return out


def jordan() -> dict:
    """Elman (hidden layer fed back) against Jordan (output fed back) labelling streams of 10
    symbols over 5: echo the symbol read 2 steps ago (the output at t-1 shows the one read 3
    ago, so only a hidden state can hold it), and the running sum mod 5 (the last output is
    all the memory the task needs: a control where Jordan's feedback suffices)."""
    out: dict = {}
    for kind in ("delay", "sum"):
        train = streams.task(kind, 5000, 10, symbols=5, delay=2, seed=1)
        test = streams.task(kind, 500, 10, symbols=5, delay=2, seed=2)
        for feedback in ("elman", "jordan"):
            torch.manual_seed(0)  # the same first weights, whatever ran before
            model = Tagger(inputs=5, labels=5, feedback=feedback, hidden=32)
            h = streams.train(model, train, batches=steps(1500), batch=32)
            out.setdefault(kind, {})[feedback] = {
                "accuracy": streams.accuracy(model, test), "loss": h.loss, "seconds": h.seconds,
            }  # fmt: skip
    return out


BPTT = {"full BPTT": None, "truncated (k1=4, k2=4)": (4, 4), "truncated (k1=4, k2=12)": (4, 12)}


def bptt() -> dict:
    """Full against truncated back-propagation through time on a dependency 8 steps long:
    a GRU tagger echoes the symbol read 8 steps before, in streams of 30 over 5 symbols.
    BPTT(k1, k2): an update every k1 steps through the last k2; k2 = 4 < 8 and k2 = 12 > 8.
    The same streams for each (the truncated runs make 6 updates of each batch, full one:
    the first two windows hold no label)."""
    train = streams.task("delay", 5000, 30, symbols=5, delay=8, seed=1)
    test = streams.task("delay", 500, 30, symbols=5, delay=8, seed=2)
    out = {}
    for name, k in BPTT.items():
        torch.manual_seed(0)  # the same first weights, whatever ran before
        model = Tagger(inputs=5, labels=5, feedback="gru", hidden=32)
        h = streams.train(model, train, batches=steps(1000), batch=32, bptt=k)
        out[name] = {"accuracy": streams.accuracy(model, test), "updates": len(h.loss),
                     "seconds": h.seconds}  # fmt: skip
    return out


def depth() -> dict:
    """A deep (2-layer) against a shallow (1-layer) Elman tagger of the same width (16) on a
    per-step function, y_t = table[x_{t-1}, x_t] over 20 symbols (a random table: 400 cases),
    and a shallow one made wider (24) to the deep one's number of parameters."""
    train = streams.task("pair", 5000, 20, symbols=20, seed=1)
    test = streams.task("pair", 500, 20, symbols=20, seed=2)
    out = {}
    for name, hidden, layers in (("shallow", 16, 1), ("deep", 16, 2), ("shallow, wider", 24, 1)):
        torch.manual_seed(0)  # the same first weights, whatever ran before
        model = streams.EncoderTagger(inputs=20, labels=20, cell="rnn", hidden=hidden,
                                      layers=layers)  # fmt: skip
        h = streams.train(model, train, batches=steps(1500), batch=32)
        out[name] = {"accuracy": streams.accuracy(model, test), "hidden": hidden,
                     "layers": layers, "parameters": streams.parameters(model),
                     "loss": h.loss, "seconds": h.seconds}  # fmt: skip
    return out


def bidirectional() -> dict:
    """A bidirectional against a unidirectional GRU tagger (the package's encoder) where the
    label of a position depends on the symbol after it: y_t = table[x_t, x_{t+1}] over 10
    symbols (the backward direction has read both when it reaches t)."""
    train = streams.task("context", 5000, 20, symbols=10, seed=1)
    test = streams.task("context", 500, 20, symbols=10, seed=2)
    out = {}
    for name, both in (("unidirectional", False), ("bidirectional", True)):
        torch.manual_seed(0)  # the same first weights, whatever ran before
        model = streams.EncoderTagger(inputs=10, labels=10, cell="gru", hidden=32,
                                      bidirectional=both)  # fmt: skip
        h = streams.train(model, train, batches=steps(1500), batch=32)
        out[name] = {"accuracy": streams.accuracy(model, test), "loss": h.loss,
                     "seconds": h.seconds}  # fmt: skip
    return out


EXPERIMENTS = {
    "vanishing": vanishing,
    "clipping": clipping,
    "reversal": reversal,
    "reversal_bidirectional": lambda: reversal(bidirectional=True),
    "exposure": exposure,
    "attention_by_length": attention_by_length,
    "free_running": free_running,
    "jordan": jordan,
    "bptt": bptt,
    "depth": depth,
    "bidirectional": bidirectional,
}


def _bars(plt, path: Path, title: str, bars: dict[str, float], chance: float | None) -> None:
    """One figure of test accuracies, a bar each, with chance level dashed."""
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.bar(list(bars), list(bars.values()), color=[f"C{i}" for i in range(len(bars))])
    for i, v in enumerate(bars.values()):
        ax.text(i, v + 0.02, f"{v:.2f}", ha="center")
    if chance is not None:
        ax.axhline(chance, color="grey", linestyle="--", linewidth=1)
        ax.text(len(bars) - 0.5, chance + 0.015, "chance", color="grey", ha="right")
    ax.set(title=title, ylabel="test accuracy (per position)", ylim=(0, 1.12))
    ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def figures(results: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if "jordan" in results:
        r = results["jordan"]
        _bars(plt, out / "synthetic-jordan.png",
              "Elman vs Jordan feedback, labelling streams of 5 symbols",
              {f"{cell.capitalize()}: {task}": r[key][cell]["accuracy"]
               for key, task in (("delay", "echo x(t-2)"), ("sum", "running sum"))
               for cell in ("elman", "jordan")}, chance=1 / 5)  # fmt: skip
    if "bptt" in results:
        _bars(plt, out / "synthetic-bptt.png",
              "GRU echoing the symbol read 8 steps before",
              {k: v["accuracy"] for k, v in results["bptt"].items()}, chance=1 / 5)  # fmt: skip
    if "depth" in results:
        _bars(plt, out / "synthetic-depth.png", "Elman taggers, y(t) = table[x(t-1), x(t)]",
              {f"{k}\n{v['layers']} x {v['hidden']}, {v['parameters']} weights": v["accuracy"]
               for k, v in results["depth"].items()}, chance=None)  # fmt: skip
    if "bidirectional" in results:
        title = "GRU taggers, y(t) = table[x(t), x(t+1)]"
        bars = {k: v["accuracy"] for k, v in results["bidirectional"].items()}
        _bars(plt, out / "synthetic-bidirectional.png", title, bars, chance=None)
    if "free_running" in results:
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, run in results["free_running"].items():
            loss = run["loss"]
            smooth = [statistics.mean(loss[max(0, i - 19) : i + 1]) for i in range(len(loss))]
            ax.plot(smooth, label=f"{name} (test accuracy {run['accuracy']:.2f})")
        ax.set(title="GRU copying 3-12 symbols: training regimes", xlabel="update",
               ylabel="training loss (mean of 20 updates)")  # fmt: skip
        ax.legend(frameon=False)
        fig.tight_layout()
        fig.savefig(out / "synthetic-free-running.png", dpi=100)
        plt.close(fig)

    if "attention_by_length" in results:
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, label in (("none", "GRU, no attention (fixed-size encoding)"),
                            ("bahdanau", "GRU, Bahdanau attention")):  # fmt: skip
            buckets = results["attention_by_length"][name]["buckets"]
            ax.plot([b[0] for b in buckets], [b[1] for b in buckets], marker="o", label=label)
        ax.set(title="Reversing 3-30 random symbols: accuracy by length",
               xlabel="source length (symbols)", ylabel="token accuracy (greedy)",
               ylim=(0, 1.05))  # fmt: skip
        ax.legend(frameon=False)
        fig.tight_layout()
        fig.savefig(out / "synthetic-by-length.png", dpi=100)
        plt.close(fig)
    if "vanishing" in results:
        fig, ax = plt.subplots(figsize=(6, 4))
        for cell, name in (("elman", "Elman"), ("gru", "GRU"), ("lstm", "LSTM")):
            ax.semilogy(results["vanishing"][cell], label=name)
        ax.set(title="Gradient reaching back in time (untrained encoders)",
               xlabel="steps before the end",
               ylabel="‖dL/dx‖ relative to the last step")  # fmt: skip
        ax.legend(frameon=False)
        fig.tight_layout()
        fig.savefig(out / "synthetic-vanishing.png", dpi=100)
        plt.close(fig)
    if "clipping" in results:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for name in ("unclipped", "clipped"):
            run = results["clipping"][name]
            axes[0].plot(run["loss"], label=f"Elman, {name}", linewidth=0.8)
            axes[1].plot(run["grad_norm"], label=f"Elman, {name}", linewidth=0.8)
        axes[0].set(title="training loss (SGD, learning rate 1)", xlabel="update",
                    ylabel="cross-entropy")  # fmt: skip
        axes[1].set(title="gradient norm before clipping", xlabel="update", ylabel="‖g‖",
                    yscale="log")  # fmt: skip
        for ax in axes:
            ax.legend(frameon=False)
        fig.tight_layout()
        fig.savefig(out / "synthetic-clipping.png", dpi=100)
        plt.close(fig)
    if "reversal" in results:
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, run in results["reversal"].items():
            ax.plot([b[0] for b in run["buckets"]], [b[1] for b in run["buckets"]], marker="o",
                    label=f"GRU (unidirectional), no attention, source {name}")  # fmt: skip
        ax.set(title="Copying 3-16 random symbols", xlabel="source length (symbols)",
               ylabel="token accuracy (greedy)", ylim=(0, 1.05))  # fmt: skip
        ax.legend(frameon=False)
        fig.tight_layout()
        fig.savefig(out / "synthetic-reversal.png", dpi=100)
        plt.close(fig)
    if "exposure" in results:
        fig, ax = plt.subplots(figsize=(6, 4))
        for i, (name, run) in enumerate(results["exposure"].items()):
            ks = range(1, len(run["clean"]) + 1)
            ax.plot(ks, run["clean"], marker="o", color=f"C{i}", label=f"{name}: gold prefix")
            ax.plot(ks, run["injected"], marker="x", linestyle="--", color=f"C{i}",
                    label=f"{name}: one mistake injected")  # fmt: skip
        ax.set(title="GRU copying 3-12 symbols: accuracy after a mistake",
               xlabel="steps after the injected mistake", ylabel="token accuracy (teacher-forced)",
               ylim=(0, 1.05), xticks=[1, 2, 3])  # fmt: skip
        ax.legend(frameon=False, fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "synthetic-exposure.png", dpi=100)
        plt.close(fig)


def main(out: Path) -> None:
    torch.set_num_threads(1)  # small models: one thread is fastest and repeats bit for bit
    out.mkdir(parents=True, exist_ok=True)
    path = out / "synthetic.json"
    results = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    for name, experiment in EXPERIMENTS.items():
        if name not in results:
            print(f"synthetic: {name}", file=sys.stderr, flush=True)
            results[name] = experiment()
            results["tiny"] = TINY
            path.write_text(json.dumps(results), encoding="utf-8")
    figures(results, out)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
