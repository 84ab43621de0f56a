"""--markup html|xml: tags out of the text the model reads and back around the aligned words;
every tag, entity and comment kept, the output always well-formed."""

from __future__ import annotations

import html

import pytest
from conftest import nmt, ok, user_error, write
from hypothesis import given, settings
from hypothesis import strategies as st

from nmt import NmtError
from nmt.runtime.base import Output, Translation
from nmt.translation.documents import DocumentOptions, assemble, prepare, translate_document
from nmt.translation.markup import is_well_formed, parse, tags_of
from nmt.translation.translator import Translator

WORDS = ["the", "tall", "girl", "sees", "two", "red", "cars", "boys", "eat."]


def _reversing(unit: str) -> Translation:
    """A fake translation: the unit's words in reverse order, each aligned to its source."""
    words = unit.split()
    n = len(words)
    attention = [[1.0 if i == n - 1 - j else 0.0 for i in range(n + 1)] for j in range(n)]
    attention.append([0.0] * n + [1.0])
    out = Output(" ".join(reversed(words)), -1.0, -1.0, [f"▁{w}" for w in reversed(words)])
    out.tokens.append("</s>")
    out.attention = attention
    return Translation(unit, [f"▁{w}" for w in words] + ["</s>"], [out])


def _translate_fake(line: str, kind: str, split: bool = False) -> str:
    p = prepare(line, DocumentOptions(markup=kind, split_sentences=split))
    return assemble(p, [_reversing(u) for u in p.units]).text


def test_a_tag_goes_around_the_word_its_word_aligns_to() -> None:
    out = _translate_fake('the <b>tall</b> girl <a href="x?a=1&amp;b=2">sees cars</a>', "html")
    assert out == '<a href="x?a=1&amp;b=2">cars sees</a> girl <b>tall</b> the'


def test_blocks_split_the_text_and_stay_in_place() -> None:
    out = _translate_fake("<p>the tall girl</p><div>two <i>red</i> cars<br>boys eat.</div>", "html")
    assert out == "<p>girl tall the</p><div>cars <i>red</i> two<br>eat. boys</div>"


def test_entities_comments_and_verbatim_elements_are_kept_as_written() -> None:
    line = 'the &amp; girl&nbsp;sees &#169;<!-- c --> <script>if (a < b) x = "<b>";</script>'
    out = _translate_fake(line, "html")
    for kept in (
        "&amp;",
        "&nbsp;",
        "&#169;",
        "<!-- c -->",
        '<script>if (a < b) x = "<b>";</script>',
    ):
        assert out.count(kept) == 1, (kept, out)
    assert _translate_fake('<p translate="no">the girl</p> two', "html").startswith(
        '<p translate="no">the girl</p>'
    )


def test_text_the_model_writes_is_escaped() -> None:
    p = prepare("<b>the</b> girl", DocumentOptions(markup="html"))
    t = _reversing(p.units[0])
    t.hypotheses[0].text = "girl <&>"
    out = assemble(p, [t]).text
    assert is_well_formed(out, "html") and "&lt;&amp;&gt;" in out


_INLINE = ["b", "i", "span", 'a href="u?x=1&amp;y=2"', 'em class="k"']
_POINTS = ["<br/>", '<img src="p.png"/>', "&amp;", "&nbsp;", "&#169;", "<!-- note -->"]


@st.composite
def fragments(draw, depth: int = 0) -> str:
    parts = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["word", "word", "inline", "point", "block"]))
        if kind == "word" or depth >= 3:
            parts.append(draw(st.sampled_from(WORDS)))
        elif kind == "point":
            parts.append(draw(st.sampled_from(_POINTS)))
        else:
            tag = draw(st.sampled_from(_INLINE if kind == "inline" else ["p", "div", "li"]))
            name = tag.split()[0]
            parts.append(f"<{tag}>{draw(fragments(depth + 1))}</{name}>")
    return draw(st.sampled_from([" ", ""])).join(parts)


@settings(max_examples=300, deadline=None)
@given(fragments(), st.sampled_from(["html", "xml"]), st.booleans())
def test_output_is_well_formed_with_every_tag_kept(line, kind, split) -> None:
    if kind == "xml":
        line = line.replace("&nbsp;", "&#160;")  # XML knows no HTML entities
    out = _translate_fake(line, kind, split)
    assert is_well_formed(out, kind), (line, out)
    assert sorted(tags_of(out, kind)) == sorted(tags_of(line, kind)), (line, out)
    # every word still there: the text without tags holds the same words
    words = lambda s: sorted(html.unescape(w) for w in _text(s, kind).split())  # noqa: E731
    assert words(out) == words(line)


def _text(line: str, kind: str) -> str:
    root = parse(line, kind)

    def walk(node) -> str:
        # a point is a space in the text the model reads, a block a boundary; tags nothing
        parts = []
        for c in node.children:
            if isinstance(c, str):
                parts.append(c)
            elif c.point:
                parts.append(" ")
            else:
                parts.append(f" {walk(c)} " if c.structural() else walk(c))
        return "".join(parts)

    return walk(root)


def test_bad_markup_is_refused_naming_the_line() -> None:
    with pytest.raises(NmtError, match="line 3: not well-formed XML"):
        prepare("<b>a</i>", DocumentOptions(markup="xml"), "line 3")
    with pytest.raises(NmtError, match="</i> closes no element"):
        prepare("a</i> b", DocumentOptions(markup="html"), "line 1")


@pytest.mark.parametrize("fixture", ["trained", "trained_transformer"])
def test_model_output_keeps_every_tag(request, fixture) -> None:
    translator = Translator(request.getfixturevalue(fixture))
    lines = [
        'The <b>tall</b> girl sees <a href="#">two <i>red</i> cars</a>.',
        "<p>The boys eat.</p><p>A girl &amp; a boy<br/>run.</p>",
        "",
    ]
    got = translate_document(translator, lines, document=DocumentOptions(markup="html"))
    assert got[2].text == ""
    for line, t in zip(lines[:2], got):
        assert is_well_formed(t.text, "html")
        assert sorted(tags_of(t.text, "html")) == sorted(tags_of(line, "html"))
    # placed by the alignment, around words: not all left empty at the start
    assert "<b></b>" not in got[0].text and not got[0].text.startswith("<")


def test_cli_markup(trained, tmp_path) -> None:
    src = write(tmp_path / "in.en", "The <b>tall</b> girl sees two cars.\n<p>The boys eat.</p>\n")
    r = nmt("translate", trained, src, "--markup", "xml", "--workers", "1", "-q")
    ok(r)
    out = r.stdout.splitlines()
    assert len(out) == 2 and out[0].count("<b>") == 1 and out[1].startswith("<p>")
    bad = write(tmp_path / "bad.en", "fine\n<b>open\n")
    user_error(nmt("translate", trained, bad, "--markup", "xml"), "line 2", "XML")
    user_error(nmt("translate", trained, src, "--markup", "pdf"), "--markup")
