#!/usr/bin/env bash
# Multi30k from raw text to a sacreBLEU score: data, sentencepiece, training, beam-5
# decoding of test_2016_flickr, BLEU and chrF with signatures in RUN_DIR/results.json.
#
# usage: recipes/multi30k/run.sh [SRC] [TGT] [CONFIG] [--set section.key=value ...]
#   SRC/TGT: de en | en de | fr en
#   CONFIG: small | full | transformer (recipes/multi30k/CONFIG.yaml)
#   defaults: de en small; --set options go to `nmt train`
# env:   LENGTH_PENALTIES  GNMT alphas tried on val, the best BLEU decodes test (default: one
#                       value, 1.0, for small; 0.6 to 1.4 for full; 0.6 to 2.0 for transformer)
#        MULTI30K_DIR   folder with {train,val,test_2016_flickr}.{de,en,fr}; when unset the
#                       de/en data comes from the Hugging Face hub (bentrevett/multi30k)
#        RUN_DIR        default runs/multi30k-SRC-TGT-CONFIG (relative to the repo root)
#        NMT            the nmt command (default: nmt on PATH, else .venv/bin/nmt)
#        AVERAGE_BEST   N: also average the run's N best checkpoints (train.keep_best) into
#                       average.pt, and decode test with whichever of best.pt and average.pt
#                       scores higher on val (default 5 for transformer, 0: off, otherwise)
# Restartable: finished steps are skipped, and an interrupted training resumes from last.pt.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
src=${1:-de}; tgt=${2:-en}; config=${3:-small}
extra=("${@:4}")
run=${RUN_DIR:-$root/runs/multi30k-$src-$tgt-$config}
nmt=${NMT:-$(command -v nmt || echo "$root/.venv/bin/nmt")}
python=$(dirname "$nmt")/python
[ -x "$python" ] || python=python3
step() { printf '\n[%s] %s\n' "$(date +%T)" "$*" >&2; }
[ -f "$here/$config.yaml" ] || { echo "no config $here/$config.yaml (small, full or transformer)" >&2; exit 2; }
mkdir -p "$run/data"
start=$(date +%s)

step "data -> $run/data"
if [ -n "${MULTI30K_DIR:-}" ]; then
  for split in train val test_2016_flickr; do
    for lang in "$src" "$tgt"; do
      [ -f "$MULTI30K_DIR/$split.$lang" ] || { echo "missing $MULTI30K_DIR/$split.$lang" >&2; exit 2; }
      ln -sf "$(realpath "$MULTI30K_DIR/$split.$lang")" "$run/data/$split.$lang"
    done
  done
elif [ ! -f "$run/data/test_2016_flickr.$tgt" ]; then
  # the hub copy has English and German only
  "$python" - "$run/data" "$src" "$tgt" <<'PY'
import sys
out, src, tgt = sys.argv[1:]
if {src, tgt} != {"de", "en"}:
    sys.exit(f"the hub copy of Multi30k has de and en only: set MULTI30K_DIR for {src}-{tgt}")
from datasets import load_dataset
try:
    ds = load_dataset("bentrevett/multi30k")
except Exception as e:  # offline: ConnectionError, OfflineModeIsEnabled, ...
    sys.exit(f"cannot download Multi30k ({type(e).__name__}); set MULTI30K_DIR to a local copy")
for split, name in [("train", "train"), ("validation", "val"), ("test", "test_2016_flickr")]:
    for lang in (src, tgt):
        with open(f"{out}/{name}.{lang}", "w", encoding="utf-8") as f:
            f.writelines(s.strip() + "\n" for s in ds[split][lang])
PY
fi

step "sentencepiece -> $run/tokenizer"
[ -f "$run/tokenizer/src.model" ] || "$nmt" tokenizer train \
  --src "$run/data/train.$src" --tgt "$run/data/train.$tgt" -o "$run/tokenizer" --vocab-size 8000

step "training ($config) -> $run"
if [ ! -f "$run/train.json" ]; then
  # continue an interrupted run; one killed before its first checkpoint starts over
  resume=(--overwrite)
  [ -f "$run/last.pt" ] && resume=(--resume "$run/last.pt")
  "$nmt" train --config "$here/$config.yaml" "${resume[@]}" \
    --set data.train_src="$run/data/train.$src" --set data.train_tgt="$run/data/train.$tgt" \
    --set data.valid_src="$run/data/val.$src" --set data.valid_tgt="$run/data/val.$tgt" \
    --set data.tokenizer="$run/tokenizer" --set train.run_dir="$run" "${extra[@]}" \
    > "$run/train.json.tmp"
  mv "$run/train.json.tmp" "$run/train.json"
