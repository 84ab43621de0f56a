"""The runtime without torch against torch and CTranslate2, in one run: the same weights, the
same threads, each translation timed as a whole process as a user runs it, on the 1,000
Multi30k test sentences (de->en), greedy and beam 5, float32 and int8.

- torch: `nmt translate CKPT` (--quantize int8 for int8), one process of --threads threads;
- runtime: `nmt translate DIR` on the folder `nmt export --format onnx` made (--quantize int8:
  onnxruntime's dynamic quantization), one process of --threads threads;
- CTranslate2 (Transformer only): the folder of `nmt export --format ctranslate2`, translated
  by nmt.runs.ctranslate2.translate_ctranslate2 in a process of its own, intra_threads
  --threads.
Start-up: the same commands on one sentence (median of --repeat). Parity: lines identical to
torch's output of the same precision, and BLEU of each. Run it with nothing else busy.

usage: MULTI30K_DIR=../shared/data/multi30k python tools/bench_runtime.py \
         --rnn RNN_CKPT --transformer TRANSFORMER_CKPT [--threads 2] [--lines 1000]
         [--repeat 5] [--cache .bench-cache/runtime] [--runtime-python PY]
--runtime-python: the interpreter of a venv without torch (tools/runtime_venv.sh makes one) to
run the runtime's commands; by default this one (which imports no torch for an export either).
Last line: `start-up runtime/torch: X.XXx; throughput runtime/torch: X.XXx (greedy) X.XXx (beam
5); runtime/ctranslate2: X.XXx` (throughput ratios: torch int8 over runtime int8, mean over
the two architectures; ctranslate2: its Transformer int8 beam 5 time over the runtime's).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(cmd: list[str], threads: int, stdout: Path | None = None) -> float:
    """Wall seconds of one whole process; fails loudly."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    out = stdout.open("wb") if stdout else subprocess.DEVNULL
    t0 = time.perf_counter()
    done = subprocess.run(cmd, stdout=out, stderr=subprocess.PIPE, env=env)
    seconds = time.perf_counter() - t0
    if stdout:
        out.close()  # type: ignore[union-attr]
    if done.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{done.stderr.decode()[-2000:]}")
    return seconds


def nmt_cmd(python: str) -> list[str]:
    return [python, "-m", "nmt"]


def translate_cmd(
    python: str, model: Path, src: Path, out: Path, beam: int, threads: int, quantize: str = "none"
) -> list[str]:
    cmd = nmt_cmd(python) + ["translate", str(model), str(src), "-o", str(out), "-q"]
    cmd += ["--beam-size", str(beam), "--workers", "1", "--threads", str(threads)]
    return cmd + (["--quantize", quantize] if quantize != "none" else [])


CT2_SCRIPT = """
import sys
from nmt.runtime.ctranslate2 import translate_ctranslate2
from nmt.search_options import SearchOptions
folder, src, out, beam, threads = sys.argv[1:6]
lines = open(src, encoding="utf-8").read().splitlines()
options = SearchOptions(beam_size=int(beam))
texts = translate_ctranslate2(folder, lines, options, threads=int(threads))
open(out, "w", encoding="utf-8").write("".join(t + "\\n" for t in texts))
"""


def bleu(hyp: Path, ref: Path) -> float:
    from nmt.metrics import score

    return score(hyp.read_text().splitlines(), ref.read_text().splitlines(), ("bleu",))[0].score


def same_lines(a: Path, b: Path) -> float:
    x, y = a.read_text().splitlines(), b.read_text().splitlines()
    return 100.0 * sum(p == q for p, q in zip(x, y)) / max(1, len(x))


def export(ckpt: Path, out: Path, fmt: str, quantize: str) -> Path:
    if not (out / "model.json").is_file():
        cmd = nmt_cmd(sys.executable) + ["export", str(ckpt), "--format", fmt, "-o", str(out)]
        run(cmd + ["--quantize", quantize], 1)
    return out


