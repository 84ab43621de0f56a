#!/usr/bin/env bash
# The built-in English -> Portuguese corpus from generation to a BLEU score, offline.
# usage: recipes/toy/run.sh [RUN_DIR] [CONFIG]
#   RUN_DIR default runs/demo (relative to the repo root); CONFIG default recipes/toy/config.yaml
#   (the attention GRU); recipes/toy/transformer.yaml trains a Transformer instead
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../.."
run=${1:-runs/demo}
config=${2:-$here/config.yaml}
[ -f "$config" ] || { echo "no config $config" >&2; exit 2; }
step() { printf '\n[%s] %s\n' "$(date +%T)" "$*" >&2; }
start=$(date +%s)

step "corpus -> $run/data"
nmt data toy -o "$run/data" --size 20000 --seed 1

step "training (tokenizer included) -> $run"
# the config names its own run folder; point it at $run when another folder is given. The demo
# starts over each time: --overwrite replaces the run an earlier demo left there once the new
# one has its first checkpoint (the data stays). The earlier results go now: they scored the
# model being replaced, and an interrupted run must not leave them to claim a score
rm -f "$run/test.hyp.pt" "$run/test.score.txt" "$run/test.score.json"
nmt train --config "$config" --overwrite \
  --set data.train_src="$run/data/train.en" --set data.train_tgt="$run/data/train.pt" \
  --set data.valid_src="$run/data/valid.en" --set data.valid_tgt="$run/data/valid.pt" \
  --set train.run_dir="$run" > "$run/train.json"

step "translating the test split with beam 5"
nmt translate "$run/best.pt" "$run/data/test.en" -o "$run/test.hyp.pt" --beam-size 5

step "scoring"
nmt score --hyp "$run/test.hyp.pt" --ref "$run/data/test.pt" | tee "$run/test.score.txt"
nmt score --hyp "$run/test.hyp.pt" --ref "$run/data/test.pt" --json > "$run/test.score.json"
step "done in $(( $(date +%s) - start )) s"
