#!/usr/bin/env bash
# The lectures' claims about recurrent networks, tested on short real runs: vanishing gradients
# (Elman vs GRU vs LSTM), gradient clipping, attention vs sentence length, reversing the source,
# teacher forcing vs free running. Eight runs of 2,000 updates (8-12 minutes) on 2 CPU cores
# (recipes/lectures/*.yaml), then the inspection tools, then RESULTS.md with the figures: each
# claim, the figure that tests it and whether these runs support it, decided from the numbers
# (recipes/lectures/report.py).
#
# First the designed experiments: synthetic tasks sized so that each claim can show in
# minutes on one core (recipes/lectures/synthetic.py, about 40 minutes); then, with
# MULTI30K_DIR, the real-data check.
#
# usage: recipes/lectures/run.sh [RUN_ROOT]
#   RUN_ROOT  default runs/lectures (relative to the repo root)
# env:   MULTI30K_DIR     folder with {train,val,test_2016_flickr}.{de,en}; without it (and
#                         without LECTURES_STEPS) only the designed experiments run, and
#                         RESULTS.md keeps its Multi30k part as last written
#        LECTURES_STEPS   a smoke test: the built-in toy corpus (en->pt), tiny models and this
#                         many updates a run instead of 2,000; RESULTS.md goes to RUN_ROOT
#        RESULTS_DIR      where RESULTS.md and its figures go (default: this folder; with
#                         LECTURES_STEPS: RUN_ROOT)
#        NMT              the nmt command (default: nmt on PATH, else .venv/bin/nmt)
# Restartable: finished runs and outputs are skipped; an interrupted training resumes.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-$root/runs/lectures}
nmt=${NMT:-$(command -v nmt || echo "$root/.venv/bin/nmt")}
python=${PYTHON:-$(dirname "$nmt")/python}
[ -x "$python" ] || python=python3
step() { printf '\n[%s] %s\n' "$(date +%T)" "$*" >&2; }
runs=(elman-attention gru-attention lstm-attention elman-plain gru-plain lstm-plain
      elman-plain-noclip lstm-plain-reversed)
mkdir -p "$out/data"
start=$(date +%s)

step "designed experiments (synthetic tasks) -> $out/synthetic.json"
tiny=()
[ -z "${LECTURES_STEPS:-}" ] || tiny=(--tiny)
"$python" "$here/synthetic.py" "$out" "${tiny[@]}"
if [ -z "${MULTI30K_DIR:-}" ] && [ -z "${LECTURES_STEPS:-}" ]; then
  step "RESULTS.md -> ${RESULTS_DIR:-$here} (no MULTI30K_DIR: its Multi30k part is kept)"
  "$python" "$here/report.py" "$out" "${RESULTS_DIR:-$here}"
  exit 0
fi

if [ -n "${LECTURES_STEPS:-}" ]; then
  src=en; tgt=pt; valid=valid; test=test; vocab=400; lines=60
  results=${RESULTS_DIR:-$out}
  small=(--set train.max_steps="$LECTURES_STEPS" --set train.max_minutes=0
         --set train.valid_every="$LECTURES_STEPS" --set train.log_every=5
         --set train.batch_tokens=1500 --set data.max_len=30 --set model.embed_dim=16
         --set model.enc_hidden_size=16 --set model.hidden_size=16)
  step "toy corpus -> $out/data"
  [ -f "$out/data/test.$tgt" ] || "$nmt" data toy -o "$out/data" --size 1000 --seed 1
else
  src=de; tgt=en; valid=val; test=test_2016_flickr; vocab=8000; lines=1000
  results=${RESULTS_DIR:-$here}
  small=()
  for split in train val test_2016_flickr; do
    for lang in de en; do
      [ -f "$MULTI30K_DIR/$split.$lang" ] || { echo "missing $MULTI30K_DIR/$split.$lang" >&2; exit 2; }
      ln -sf "$(realpath "$MULTI30K_DIR/$split.$lang")" "$out/data/$split.$lang"
    done
  done
fi
data=$out/data

step "one sentencepiece model for every run -> $out/tokenizer"
[ -f "$out/tokenizer/src.model" ] || "$nmt" tokenizer train \
  --src "$data/train.$src" --tgt "$data/train.$tgt" -o "$out/tokenizer" --vocab-size "$vocab"

for name in "${runs[@]}"; do
  run=$out/$name
  if [ ! -f "$run/train.json" ]; then
    step "training $name -> $run"
    resume=(--overwrite)
    [ -f "$run/last.pt" ] && resume=(--resume "$run/last.pt")
    "$nmt" train --config "$here/$name.yaml" "${resume[@]}" -q \
      --set data.train_src="$data/train.$src" --set data.train_tgt="$data/train.$tgt" \
      --set data.valid_src="$data/$valid.$src" --set data.valid_tgt="$data/$valid.$tgt" \
      --set data.tokenizer="$out/tokenizer" --set train.run_dir="$run" "${small[@]}" \
      > "$run.train.json.tmp"
    mv "$run.train.json.tmp" "$run/train.json"
  fi
  step "$name: greedy test translation, score, gradients by position"
  [ -f "$run/test.hyp" ] || "$nmt" translate "$run/best.pt" "$data/$test.$src" \
    --beam-size 1 -q -o "$run/test.hyp"
  [ -f "$run/test.score.json" ] || "$nmt" score --hyp "$run/test.hyp" \
    --ref "$data/$test.$tgt" --metrics bleu,chrf --json > "$run/test.score.json"
  [ -f "$run/gradients.json" ] || "$nmt" inspect gradients "$run/best.pt" \
    --src "$data/$test.$src" --tgt "$data/$test.$tgt" --lines "$lines" \
    -o "$run/gradients.png" --json > "$run/gradients.json"
done

step "teacher forcing vs free running (gru-attention)"
[ -f "$out/gru-attention/exposure.json" ] || "$nmt" inspect exposure "$out/gru-attention/best.pt" \
  --src "$data/$test.$src" --tgt "$data/$test.$tgt" --lines "$lines" \
  -o "$out/gru-attention/exposure.png" --json > "$out/gru-attention/exposure.json"

step "scores by source length, with and without attention"
hyps=()
for name in "${runs[@]:0:6}"; do
  hyps+=(--hyp "$out/$name/test.hyp")
done
"$nmt" score --by-length "$data/$test.$src" "${hyps[@]}" --ref "$data/$test.$tgt" \
  --plot "$out/by-length.png" --json > "$out/by-length.json"

step "training curves: gradient norm with and without clipping"
"$nmt" plot "$out/elman-plain" "$out/elman-plain-noclip" -o "$out/clipping.png" > /dev/null
# the runs the gated-cells verdict reads: with attention
"$nmt" plot "$out/elman-attention" "$out/gru-attention" "$out/lstm-attention" \
  -o "$out/cells.png" > /dev/null

step "RESULTS.md -> $results"
"$python" "$here/report.py" "$out" "$results"
step "done in $(( $(date +%s) - start )) s"
