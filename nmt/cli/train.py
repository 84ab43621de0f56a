"""`nmt prepare`, `nmt train` and `nmt config`: training a model, and the options it takes."""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from nmt.cli.common import err, quiet_logging, user_errors

# the options both commands read a config with
ConfigFile = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML config (sections data, model, train)."),
]
Overrides = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override an option: section.key=value (repeatable)."),
]


# -- prepare ---------------------------------------------------------------------------
def prepare(
    config: ConfigFile = None,
    overrides: Overrides = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors.")] = False,
) -> None:
    """Tokenize the training data into its cache (data.cache_dir, else RUN_DIR/cache), and
    train the tokenizer first if the config names none; `nmt train` does it when missing."""
    from nmt.config import load_config
    from nmt.data.prepare import prepare_data

    quiet_logging(quiet)
    with user_errors():
        cfg = load_config(config, overrides or [])
        with _prepare_progress(quiet) as on_progress:
            data, _ = prepare_data(cfg, on_progress=on_progress)
    cache = data.train_ids
    summary: dict[str, Any] = {"cache": None, "pairs": len(data.train_src)}
    if cache is not None:
        summary = {"cache": str(cache.path), "pairs": len(cache), "filter": cache.meta["stats"]}
    print(json.dumps(summary))


@contextmanager
def _prepare_progress(quiet: bool):
    """A progress bar on a terminal; elsewhere (or quiet) None: the library logs lines."""
    if quiet or not err.is_terminal:
        yield None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn("tokenizing"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%  {task.fields[pairs]:,} pairs"),
        TimeElapsedColumn(),
        console=err,
    )
    task = progress.add_task("prepare", total=1.0, pairs=0)

    def on_progress(pairs: int, fraction: float) -> None:
        progress.update(task, completed=fraction, pairs=pairs)

    with progress:
        yield on_progress


