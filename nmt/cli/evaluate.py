"""`nmt score`, `nmt plot` and `nmt inspect`: comparing systems, runs and what a model learned."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer

from nmt import NmtError, require_whole
from nmt.cli.common import err, user_errors

if TYPE_CHECKING:
    from nmt.metrics import Paired, Score


# -- score -----------------------------------------------------------------------------
def score(
    ref: Annotated[
        list[Path],
        typer.Option(help="References, line-aligned with the hypotheses (repeat for several)."),
    ],
    hyp: Annotated[
        list[str],
        typer.Option(
            help="Hypotheses, one per line; stdin when omitted or -. Repeat with --by-length."
        ),
    ] = ["-"],  # noqa: B006 (typer reads the default, nothing mutates it)
    metrics: Annotated[
        str, typer.Option(help="Comma-separated: bleu, chrf, ter.")
    ] = "bleu,chrf,ter",
    baseline: Annotated[
        Path | None,
        typer.Option(help="Baseline hypotheses: test whether --hyp differs significantly."),
    ] = None,
    paired: Annotated[
        str,
        typer.Option(help="With --baseline: bs (paired bootstrap) or ar (approx. randomization)."),
    ] = "bs",
    paired_n: Annotated[
        int, typer.Option(help="Resamples (bs) or trials (ar); 0: sacreBLEU's 1000 / 10000.")
    ] = 0,
    by_length: Annotated[
        Path | None,
        typer.Option(
            help="Source file: BLEU and chrF per bucket of source length (words), per --hyp."
        ),
    ] = None,
    bucket_width: Annotated[int, typer.Option(help="With --by-length: words a bucket.")] = 10,
    plot_out: Annotated[
        Path | None, typer.Option("--plot", help="With --by-length: image of the buckets.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """sacreBLEU BLEU, chrF and TER of detokenized text, with signatures; significance too."""
    # long: one parameter per option; the work is in nmt.metrics and nmt.analysis.length_buckets
    if by_length is not None:
        _score_by_length(by_length, hyp, ref, bucket_width, plot_out, as_json, baseline)
        return
    from nmt.data.corpus import check_aligned, read_lines, read_stream
    from nmt.metrics import METRICS, as_dicts, paired_test
    from nmt.metrics import score as corpus_score

    # sacreBLEU logs each step of a paired test at INFO
    logging.getLogger("sacrebleu").setLevel(logging.WARNING)
    with user_errors():
        names = tuple(m.strip().lower() for m in metrics.split(",") if m.strip())
        if not names or set(names) - set(METRICS):
            raise NmtError(
                f"--metrics takes {','.join(METRICS)} (comma-separated), got {metrics!r}"
            )
        if paired not in ("bs", "ar"):
            raise NmtError(f"--paired must be bs or ar, got {paired!r}")
        require_whole("--paired-n", paired_n, 0)
        if len(hyp) > 1:
            raise NmtError("several --hyp need --by-length SRC (or compare two with --baseline)")
        if plot_out is not None:
            raise NmtError("--plot draws BLEU by length: give --by-length SRC too")
        # file name -> lines, hypotheses first: errors name the file
        hyp_file = hyp[0]
        hyp_name = "<stdin>" if hyp_file == "-" else hyp_file
        texts = {
            hyp_name: read_stream(sys.stdin.buffer, hyp_name)
            if hyp_file == "-"
            else read_lines(hyp_file)
        }
        if baseline is not None:
            texts[str(baseline)] = read_lines(baseline)
        texts.update((str(r), read_lines(r)) for r in ref)
        check_aligned(texts)
        hyps, refs = texts[hyp_name], [texts[str(r)] for r in ref]
        results: list[Score] | list[Paired]
        if baseline is None:
            results = corpus_score(hyps, refs, names)
        else:
            results = paired_test(texts[str(baseline)], hyps, refs, names, paired, paired_n)
    if as_json:
        print(json.dumps(as_dicts(results), indent=2))
    elif baseline is None:
        for s in cast("list[Score]", results):
            print(f"{s.name}|{s.signature} = {s.text.split(' = ', 1)[1]}")
    else:
        for p in cast("list[Paired]", results):
            base = _with_ci(p.baseline, p.baseline_mean, p.baseline_ci)
            new = _with_ci(p.system, p.system_mean, p.system_ci)
            print(f"{p.name}|{p.signature} = baseline {base}, system {new}, p = {p.p_value:.4f}")


def _score_by_length(
    src: Path,
    hyps: list[str],
    refs: list[Path],
    width: int,
    plot_out: Path | None,
    as_json: bool,
    baseline: Path | None,
) -> None:
    from dataclasses import asdict

    from nmt.analysis.figures import plot_by_length
    from nmt.analysis.length_buckets import score_by_length
    from nmt.data.corpus import check_aligned, read_lines

    with user_errors():
        require_whole("--bucket-width", width, 1)
        if baseline is not None:
            raise NmtError("--baseline and --by-length: give the baseline as one more --hyp")
        if "-" in hyps:
            raise NmtError("--by-length reads --hyp from files (no stdin)")
        files: list[str | Path] = [src, *hyps, *refs]
        texts = {str(p): read_lines(p) for p in files}
        check_aligned(texts)
        if not texts[str(src)]:
            raise NmtError(f"--by-length {src} is empty")
        # files named alike in run folders (a/test.hyp, b/test.hyp): their folders tell them apart
        names = [Path(h).name for h in hyps]
        if len(set(names)) < len(names):
            names = [f"{Path(h).parent.name}/{Path(h).name}" for h in hyps]
        if len(set(names)) < len(names):
            names = hyps
        systems = {name: texts[h] for name, h in zip(names, hyps)}
        refs_lines = [texts[str(r)] for r in refs]
        buckets = score_by_length(texts[str(src)], systems, refs_lines, width=width)
        rows = [{"label": b.label, "count": len(b.lines), **asdict(b)} for b in buckets]
        if plot_out is not None:
            plot_by_length(rows, plot_out)
            err.print(f"wrote {plot_out}", highlight=False, markup=False)
    if as_json:
        print(json.dumps([{k: v for k, v in r.items() if k != "lines"} for r in rows], indent=2))
        return
    heads = [f"{name} {m}" for name in rows[0]["scores"] for m in ("BLEU", "chrF")]
    print("\t".join(["words", "lines", *heads]))
    for r in rows:
        cells = [f"{v:.2f}" for s in r["scores"].values() for v in s.values()]
        print("\t".join([r["label"], str(r["count"]), *cells]))


def _with_ci(score: float, mean: float | None, ci: float | None) -> str:
    # sacreBLEU's notation: the bootstrap mean and the half width of its 95% interval
    return f"{score:.2f}" if mean is None else f"{score:.2f} (μ = {mean:.2f} ± {ci:.2f})"


def plot(
    run_dirs: Annotated[list[Path], typer.Argument(help="Run folders holding log.jsonl.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Image file (png, svg or pdf).")] = Path(
        "curves.png"
    ),
    x: Annotated[str, typer.Option("--x", help="step or time.")] = "step",
) -> None:
    """Training curves (loss, validation loss, BLEU, chrF, learning rate) of one or more runs."""
    from nmt.analysis.curves import plot_curves

    with user_errors():
        try:
            path = plot_curves(run_dirs, out, x)
        except ValueError as e:
            raise NmtError(str(e)) from None
    print(path)


# -- inspect ---------------------------------------------------------------------------
def _inspect_files(src: Path, tgt: Path, lines: int) -> None:
    require_whole("--lines", lines, 1)
    for p in (src, tgt):
        if not p.is_file():
            raise NmtError(f"{p} does not exist")


# the options both `nmt inspect` commands take
InspectSrc = Annotated[Path, typer.Option(help="Source sentences, one per line.")]
InspectTgt = Annotated[Path, typer.Option(help="Reference translations, line-aligned.")]
InspectLines = Annotated[int, typer.Option(help="Sentence pairs used (the first N).")]
InspectImage = Annotated[Path | None, typer.Option("--out", "-o", help="Image (png, svg, pdf).")]
InspectJson = Annotated[bool, typer.Option("--json", help="JSON output.")]


def inspect_gradients(
    checkpoint: Annotated[Path, typer.Argument(help="RNN checkpoint file (.pt).")],
    src: InspectSrc,
    tgt: InspectTgt,
    lines: InspectLines = 100,
    out: InspectImage = None,
    as_json: InspectJson = False,
) -> None:
    """Norm of the loss gradient w.r.t. each encoder hidden state, by source position,
    averaged over sentences (nmt/analysis/gradient_flow.py says exactly what is measured)."""
    from dataclasses import asdict

    from nmt.analysis.figures import plot_gradient_flow
    from nmt.analysis.gradient_flow import gradient_flow_of_files

    with user_errors():
        _inspect_files(src, tgt, lines)
        flow = asdict(gradient_flow_of_files(checkpoint, src, tgt, lines))
        if out is not None:
            plot_gradient_flow(flow, out)
    if as_json:
        print(json.dumps(flow, indent=2))
        return
    dirs = list(flow["by_position"])
    print("\t".join(["position", "sentences", *dirs]))
    for i, n in enumerate(flow["counts"]):
        print("\t".join([str(i), str(n), *(f"{flow['by_position'][d][i]:.4g}" for d in dirs)]))


def inspect_exposure(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint file (.pt).")],
    src: InspectSrc,
    tgt: InspectTgt,
    lines: InspectLines = 100,
    out: InspectImage = None,
    as_json: InspectJson = False,
) -> None:
    """Per target position: the loss and accuracy of the reference token under teacher
    forcing and when the model reads its own greedy output; and (in the JSON) the accuracy
    of the three steps after one injected mistake against the gold prefix (defined in
    nmt/analysis/exposure.py)."""
    from dataclasses import asdict

    from nmt.analysis.exposure import exposure_of_files
    from nmt.analysis.figures import plot_exposure

    with user_errors():
        _inspect_files(src, tgt, lines)
        result = asdict(exposure_of_files(checkpoint, src, tgt, lines))
        if out is not None:
            plot_exposure(result, out)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    print(f"greedy BLEU {result['bleu']:.2f} over {result['sentences']} sentences")
    print("position\tsentences\tteacher_loss\tfree_loss\tteacher_acc\tfree_acc")
    for i, n in enumerate(result["counts"]):
        free = result["free_loss"][i]
        cells = [result["teacher_loss"][i], free, result["teacher_accuracy"][i],
                 result["free_accuracy"][i]]  # fmt: skip
        print("\t".join([str(i), str(n), *("-" if c is None else f"{c:.3f}" for c in cells)]))