def venv_mb(python: str) -> int:
    prefix = subprocess.run(
        [python, "-c", "import sys; print(sys.prefix)"], capture_output=True, text=True, check=True
    ).stdout.strip()
    return int(
        subprocess.run(
            ["du", "-sm", prefix], capture_output=True, text=True, check=True
        ).stdout.split()[0]
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rnn", type=Path, required=True)
    ap.add_argument("--transformer", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lines", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--cache", type=Path, default=REPO / ".bench-cache" / "runtime")
    ap.add_argument("--runtime-python", default=sys.executable)
    ap.add_argument("--no-ctranslate2", action="store_true")
    args = ap.parse_args()
    data = Path(os.environ.get("MULTI30K_DIR", REPO.parent / "shared" / "data" / "multi30k"))
    work = args.cache
    work.mkdir(parents=True, exist_ok=True)
    src, ref = work / "test.de", work / "test.en"
    for side, path in (("de", src), ("en", ref)):
        lines = (data / f"test_2016_flickr.{side}").read_text(encoding="utf-8").splitlines()
        path.write_text("".join(line + "\n" for line in lines[: args.lines]), encoding="utf-8")
    one = work / "one.de"
    one.write_text(src.read_text().splitlines()[0] + "\n")
    t, py, rt_py = args.threads, sys.executable, args.runtime_python
    models = {"rnn": args.rnn, "transformer": args.transformer}
    rows, ratios = [], {"greedy": [], "beam 5": []}
    startup: dict[str, list[float]] = {"torch": [], "runtime": []}
    ct2_ratio = None
    for arch, ckpt in models.items():
        exports = {q: export(ckpt, work / f"{arch}-onnx-{q}", "onnx", q) for q in ("none", "int8")}
        ct2 = {}
        if arch == "transformer" and not args.no_ctranslate2:
            ct2 = {
                q: export(ckpt, work / f"{arch}-ct2-{q}", "ctranslate2", q)
                for q in ("none", "int8")
            }
        for _ in range(args.repeat):  # start-up: one sentence, float32 greedy, alternating
            startup["torch"].append(run(translate_cmd(py, ckpt, one, work / "o.txt", 1, t), t))
            startup["runtime"].append(
                run(translate_cmd(rt_py, exports["none"], one, work / "o.txt", 1, t), t)
            )
        for quantize in ("none", "int8"):
            prec = "float32" if quantize == "none" else "int8"
            for beam in (1, 5):
                name = "greedy" if beam == 1 else "beam 5"
                tag = f"{arch}-{prec}-b{beam}"
                outs = {k: work / f"{tag}.{k}.txt" for k in ("torch", "runtime", "ctranslate2")}
                secs = {
                    "torch": run(translate_cmd(py, ckpt, src, outs["torch"], beam, t, quantize), t),
                    "runtime": run(
                        translate_cmd(rt_py, exports[quantize], src, outs["runtime"], beam, t), t
                    ),
                }
                if ct2:
                    cmd = [
                        py,
                        "-c",
                        CT2_SCRIPT,
                        str(ct2[quantize]),
                        str(src),
                        str(outs["ctranslate2"]),
                        str(beam),
                        str(t),
                    ]
                    secs["ctranslate2"] = run(cmd, t)
                for k, s in secs.items():
                    rows.append(
                        {
                            "model": arch,
                            "precision": prec,
                            "search": name,
                            "engine": k,
                            "seconds": round(s, 2),
                            "sent/s": round(args.lines / s, 1),
                            "bleu": round(bleu(outs[k], ref), 2),
                            "same as torch %": round(same_lines(outs[k], outs["torch"]), 1),
                        }
                    )
                if quantize == "int8":
                    ratios[name].append(secs["torch"] / secs["runtime"])
                    if "ctranslate2" in secs and beam == 5:
                        ct2_ratio = secs["ctranslate2"] / secs["runtime"]
                print(json.dumps(rows[-len(secs) :]), file=sys.stderr, flush=True)
    print(
        f"{'model':12}{'precision':10}{'search':8}{'engine':13}{'seconds':>8}{'sent/s':>8}"
        f"{'BLEU':>7}{'same%':>7}"
    )
    for r in rows:
        print(
            f"{r['model']:12}{r['precision']:10}{r['search']:8}{r['engine']:13}"
            f"{r['seconds']:8.2f}{r['sent/s']:8.1f}{r['bleu']:7.2f}{r['same as torch %']:7.1f}"
        )
    med = {k: statistics.median(v) for k, v in startup.items()}
    print(
        f"start-up (one sentence, whole process, median of {len(startup['torch'])}): torch "
        f"{med['torch']:.2f} s, runtime {med['runtime']:.2f} s"
    )
    print(f"venv on disk: runtime {venv_mb(rt_py)} MB, torch {venv_mb(py)} MB")
    greedy = statistics.mean(ratios["greedy"])
    beam5 = statistics.mean(ratios["beam 5"])
    ct2_text = f"{ct2_ratio:.2f}x" if ct2_ratio is not None else "n/a"
    print(
        f"start-up runtime/torch: {med['torch'] / med['runtime']:.2f}x; throughput "
        f"runtime/torch: {greedy:.2f}x (greedy) {beam5:.2f}x (beam 5); runtime/ctranslate2: "
        f"{ct2_text}"
    )


if __name__ == "__main__":
    main()
