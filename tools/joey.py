"""Drive the peer toolkit JoeyNMT 2.3.0 for nmt's side-by-side benchmarks (stdlib only).

JoeyNMT is never vendored: `ensure_joey` pip-installs it into its own venv under a cache dir
(`.bench-cache/joey` by default, gitignored), and everything else runs it as a subprocess of that
venv's python, the way /work/shared/peers/run_joey.sh does:

    ensure_joey(cache)            -> cache/venv/bin/python  (torch 2.13.0+cpu, joeynmt 2.3.0)
    ensure_spm(cache, data)       -> cache/spm              (joint unigram spm, 8k, as train_spm.py)
    write_config(cache, data,...) -> cache/config.yaml      (joey_rnn_m30k_deen.yaml, paths filled;
                                                             arch="transformer": its Transformer)
    train(cache, data, steps)     -> {"steps", "seconds", "tokens_per_s", "peak_rss_mb", ...}
    translate(cache, data, src, beam, out) -> {"seconds", "sentences", "sentences_per_s", "out"}

Stopping after N steps: Joey 2.3.0 has an undocumented `training.updates` key (read into
`TrainConfig.max_updates` in joeynmt/config.py; `TrainManager.train_and_validate` breaks out of
the batch and epoch loops once `stats.steps >= max_updates`, logs "Training ended since maximum
num. of updates N was reached." and saves the current weights as `N.ckpt` / `latest.ckpt`).
`write_config(max_steps=N)` sets it. Training is run with `--skip-test`: otherwise Joey decodes
dev and test with beam 5 after training (minutes) and crashes when no validation ran, since it
loads `best.ckpt`, which only validation writes.

Joey requires `validation_freq % logging_freq == 0` (and logging_freq <= validation_freq). The
reference logs every 50 steps; validation_freq is kept as given and logging_freq is the largest
divisor of it that is <= 50 and <= the number of steps (so a short run still gets a "Tokens per
Sec" reading). `validation_freq=0` disables validation (then translation uses
`latest.ckpt` instead of `best.ckpt`).

CLI: python tools/joey.py [--cache DIR] [--steps N] [--translate-beam K ...] [--head N]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

JOEY_VERSION = "2.3.0"
TORCH_VERSION = "2.13.0"
SPM_VERSION = "0.2.0"  # Joey 2.3.0 calls SetVocabulary, gone in sentencepiece 0.2.1+
# Installed after torch. importlib_metadata: joeynmt imports it but does not declare it.
JOEY_PACKAGES = [f"joeynmt=={JOEY_VERSION}", "importlib_metadata", f"sentencepiece=={SPM_VERSION}"]

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("NMT_SHARED", REPO.parent / "shared"))
PEERS = SHARED / "peers"
DEFAULT_DATA = Path(os.environ.get("MULTI30K_DIR", SHARED / "data" / "multi30k"))
DEFAULT_CACHE = REPO / ".bench-cache" / "joey"
TEMPLATE = PEERS / "joey_rnn_m30k_deen.yaml"
TRANSFORMER_RECIPE = REPO / "recipes" / "multi30k" / "transformer.yaml"
ARCHS = ("rnn", "transformer")
REFERENCE_LOGGING_FREQ = 50
NEVER = 10**9  # validation_freq that is never reached

_READY = ".nmt-joey-ready"
_TIME_BIN = "/usr/bin/time"


def venv_python(cache_dir: Path) -> Path:
    return Path(cache_dir) / "venv" / "bin" / "python"


def _run(cmd: list[str], **kw: object) -> None:
    subprocess.run(cmd, check=True, **kw)  # type: ignore[call-overload]


def ensure_joey(cache_dir: Path) -> Path:
    """Create cache_dir/venv with torch 2.13.0 (CPU), then JoeyNMT 2.3.0 and what it needs here.

    torch goes first and on its own: `pip install torch==2.13.0` takes the local CPU wheel, while
    letting joeynmt's dependency resolution pick torch could pull a multi-GB CUDA build. A marker
    file in the venv makes later calls a no-op. Returns the venv's python.
    """
    cache_dir = Path(cache_dir)
    venv = cache_dir / "venv"
    py = venv_python(cache_dir)
    marker = venv / _READY
    want = f"torch=={TORCH_VERSION} " + " ".join(JOEY_PACKAGES)
    if py.exists() and marker.exists() and marker.read_text().strip() == want:
        return py
    cache_dir.mkdir(parents=True, exist_ok=True)
    if not py.exists():
        # sys.executable may itself be a venv python: venv then builds on its base interpreter.
        _run([sys.executable, "-m", "venv", str(venv)])
    pip = [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    _run([*pip, f"torch=={TORCH_VERSION}"])
    _run([*pip, *JOEY_PACKAGES])
    # Fail here, not in the middle of a benchmark, if the stack does not import.
    _run([str(py), "-c", "import torch, sentencepiece, joeynmt.training, joeynmt.prediction"])
    marker.write_text(want + "\n")
    return py


_SPM_INLINE = """\
import sys
from pathlib import Path
import sentencepiece as spm
data, src, tgt, out = Path(sys.argv[1]), sys.argv[2], sys.argv[3], Path(sys.argv[4])
vocab = int(sys.argv[5])
out.mkdir(parents=True, exist_ok=True)
spm.SentencePieceTrainer.train(
    input=[str(data / f"train.{src}"), str(data / f"train.{tgt}")],
    model_prefix=str(out / "sp"), model_type="unigram", vocab_size=vocab,
    character_coverage=1.0, unk_id=0, pad_id=1, bos_id=2, eos_id=3,
    unk_piece="<unk>", pad_piece="<pad>", bos_piece="<s>", eos_piece="</s>",
    vocabulary_output_piece_score=False, num_threads=2,
)
"""


def ensure_spm(
    cache_dir: Path, data_dir: Path, src: str = "de", tgt: str = "en", vocab: int = 8000
) -> Path:
    """Joint sentencepiece model (cache_dir/spm/sp.model, sp.vocab) made by the peers'
    train_spm.py (unigram, ids unk 0 pad 1 bos 2 eos 3) with the joey venv python; an inline copy
    of its arguments is used if the script is not there. Skipped if already built with the same
    arguments. Returns the directory."""
    cache_dir, data_dir = Path(cache_dir), Path(data_dir)
    out = cache_dir / "spm"
    stamp = out / "args.json"
    args = {"data": str(data_dir.resolve()), "src": src, "tgt": tgt, "vocab": vocab}
    built = (out / "sp.model").exists() and (out / "sp.vocab").exists() and stamp.exists()
    if built and json.loads(stamp.read_text()) == args:
        return out
    py = ensure_joey(cache_dir)
    if out.exists():
        shutil.rmtree(out)
    script = PEERS / "train_spm.py"
    argv = [str(data_dir), src, tgt, str(out), str(vocab)]
    cmd = [str(py), str(script), *argv] if script.exists() else [str(py), "-c", _SPM_INLINE, *argv]
    log = cache_dir / "spm.log"
    with log.open("w") as f:
        _run(cmd, stdout=f, stderr=subprocess.STDOUT)
    stamp.write_text(json.dumps(args) + "\n")
    return out


def _set_key(text: str, section: str, key: str, value: str) -> str:
    """Set `key: value` in top-level YAML `section` of the template (4-space indented keys),
    replacing an existing line or inserting it right after the section header."""
    lines = text.splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.rstrip() == f"{section}:"), None)
    if start is None:
        raise ValueError(f"no top-level section {section!r} in the Joey config")
    end = next(
        (i for i in range(start + 1, len(lines)) if lines[i] and not lines[i][0].isspace()),
        len(lines),
    )
    pat = re.compile(rf"^    {re.escape(key)}:")
    new = f"    {key}: {value}"
    for i in range(start + 1, end):
        if pat.match(lines[i]):
            lines[i] = new
            break
    else:
        lines.insert(start + 1, new)
    return "\n".join(lines) + "\n"


def _recipe(path: Path) -> dict[str, dict[str, str]]:
    """The `section: {key: value}` pairs of one of nmt's flat YAML recipes (stdlib only: two
    levels of `key: value` lines, comments dropped; values stay strings)."""
    sections: dict[str, dict[str, str]] = {}
    current = None
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        key, _, value = line.strip().partition(":")
        if not line[0].isspace():
            current = sections.setdefault(key, {})
        elif current is not None:
            current[key] = value.strip()
    return sections


def _joey_stack(side: str, layers: str, m: dict[str, str]) -> str:
    """Joey's `encoder:` or `decoder:` block of a Transformer with the recipe's sizes."""
    return f"""\
    {side}:
        type: "transformer"
        num_layers: {layers}
        num_heads: {m["heads"]}
        embeddings:
            embedding_dim: {m["d_model"]}
            scale: True
            dropout: 0.0
        hidden_size: {m["d_model"]}
        ff_size: {m["ff_size"]}
        dropout: {m["dropout"]}
        layer_norm: "{m.get("norm", "pre")}"
