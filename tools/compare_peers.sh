#!/usr/bin/env bash
# JoeyNMT and nmt on Multi30k de->en, the same wall-clock training budget each, one after the
# other in one run; prints both test BLEU scores. ARCH rnn: JoeyNMT's reference RNN against
# nmt's `small` recipe; ARCH transformer: JoeyNMT's Transformer with the sizes and schedule of
# recipes/multi30k/transformer.yaml (written by tools/joey.py) against that recipe.
# JoeyNMT goes into a venv of its own under .bench-cache/ (nothing of it enters the repo).
#
# usage: MULTI30K_DIR=../shared/data/multi30k tools/compare_peers.sh [MINUTES] [ARCH]
#        (defaults: 35 minutes for rnn, 60 for transformer; ARCH rnn)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
arch=${2:-rnn}
case $arch in
  rnn) recipe=small; default_minutes=35 ;;
  transformer) recipe=transformer; default_minutes=60 ;;
  *) echo "ARCH must be rnn or transformer, got $arch" >&2; exit 2 ;;
esac
minutes=${1:-$default_minutes}
data=${MULTI30K_DIR:?set MULTI30K_DIR to the Multi30k folder}
cache=$root/.bench-cache/compare-$arch-$minutes
[ "$arch" = rnn ] && cache=$root/.bench-cache/compare-$minutes  # where earlier runs left it
py=$root/.venv/bin/python
mkdir -p "$cache"
say() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }

say "JoeyNMT ($arch): $minutes minutes of training"
"$py" - "$root/tools" "$cache/joey" "$data" "$minutes" "$arch" <<'PY'
import json, subprocess, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import joey
cache, data, minutes, arch = Path(sys.argv[2]), Path(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
joey.ensure_joey(cache)
joey.ensure_spm(cache, data)
cfg = joey.write_config(cache, data, arch=arch)
py = joey.venv_python(cache)
if not (cache / "model" / "best.ckpt").exists():
    with open(cache / "train.log", "wb") as log:
        try:
            subprocess.run([str(py), "-m", "joeynmt", "train", str(cfg), "--skip-test"],
                           stdout=log, stderr=log, timeout=minutes * 60,
                           env=joey._thread_env(2))
        except subprocess.TimeoutExpired:
            pass  # the budget is spent; Joey keeps its best checkpoint by validation BLEU
if not (cache / "model" / "best.ckpt").exists():
    sys.exit(f"JoeyNMT saved no checkpoint in {minutes:g} minutes (it saves at its validations, "
             "every 300 updates, about 12 minutes here): give a longer budget")
src = data / "test_2016_flickr.de"
r = joey.translate(cache, data, src, 5, cache / "test.beam5.en", threads=2)
s = joey.sacrebleu(cache, cache / "test.beam5.en", data / "test_2016_flickr.en")
json.dump({"bleu": s["bleu"], "chrf": s["chrf"]}, open(cache / "result.json", "w"))
PY

say "nmt $recipe: $minutes minutes of training"
RUN_DIR=$cache/nmt MULTI30K_DIR=$data NMT=$root/.venv/bin/nmt \
  bash "$root/recipes/multi30k/run.sh" de en "$recipe" --set "train.max_minutes=$minutes" >/dev/null

"$py" - "$cache" "$minutes" "$arch" <<'PY'
import json, sys
cache, minutes, arch = sys.argv[1:4]
j = json.load(open(f"{cache}/joey/result.json"))
n = json.load(open(f"{cache}/nmt/results.json"))
print(f"test_2016_flickr de->en, {arch}, beam 5, {minutes} min of training on this machine")
print(f"joeynmt  BLEU {j['bleu']:5.2f}  chrF {j['chrf']:5.2f}")
print(f"nmt      BLEU {n['bleu']:5.2f}  chrF {n['chrf']:5.2f}")
PY
