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
# # Recurrent cells and their gradients
#
# An Elman network updates its state with $h_t = \tanh(W x_t + U h_{t-1} + b)$. Training it
# by backpropagation through time multiplies one Jacobian per step,
# $\partial h_T / \partial h_t = \prod_{k=t+1}^{T} \mathrm{diag}(1 - h_k^2)\, U$:
# when these factors are small the gradient **vanishes** (the net cannot learn long
# dependencies), when they are large it **explodes** (one update throws the model away).
# GRU and LSTM cells add a gated, additive path that carries the gradient further back;
# clipping the gradient norm keeps an explosion from wrecking training.
#
# This notebook measures both on `nmt`'s own modules: the encoder (`nmt/encoder.py`) and the
# seq2seq network trained on a synthetic task (`nmt/analysis/lab.py`). About 1 minute on
# 2 CPU cores.

# %%
import os

import matplotlib.pyplot as plt
import torch

from nmt.analysis import lab

TINY = os.environ.get("NMT_NOTEBOOK_TINY") == "1"  # the test suite's smoke run
torch.set_num_threads(1)  # small models: one thread is fastest and repeats bit for bit
CELL_NAMES = {"rnn": "Elman", "gru": "GRU", "lstm": "LSTM"}  # nmt's names -> the lecture's

# %% [markdown]
# ## 1. How far back does the gradient reach?
#
# A 40-step random input sequence goes through an (untrained) encoder; the loss is the size
# of the last state. We measure $\lVert \partial L / \partial x_t \rVert$ for every input
# position, relative to the last one.


# %%
# lab.gradient_by_distance does exactly this; read it in nmt/analysis/lab.py
gradient_by_distance = lab.gradient_by_distance

fig, ax = plt.subplots(figsize=(6, 4))
for cell in ("rnn", "gru", "lstm"):
    ax.semilogy(gradient_by_distance(cell), label=CELL_NAMES[cell])
ax.set(xlabel="steps before the end", ylabel="relative gradient norm",
       title="Gradient reaching back in time (untrained encoders)")  # fmt: skip
ax.legend()
plt.show()

# %% [markdown]
# The Elman line falls fastest: each step multiplies by $\tanh'$ and $U$. The gated cells
# lose less per step. Now scale the Elman net's recurrent matrix $U$: small values make the
# gradient vanish faster; large values push it towards exploding.

# %%
fig, ax = plt.subplots(figsize=(6, 4))
for gain in (0.5, 1.0, 2.0, 4.0):
    ax.semilogy(gradient_by_distance("rnn", gain=gain), label=f"Elman, U × {gain}")
ax.set(xlabel="steps before the end", ylabel="relative gradient norm",
       title="Elman: the recurrent matrix decides")  # fmt: skip
ax.legend()
plt.show()

# %% [markdown]
# ## 2. Exploding gradients, and clipping
#
# An Elman seq2seq model without attention, trained by plain SGD at learning rate 1 to
# reverse 10-30 random symbols. Once without
# clipping, once with the gradient norm clipped at 1 (`torch.nn.utils.clip_grad_norm_`,
# as `nmt train` does with `train.clip`). `History.grad_norm` is the norm *before* clipping.

# %%
steps = 5 if TINY else 400
pairs = lab.task("reverse", 5000, 10, 30, symbols=10, seed=1)
runs = {}
for name, clip in (("unclipped", None), ("clipped at 1", 1.0)):
    model = lab.build(symbols=10, attention="none", cell="rnn", hidden=64)
    runs[name] = lab.train(model, pairs, steps=steps, lr=1.0, optimizer="sgd", clip=clip)

fig, axes = plt.subplots(1, 2, figsize=(11, 4))
for name, history in runs.items():
    axes[0].plot(history.loss, label=f"Elman, {name}", linewidth=0.8)
    axes[1].semilogy(history.grad_norm, label=f"Elman, {name}", linewidth=0.8)
axes[0].set(xlabel="update", ylabel="training loss", title="loss")
axes[1].set(xlabel="update", ylabel="gradient norm (before clipping)", title="gradient norm")
for ax in axes:
    ax.legend()
plt.show()
for name, history in runs.items():
    print(f"{name}: {history.spikes()} loss spikes, largest gradient norm "
          f"{max(history.grad_norm):.1f}, last loss {history.loss[-1]:.2f}")  # fmt: skip

# %% [markdown]
# Without clipping a single large gradient multiplies the learning rate: the loss jumps far
# above where it was (a *spike*) and the model has to start over. (Neither run learns to
# reverse in 400 steps of plain SGD: a loss near $\ln 10 \approx 2.3$ is chance over 10
# symbols. The point is what one exploded step does to a run.) Clipping rescales such a
# gradient to norm 1: the step keeps its direction but not its size.
#
# ## Exercises
# 1. LSTM implementations often start the forget gate's bias at 1 (`encoder.rnn.bias_hh_l0`,
#    the second quarter of it). Copy `gradient_by_distance` from nmt/analysis/lab.py, do
#    that, and compare with the plot above. Why does it help?
# 2. Build the models with `recurrent_gain=2.0` (recurrent matrices at twice the usual
#    scale). The unclipped run explodes at once and stays exploded: its *median* gradient
#    norm is now the exploded one. Why does that make "a spike over 10 x the median" a bad
#    test of an explosion? Does Adam (`optimizer="adam"`, `lr=1e-2`) explode at all?
# 3. Clip at 0.1 and at 10 instead of 1. What does each do to the speed of learning?
