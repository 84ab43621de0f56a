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


METRICS = ("bleu", "chrf", "ter")


def _metric(name: str):
    from sacrebleu.metrics import BLEU, CHRF, TER

    return {"bleu": BLEU, "chrf": CHRF, "ter": TER}[name]()


def score(
    hyps: list[str],
    refs: list[str] | list[list[str]],
    metrics: tuple[str, ...] = METRICS,
) -> list[Score]:
    """Corpus-level scores of hypotheses against one reference per line (a list of strings)
    or several (a list of reference streams, each as long as `hyps`)."""
    streams = [refs] if refs and isinstance(refs[0], str) else refs
    if not streams:
        raise ValueError("no references")
    for stream in streams:
        if len(stream) != len(hyps):
            raise ValueError(f"{len(hyps)} hypotheses but {len(stream)} references")
    out = []
    for name in metrics:
        metric = _metric(name)
        result = metric.corpus_score(hyps, streams)
        out.append(
            Score(result.name, round(result.score, 2), str(metric.get_signature()), str(result))
        )
    return out


@dataclass
class Paired:
    """One metric of a paired significance test of `system` against `baseline`."""

    name: str
    test: str  # bs (paired bootstrap resampling) or ar (approximate randomization)
    signature: str
    baseline: float
    baseline_mean: float | None  # bootstrap mean, with `*_ci` the half width of the 95% CI
    baseline_ci: float | None
    system: float
    system_mean: float | None
    system_ci: float | None
    p_value: float


def paired_test(
    baseline: list[str],
    system: list[str],
    refs: list[list[str]],
    metrics: tuple[str, ...] = METRICS,
    test: str = "bs",
    samples: int = 0,
) -> list[Paired]:
    """sacreBLEU's paired significance test (its `--paired-bs` / `--paired-ar`).

    `samples` 0 takes sacreBLEU's defaults (1,000 resamples, 10,000 AR trials). The seed is
    sacreBLEU's (12345, or SACREBLEU_SEED), so results match its command line; the
    signature records it. AR gets its confidence intervals from 1,000 bootstrap resamples.
    """
    from sacrebleu.significance import PairedTest, Result

    if test not in ("bs", "ar"):
        raise ValueError(f"test must be bs or ar, got {test!r}")
    sigs, results = PairedTest(
        [("baseline", baseline), ("system", system)],
        {name: _metric(name) for name in metrics},
        refs,
        test_type=test,
        n_samples=samples,
        n_ar_confidence=0 if test == "ar" else -1,
    )()
    out = []
    # keyed by the names sacreBLEU reports (BLEU, chrF2, TER), in the order of `metrics`
    for name in [k for k in results if k != "System"]:
        base, sys_ = results[name]
        # every row but "System" holds Results, and the system's always carries a p-value
        assert isinstance(base, Result) and isinstance(sys_, Result)
        assert sys_.p_value is not None
        out.append(
            Paired(
                name,
                test,
                str(sigs[name]),
                float(base.score),
                _num(base.mean),
                _num(base.ci),
                float(sys_.score),
                _num(sys_.mean),
                _num(sys_.ci),
                float(sys_.p_value),
            )
        )
    return out


def _num(x) -> float | None:
    # sacreBLEU's results may be numpy scalars, which json cannot write
    return None if x is None else float(x)


def as_dicts(scores: list[Score] | list[Paired]) -> list[dict]:
    return [asdict(s) for s in scores]
