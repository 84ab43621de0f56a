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
# # Teacher forcing, scheduled sampling and exposure bias
#
# A decoder trained with **teacher forcing** always reads the reference's previous token.
# At test time it reads its own output, mistakes included, and it has never seen a mistake
# in its input during training: the lecture's claim is that one mistake then makes the
# next ones more likely (**exposure bias**). **Scheduled sampling** (Bengio et al., 2015)
# feeds the model its own guess at some training steps; in `nmt` it is the
# `teacher_forcing_ratio` of `Seq2Seq.forward` (`train.teacher_forcing` in a config).
#
# Comparing free-running output with the reference position by position does not test the
# claim: once an output has one token more or less, every later position disagrees whatever
# the model does next. So we **inject** one mistake (the model's own best wrong guess) into
# an otherwise gold prefix and measure the accuracy of the following steps against the same
# steps after the gold prefix (`nmt.analysis.exposure.recovery`). About 2 minutes.

# %%
import os

import matplotlib.pyplot as plt
import torch

from nmt.analysis import lab
from nmt.analysis.exposure import recovery

TINY = os.environ.get("NMT_NOTEBOOK_TINY") == "1"  # the test suite's smoke run
torch.set_num_threads(1)
steps = 3 if TINY else 600

train_pairs = lab.task("copy", 20000, 3, 12, symbols=10, seed=1)
test_src, test_tgt = lab.task("copy", 300, 3, 12, symbols=10, seed=2)

# %% [markdown]
# ## Two regimes: teacher forcing (ratio 1) and scheduled sampling (ratio 0.75)
# A GRU without attention, so that the decoder's own prefix is much of what it reads.

# %%
results = {}
for name, ratio in (("teacher forcing", 1.0), ("scheduled sampling", 0.75)):
    model = lab.build(symbols=10, attention="none", cell="gru", hidden=128)
    lab.train(model, train_pairs, steps=steps, lr=3e-3, batch=64, teacher_forcing=ratio,
              curriculum=True)  # fmt: skip
    rec = results[name] = recovery(model, test_src, test_tgt, window=3)
    print(f"{name}: accuracy after the gold prefix {rec.clean}, after one injected mistake "
          f"{rec.injected}, drop {rec.drop():.3f}")  # fmt: skip

# %%
fig, ax = plt.subplots(figsize=(6, 4))
for i, (name, rec) in enumerate(results.items()):
    ks = range(1, rec.window + 1)
    ax.plot(ks, rec.clean, marker="o", color=f"C{i}", label=f"{name}: gold prefix")
    ax.plot(ks, rec.injected, marker="x", linestyle="--", color=f"C{i}",
            label=f"{name}: one mistake injected")  # fmt: skip
ax.set(xlabel="steps after the mistake", ylabel="accuracy", ylim=(0, 1.05), xticks=[1, 2, 3],
       title="GRU, no attention, copying 3-12 symbols")  # fmt: skip
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# The gap between a solid line and its dashed line is what one mistake costs the next steps:
# the compounding the lecture describes. If it is near zero, the model does not lean on its
# own prefix and there is no exposure bias to speak of (the measure can fail).
#
# ## Free running as the training regime
# Why not train on the model's own prefixes all the time (ratio 0), so that training and
# testing match? Early in training the model's guesses are noise: the decoder learns from
# prefixes that have nothing to do with the target, and the signal comes late. Same model,
# task and updates, greedy accuracy on the held-out pairs.

# %%
curves, accuracy = {}, {}
for name, ratio in (("teacher forcing", 1.0), ("free running", 0.0)):
    model = lab.build(symbols=10, attention="none", cell="gru", hidden=128)
    history = lab.train(model, train_pairs, steps=steps, lr=3e-3, batch=64,
                        teacher_forcing=ratio, curriculum=True)  # fmt: skip
    curves[name] = history.loss
    accuracy[name] = lab.accuracy_by_length(model, (test_src, test_tgt), [3, 13])[0][1]
    print(f"{name}: greedy token accuracy {accuracy[name]:.2f}")

fig, ax = plt.subplots(figsize=(6, 4))
for name, loss in curves.items():
    ax.plot(loss, label=f"{name} (accuracy {accuracy[name]:.2f})", linewidth=0.8)
ax.set(xlabel="update", ylabel="training loss", title="Training regimes")
ax.legend()
plt.show()

# %% [markdown]
# ## Exercises
# 1. Give the model attention. Does the drop after a mistake shrink? Why would attention
#    make a copying model less dependent on its prefix?
# 2. Lower the ratio to 0.5, then 0. What happens to the accuracy after the gold prefix?
# 3. `nmt inspect exposure CHECKPOINT --src ... --tgt ... --json` reports the same measure
#    (`recovery`) for a model trained on a real corpus. Try it on `make demo`'s model.
