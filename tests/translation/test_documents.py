"""Paragraphs translated a sentence at a time and rebuilt; confidence, token probabilities and
word alignments in jsonl; lines flagged below --min-confidence."""

from __future__ import annotations

import json

import pytest
from conftest import nmt, ok, user_error, write
from hypothesis import given
from hypothesis import strategies as st

from nmt import NmtError
from nmt.runtime.base import Output, Translation
from nmt.search_options import SearchOptions
from nmt.translation.alignment import word_alignment, word_index
from nmt.translation.documents import (
    DocumentOptions,
    assemble,
    prepare,
    split_sentences,
    translate_document,
)
from nmt.translation.translator import Translator

A, B = "The tall girl sees two red cars.", "The boys eat."


@pytest.fixture(scope="module")
def translator(trained) -> Translator:
    return Translator(trained)


def test_sentences_are_found_with_only_whitespace_between() -> None:
    text = "  A man sees a car.   The boys have two dogs. Dr. Smith came at 3 p.m. today! "
    spans = split_sentences(text)
    assert [text[a:b] for a, b in spans] == [
        "A man sees a car.",
        "The boys have two dogs.",
        "Dr. Smith came at 3 p.m. today!",
    ]
    ends = [0] + [b for _, b in spans]
    starts = [a for a, _ in spans] + [len(text)]
    assert all(not text[e:s].strip() for e, s in zip(ends, starts))


@given(st.text(alphabet=st.sampled_from("ab .!?\t"), max_size=40))
def test_prepare_cuts_a_line_into_its_units_and_gaps(line) -> None:
    p = prepare(line, DocumentOptions(split_sentences=True))
    assert len(p.gaps) == len(p.units) + 1
    rebuilt = p.gaps[0] + "".join(u + g for u, g in zip(p.units, p.gaps[1:]))
    assert rebuilt == line
    assert all(u.strip() == u and u for u in p.units)


def test_assemble_keeps_the_whitespace_and_joins_scores() -> None:
    p = prepare(f" {A}   {B} ", DocumentOptions(split_sentences=True))
    found = [
        Translation(u, ["x", "</s>"], [Output(t, -1.0, -0.5, ["▁y", "</s>"], None, [-0.4, -0.6])])
        for u, t in zip(p.units, ["Uma.", "Os."])
    ]
    line = assemble(p, found)
    assert line.text == " Uma.   Os. "
    best = line.hypotheses[0]
    assert best.log_prob == -2.0 and best.token_log_probs == [-0.4, -0.6, -0.4, -0.6]
    assert best.confidence == -0.5


def test_paragraph_lines_translate_each_sentence(translator) -> None:
    lines = [f"{A} {B}", "", f"  {B}  {A}"]
    alone = {s: t.text for s, t in zip([A, B], translator.translate([A, B]))}
    got = translate_document(translator, lines)
    assert [t.source for t in got] == lines
    assert got[0].text == f"{alone[A]} {alone[B]}"
    assert got[1].text == ""
    assert got[2].text == f"  {alone[B]}  {alone[A]}"
    # without splitting the paragraph is one sentence to the model: not the same
    plain = translator.translate([lines[0]])[0].text
    assert plain != got[0].text


def test_word_alignment_follows_the_heaviest_source_word() -> None:
    src = ["▁a", "▁b", "c", "</s>"]  # words: a, bc
    tgt = ["▁x", "y", "▁z", "</s>"]  # words: xy, z
    attention = [[0.1, 0.8, 0.1, 0], [0.2, 0.2, 0.6, 0], [0.9, 0.05, 0.05, 0], [0, 0, 0, 1]]
    assert word_index(src) == [0, 1, 1, -1]
    assert word_alignment(src, tgt, attention) == [(1, 0), (0, 1)]


def test_document_options_check_themselves() -> None:
    with pytest.raises(NmtError, match="xx"):
        DocumentOptions(split_sentences=True, language="xx")
    with pytest.raises(NmtError) as e:
        DocumentOptions(markup="pdf")
    assert e.value.option == "markup"
    with pytest.raises(NmtError):
        DocumentOptions(min_confidence=float("nan"))


def test_cli_split_sentences_keeps_one_line_per_line(trained, tmp_path) -> None:
    src = write(tmp_path / "in.en", f"{A} {B}\n\n{B}\n")
    r = nmt("translate", trained, src, "--split-sentences", "--workers", "1", "-q")
    ok(r)
    out = r.stdout.splitlines()
    assert len(out) == 3 and out[1] == ""
    assert out[0].count(".") == 2  # both sentences translated


def test_cli_jsonl_has_confidence_token_probs_alignment_and_flags(trained, tmp_path) -> None:
    src = write(tmp_path / "in.en", f"{A} {B}\n{B}\n")
    r = nmt(
        "translate", trained, src, "--split-sentences", "--format", "jsonl",
        "--min-confidence", "0", "--workers", "1", "-q",
    )  # fmt: skip
    ok(r)
    records = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(records) == 2
    for rec in records:
        best = rec["hypotheses"][0]
        assert best["confidence"] < 0 and all(0 < p <= 1 for p in best["token_probs"])
        n_words = len(best["text"].split())
        assert [j for _, j in rec["alignment"]] == list(range(n_words))
        assert rec["low_confidence"] is True  # every confidence is below 0
    assert len(records[0]["sentences"]) == 2
    assert "below --min-confidence 0" in r.stderr and "2 of 2" in r.stderr


def test_cli_text_output_is_unchanged_by_min_confidence(trained, tmp_path) -> None:
    src = write(tmp_path / "in.en", f"{A}\n{B}\n")
    plain = nmt("translate", trained, src, "--workers", "1", "-q")
    flagged = nmt("translate", trained, src, "--workers", "1", "-q", "--min-confidence", "-99")
    ok(plain)
    ok(flagged)
    assert plain.stdout == flagged.stdout and "below" not in flagged.stderr


def test_cli_refuses_an_unknown_language(trained, tmp_path) -> None:
    src = write(tmp_path / "in.en", f"{A}\n")
    r = nmt("translate", trained, src, "--split-sentences", "--language", "xx")
    user_error(r, "--language", "xx")


def test_search_options_are_passed_to_each_sentence(translator) -> None:
    got = translate_document(translator, [f"{A} {B}"], SearchOptions(beam_size=2, nbest=2))
    assert all(len(s.hypotheses) == 2 for s in got[0].sentences)


def test_an_exported_folder_gives_the_same_paragraphs_and_scores(trained, exported, tmp_path):
    src = write(tmp_path / "in.en", f"{A} {B}\n\n<b>{B}</b>\n")
    args = ["--split-sentences", "--format", "jsonl", "--workers", "1", "-q"]
    torch_run, runtime_run = (
        nmt("translate", trained, src, *args),
        nmt("translate", exported, src, *args),
    )
    ok(torch_run)
    ok(runtime_run)
    for a, b in zip(torch_run.stdout.splitlines(), runtime_run.stdout.splitlines()):
        want, got = json.loads(a), json.loads(b)
        assert [h["text"] for h in got["hypotheses"]] == [h["text"] for h in want["hypotheses"]]
        assert got["alignment"] == want["alignment"]
        if want["hypotheses"]:
            assert got["hypotheses"][0]["token_probs"] == pytest.approx(
                want["hypotheses"][0]["token_probs"], abs=1e-4
            )
