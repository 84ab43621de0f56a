"""`nmt export`, `average`, `info` and `serve`: shipping, inspecting and serving models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from nmt import NmtError
from nmt.cli.common import err, user_errors


# -- export and info -------------------------------------------------------------------
def export(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint file (best.pt, last.pt).")],
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Export file (pt) or folder (onnx, ctranslate2, web)."),
    ],
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            help="pt: a checkpoint without the optimizer state; onnx: a folder that runs "
            "without torch (nmt translate DIR); ctranslate2: a CTranslate2 model folder "
            "(Transformers); web: a static page that translates in the browser.",
        ),
    ] = "pt",
    dtype: Annotated[
        str,
        typer.Option(
            help="float32, float16 or bfloat16 (pt: loaded back as float32; onnx: float16 weights)."
        ),
    ] = "float32",
    quantize: Annotated[
        str, typer.Option(help="none, or int8 (onnx, ctranslate2; pt: use translate --quantize).")
    ] = "none",
) -> None:
    """A model to ship: weights, config and tokenizer, without the optimizer state (train
    --resume refuses it), as a checkpoint file or as a folder for another runtime."""
    with user_errors():
        if fmt == "pt":
            from nmt.runs.export import export_checkpoint

            result = export_checkpoint(checkpoint, out, dtype=dtype, quantize=quantize)
            written = f"{result.size_bytes / 1e6:.1f} MB ({result.dtype})"
            err.print(
                f"wrote {result.path}: {written}, from {result.source_size_bytes / 1e6:.1f} MB",
                soft_wrap=True,
                highlight=False,
            )
            return
        if fmt not in ("onnx", "ctranslate2", "web"):
            raise NmtError(f"--format must be pt, onnx, ctranslate2 or web, got {fmt!r}")
        if quantize not in ("none", "int8"):
            raise NmtError(f"--quantize must be none or int8, got {quantize!r}")
        if dtype not in ("float32", "float16"):
            raise NmtError(f"--dtype must be float32 or float16 for --format {fmt}, got {dtype!r}")
        if quantize == "int8" and dtype != "float32":
            raise NmtError("--quantize int8 and --dtype float16 exclude each other: choose one")
        precision = "int8" if quantize == "int8" else dtype
        if fmt == "onnx":
            from nmt.runs.graphs import export_onnx

            folder = export_onnx(checkpoint, out, precision=precision)
        elif fmt == "web":
            from nmt.runs.web import export_web, serve_command

            folder = export_web(checkpoint, out, precision=precision)
            err.print(
                f"wrote {folder.path}/: {folder.size_bytes / 1e6:.1f} MB ({folder.precision}); "
                f"browsers refuse WebAssembly from file://, so serve it: {serve_command(out)}",
                soft_wrap=True,
                highlight=False,
            )
            return
        else:
            from nmt.runs.ctranslate2 import export_ctranslate2

            folder = export_ctranslate2(checkpoint, out, precision=precision)
    use = (
        f"nmt translate {folder.path} FILE"
        if fmt == "onnx"
        else "CTranslate2 (nmt.runtime.ctranslate2.translate_ctranslate2)"
    )
    err.print(
        f"wrote {folder.path}/: {folder.size_bytes / 1e6:.1f} MB ({folder.precision}); "
        f"translate with: {use}",
        soft_wrap=True,
        highlight=False,
    )


def average(
    checkpoints: Annotated[
        list[Path],
        typer.Argument(help="Checkpoint files, or one run folder with --last N or --best N."),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Averaged checkpoint to write.")],
    last: Annotated[
        int, typer.Option(help="With a run folder: its N checkpoints of the highest steps.")
    ] = 0,
    best: Annotated[
        int, typer.Option(help="With a run folder: its N best (train.keep_best N or more).")
    ] = 0,
) -> None:
    """The mean of the weights of checkpoints of one model config and tokenizer, written as
    an export (translate reads it; train --resume does not)."""
    from nmt.runs.average import average_checkpoints, best_checkpoints, last_checkpoints

    with user_errors():
        if last < 0 or best < 0:
            raise NmtError(f"--{'last' if last < 0 else 'best'} N must be at least 1")
        if last and best:
            raise NmtError("--last and --best exclude each other: choose one")
        folders = [p for p in checkpoints if p.is_dir()]
        if folders:
            if len(checkpoints) != 1:
                raise NmtError(f"{folders[0]} is a folder: pass it alone with --last or --best N")
            if not (last or best):
                raise NmtError(
                    f"{folders[0]} is a folder: say which of its checkpoints with "
                    "--last N or --best N (N >= 1)"
                )
            folder = folders[0]
            checkpoints = last_checkpoints(folder, last) if last else best_checkpoints(folder, best)
        elif last or best:
            raise NmtError("--last and --best need one run folder instead of checkpoint files")
        result = average_checkpoints(checkpoints, out)
    steps = ", ".join("?" if s is None else str(s) for s in result.steps)
    err.print(
        f"wrote {result.path}: the mean of {len(result.inputs)} checkpoints (steps {steps})",
        soft_wrap=True,
        highlight=False,
    )


def info(
    checkpoint: Annotated[
        Path, typer.Argument(help="Checkpoint or export file, or an exported folder.")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """Kind, architecture, parameters, vocabularies, training progress and versions."""
    from nmt.runtime.folder import export_info, is_export

    with user_errors():
        if is_export(checkpoint):
            found = export_info(checkpoint)
        else:
            from nmt.runs.export import checkpoint_info

            found = checkpoint_info(checkpoint)
    if as_json:
        print(json.dumps(found, indent=2))
        return
    best = found["best"]
    lines = {
        "kind": found["kind"],
        "size": f"{found['size_bytes'] / 1e6:.1f} MB",
        "parameters": f"{found['parameters']:,}",
        "weights": found["dtype"],
        "vocabulary": f"src {found['src_vocab']}, tgt {found['tgt_vocab']}"
        + (" (joint)" if found["joint_tokenizer"] else ""),
        "step": found["step"],
        "epoch": found["epoch"],
        "best": f"{best:.4g} ({found['metric']})" if best is not None else "-",
        "model": ", ".join(f"{k}={v}" for k, v in found["model"].items()),
        "versions": ", ".join(f"{k} {v}" for k, v in found["versions"].items()),
    }
    for key, value in lines.items():
        print(f"{key + ':':12}{'-' if value is None else value}")


def serve(
    checkpoint: Annotated[
        Path,
        typer.Argument(help="Checkpoint or export file, or a folder of nmt export --format onnx."),
    ],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[
        int, typer.Option(help="CPU processes translating batches side by side.")
    ] = 1,
    threads: Annotated[int, typer.Option(help="CPU threads (0: torch default).")] = 0,
    quantize: Annotated[str, typer.Option(help="none or int8 (CPU).")] = "none",
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    max_batch_tokens: Annotated[
        int, typer.Option(help="Sentences x longest source in a batch of merged requests.")
    ] = 4096,
    max_wait_ms: Annotated[
        float, typer.Option(help="How long a request may wait for its batch to fill.")
    ] = 10.0,
    max_body_bytes: Annotated[int, typer.Option(help="Largest request body.")] = 1_000_000,
    max_sentences: Annotated[int, typer.Option(help="Sentences a request.")] = 64,
    max_chars: Annotated[int, typer.Option(help="Characters a sentence.")] = 2000,
    max_beam: Annotated[int, typer.Option(help="Largest beam_size a request may ask.")] = 16,
    max_nbest: Annotated[int, typer.Option(help="Largest nbest a request may ask.")] = 16,
    max_concurrent: Annotated[
        int, typer.Option(help="/translate requests in flight (bodies read); more get 503.")
    ] = 128,
    read_seconds: Annotated[
        int,
        typer.Option(
            help="Time a client has to send a request's headers (else the connection is "
            "closed), then its body (else 408)."
        ),
    ] = 10,
    max_connections: Annotated[
        int, typer.Option(help="Connections open at once; more are closed as they come.")
    ] = 256,
    grace_seconds: Annotated[
        int,
        typer.Option(
            help="On SIGTERM or Ctrl+C, time the requests in flight have to finish (then 503); "
            "a second signal exits at once."
        ),
    ] = 10,
    allowed_hosts: Annotated[
        str,
        typer.Option(
            help="Host headers answered besides localhost, 127.0.0.1, [::1] and --host, comma "
            "separated: name (any port), name:port, or * (any)."
        ),
    ] = "",
) -> None:
    """Serve a model over HTTP: POST /translate, GET /health, /info, /docs, and a page at /."""
    # long: one parameter per option, each passed on once to the library's typed options
    with user_errors():
        from nmt.serving.app import serve
        from nmt.serving.batcher import BatchOptions
        from nmt.serving.requests import Limits

        limits = Limits(
            max_body_bytes=max_body_bytes,
            max_sentences=max_sentences,
            max_chars=max_chars,
            max_beam=max_beam,
            max_nbest=max_nbest,
            max_concurrent=max_concurrent,
            read_seconds=read_seconds,
            max_connections=max_connections,
        )
        batching = BatchOptions(max_batch_tokens=max_batch_tokens, max_wait_ms=max_wait_ms)
        serve(
            checkpoint,
            host=host,
            port=port,
            device=device,
            quantize=quantize,
            threads=threads,
            workers=workers,
            limits=limits,
            batching=batching,
            grace_seconds=grace_seconds,
            hosts=[h.strip() for h in allowed_hosts.split(",") if h.strip()],
        )
