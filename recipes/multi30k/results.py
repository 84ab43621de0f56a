"""One results.json row of a Multi30k recipe: the test scores (`nmt score --json` output), the
training minutes (the last `time` of each run's log.jsonl, summed over an ensemble's members),
the length penalty and checkpoint chosen on val, and the machine.

usage: results.py OUT_DIR SRC TGT CONFIG LENGTH_PENALTY CHECKPOINT LOG [LOG ...]
reads OUT_DIR/test.score.json, writes OUT_DIR/results.json and prints it on one line
"""

import json
import os
import platform
import sys
from pathlib import Path

out, src, tgt, config, alpha, checkpoint, *logs = sys.argv[1:]
scores = {s["name"]: s for s in json.loads(Path(out, "test.score.json").read_text("utf-8"))}
minutes = 0.0
for path in logs:
    records = [json.loads(x) for x in Path(path).read_text("utf-8").splitlines() if x.strip()]
    minutes += max((r.get("time", 0) for r in records), default=0) / 60
cpuinfo = Path("/proc/cpuinfo")  # Linux only; elsewhere platform.processor()
lines = cpuinfo.read_text("utf-8").splitlines() if cpuinfo.exists() else []
cpu = next(
    (ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")),
    platform.processor(),
)
result = {
    "src": src,
    "tgt": tgt,
    "config": config,
    "bleu": scores["BLEU"]["score"],
    "chrf": scores["chrF2"]["score"],
    "signature": scores["BLEU"]["signature"],
    "train_minutes": round(minutes, 1),
    "hardware": f"{os.cpu_count()} CPU cores, {cpu}",
    "length_penalty": float(alpha),
    "checkpoint": checkpoint,
}
Path(out, "results.json").write_text(json.dumps(result, indent=2), "utf-8")
print(json.dumps(result))
