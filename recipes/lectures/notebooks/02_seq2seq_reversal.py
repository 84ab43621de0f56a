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
# # Sequence to sequence, and reversing the source
#
# Sutskever et al. (2014) encode the whole source sentence into the encoder's final state, a
# **fixed-size vector**, and let the decoder generate the translation from it alone (no
# attention). They found that feeding the source *backwards* helped a lot: the first target
# words then sit close to the first source words in time, so the first gradients have a
# short way to travel.
#
# Here the "translation" is copying a sequence of random symbols. Read as written, the first
# symbol to output is the one read longest ago; reversed, it is the one read last. The model
# is `nmt`'s seq2seq network with a unidirectional encoder, as Sutskever et al.'s, and
# `attention="none"`; `reverse_source=True` is the same option as `model.reverse_source` in
# a training config. The cell is a GRU: it learns this task sooner than Sutskever's LSTM, and
# the claim is about what the fixed-size encoding read last, not about the cell (exercise 5).
# About 3 minutes on one core.

# %%
import os

import matplotlib.pyplot as plt
import torch

from nmt.analysis import lab

TINY = os.environ.get("NMT_NOTEBOOK_TINY") == "1"  # the test suite's smoke run
torch.set_num_threads(1)
steps = 3 if TINY else 2000

# %% [markdown]
# ## The data
# Token ids 4.. are the symbols (0-3 are PAD, UNK, BOS, EOS). Lengths 3-16.

# %%
train_pairs = lab.task("copy", 20000, 3, 16, symbols=10, seed=1)
test_pairs = lab.task("copy", 400, 3, 16, symbols=10, seed=2)
print("source:", train_pairs[0][0])
print("target:", train_pairs[1][0])

# %% [markdown]
# ## Two models, one difference
# `curriculum=True` draws short pairs first and lets the longest allowed length grow over
# the first half of training: a model without attention learns nothing from long pairs
# before it can do short ones.

# %%
models, histories = {}, {}
for name, reverse in (("as written", False), ("reversed", True)):
    model = lab.build(symbols=10, attention="none", cell="gru", hidden=128,
                      reverse_source=reverse, bidirectional=False)  # fmt: skip
    histories[name] = lab.train(model, train_pairs, steps=steps, lr=3e-3, batch=64,
                                curriculum=True)  # fmt: skip
    models[name] = model

fig, axes = plt.subplots(1, 2, figsize=(11, 4))
for name, model in models.items():
    axes[0].plot(histories[name].loss, label=f"GRU, source {name}", linewidth=0.8)
    buckets = lab.accuracy_by_length(model, test_pairs, [3, 7, 11, 17])
    axes[1].plot([b[0] for b in buckets], [b[1] for b in buckets], marker="o",
                 label=f"GRU, source {name}")  # fmt: skip
axes[0].set(xlabel="update", ylabel="training loss", title="learning curves")
axes[1].set(xlabel="source length", ylabel="token accuracy (greedy)", ylim=(0, 1.05),
            title="test accuracy by length")  # fmt: skip
for ax in axes:
    ax.legend()
plt.show()

# %% [markdown]
# ## What the models output

# %%
src, ref = test_pairs[0][:3], test_pairs[1][:3]
for name, model in models.items():
    for r, h in zip(ref, lab.greedy(model, src)):
        print(f"{name:>10}  ref {r}\n{'':>10}  out {h}")

# %% [markdown]
# ## Exercises
# 1. Train both on the `reverse` task instead. Which one wins now, and why?
# 2. Give both models attention (`attention="bahdanau"`). Does reversing still matter?
# 3. Halve `hidden`. Which lengths suffer first?
# 4. Make the encoder bidirectional (`bidirectional=True`, `nmt`'s default). Does reversing
#    still help? Which source words has the final state read last now?
# 5. Use `cell="lstm"`, as Sutskever et al. did. How many more updates does it need?