fi

# the checkpoints val chooses from: best.pt, and the mean of the best N for a Transformer
case $config in transformer) average=${AVERAGE_BEST:-5} ;; *) average=${AVERAGE_BEST:-0} ;; esac
checkpoints=(best)
if [ "$average" -gt 0 ]; then
  [ -f "$run/average.pt" ] || "$nmt" average "$run" --best "$average" -o "$run/average.pt"
  checkpoints+=(average)
fi

# one process a core, each on one thread: faster than one process on all of them
translate=("$nmt" translate --beam-size 5 --workers "$(nproc)" --threads 1 -q)

# the length penalty (and the checkpoint) are chosen on val, never on test
case $config in
  full) default_penalties="0.6 0.8 1.0 1.2 1.4" ;;
  transformer) default_penalties="0.6 0.8 1.0 1.2 1.4 1.6 1.8 2.0" ;;
  *) default_penalties="1.0" ;;
esac
read -r -a penalties <<< "${LENGTH_PENALTIES:-$default_penalties}"
if [ ! -f "$run/length_penalty" ]; then
  if [ "${#penalties[@]}" -eq 1 ] && [ "${#checkpoints[@]}" -eq 1 ]; then
    echo "${penalties[0]}" > "$run/length_penalty"
    echo best > "$run/checkpoint"
  else
    step "checkpoint (${checkpoints[*]}) and length penalty (${penalties[*]}) on val"
    for ckpt in "${checkpoints[@]}"; do
      # best.pt's files keep the names they had before average.pt was a candidate
      tag=$([ "$ckpt" = best ] && echo "" || echo "$ckpt.")
      for alpha in "${penalties[@]}"; do
        [ -f "$run/val.hyp.$tag$alpha.$tgt" ] || "${translate[@]}" "$run/$ckpt.pt" \
          "$run/data/val.$src" --length-penalty "$alpha" -o "$run/val.hyp.$tag$alpha.$tgt"
        "$nmt" score --hyp "$run/val.hyp.$tag$alpha.$tgt" --ref "$run/data/val.$tgt" --json \
          > "$run/val.score.$tag$alpha.json"
      done
    done
    # the best val BLEU; a tie goes to the checkpoint, then the penalty, listed first
    "$python" - "$run" "${checkpoints[*]}" "${penalties[@]}" > "$run/choice.tmp" <<'PY'
import json, sys
run, checkpoints, *alphas = sys.argv[1:]
bleu = {}
for ckpt in checkpoints.split():
    tag = "" if ckpt == "best" else f"{ckpt}."
    for a in alphas:
        scores = json.load(open(f"{run}/val.score.{tag}{a}.json"))
        bleu[ckpt, a] = next(s["score"] for s in scores if s["name"] == "BLEU")
        print(f"val BLEU {bleu[ckpt, a]:.2f}: {ckpt}.pt, length penalty {a}", file=sys.stderr)
print(*max(bleu, key=lambda k: bleu[k]))
PY
    read -r ckpt alpha < "$run/choice.tmp"
    echo "$ckpt" > "$run/checkpoint"
    echo "$alpha" > "$run/length_penalty"
    rm "$run/choice.tmp"
  fi
fi
alpha=$(cat "$run/length_penalty")
ckpt=$(cat "$run/checkpoint" 2>/dev/null || echo best)

step "beam-5 translation of test_2016_flickr with $ckpt.pt (length penalty $alpha)"
[ -f "$run/test.hyp.$tgt" ] || "${translate[@]}" "$run/$ckpt.pt" "$run/data/test_2016_flickr.$src" \
  --length-penalty "$alpha" -o "$run/test.hyp.$tgt"

step "scoring"
"$nmt" score --hyp "$run/test.hyp.$tgt" --ref "$run/data/test_2016_flickr.$tgt" | tee "$run/test.score.txt"
"$nmt" score --hyp "$run/test.hyp.$tgt" --ref "$run/data/test_2016_flickr.$tgt" --json > "$run/test.score.json"
"$python" "$here/results.py" "$run" "$src" "$tgt" "$config" "$alpha" "$ckpt.pt" "$run/log.jsonl"
step "done in $(( $(date +%s) - start )) s"
