"""Who may write into a run dir: a new run into a folder without a run, a resumed run into its
own, and `--overwrite`, which first removes what the earlier run left there.

A run is what `nmt train` writes: best.pt, last.pt, log.jsonl, and the tokenizer/ it trained
when the config names none. Other files in the folder (data, translations) are never touched.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from nmt import NmtError
from nmt.files import write_atomic
from nmt.config import Config

RUN_FILES = ("best.pt", "last.pt", "log.jsonl")


def run_files(config: Config) -> list[Path]:
    """What a run of `config` writes into its run dir (that --overwrite removes)."""
    run_dir = Path(config.train.run_dir)
    paths = [run_dir / name for name in RUN_FILES]
    tok_dir = run_dir / "tokenizer"
    named = config.data.tokenizer
    # a tokenizer the config names is the user's, even when it lies in the run dir
    if not named or Path(named).resolve() != tok_dir.resolve():
        paths.append(tok_dir)
    return paths


def claim_run_dir(config: Config, *, resume: str | Path | None, overwrite: bool) -> None:
    """Refuse a run dir that holds another run, unless `overwrite` (then remove that run) or
    `resume` continues it from a checkpoint in that folder."""
    if not config.train.run_dir.strip():
        raise NmtError(
            "config: train.run_dir is empty: name a folder for the checkpoints and log.jsonl"
        )
    run_dir = Path(config.train.run_dir)
    held = [name for name in RUN_FILES if (run_dir / name).exists()]
    if resume is not None:
        if held and Path(resume).resolve().parent != run_dir.resolve():
            raise NmtError(
                f"run dir {run_dir} holds another run ({', '.join(held)}) than the checkpoint "
                f"{resume}: resume into the checkpoint's folder or a new train.run_dir"
            )
        return
    removed = [p for p in run_files(config) if p.exists()]
    if not held and not overwrite:
        return
    if not overwrite:
        last = run_dir / "last.pt"
        ways = f"continue it with --resume {last}, or " if last.is_file() else ""
        names = ", ".join(p.name + ("/" if p.is_dir() else "") for p in removed)
        raise NmtError(
            f"run dir {run_dir} already holds a run ({', '.join(held)}): {ways}start over "
            f"with --overwrite (removes {names}), or set another train.run_dir"
        )
    for path in removed:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def truncate_log(path: Path, step: int) -> None:
    """Keep the records of log.jsonl up to `step` (the checkpoint a run resumes from)."""
    if not path.is_file():
        return
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    kept = []
    for ln in lines:
        try:
            if json.loads(ln).get("step", 0) <= step:
                kept.append(ln)
        except json.JSONDecodeError:
            break
    write_atomic(path, "".join(k + "\n" for k in kept).encode())
