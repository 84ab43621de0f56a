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
# # Attention and sentence length
#
# Bahdanau et al. (2015) plotted BLEU against sentence length for an encoder-decoder with a
# fixed-size encoding (RNNenc) and one with attention (RNNsearch): the first falls as
# sentences grow, the second does not. A fixed-size vector has to hold the whole sentence;
# attention lets every decoder step read the encoder state it needs,
# $c_t = \sum_s \alpha_{ts} h_s$ with
# $\alpha_{ts} = \mathrm{softmax}_s\, v^\top \tanh(W q_t + U h_s)$ (`nmt/attention.py`).
#
# Real captions are short; here the length is ours to choose. The task is reversing 3-30
# random symbols (the easiest order for a model without attention, so that what fails is
# the encoding, not the optimizer). The same GRU network, with `attention="none"` and
# `attention="bahdanau"`. About 6 minutes on 2 CPU cores.

# %%
import os

import matplotlib.pyplot as plt
import torch

from nmt.analysis import lab
from nmt.batching import make_batch

TINY = os.environ.get("NMT_NOTEBOOK_TINY") == "1"  # the test suite's smoke run
torch.set_num_threads(1)
steps = 3 if TINY else 1500

train_pairs = lab.task("reverse", 20000, 3, 30, symbols=10, seed=1)
test_pairs = lab.task("reverse", 400, 3, 30, symbols=10, seed=2)

# %%
models = {}
for attention in ("none", "bahdanau"):
    model = lab.build(symbols=10, attention=attention, cell="gru", hidden=128)
    history = lab.train(model, train_pairs, steps=steps, lr=3e-3, batch=64, curriculum=True)
    print(f"{attention}: {history.seconds:.0f} s, last loss {history.loss[-1]:.3f}")
    models[attention] = model

# %% [markdown]
# ## Accuracy by length: the shape of Bahdanau et al.'s figure

# %%
labels = {"none": "GRU, no attention (fixed-size encoding)", "bahdanau": "GRU, Bahdanau attention"}
fig, ax = plt.subplots(figsize=(6, 4))
for attention, model in models.items():
    buckets = lab.accuracy_by_length(model, test_pairs, [3, 9, 15, 21, 27, 31])
    ax.plot([b[0] for b in buckets], [b[1] for b in buckets], marker="o", label=labels[attention])
ax.set(xlabel="source length (symbols)", ylabel="token accuracy (greedy)", ylim=(0, 1.05))
ax.legend()
plt.show()

# %% [markdown]
# ## Where the attention model looks
# `return_attention=True` gives the weights $\alpha_{ts}$ of every decoder step (teacher
# forced). For reversal the map should be the anti-diagonal.

# %%
src, tgt = [test_pairs[0][5]], [test_pairs[1][5]]
batch = make_batch(src, tgt)
with torch.no_grad():
    _, weights = models["bahdanau"](
        batch.src, batch.src_lengths, batch.tgt_in, return_attention=True
    )  # (1, T, S)
fig, ax = plt.subplots(figsize=(5, 5))
ax.imshow(weights[0], cmap="Greys")
ax.set(xlabel="source position (last: EOS)", ylabel="target step (last: EOS)",
       title="GRU, Bahdanau attention")  # fmt: skip
plt.show()

# %% [markdown]
# ## Exercises
# 1. Double the hidden size of the model without attention. How far does its good range
#    move? What does that say about "fixed-size"?
# 2. Use `attention="dot"` (Luong) instead of Bahdanau's additive attention.
# 3. Train both on the `copy` task. Which suffers more, and why (see notebook 02)?
