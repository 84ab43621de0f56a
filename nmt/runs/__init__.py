"""What a training run leaves and tells: its folder, its log, its progress, and the models
made from its checkpoints.

`folder` says who may write into a run dir; `log` writes log.jsonl; `progress` is the plan
and the ETA training shows; `average` averages checkpoints; `export` makes exports and the
summaries `nmt info` prints.

May import the package root and the `data` wing; the training loop (nmt/train.py) imports it.
"""
