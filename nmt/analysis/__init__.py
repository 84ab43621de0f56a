"""The lectures' instruments: what a trained model attends to and learned, shown as figures.

`heatmaps` (attention maps and their export), `curves` (training curves from log.jsonl),
`gradient_flow` (the loss gradient reaching each encoder state), `exposure` (teacher forcing
against free running), `length_buckets` (scores by source length), `figures` (line plots of
the last three), `render` (the matplotlib set-up they share), `lab` (synthetic tasks of
chosen length and a small training loop: the lectures' designed experiments).

May import the package root and the `data`, `runs` and `translation` wings.
"""
