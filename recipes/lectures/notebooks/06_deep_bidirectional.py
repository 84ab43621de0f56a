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
# # Deep and bidirectional recurrent networks
#
# A **deep** RNN stacks layers: layer $l$ reads layer $l-1$'s state at the same step,
# $h^l_t = f(h^{l-1}_t, h^l_{t-1})$, so every step goes through more nonlinearities. A
# **bidirectional** RNN runs a second network from the end to the start and joins the two
# states, $[\overrightarrow{h}_t; \overleftarrow{h}_t]$: each position sees its left *and*
# right context. `nmt`'s encoder (`nmt/encoder.py`) is both (`model.enc_layers`,
# `model.bidirectional`); here it labels streams of symbols with a linear layer on top
# (`nmt.analysis.streams.EncoderTagger`). About 1 minute on one CPU core.

# %%
import os

import matplotlib.pyplot as plt
import torch

from nmt.analysis import streams

TINY = os.environ.get("NMT_NOTEBOOK_TINY") == "1"  # the test suite's smoke run
torch.set_num_threads(1)
batches = 3 if TINY else 1500

# %% [markdown]
# ## 1. Depth: a nonlinear function at every step
#
# $y_t = \mathrm{table}[x_{t-1}, x_t]$ for a random table over 20 symbols: 400 cases to tell
# apart at every step. One Elman layer of 16 units, two layers of 16, and one layer made
# wider (24) so that it has about as many weights as the two layers.

# %%
train = streams.task("pair", 5000, 20, symbols=20, seed=1)
test = streams.task("pair", 500, 20, symbols=20, seed=2)
depth = {}
for name, hidden, layers in (("1 x 16", 16, 1), ("2 x 16", 16, 2), ("1 x 24", 24, 1)):
    torch.manual_seed(0)  # the same first weights, whatever ran before
    model = streams.EncoderTagger(inputs=20, labels=20, cell="rnn", hidden=hidden, layers=layers)
    streams.train(model, train, batches=batches, batch=32)
    depth[name] = streams.accuracy(model, test)
    print(f"{name}: {streams.parameters(model)} weights, test accuracy {depth[name]:.2f}")

# %% [markdown]
# ## 2. Direction: the label depends on what comes next
#
# $y_t = \mathrm{table}[x_t, x_{t+1}]$: a unidirectional network labelling position $t$
# has not read $x_{t+1}$ yet. A GRU encoder, one direction against both.

# %%
train = streams.task("context", 5000, 20, symbols=10, seed=1)
test = streams.task("context", 500, 20, symbols=10, seed=2)
direction = {}
for name, both in (("unidirectional", False), ("bidirectional", True)):
    torch.manual_seed(0)  # the same first weights, whatever ran before
    model = streams.EncoderTagger(inputs=10, labels=10, cell="gru", hidden=32, bidirectional=both)
    streams.train(model, train, batches=batches, batch=32)
    direction[name] = streams.accuracy(model, test)
    print(f"{name}: test accuracy {direction[name]:.2f}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 4))
axes[0].bar(list(depth), list(depth.values()), color=["C0", "C1", "C2"])
axes[0].set(title="table[x(t-1), x(t)], Elman", ylabel="test accuracy", ylim=(0, 1.05))
axes[1].bar(list(direction), list(direction.values()), color=["C0", "C1"])
axes[1].set(title="table[x(t), x(t+1)], GRU", ylim=(0, 1.05))
plt.show()

# %% [markdown]
# The unidirectional tagger can still learn which labels $x_t$ makes likely, so it beats
# chance, but it cannot do better than guessing the missing half of the table.
#
# ## Exercises
# 1. Does the deep network's advantage hold at equal weights? Compare "2 x 16" with
#    "1 x 24" and decide what depth bought here.
# 2. Delay the output: train the *unidirectional* tagger to output
#    $\mathrm{table}[x_{t-2}, x_t]$ (the same table, one step late). Why can it now learn
#    what it could not before? This is what an encoder-decoder does with a whole sentence.
# 3. Train a 3-layer network on the pair task. Does it train as fast as the 2-layer one?
# 4. Make the label $\mathrm{table}[x_{t-1}, x_{t+1}]$ (`y[:, 1:-1] = table[x[:, :-2],
#    x[:, 2:]]` in `streams.task`). The bidirectional tagger now stays near 0.5. Why? (Its
#    output layer is linear: it *adds* a score from each direction, and a random table is
#    not a sum.) Does `layers=2` fix it?
