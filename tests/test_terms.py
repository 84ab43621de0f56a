"""Glossaries and placeholders (nmt/terms.py) through the Translator: terms and verbatim
spans in every output, batch-invariant; bad glossary files named by file:line."""

from __future__ import annotations

import random
import re

import pytest
from conftest import write

from nmt import NmtError
from nmt.search import SearchOptions
from nmt.terms import Terms, prepare, read_glossary
from nmt.translation.translator import Translator

SPANS = ["2017", "3.5", "https://example.com/a_b?x=1", "www.nmt.org/docs",
         "bob.smith@mail.example.org", "`x = y[0]`", "1,250", "ACME-42"]  # fmt: skip


@pytest.fixture(scope="module")
def translator(trained):
    return Translator(trained)


def _with_spans(toy_dir, n: int = 24) -> list[str]:
    """Toy test sentences with a span or two inserted before their last word."""
    rng = random.Random(5)
    out = []
    for line in (toy_dir / "test.en").read_text().splitlines()[:n]:
        words = line.rstrip(".").split()
        for span in rng.sample(SPANS, rng.randint(1, 2)):
            words.insert(rng.randint(0, len(words)), span)
        out.append(" ".join(words) + ".")
    return out


@pytest.mark.parametrize("beam_size", [1, 5])
def test_placeholders_come_out_verbatim(translator, toy_dir, beam_size):
    sentences = _with_spans(toy_dir)
    terms = Terms(keep=(r"ACME-\d+",), placeholders=True)
    found = translator.translate(sentences, SearchOptions(beam_size=beam_size, terms=terms))
    for sentence, t in zip(sentences, found):
        for span in SPANS:
            assert sentence.count(span) <= t.text.count(span), (sentence, t.text)


def test_glossary_terms_are_used_and_a_batch_changes_nothing(translator, toy_dir):
    terms = Terms(glossary=(("cat", "gatinho"), ("key", "tecla"), ("boys", "")))
    sentences = (toy_dir / "test.en").read_text().splitlines()[:30]
    opts = SearchOptions(beam_size=5, terms=terms)
    batch = translator.translate(sentences, opts, batch_tokens=4096)
    for sentence, t in zip(sentences, batch):
        for source, target in terms.glossary:
            if f" {source} " in f" {sentence.rstrip('.')} ":
                assert (target or source) in re.findall(r"\w+", t.text), (sentence, t.text)
    one_by_one = [translator.translate([s], opts)[0].text for s in sentences]
    assert [t.text for t in batch] == one_by_one
    # sentences without a term are searched as without a glossary
    plain = translator.translate(sentences, SearchOptions(beam_size=5))
    for sentence, a, b in zip(sentences, batch, plain):
        if not prepare(sentence, terms, translator.tokenizer).constraints:
            assert a.text == b.text


def test_a_target_outside_the_vocabulary_is_put_back_whole(translator):
    terms = Terms(glossary=(("cat", "Ωmega✓"),))
    found = translator.translate(["The cat sees the key."], SearchOptions(terms=terms))
    assert "Ωmega✓" in found[0].text


@pytest.mark.parametrize(
    "content, message",
    [
        (b"cat\tgato\ndog\n", "g.tsv:2: 1 columns"),
        (b"cat\tgato\tx\n", "g.tsv:1: 3 columns"),
        (b"\n \tgato\n", "g.tsv:2: the source term is empty"),
        (b"cat\tgato\n\xff\tx\n", "g.tsv:2: not valid UTF-8"),
    ],
)
def test_a_bad_glossary_line_is_named(tmp_path, content, message):
    with pytest.raises(NmtError, match=message):
        read_glossary(write(tmp_path / "g.tsv", content))


def test_a_glossary_reads_terms_and_kept_terms(tmp_path):
    path = write(tmp_path / "g.tsv", "cat\tgato\r\n\nNew York\t\n")
    assert read_glossary(path) == (("cat", "gato"), ("New York", ""))


def test_a_bad_keep_pattern_is_refused():
    with pytest.raises(NmtError, match="no regular expression"):
        Terms(keep=("(",))
    with pytest.raises(NmtError, match="empty text"):
        Terms(keep=("x*",))


def test_translate_takes_a_glossary_keep_patterns_and_placeholders(trained, tmp_path):
    from conftest import nmt, ok, user_error

    glossary = write(tmp_path / "g.tsv", "key\ttecla\n")
    text = "The cat sees the key on ACME-42 at https://x.org/a.\n"
    result = nmt("translate", trained, "--glossary", glossary, "--keep", r"ACME-\d+",
                 "--placeholders", input=text)  # fmt: skip
    ok(result)
    assert all(s in result.stdout for s in ("tecla", "ACME-42", "https://x.org/a"))
    bad = write(tmp_path / "bad.tsv", "key\ttecla\nx\ty\tz\n")
    user_error(nmt("translate", trained, "--glossary", bad, input=text), "bad.tsv:2", "columns")
    user_error(nmt("translate", trained, "--keep", "(", input=text), "--keep")


def test_a_translator_without_a_constrained_search_refuses_terms(translator):
    """An exported folder's translator (nmt/runtime) has the base's search only."""
    from nmt.runtime.base import TranslatorBase

    plain = TranslatorBase()
    plain.tokenizer, plain.max_src_len = translator.tokenizer, 100
    with pytest.raises(NmtError, match="exported folder"):
        plain.translate(["The cat sees the key."], SearchOptions(terms=Terms(placeholders=True)))
