"""The API's requests and answers: what one request may ask for (`Limits`), how its JSON body
is read and checked (`parse_request`: every refusal an `ApiError` with its status and the
limit it concerns), and the JSON of a translation (`translation_json`).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any

from nmt import NmtError, require_whole
from nmt.runtime.base import Translation
from nmt.search_options import SearchOptions
from nmt.serving.guards import json_depth
from nmt.terms import Terms

FIELDS = ("text", "beam_size", "nbest", "length_penalty", "attention", "split", "glossary",
          "placeholders", "markup")  # fmt: skip
# a request's glossary: {"source term": "target term" or "" (kept)}; no --keep patterns, as
# a client's regular expression could backtrack for minutes (the terms are matched literally)
MAX_GLOSSARY, MAX_TERM_CHARS = 256, 200
DEFAULT = SearchOptions()  # what a request leaves out
_DIGITS = 6  # attention weights in responses: far more than a reader of the map needs
# a request nests 2 deep (an object holding a list); json.loads recurses once a level, and
# 100,000 `[` raised RecursionError: deeper bodies are refused before parsing
MAX_JSON_DEPTH = 8


@dataclass(frozen=True)
class Limits:
    """What one request may ask for, and how many may be in flight; checked when made."""

    max_body_bytes: int = 1_000_000
    max_sentences: int = 64  # per request
    max_chars: int = 2_000  # per sentence
    max_beam: int = 16
    max_nbest: int = 16
    max_concurrent: int = 128  # /translate requests in flight (bodies read); more get 503
    # to send a request's headers, and then its body: slower, the connection is closed (or
    # the request answered 408)
    read_seconds: int = 10
    max_connections: int = 256  # open at once; more are closed as they connect

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            require_whole(name, value)


class ApiError(Exception):
    """An error answered as JSON: `status`, a one-line `message`, the `limit` it is about."""

    def __init__(self, status: int, message: str, limit: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.limit = status, message, limit


@dataclass
class TranslateRequest:
    sentences: list[str]
    options: SearchOptions
    # each text a paragraph: its lines and their sentences translated one by one, rebuilt
    # (documents.py); False: each text one sentence, its whitespace and line breaks collapsed
    split: bool = True
    markup: str = "none"  # html or xml: tags kept out of the model and put back (markup.py)


def parse_request(body: bytes, limits: Limits) -> TranslateRequest:
    """A /translate body -> sentences and search options, or ApiError (400, 413 or 422)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ApiError(400, f"body is not valid UTF-8 (byte {e.start})") from None
    depth = json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise ApiError(
            400,
            f"body nests arrays and objects {depth} deep, over {MAX_JSON_DEPTH} (a request "
            "is an object of strings, numbers, booleans and one list of strings)",
        )
    try:
        data = json.loads(text)
    except ValueError as e:  # json.JSONDecodeError, and numbers too long to convert
        raise ApiError(400, f"body is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ApiError(422, "body must be a JSON object with a text field")
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise ApiError(422, f"unknown field {unknown[0]!r}; fields are {', '.join(FIELDS)}")
    split = data.get("split", True)
    if not isinstance(split, bool):
        raise ApiError(422, f"split must be true or false, got {split!r}")
    markup = data.get("markup", "none")
    if markup not in ("none", "html", "xml"):
        raise ApiError(422, f"markup must be none, html or xml, got {markup!r}")
    if markup != "none" and not split:
        raise ApiError(422, "markup needs split: its text is read as paragraphs")
    sentences = _sentences(data.get("text"), limits, split)
    attention = data.get("attention", False)
    if not isinstance(attention, bool):
        raise ApiError(422, f"attention must be true or false, got {attention!r}")
    try:
        options = SearchOptions(
            beam_size=_json_number(data, "beam_size", DEFAULT.beam_size, int),
            nbest=_json_number(data, "nbest", DEFAULT.nbest, int),
            length_penalty=_json_number(data, "length_penalty", DEFAULT.length_penalty, float),
            return_attention=attention,
            terms=_terms(data),
        )
    except NmtError as e:
        raise ApiError(422, str(e)) from None
    if options.beam_size > limits.max_beam:
        raise ApiError(
            422,
            f"beam_size {options.beam_size} is over the limit max_beam={limits.max_beam}",
            "max_beam",
        )
    if options.nbest > limits.max_nbest:
        raise ApiError(
            422,
            f"nbest {options.nbest} is over the limit max_nbest={limits.max_nbest}",
            "max_nbest",
        )
    return TranslateRequest(sentences, options, split, markup)


def _terms(data: dict[str, Any]) -> Terms | None:
    """The request's glossary and placeholders as Terms (None without either)."""
    glossary, placeholders = data.get("glossary", {}), data.get("placeholders", False)
    if not isinstance(placeholders, bool):
        raise ApiError(422, f"placeholders must be true or false, got {placeholders!r}")
    if not isinstance(glossary, dict) or not all(
        isinstance(v, str) and len(k) <= MAX_TERM_CHARS and len(v) <= MAX_TERM_CHARS
        for k, v in glossary.items()
    ):
        raise ApiError(
            422,
            'glossary must be an object of terms, {"source term": "target term"} ("": '
            f"kept as is), each at most {MAX_TERM_CHARS} characters",
        )
    if len(glossary) > MAX_GLOSSARY:
        raise ApiError(422, f"glossary has {len(glossary)} terms, over {MAX_GLOSSARY}")
    if not glossary and not placeholders:
        return None
    entries = tuple((k.strip(), v.strip()) for k, v in glossary.items())
    return Terms(glossary=entries, placeholders=placeholders)


def _json_number(data: dict[str, Any], name: str, default: Any, kind: type) -> Any:
    """data[name] if it is a JSON number of `kind` (an integer is a float too): a string or a
    boolean is refused, not converted."""
    value = data.get(name, default)
    kinds = (int,) if kind is int else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        what = "an integer" if kind is int else "a number"
        raise ApiError(422, f"{name} must be {what}, got {value!r}")
    return value


def _sentences(text: Any, limits: Limits, split: bool = False) -> list[str]:
    if text is None:
        raise ApiError(422, "text is required: a string or a list of strings")
    sentences = [text] if isinstance(text, str) else text
    if not isinstance(sentences, list) or not all(isinstance(s, str) for s in sentences):
        raise ApiError(422, "text must be a string or a list of strings")
    if len(sentences) > limits.max_sentences:
        raise ApiError(
            413,
            f"{len(sentences)} sentences, over the limit max_sentences={limits.max_sentences}",
            "max_sentences",
        )
    for i, s in enumerate(sentences, 1):
        if len(s) > limits.max_chars:
            raise ApiError(
                413,
                f"sentence {i} has {len(s)} characters, over the limit "
                f"max_chars={limits.max_chars}",
                "max_chars",
            )
        try:
            s.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate written as a \ud800 escape
            raise ApiError(422, f"sentence {i} is not valid Unicode (lone surrogate)") from None
    if split:  # paragraphs: their lines are kept, Windows line ends read as lines too
        return [s.replace("\r\n", "\n").replace("\r", "\n") for s in sentences]
    return [" ".join(s.split()) for s in sentences]  # one line each, as in a file


def _number(x: float) -> float | None:
    return x if math.isfinite(x) else None


def translation_json(t: Translation, attention: bool) -> dict[str, Any]:
    """One translation as /translate answers it: the best hypothesis, the n-best list and,
    when asked, the best hypothesis's attention (rows: target pieces, columns: source)."""
    best = t.hypotheses[0] if t.hypotheses else None
    out: dict[str, Any] = {
        "text": t.text,
        "score": _number(best.score) if best else None,
        "log_prob": _number(best.log_prob) if best else None,
        "nbest": [
            {"text": h.text, "score": _number(h.score), "log_prob": _number(h.log_prob)}
            for h in t.hypotheses
        ],
    }
    if attention:
        weights = best.attention if best and best.attention is not None else []
        out["attention"] = {
            "source": t.src_tokens,
            "target": best.tokens if best else [],
            "weights": [[round(w, _DIGITS) for w in row] for row in weights],
        }
    return out


def _probs(log_probs: list[float] | None) -> list[float] | None:
    return None if log_probs is None else [round(math.exp(lp), _DIGITS) for lp in log_probs]


def sentence_json(t: Translation, line: int, attention: bool) -> dict[str, Any]:
    """One sentence of a paragraph: translation_json's fields, its source and line (0, 1, ...
    within the text), its confidence (mean piece log-probability), target pieces with their
    probabilities (what the page shades), and each n-best hypothesis's confidence."""
    best = t.hypotheses[0] if t.hypotheses else None
    out = translation_json(t, attention)
    for h, record in zip(t.hypotheses, out["nbest"]):
        record["confidence"] = _number(h.confidence)
    return out | {
        "source": t.source,
        "line": line,
        "confidence": _number(best.confidence) if best else None,
        "tokens": best.tokens if best else [],
        "token_probs": _probs(best.token_log_probs) if best else None,
    }


def paragraph_json(lines: list[Translation], attention: bool) -> dict[str, Any]:
    """One text translated as a paragraph (its lines, each a documents.DocumentTranslation):
    the text rebuilt (line breaks and the whitespace between sentences kept), log_prob and
    score summed over its sentences, its confidence (the mean log-probability of all its
    pieces), and each sentence's own record under `sentences`. A text of one sentence has the
    n-best list and attention of that sentence, as with split false."""
    sentences = [(k, s) for k, line in enumerate(lines) for s in getattr(line, "sentences", [])]
    if len(sentences) == 1:
        out = translation_json(sentences[0][1], attention)
        out["text"] = "\n".join(line.text for line in lines)
    else:
        best = [line.hypotheses[0] for line in lines if line.hypotheses]
        log_prob = sum(h.log_prob for h in best)
        text = "\n".join(line.text for line in lines)
        out = {
            "text": text,
            "score": _number(sum(h.score for h in best)) if best else None,
            "log_prob": _number(log_prob) if best else None,
            "nbest": [{"text": text, "score": None, "log_prob": _number(log_prob)}] if best else [],
        }
    pieces = sum(len(line.hypotheses[0].tokens) for line in lines if line.hypotheses)
    total = sum(line.hypotheses[0].log_prob for line in lines if line.hypotheses)
    out["confidence"] = _number(round(total / pieces, _DIGITS)) if pieces else None
    out["sentences"] = [sentence_json(s, k, attention) for k, s in sentences]
    return out
