"""RESULTS.md of the lectures recipe, from its runs' outputs (run.sh runs it last).

usage: python report.py RUN_ROOT RESULTS_DIR

Each claim gets the figure that tests it, the numbers read from the runs, and a verdict decided
by the rule written next to it: supported, not supported, or inconclusive (a difference inside
the margin, or a run missing). The page says what the runs showed, whichever way it went.
Standard library only: it runs with any python3.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from pathlib import Path

BLEU_MARGIN = 0.5  # BLEU differences below this are read as no difference
LOSS_MARGIN = 0.02  # validation loss differences below this, likewise
ACC_MARGIN = 0.02  # accuracy gaps, likewise
CELLS = {"elman": "Elman", "gru": "GRU", "lstm": "LSTM"}
RUNS = (
    "elman-attention", "gru-attention", "lstm-attention", "elman-plain", "gru-plain",
    "lstm-plain", "elman-plain-noclip", "lstm-plain-reversed",
)  # fmt: skip


def _json(path: Path):
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _log(run: Path) -> list[dict]:
    path = run / "log.jsonl"
    if not path.is_file():
        return []
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def _bleu(root: Path, name: str) -> float | None:
    scores = _json(root / name / "test.score.json") or []
    return next((s["score"] for s in scores if s["name"] == "BLEU"), None)


def _verdict(diff: float | None, margin: float) -> str:
    if diff is None:
        return "inconclusive (a run is missing)"
    if diff > margin:
        return "**supported**"
    if diff < -margin:
        return "**not supported** (the opposite happened)"
    return f"inconclusive (difference {diff:+.3g}, within ±{margin})"


def vanishing(root: Path) -> tuple[str, str]:
    """The gradient reaching k steps before the end, relative to the end, without attention."""
    ratios, ks = {}, []
    for cell in CELLS:
        flow = _json(root / f"{cell}-plain" / "gradients.json")
        if not flow:
            continue
        ys, counts = flow["by_distance_from_end"]["forward"], flow["counts"]
        # k: 10 steps back, or less where fewer than half the sentences are that long
        k = max([i for i in range(min(11, len(ys))) if counts[i] >= flow["sentences"] / 2])
        ratios[cell], ks = ys[k] / ys[0] if ys[0] else 0.0, [*ks, k]
    if not ratios:
        return "gradients.json missing", _verdict(None, 0)
    text = ", ".join(f"{CELLS[c]} {r:.2e}" for c, r in ratios.items())
    measured = (
        f"‖dL/dh‖ {min(ks, default=0)}–{max(ks, default=0)} steps before EOS ÷ at EOS: {text}"
    )
    if len(ratios) < 3:
        return measured, _verdict(None, 0)
    # log10 ratio by which the gated cells keep more gradient than Elman (0.3: a factor of 2)
    diff = min(
        math.log10(max(ratios[c], 1e-30) / max(ratios["elman"], 1e-30)) for c in ("gru", "lstm")
    )
    return measured, _verdict(diff, 0.3)


def gated_bleu(root: Path) -> tuple[str, str]:
    bleu = {c: _bleu(root, f"{c}-attention") for c in CELLS}
    measured = "test BLEU with attention: " + ", ".join(
        f"{CELLS[c]} {b:.2f}" if b is not None else f"{CELLS[c]} -" for c, b in bleu.items()
    )
    if None in bleu.values():
        return measured, _verdict(None, 0)
    return measured, _verdict(min(bleu["gru"], bleu["lstm"]) - bleu["elman"], BLEU_MARGIN)


def clipping(root: Path) -> tuple[str, str]:
    stats = {}
    for name in ("elman-plain", "elman-plain-noclip"):
        log = _log(root / name)
        norms = [r["grad_norm"] for r in log if r.get("kind") == "train" and "grad_norm" in r]
        clipped = [r["clipped"] for r in log if r.get("kind") == "train" and "clipped" in r]
        losses = [r["valid_loss"] for r in log if r.get("kind") == "valid"]
        if norms and losses:
            stats[name] = (max(norms), sum(clipped) / len(clipped), min(losses))
    if len(stats) < 2:
        return "runs missing", _verdict(None, 0)
    (n1, c1, l1), (n0, _, l0) = stats["elman-plain"], stats["elman-plain-noclip"]
    measured = (
        f"largest logged gradient norm: clipped run {n1:.3g}, unclipped {n0:.3g}; clipping fired "
        f"on {c1:.0%} of the clipped run's logged updates; best validation loss: clipped {l1:.3f}, "
        f"unclipped {l0:.3f}"
    )
    if n0 < 5.0:  # 5 x the threshold (1.0): nothing exploded, there was nothing to tame
        return measured, f"inconclusive (no gradient norm above 5 in the unclipped run: {n0:.3g})"
    return measured, _verdict(l0 - l1, LOSS_MARGIN)


def by_length(root: Path) -> tuple[str, str]:
    buckets = _json(root / "by-length.json")
    if not buckets:
        return "by-length.json missing", _verdict(None, 0)
    total = sum(b["count"] for b in buckets)
    big = [b for b in buckets if b["count"] >= 0.05 * total] or buckets
    short, long_ = big[0], big[-1]
    parts, votes = [], []
    for cell in CELLS:
        att, plain = (f"{cell}-{kind}/test.hyp" for kind in ("attention", "plain"))
        if att not in short["scores"] or plain not in short["scores"]:
            continue
        gap = [b["scores"][att]["bleu"] - b["scores"][plain]["bleu"] for b in (short, long_)]
        parts.append(f"{CELLS[cell]} {gap[0]:+.1f} → {gap[1]:+.1f}")
        votes.append(gap[1] - gap[0])
    measured = (
        f"BLEU(attention) − BLEU(none), {short['label']} words → {long_['label']} words "
        f"(buckets with ≥ 5% of the lines): " + ", ".join(parts)
    )
    if not votes:
        return measured, _verdict(None, 0)
    # the median cell: two of three must agree
    return measured, _verdict(sorted(votes)[len(votes) // 2], BLEU_MARGIN)


def reversal(root: Path) -> tuple[str, str]:
    plain, rev = _bleu(root, "lstm-plain"), _bleu(root, "lstm-plain-reversed")
    if plain is None or rev is None:
        return "runs missing", _verdict(None, 0)
    return f"test BLEU: source as written {plain:.2f}, reversed {rev:.2f}", _verdict(
        rev - plain, BLEU_MARGIN
    )


def exposure(root: Path) -> tuple[str, str]:
    result = _json(root / "gru-attention" / "exposure.json")
    if not result:
        return "exposure.json missing", _verdict(None, 0)
    gaps = [t - f for t, f in zip(result["teacher_accuracy"], result["free_accuracy"])]
    held = [i for i, n in enumerate(result["counts"]) if n >= 0.2 * result["sentences"]]
    early, late = held[:3], held[-3:]
    e = sum(gaps[i] for i in early) / len(early)
    late_gap = sum(gaps[i] for i in late) / len(late)
    measured = (
        f"accuracy teacher-forced − free-running: {e:.3f} at positions {early[0]}–{early[-1]}, "
        f"{late_gap:.3f} at {late[0]}–{late[-1]}; greedy BLEU {result['bleu']:.2f}"
    )
    return measured, _verdict(late_gap - e, ACC_MARGIN)


CLAIMS = [
    ("An Elman network's gradient vanishes through time; LSTM and GRU carry it further back.",
     ["elman-plain/gradients.png", "gru-plain/gradients.png", "lstm-plain/gradients.png"],
     vanishing, "supported if GRU's and LSTM's ratio both exceed Elman's by a factor of 2"),
    ("Gated cells (GRU, LSTM) learn to translate better than the Elman network.",
     ["cells.png"], gated_bleu, f"supported if both beat Elman by more than {BLEU_MARGIN} BLEU"),
    ("Gradient clipping tames exploding gradients.",
     ["clipping.png"], clipping,
     f"supported if the unclipped Elman run's gradients exceeded 5 and its best validation "
     f"loss is worse by more than {LOSS_MARGIN}"),
    ("A fixed-size encoding fails on long sentences; attention fixes it (Bahdanau et al.).",
     ["by-length.png"], by_length,
     f"supported if attention's BLEU advantage grows from the shortest to the longest bucket "
     f"by more than {BLEU_MARGIN} (median over the three cells)"),
    ("Reversing the source helps a model without attention (Sutskever et al.).",
     [], reversal,
     f"supported if the reversed LSTM beats the plain one by more than {BLEU_MARGIN} BLEU"),
    ("Teacher forcing trains on gold prefixes; free running compounds its own mistakes "
     "(exposure bias).", ["gru-attention/exposure.png"], exposure,
     f"supported if the accuracy gap grows from the first to the last well-filled positions "
     f"by more than {ACC_MARGIN}"),
]  # fmt: skip


def _runs_table(root: Path) -> list[str]:
    rows = [
        "| run | steps | minutes | test BLEU (greedy) | best valid loss |",
        "|---|---|---|---|---|",
    ]
    for name in RUNS:
        log = _log(root / name)
        valid = [r for r in log if r.get("kind") == "valid"]
        if not valid:
            rows.append(f"| {name} | - | - | - | - |")
            continue
        bleu = _bleu(root, name)
        shown = "-" if bleu is None else f"{bleu:.2f}"
        loss = min(r["valid_loss"] for r in valid)
        minutes = valid[-1]["time"] / 60
        rows.append(f"| {name} | {valid[-1]['step']} | {minutes:.1f} | {shown} | {loss:.3f} |")
    return rows


def main(root: Path, results: Path) -> None:
    figures = results / "figures"
    if (root / "data" / "train.de").exists():
        data = "Multi30k de->en, test_2016_flickr for every score and figure"
    elif (root / "data" / "train.pt").exists():
        data = "the built-in toy corpus with tiny models (a smoke test: no evidence either way)"
    else:
        data = "no data yet"
    lines = [
        "# The lectures' claims, tested on short runs",
        "",
        f"Written by `recipes/lectures/report.py` on {time.strftime('%Y-%m-%d')} from the runs in "
        f"`{root.name}/` (`recipes/lectures/run.sh`; configs `recipes/lectures/*.yaml`); data: "
        f"{data}. Each verdict follows the rule beside it; short runs on small models can "
        "contradict a lecture, and the page says so when they do.",
        "",
        "| claim | figure | measured | rule | verdict |",
        "|---|---|---|---|---|",
    ]
    for claim, figs, measure, rule in CLAIMS:
        measured, verdict = measure(root)
        shown = []
        for fig in figs:
            src = root / fig
            if src.is_file():
                dest = figures / fig.replace("/", "-")
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dest)
                shown.append(f"[{dest.name}](figures/{dest.name})")
        lines.append(f"| {claim} | {', '.join(shown) or '-'} | {measured} | {rule} | {verdict} |")
    lines += ["", "## Runs", "", *_runs_table(root), ""]
    if not any(_log(root / name) for name in RUNS):
        lines += [
            "No run was found: `MULTI30K_DIR=DIR recipes/lectures/run.sh` trains them (about 80",
            "minutes on 2 CPU cores) and writes this page again with their numbers.",
            "",
        ]
    results.mkdir(parents=True, exist_ok=True)
    (results / "RESULTS.md").write_text("\n".join(lines), encoding="utf-8")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