# -- train -----------------------------------------------------------------------------
def train(
    config: ConfigFile = None,
    overrides: Overrides = None,
    resume: Annotated[
        Path | None,
        typer.Option(
            help="Continue from a checkpoint (usually RUN_DIR/last.pt) with its model, data "
            "and training options; options given again may change only limits, logging, "
            "validation, threads and device."
        ),
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Start over in a run dir that holds a run: removes its best.pt, last.pt, "
            "log.jsonl and the tokenizer/ it trained.",
        ),
    ] = False,
    init: Annotated[
        Path | None,
        typer.Option(
            help="Fine-tune: start a new run from this checkpoint's weights and tokenizer, "
            "with the data and training options given (fresh optimizer and schedule); "
            "model and tokenizer options are the checkpoint's.",
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors.")] = False,
) -> None:
    """Train a model. Every option is listed in README.md; `--set` overrides the file."""
    from nmt import NmtError
    from nmt.checkpoint import init_config, resume_config, saved_config
    from nmt.config import config_from_dict, load_raw
    from nmt.train import train as run_training

    quiet_logging(quiet)
    with user_errors():
        given = load_raw(config, overrides or [])
        if init is not None:
            if resume is not None:
                raise NmtError("--init starts a new run and --resume continues one: give one")
            cfg = init_config(saved_config(init), given, str(init))
        elif resume is None:
            cfg = config_from_dict(given)
        else:
            # the checkpoint's config, with what may change mid-run; a file that is no
            # checkpoint is refused before the run dir, tokenizer and logs are touched
            cfg = resume_config(saved_config(resume), given, str(resume))
        with _train_progress(quiet) as (on_log, on_progress):
            result = run_training(
                cfg,
                resume=resume,
                on_log=on_log,
                overwrite=overwrite,
                on_progress=on_progress,
                init=init,
            )
    # torchrun starts one process a rank (RANK): the result is printed once
    if os.environ.get("RANK", "0") == "0":
        print(json.dumps(result))


_PLAIN_EVERY_S = 30.0  # off a terminal, a progress line this often


def _eta(seconds: float | None) -> str:
    from nmt.runs.progress import format_duration

    return "" if seconds is None else f"ETA {format_duration(seconds)}"


@contextmanager
def _train_progress(quiet: bool):
    """(on_log, on_progress) for the trainer: on a terminal a live bar updated every step;
    otherwise a plain line every _PLAIN_EVERY_S seconds; validation results either way."""
    import time

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    live = not quiet and err.is_terminal
    progress = Progress(
        TextColumn("step {task.fields[step]}  epoch {task.fields[epoch]}"),
        BarColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TextColumn("{task.fields[eta]}"),
        console=err,
        disable=not live,
    )
    task = progress.add_task("train", total=None, step=0, epoch="", status="", eta="")
    last: dict[str, Any] = {"loss": "", "printed": time.monotonic()}

    def on_progress(p) -> None:
        if quiet:
            return
        epoch = f"{p.epoch} ({p.batch}/{p.batches})"
        status = "validating" if p.phase == "valid" else f"{p.tokens_per_s:,.0f} tok/s"
        status += f"  {last['loss']}" if last["loss"] else ""
        if live:
            done = p.elapsed / (p.elapsed + p.eta) if p.eta is not None else None
            progress.update(
                task, total=1.0 if done is not None else None, completed=done or 0,
                step=p.step, epoch=epoch, status=status, eta=_eta(p.eta),
            )  # fmt: skip
            return
        now = time.monotonic()
        if now - last["printed"] >= _PLAIN_EVERY_S:
            last["printed"] = now
            line = f"step {p.step}, epoch {epoch}: {status}  {_eta(p.eta)}".rstrip()
            err.print(line, highlight=False, soft_wrap=True, markup=False)

    def on_log(record: dict) -> None:
        if quiet:
            return
        if record["kind"] == "train":
            last["loss"] = f"loss {record['loss']:.3f}  lr {record['lr']:.2e}"
        elif record["kind"] == "valid":
            if live:  # "validating" is over
                progress.update(task, status=f"validated: BLEU {record['bleu']:.2f}")
            err.print(
                f"step {record['step']}: valid loss {record['valid_loss']:.3f} "
                f"ppl {record['valid_ppl']:.2f} BLEU {record['bleu']:.2f} "
                f"chrF {record['chrf']:.2f}",
                highlight=False,
                soft_wrap=True,
            )
            for example in record.get("examples", []):
                for name in ("source", "reference", "hypothesis"):
                    err.print(
                        f"  {name:>10}: {example[name]}",
                        highlight=False,
                        soft_wrap=True,
                        markup=False,
                        emoji=False,
                    )

    with progress:
        yield on_log, on_progress


# -- config ----------------------------------------------------------------------------
def config_show(
    config: ConfigFile = None,
    overrides: Overrides = None,
    changed: Annotated[
        bool, typer.Option(help="Only the options that differ from defaults.")
    ] = False,
) -> None:
    """Every option: its value (the default, or what --config and --set give), type and help;
    `*` marks a value that differs from the default."""
    import dataclasses

    from nmt.config import SECTIONS, load_config

    with user_errors():
        cfg = load_config(config, overrides or [])
    for name, cls in SECTIONS.items():
        section = getattr(cfg, name)
        for f in dataclasses.fields(cls):
            value = getattr(section, f.name)
            differs = value != f.default
            if changed and not differs:
                continue
            kind = type(f.default).__name__
            shown = json.dumps(
                list(value) if isinstance(value, tuple) else value, ensure_ascii=False
            )
            mark = "*" if differs else " "
            print(f"{mark} {name}.{f.name} = {shown}  ({kind})  {f.metadata['help']}")


def config_check(
    config: Annotated[Path, typer.Argument(help="YAML config to check.")],
    overrides: Overrides = None,
) -> None:
    """Check a config as `nmt train` would before training (types, ranges, options that must
    agree): `CONFIG: ok` and exit 0, or one line naming the option and exit 2."""
    from nmt.config import load_config

    with user_errors():
        load_config(config, overrides or [])
    print(f"{config}: ok")
