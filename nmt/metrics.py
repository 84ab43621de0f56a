"""Corpus scores through sacreBLEU, always with their signatures.

Every score in nmt goes through `score`: sacreBLEU takes a list of reference *streams*, and a
flat list of strings passes its checks but scores wrongly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class Score:
    name: str
    score: float
    signature: str
    text: str  # sacreBLEU's own line, e.g. "BLEU = 41.2 70.1/48.3/..."


def score(
    hyps: list[str], refs: list[str], metrics: tuple[str, ...] = ("bleu", "chrf", "ter")
) -> list[Score]:
    """Corpus-level scores of hypotheses against one reference per line."""
    from sacrebleu.metrics import BLEU, CHRF, TER

    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references")
    classes = {"bleu": BLEU, "chrf": CHRF, "ter": TER}
    out = []
    for name in metrics:
        metric = classes[name]()
        result = metric.corpus_score(hyps, [refs])
        out.append(
            Score(result.name, round(result.score, 2), str(metric.get_signature()), str(result))
        )
    return out


def as_dicts(scores: list[Score]) -> list[dict]:
    return [asdict(s) for s in scores]
