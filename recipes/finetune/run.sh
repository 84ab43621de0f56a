#!/usr/bin/env bash
# Fine-tuning (nmt train --init): a Multi30k model adapted to new data, here British English
# (pavement, grey, football, colour for sidewalk, gray, soccer, color), and the test set
# translated before and after: British terms used and BLEU against the British references.
#
# usage: recipes/finetune/run.sh CHECKPOINT [SRC]
#   CHECKPOINT: a Multi30k SRC->en model (recipes/multi30k/run.sh's best.pt)
#   SRC: its source language (default de)
# env:   MULTI30K_DIR  folder with {train,val,test_2016_flickr}.{SRC,en} (required)
#        RUN_DIR       default runs/finetune-british
#        STEPS         fine-tuning updates (default 300)
#        NMT           the nmt command (default: nmt on PATH, else .venv/bin/nmt)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
ckpt=${1:?usage: recipes/finetune/run.sh CHECKPOINT [SRC]}
src=${2:-de}
run=${RUN_DIR:-$root/runs/finetune-british}
nmt=${NMT:-$(command -v nmt || echo "$root/.venv/bin/nmt")}
python=$(dirname "$nmt")/python
[ -x "$python" ] || python=python3
: "${MULTI30K_DIR:?set MULTI30K_DIR to a folder with the Multi30k files}"
step() { printf '\n[%s] %s\n' "$(date +%T)" "$*" >&2; }
data=$run/data

step "the British corpus -> $data"
"$python" "$here/domain.py" make "$MULTI30K_DIR" "$src" "$data"

step "fine-tuning $ckpt -> $run"
# a new run (fresh Adam, a short warm-up) at a quarter of the recipes' learning rate: the
# weights are good already, large steps would forget what they know
"$nmt" train --init "$ckpt" --overwrite \
  --set train.run_dir="$run" \
  --set data.train_src="$data/train.$src" --set data.train_tgt="$data/train.en" \
  --set data.valid_src="$data/val.$src" --set data.valid_tgt="$data/val.en" \
  --set train.lr=0.0005 --set train.warmup_steps=50 --set train.batch_tokens=4096 \
  --set train.max_steps="${STEPS:-300}" --set train.valid_every=100 --set train.max_epochs=0

step "test_2016_flickr before and after (greedy)"
for which in before after; do
  model=$ckpt; [ $which = after ] && model=$run/best.pt
  "$nmt" translate "$model" "$data/test_2016_flickr.$src" -o "$run/test.$which.en" \
    --beam-size 1 --quiet
done
"$python" "$here/domain.py" report "$data" "$run/test.before.en" "$run/test.after.en" \
  | tee "$run/results.json"