"""


def transformer_template(rnn_text: str, recipe: Path = TRANSFORMER_RECIPE) -> str:
    """JoeyNMT's Transformer with the sizes and training settings of nmt's Multi30k recipe
    (recipes/multi30k/transformer.yaml), on the data, vocabulary and budget of the peers' RNN
    config `rnn_text`: its `model:` section is replaced and the training keys of the schedule
    set. Joey's `warmupinversesquareroot` is the same curve as nmt's noam: linear to
    `learning_rate` at `learning_rate_warmup` updates, then 1 / sqrt(step).

    Joey has one `dropout` a layer for all its dropout sites: it gets model.dropout (the
    recipe's residual dropout); shared source/target embeddings are `tied_embeddings`, the
    tied output layer `tied_softmax`."""
    r = _recipe(recipe)
    m, t = r["model"], r["train"]
    head, sep, _ = rnn_text.partition("\nmodel:\n")
    if not sep:
        raise ValueError("no top-level model section in the Joey config")
    text = (
        head
        + "\n"
        + f"""\
model:
    initializer: "xavier_uniform"
    bias_initializer: "zeros"
    init_gain: 1.0
    embed_initializer: "xavier_uniform"
    embed_init_gain: 1.0
    tied_embeddings: {m.get("share_embeddings", "false").capitalize()}
    tied_softmax: {m.get("tie_output", "true").capitalize()}
"""
        + _joey_stack("encoder", m["enc_layers"], m)
        + _joey_stack("decoder", m["dec_layers"], m)
    )
    text = text.replace('name: "m30k_deen_rnn"', 'name: "m30k_deen_transformer"')
    text = text.replace("reference RNN", "Transformer (tools/joey.py, from recipes/multi30k)")
    # the RNN's note on its scheduler does not apply to this one
    text = "".join(ln for ln in text.splitlines(True) if "plateau fails" not in ln)
    for key, value in [
        ("scheduling", '"warmupinversesquareroot"'),
        ("learning_rate", t["lr"]),
        ("learning_rate_warmup", t["warmup_steps"]),
        ("adam_betas", t.get("adam_betas", "[0.9, 0.999]")),
        ("label_smoothing", t.get("label_smoothing", "0.1")),
        ("clip_grad_norm", t.get("clip_norm", "1.0")),
        # Joey counts a batch as sentences x its longer side, nmt both sides: half as many
        # tokens make batches of as many sentences
        ("batch_size", str(int(t["batch_tokens"]) // 2)),
    ]:
        text = _set_key(text, "training", key, value)
    return text


def _freqs(max_steps: int | None, validation_freq: int) -> tuple[int, int]:
    """(logging_freq, validation_freq) satisfying Joey's check that logging_freq divides
    validation_freq: validation_freq is kept, logging_freq is the largest divisor of it that is
    at most 50 (the reference) and at most max_steps. validation_freq <= 0: never validate."""
    cap = max(1, min(REFERENCE_LOGGING_FREQ, max_steps or REFERENCE_LOGGING_FREQ))
    if validation_freq <= 0:
        return cap, math.ceil(NEVER / cap) * cap
    lf = max(d for d in range(1, min(cap, validation_freq) + 1) if validation_freq % d == 0)
    return lf, validation_freq


def write_config(
    cache_dir: Path,
    data_dir: Path,
    *,
    max_steps: int | None = None,
    validation_freq: int = 300,
    threads: int = 2,
    path: Path | None = None,
    arch: str = "rnn",
) -> Path:
    """Write cache_dir/config.yaml: the peers' joey_rnn_m30k_deen.yaml with model dir
    cache_dir/model, the data and cache_dir/spm paths filled in, `training.updates: max_steps`
    (Joey's stop-after-N-updates key) when given, and validation_freq (0 = never; see the module
    docstring for the logging_freq adjustment). Joey has no thread setting of its own: `threads`
    is applied through OMP_NUM_THREADS/MKL_NUM_THREADS by train()/translate() and is only
    recorded here as a comment. arch "transformer": `transformer_template` of the RNN config."""
    cache_dir, data_dir = Path(cache_dir).resolve(), Path(data_dir).resolve()
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}")
    text = TEMPLATE.read_text()
    if arch == "transformer":
        text = transformer_template(text)
    text = (
        text.replace("@MODEL_DIR@", str(cache_dir / "model"))
        .replace("@DATA@", str(data_dir))
        .replace("@SPM@", str(cache_dir / "spm"))
    )
    lf, vf = _freqs(max_steps, validation_freq)
    text = _set_key(text, "training", "validation_freq", str(vf))
    text = _set_key(text, "training", "logging_freq", str(lf))
    if max_steps is not None:
        text = _set_key(text, "training", "updates", str(int(max_steps)))
    header = (
        f"# written by nmt tools/joey.py: arch={arch} max_steps={max_steps} validation_freq={vf} "
        f"logging_freq={lf} threads={threads} (threads via OMP/MKL_NUM_THREADS)\n"
    )
    out = Path(path) if path is not None else cache_dir / "config.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(header + text)
    return out


def _thread_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _timed(
    cmd: list[str], env: dict[str, str], stdin: Path | None, stdout: Path, stderr: Path
) -> tuple[int, float, float]:
    """Run cmd; returns (returncode, wall seconds, peak RSS in MB). Peak RSS comes from
    /usr/bin/time -v when present, else from os.wait4's rusage of that very child."""
    time_file = stderr.with_suffix(stderr.suffix + ".time")
    use_time = os.access(_TIME_BIN, os.X_OK)
    full = [_TIME_BIN, "-v", "-o", str(time_file), *cmd] if use_time else cmd
    fin = stdin.open("rb") if stdin is not None else subprocess.DEVNULL
    try:
        with stdout.open("wb") as fout, stderr.open("wb") as ferr:
            t0 = time.perf_counter()
            proc = subprocess.Popen(full, stdin=fin, stdout=fout, stderr=ferr, env=env)
            try:
                _, status, usage = os.wait4(proc.pid, 0)
            except BaseException:  # e.g. Ctrl-C: do not leave Joey running
                proc.kill()
                proc.wait()
                raise
            seconds = time.perf_counter() - t0
            proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        if stdin is not None:
            fin.close()  # type: ignore[union-attr]
    rss_kb = float(usage.ru_maxrss)  # kB on Linux; covers descendants of `time` too
    if use_time and time_file.exists():
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", time_file.read_text())
        if m:
            rss_kb = float(m.group(1))
    return proc.returncode, seconds, rss_kb / 1024.0


def _tail(path: Path, n: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


_TS = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) - ")


def _stamp(line: str) -> float | None:
    m = _TS.match(line)
    if not m:
        return None
    return datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()


def parse_train_log(log: Path) -> dict:
    """Figures from Joey's train.log: 'Tokens per Sec' readings, the model's parameter count,
    seconds of the training loop (first 'EPOCH' line to 'Training ended'/'Interrupt') and of
    validation inside it. Joey's own 'Evaluation result ... [sec]' covers only scoring, not
    decoding ('Generation took'), so a validation is timed from its 'Predicting' line to the last
    log line before training resumes (decoding, scoring, checkpoint, examples, attention plot)."""
    readings: list[float] = []
    valid_s = 0.0
    loop_start = loop_end = valid_start = last = None
    last_step = params = None
    for line in log.read_text(errors="replace").splitlines():
        ts = _stamp(line)
        if ts is None:
            continue  # continuation line of a multi-line record
        training = bool(
            re.search(r" - (EPOCH \d+$|Epoch +\d+, |Training ended|Interrupt at)", line)
        )
        if valid_start is not None and training:
            valid_s += (last or valid_start) - valid_start
            valid_start = None
        last = ts
        if m := re.search(r"Step:\s*(\d+),.*Tokens per Sec:\s*([\d.]+)", line):
            last_step = int(m.group(1))
            readings.append(float(m.group(2)))
        elif " - Predicting " in line and valid_start is None:
            valid_start = ts
        elif m := re.search(r" - Total params: (\d+)", line):
            params = int(m.group(1))
        elif re.search(r" - EPOCH \d+$", line) and loop_start is None:
            loop_start = ts
        elif "Training ended" in line or " - Interrupt at epoch" in line:
            loop_end = ts
    if valid_start is not None and last is not None:
        valid_s += last - valid_start
    loop_s = loop_end - loop_start if loop_start is not None and loop_end is not None else None
    return {
        "readings": readings,
        "last_logged_step": last_step,
        "params": params,
        "loop_seconds": loop_s,
        "validation_seconds": valid_s,
    }


_STATS = """\
import json, sys, torch
ck = torch.load(sys.argv[1], map_location="cpu", weights_only=False)
print(json.dumps(ck["stats_state"]))
"""


def _ckpt_stats(py: Path, ckpt: Path) -> dict:
    res = subprocess.run(
        [str(py), "-c", _STATS, str(ckpt)], capture_output=True, text=True, check=True
    )
    return json.loads(res.stdout.strip().splitlines()[-1])


def _checkpoint(model_dir: Path) -> Path:
    for name in ("best.ckpt", "latest.ckpt"):
        if (model_dir / name).exists():
            return (model_dir / name).resolve()
    ckpts = sorted(model_dir.glob("*.ckpt"), key=lambda p: p.stat().st_mtime)
    if not ckpts:
        raise FileNotFoundError(f"no Joey checkpoint in {model_dir}: train first")
    return ckpts[-1].resolve()


def train(
    cache_dir: Path,
    data_dir: Path,
    steps: int,
    threads: int = 2,
    *,
    validation_freq: int = 300,
    arch: str = "rnn",
) -> dict:
    """Train Joey from scratch (the model dir is wiped: the reference config has overwrite: True)
    for `steps` updates (`arch`: the peers' RNN or `transformer_template`),
    `python -m joeynmt train config --skip-test` with OMP/MKL_NUM_THREADS = threads, timed as
    a whole process. Returns

    steps, seconds (whole process incl. start-up and validation), loop_seconds (Joey's training
    loop, from its log), validation_seconds, tokens_per_s (median of Joey's 'Tokens per Sec'
    readings: target tokens over the time since the previous reading, validation excluded),
    tokens_per_s_readings, target_tokens (non-pad target tokens incl. </s>, from the checkpoint),
    tokens_per_s_wall (target_tokens / seconds), tokens_per_s_loop (target_tokens /
    (loop_seconds - validation_seconds)), peak_rss_mb, model_dir, log, checkpoint.
    """
    cache_dir, data_dir = Path(cache_dir).resolve(), Path(data_dir).resolve()
    py = ensure_joey(cache_dir)
    ensure_spm(cache_dir, data_dir)
    cfg = write_config(
        cache_dir,
        data_dir,
        max_steps=steps,
        validation_freq=validation_freq,
        threads=threads,
        arch=arch,
    )
    model_dir = cache_dir / "model"
    cmd = [str(py), "-m", "joeynmt", "train", str(cfg), "--skip-test"]
    stdout, stderr = cache_dir / "train.stdout", cache_dir / "train.stderr"
    rc, seconds, rss_mb = _timed(cmd, _thread_env(threads), None, stdout, stderr)
    if rc != 0:
        raise RuntimeError(f"joeynmt train failed (exit {rc}):\n{_tail(stderr)}")
    log = parse_train_log(model_dir / "train.log")
    ckpt = model_dir / "latest.ckpt"
    stats = _ckpt_stats(py, ckpt)
    if stats["steps"] != steps:
        raise RuntimeError(f"Joey stopped at step {stats['steps']}, expected {steps}")
    tokens = int(stats["total_tokens"])
    loop_s = log["loop_seconds"]
    train_s = loop_s - log["validation_seconds"] if loop_s is not None else None
    readings = log["readings"]
    return {
        "steps": int(stats["steps"]),
        "seconds": round(seconds, 3),
        "loop_seconds": round(loop_s, 3) if loop_s is not None else None,
        "validation_seconds": round(log["validation_seconds"], 3),
        "tokens_per_s": statistics.median(readings) if readings else None,
        "tokens_per_s_readings": readings,
        "target_tokens": tokens,
        "tokens_per_s_wall": round(tokens / seconds, 1),
        "tokens_per_s_loop": round(tokens / train_s, 1) if train_s else None,
        "peak_rss_mb": round(rss_mb, 1),
        "epochs": int(stats["epochs"]),
        "params": log["params"],
        "threads": threads,
        "model_dir": str(model_dir),
        "log": str(model_dir / "train.log"),
        "checkpoint": str(ckpt.resolve()),
    }


def translate(
    cache_dir: Path,
    data_dir: Path,
    src_file: Path,
    beam: int,
    out: Path,
    threads: int = 2,
) -> dict:
    """Translate src_file with the best checkpoint (latest if no validation ran), beam `beam`
    (1 = greedy; beam_alpha 1.0 as in the reference config), timed as a whole process:
    `python -m joeynmt translate cfg < src > out`, as run_joey.sh does. The translate config is
    cache_dir/translate.beam{K}.yaml (config.yaml + testing.beam_size/load_model). Returns
    seconds, sentences, sentences_per_s, out, peak_rss_mb, checkpoint."""
    cache_dir, data_dir = Path(cache_dir).resolve(), Path(data_dir).resolve()
    src_file, out = Path(src_file).resolve(), Path(out).resolve()
    py = ensure_joey(cache_dir)
    ensure_spm(cache_dir, data_dir)
    base = cache_dir / "config.yaml"
    if not base.exists():
        write_config(cache_dir, data_dir)
    ckpt = _checkpoint(cache_dir / "model")
    text = base.read_text()
    text = _set_key(text, "testing", "beam_size", str(beam))
    text = _set_key(text, "testing", "beam_alpha", "1.0")
    text = _set_key(text, "testing", "load_model", json.dumps(str(ckpt)))
    cfg = cache_dir / f"translate.beam{beam}.yaml"
    cfg.write_text(text)
    # Joey skips empty input lines (with a warning), which would misalign the output.
    sentences = sum(1 for ln in src_file.read_text().splitlines() if ln.strip())
    out.parent.mkdir(parents=True, exist_ok=True)
    stderr = cache_dir / f"translate.beam{beam}.log"
    cmd = [str(py), "-m", "joeynmt", "translate", str(cfg)]
    rc, seconds, rss_mb = _timed(cmd, _thread_env(threads), src_file, out, stderr)
    if rc != 0:
        raise RuntimeError(f"joeynmt translate failed (exit {rc}):\n{_tail(stderr)}")
    n_out = len(out.read_text().splitlines())
    if n_out != sentences:
        raise RuntimeError(f"Joey wrote {n_out} lines for {sentences} sentences")
    return {
        "seconds": round(seconds, 3),
        "sentences": sentences,
        "sentences_per_s": round(sentences / seconds, 2),
        "out": str(out),
        "beam": beam,
        "threads": threads,
        "peak_rss_mb": round(rss_mb, 1),
        "checkpoint": str(ckpt),
    }


def sacrebleu(cache_dir: Path, hyp: Path, ref: Path) -> dict:
    """BLEU and chrF of hyp against ref with the joey venv's sacrebleu (2.6.0), default settings
    (13a tokenisation), as run_joey.sh scores."""
    py = ensure_joey(cache_dir)
    res = subprocess.run(
        [str(py), "-m", "sacrebleu", str(ref), "-i", str(hyp), "-m", "bleu", "chrf", "-b"],
        capture_output=True,
        text=True,
        check=True,
    )
    bleu, chrf = json.loads(res.stdout)  # with several metrics, -b prints a JSON list
    return {"bleu": bleu, "chrf": chrf}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Train/translate with JoeyNMT 2.3.0 (peer).")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="cache dir (venv, model)")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="Multi30k dir")
    ap.add_argument("--steps", type=int, help="train from scratch for N updates")
    ap.add_argument("--validation-freq", type=int, default=300, help="0 = never validate")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--arch", choices=ARCHS, default="rnn", help="the peers' RNN or a Transformer")
    ap.add_argument(
        "--translate-beam",
        type=int,
        action="append",
        default=[],
        metavar="K",
        help="translate test_2016_flickr with beam K (repeatable; 1 = greedy)",
    )
    ap.add_argument("--src-file", type=Path, help="source file (default test_2016_flickr.de)")
    ap.add_argument("--head", type=int, help="translate only the first N lines")
    ap.add_argument("--bleu", action="store_true", help="score translations with sacrebleu")
    ap.add_argument("--setup", action="store_true", help="only build the venv and spm model")
    a = ap.parse_args(argv)
    cache = a.cache.resolve()
    if a.setup or (a.steps is None and not a.translate_beam):
        ensure_joey(cache)
        print(
            json.dumps({"python": str(venv_python(cache)), "spm": str(ensure_spm(cache, a.data))})
        )
    if a.steps is not None:
        res = train(
            cache, a.data, a.steps, a.threads, validation_freq=a.validation_freq, arch=a.arch
        )
        print(json.dumps(res), flush=True)
    src = a.src_file or a.data / "test_2016_flickr.de"
    ref = src.with_suffix(".en") if src.suffix == ".de" else None
    if a.head and a.translate_beam:
        cut = cache / f"{src.stem}.head{a.head}{src.suffix}"
        cut.write_text("".join(src.read_text().splitlines(keepends=True)[: a.head]))
        if ref is not None and ref.exists():
            rcut = cache / f"{ref.stem}.head{a.head}{ref.suffix}"
            rcut.write_text("".join(ref.read_text().splitlines(keepends=True)[: a.head]))
            ref = rcut
        src = cut
    for beam in a.translate_beam:
        res = translate(cache, a.data, src, beam, cache / f"hyp.beam{beam}.txt", a.threads)
        if a.bleu and ref is not None and ref.exists():
            res.update(sacrebleu(cache, Path(res["out"]), ref))
        print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
