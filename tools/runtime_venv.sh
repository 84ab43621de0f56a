#!/usr/bin/env bash
# A runtime-only install, checked end to end: a fresh venv with `pip install .` (no torch, no
# extras) translates an exported model byte for byte as torch translates its checkpoint.
# usage: tools/runtime_venv.sh [WORK_DIR]     (after make install; default build/runtime-check)
# Prints the two venvs' sizes on disk; exits non-zero on any difference.
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-build/runtime-check}
nmt=.venv/bin/nmt
step() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
rm -rf "$work"
mkdir -p "$work"

step "a small demo model (torch venv)"
$nmt data toy -o "$work/data" --size 3000 --seed 1
$nmt train --config recipes/toy/config.yaml --set train.run_dir="$work/run" \
  --set data.train_src="$work/data/train.en" --set data.train_tgt="$work/data/train.pt" \
  --set data.valid_src="$work/data/valid.en" --set data.valid_tgt="$work/data/valid.pt" \
  --set train.max_steps=120 --set train.valid_every=120 --set train.threads=1 -q > /dev/null
$nmt export "$work/run/best.pt" --format onnx -o "$work/export"

step "a venv with the runtime only"
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q . 2>&1 | grep -v "is ignored" || true
if "$work/venv/bin/python" -c "import torch" 2>/dev/null; then
  echo "runtime venv: torch is importable, it should not be" >&2
  exit 1
fi

step "translating with both"
"$work/venv/bin/nmt" translate "$work/export" "$work/data/test.en" -o "$work/runtime.txt" -b 5 -q
$nmt translate "$work/run/best.pt" "$work/data/test.en" -o "$work/torch.txt" -b 5 -q
cmp "$work/runtime.txt" "$work/torch.txt"
lines=$(wc -l < "$work/runtime.txt")
runtime_mb=$(du -sm "$work/venv" | cut -f1)
torch_mb=$(du -sm .venv | cut -f1)
echo "runtime venv: ${runtime_mb} MB (torch venv with dev tools: ${torch_mb} MB); ${lines} lines translated identically without torch"
