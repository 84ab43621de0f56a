# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Elman and Jordan networks; back-propagation through time, full and truncated
#
# The two simple recurrent networks differ in what they feed back:
#
# - **Elman**: $h_t = \tanh(W x_t + U h_{t-1} + b)$, the hidden layer;
# - **Jordan**: $h_t = \tanh(W x_t + U y_{t-1} + b)$, the previous output;
#
# and both output $y_t = \mathrm{softmax}(V h_t)$. `nmt/cells.py` writes them out in these
# terms (`Tagger`), one step at a time. The lecture's claim: a Jordan network remembers only
# what it has *said*; an Elman network's hidden state can hold what the output does not show.
#
# Then training. **Back-propagation through time** (BPTT) unrolls the network over the whole
# sequence. **Truncated BPTT(k1, k2)** updates every $k_1$ steps and back-propagates through
# the last $k_2$ only: cheaper, but no gradient reaches further back than $k_2$ steps, so a
# dependency longer than that cannot be learned. `nmt/analysis/streams.py` trains both ways.
# About 2 minutes on one CPU core.

# %%
import os

import matplotlib.pyplot as plt
import torch

from nmt.analysis import streams
from nmt.cells import Tagger

TINY = os.environ.get("NMT_NOTEBOOK_TINY") == "1"  # the test suite's smoke run
torch.set_num_threads(1)  # small models: one thread is fastest and repeats bit for bit


def batches(n: int) -> int:
    return 3 if TINY else n


# %% [markdown]
# ## 1. Two tasks over streams of 10 symbols (5 kinds)
#
# - **echo**: output the symbol read 2 steps ago, $y_t = x_{t-2}$. The output at $t-1$ shows
#   $x_{t-3}$, not $x_{t-2}$: a Jordan network has nowhere to keep it.
# - **running sum**: $y_t = (x_1 + \dots + x_t) \bmod 5$. The last output *is* the memory the
#   task needs: here feeding back the output should be enough.

# %%
x, y = streams.task("delay", 2, 10, symbols=5, delay=2, seed=0)
print("input ", x.tolist(), "\necho  ", y.tolist(), "(-100: not scored)")
x, y = streams.task("sum", 1, 10, symbols=5, seed=0)
print("input ", x.tolist(), "\nsum   ", y.tolist())

# %%
accuracy = {}
for kind, name in (("delay", "echo x(t-2)"), ("sum", "running sum")):
    train = streams.task(kind, 5000, 10, symbols=5, delay=2, seed=1)
    test = streams.task(kind, 500, 10, symbols=5, delay=2, seed=2)
    for feedback in ("elman", "jordan"):
        torch.manual_seed(0)  # the same first weights, whatever ran before
        model = Tagger(inputs=5, labels=5, feedback=feedback, hidden=32)
        streams.train(model, train, batches=batches(1500), batch=32)
        label = f"{feedback.capitalize()}: {name}"
        accuracy[label] = streams.accuracy(model, test)
        print(f"{label:24} test accuracy {accuracy[label]:.2f}")

# %%
fig, ax = plt.subplots(figsize=(6, 4))
ax.bar(list(accuracy), list(accuracy.values()), color=["C0", "C1", "C0", "C1"])
ax.axhline(1 / 5, color="grey", linestyle="--", label="chance")
ax.set(ylabel="test accuracy", ylim=(0, 1.05), title="What the feedback can remember")
ax.tick_params(axis="x", labelsize=7)
ax.legend()
plt.show()

# %% [markdown]
# ## 2. Full against truncated BPTT
#
# A GRU tagger (the gated cell, so that vanishing gradients are not what we measure) echoes
# the symbol read **8** steps before, in streams of 30. Three ways to train it on the same
# batches: full BPTT, BPTT(4, 4) ($k_2 = 4 < 8$) and BPTT(4, 12) ($k_2 = 12 > 8$). Read
# `streams.train`: the state before the window is `detach()`ed, which is the truncation.

# %%
train = streams.task("delay", 5000, 30, symbols=5, delay=8, seed=1)
test = streams.task("delay", 500, 30, symbols=5, delay=8, seed=2)
bptt = {}
for name, k in (("full", None), ("k1=4, k2=4", (4, 4)), ("k1=4, k2=12", (4, 12))):
    torch.manual_seed(0)  # the same first weights, whatever ran before
    model = Tagger(inputs=5, labels=5, feedback="gru", hidden=32)
    history = streams.train(model, train, batches=batches(1000), batch=32, bptt=k)
    bptt[name] = streams.accuracy(model, test)
    print(f"{name:12} {len(history.loss):5} updates, test accuracy {bptt[name]:.2f}")

# %%
fig, ax = plt.subplots(figsize=(6, 4))
ax.bar(list(bptt), list(bptt.values()), color=["C0", "C3", "C2"])
ax.axhline(1 / 5, color="grey", linestyle="--", label="chance")
ax.set(ylabel="test accuracy", ylim=(0, 1.05), title="Echoing x(t-8): BPTT and its truncations")
ax.legend()
plt.show()

# %% [markdown]
# BPTT(4, 4) makes six times as many updates as full BPTT from the same data and still
# stays near chance: the forward pass carries $x_{t-8}$ in the state, but nothing ever
# teaches the network to keep it.
#
# ## Exercises
# 1. Make the echo delay 1. Can the Jordan network do it now? Why?
# 2. Give the Jordan network the echo of $x_{t-2}$ with 20 symbols instead of 5. Does the
#    output distribution at $t-1$ (a soft output, not one symbol) leak any extra memory?
# 3. Find the smallest $k_2$ that learns the delay-8 echo. Is it exactly 8? Why might a
#    network learn a dependency a little longer than $k_2$?
