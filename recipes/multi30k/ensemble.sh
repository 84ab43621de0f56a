#!/usr/bin/env bash
# An ensemble of three `full` runs (seeds 1, 2, 3) on Multi30k: each run trained and scored by
# run.sh, all three on one tokenizer (an ensemble's models must share it), then the
# ensemble's beam-5 translation of test_2016_flickr (length penalty chosen on val), its
# sacreBLEU score (RUNS_DIR/multi30k-SRC-TGT-full-ensemble/results.json), and its paired
# significance against the seed-1 model alone.
#
# usage: recipes/multi30k/ensemble.sh [SRC] [TGT]          (defaults: de en)
# env:   MULTI30K_DIR, NMT, LENGTH_PENALTIES   as for run.sh
#        RUNS_DIR   where the runs go (default runs, relative to the repo root): seed 1 is
#                   run.sh's own full run, RUNS_DIR/multi30k-SRC-TGT-full
# Restartable: finished steps are skipped.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
src=${1:-de}; tgt=${2:-en}
runs=${RUNS_DIR:-$root/runs}
nmt=${NMT:-$(command -v nmt || echo "$root/.venv/bin/nmt")}
python=$(dirname "$nmt")/python
[ -x "$python" ] || python=python3
step() { printf '\n[%s] %s\n' "$(date +%T)" "$*" >&2; }
start=$(date +%s)

first=$runs/multi30k-$src-$tgt-full
members=("$first")
for seed in 1 2 3; do
  run=$first
  if [ "$seed" -gt 1 ]; then
    run=$first-seed$seed
    members+=("$run")
    # the tokenizer of seed 1, not one trained again: sentencepiece on two threads may
    # give other pieces, and an ensemble needs the same ones
    if [ ! -f "$run/tokenizer/src.model" ]; then
      mkdir -p "$run"
      cp -r "$first/tokenizer" "$run/tokenizer"
    fi
  fi
  step "seed $seed -> $run"
  RUN_DIR=$run "$here/run.sh" "$src" "$tgt" full --set train.seed="$seed"
done

ens=$runs/multi30k-$src-$tgt-full-ensemble
mkdir -p "$ens"
data=$first/data
translate=("$nmt" translate "$first/best.pt" --ensemble "${members[1]}/best.pt"
  --ensemble "${members[2]}/best.pt" --beam-size 5 --workers "$(nproc)" --threads 1 -q)

# the length penalty is chosen on val, never on test
read -r -a penalties <<< "${LENGTH_PENALTIES:-0.6 0.8 1.0 1.2 1.4}"
if [ ! -f "$ens/length_penalty" ]; then
  step "length penalty on val: ${penalties[*]}"
  best=""; best_bleu=-1
  for alpha in "${penalties[@]}"; do
    [ -f "$ens/val.hyp.$alpha.$tgt" ] || "${translate[@]}" "$data/val.$src" \
      --length-penalty "$alpha" -o "$ens/val.hyp.$alpha.$tgt"
    bleu=$("$nmt" score --hyp "$ens/val.hyp.$alpha.$tgt" --ref "$data/val.$tgt" --metrics bleu \
      | sed -E 's/^[^=]* = ([0-9.]+) .*/\1/')
    echo "val BLEU $bleu with length penalty $alpha" >&2
    # the best val BLEU; a tie goes to the penalty listed first
    if awk -v a="$bleu" -v b="$best_bleu" 'BEGIN { exit !(a > b) }'; then
      best=$alpha; best_bleu=$bleu
    fi
  done
  echo "$best" > "$ens/length_penalty"
fi
alpha=$(cat "$ens/length_penalty")

step "ensemble beam-5 translation of test_2016_flickr (length penalty $alpha)"
[ -f "$ens/test.hyp.$tgt" ] || "${translate[@]}" "$data/test_2016_flickr.$src" \
  --length-penalty "$alpha" -o "$ens/test.hyp.$tgt"

step "scoring, and paired significance against the seed-1 model"
ref=$data/test_2016_flickr.$tgt
"$nmt" score --hyp "$ens/test.hyp.$tgt" --ref "$ref" | tee "$ens/test.score.txt"
"$nmt" score --hyp "$ens/test.hyp.$tgt" --ref "$ref" --json > "$ens/test.score.json"
# training minutes: the three runs' together
"$python" "$here/results.py" "$ens" "$src" "$tgt" full-ensemble "$alpha" \
  "best.pt of seeds 1, 2, 3" "${members[@]/%//log.jsonl}"
for paired in bs ar; do
  "$nmt" score --hyp "$ens/test.hyp.$tgt" --baseline "$first/test.hyp.$tgt" --ref "$ref" \
    --paired "$paired" | tee "$ens/test.paired-$paired.txt"
done
step "done in $(( $(date +%s) - start )) s"
