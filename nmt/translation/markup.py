"""Markup kept out of the model and put back: a line of HTML or XML is parsed (Python's
html.parser; XML is first checked well-formed by xml.etree), its text translated, and every
tag, entity and comment put back around the target words that the source words it wrapped
align to (attention, nmt/translation/alignment.py).

- Block elements (p, div, li, h1, td, br, ...; an element holding one) are structure: they
  stay where they are and split the text into segments translated apart. Their content's
  inline elements (b, a, span, ...) are the ones placed by alignment.
- Void and self-closing tags, entities (`&amp;`, `&nbsp;`, `&#169;`), comments and
  processing instructions are points: kept verbatim, placed after the target word aligned to
  the source word before them; in the text the model reads they are a space.
- script, style, and elements with translate="no" are kept verbatim, content and all.
- The output is always well-formed: spans are fitted inside their parent and next to their
  siblings (siblings may change order, as their words do), unclosed HTML elements are closed
  at the end of the line, text the model writes is escaped.
"""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from html.parser import HTMLParser

from nmt import NmtError

# elements that split the text: translated apart, kept where they are
BLOCK = frozenset(
    "address article aside blockquote body br caption dd details dialog div dl dt fieldset "  # noqa: SIM905
    "figcaption figure footer form h1 h2 h3 h4 h5 h6 head header hr html legend li main nav "
    "ol p pre section summary table tbody td tfoot th thead title tr ul".split()
)
# HTML elements without an end tag
VOID = frozenset("area base br col embed hr img input link meta param source track wbr".split())  # noqa: SIM905
VERBATIM = frozenset(("script", "style"))
_NO_TRANSLATE = re.compile(r"""\btranslate\s*=\s*["']?no\b""", re.IGNORECASE)


@dataclass(eq=False)
class Node:
    """An element (start and end tag as written), or a point (`start` only: a void or
    self-closing tag, an entity, a comment). The root has neither."""

    name: str
    start: str
    end: str = ""
    children: list[Node | str] = field(default_factory=list)  # str: text as written
    point: bool = False
    verbatim: bool = False

    def structural(self) -> bool:
        """A block, verbatim, or holding either: stays put and splits the text."""
        if self.point:
            return self.name in BLOCK
        return (
            self.verbatim
            or self.name in BLOCK
            or any(isinstance(c, Node) and c.structural() for c in self.children)
        )

    def source(self) -> str:
        """The node as written (unclosed elements closed)."""
        inner = "".join(c if isinstance(c, str) else c.source() for c in self.children)
        return self.start + inner + self.end


class _TreeBuilder(HTMLParser):
    def __init__(self, xml: bool) -> None:
        super().__init__(convert_charrefs=False)  # entities come one by one, kept as written
        self.xml = xml
        self.root = Node("", "")
        self.open: list[Node] = [self.root]
        self.stray: list[str] = []

    def _add(self, item: Node | str) -> None:
        self.open[-1].children.append(item)

    def handle_starttag(self, tag: str, attrs) -> None:
        raw = self.get_starttag_text() or f"<{tag}>"
        if not self.xml and tag in VOID:
            self._add(Node(tag, raw, point=True))
            return
        written = re.match(r"<\s*([^\s/>]+)", raw)
        name = written.group(1) if written else tag
        node = Node(tag, raw, f"</{name}>")
        node.verbatim = (not self.xml and tag in VERBATIM) or bool(_NO_TRANSLATE.search(raw))
        self._add(node)
        self.open.append(node)

    def handle_startendtag(self, tag: str, attrs) -> None:
        self._add(Node(tag, self.get_starttag_text() or f"<{tag}/>", point=True))

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.open) - 1, 0, -1):
            if self.open[depth].name == tag:
                del self.open[depth:]  # elements left open inside it end here
                return
        self.stray.append(f"</{tag}>")

    def handle_data(self, data: str) -> None:
        self._add(data)

    def handle_entityref(self, name: str) -> None:
        self._add(Node("", f"&{name};", point=True))

    def handle_charref(self, name: str) -> None:
        self._add(Node("", f"&#{name};", point=True))

    def handle_comment(self, data: str) -> None:
        self._add(Node("", f"<!--{data}-->", point=True))

    def handle_decl(self, decl: str) -> None:
        self._add(Node("", f"<!{decl}>", point=True))

    def handle_pi(self, data: str) -> None:
        self._add(Node("", f"<?{data}>", point=True))

    def unknown_decl(self, data: str) -> None:
        self._add(Node("", f"<![{data}]>", point=True))


def parse(line: str, kind: str, where: str = "") -> Node:
    """The tree of one line of markup (`kind` html or xml). XML must be well-formed (an
    NmtError naming `where` otherwise); HTML is read as browsers do, an end tag that closes
    nothing is an error (it could not be put back in a well-formed output)."""
    if kind == "xml":
        try:
            ET.fromstring(f"<nmt-line>{line}</nmt-line>")
        except ET.ParseError as e:
            raise NmtError(f"{where or 'input'}: not well-formed XML ({e})") from None
    builder = _TreeBuilder(xml=kind == "xml")
    builder.feed(line)
    builder.close()
    if builder.stray:
        raise NmtError(
            f"{where or 'input'}: the end tag {builder.stray[0]} closes no element (--markup "
            f"{kind} needs tags that nest)"
        )
    return builder.root


@dataclass(eq=False)
class Segment:
    """A run of text and inline elements between structure: `text` is what the model reads
    (tags out, points as spaces); `spans` the character span of each inline node in it."""

    items: list[Node | str]
    text: str = ""
    spans: dict[int, tuple[int, int]] = field(default_factory=dict)  # id(node) -> (a, b)


def _flatten(items: list[Node | str], seg: Segment, parts: list[str], at: int) -> int:
    for item in items:
        if isinstance(item, str):
            parts.append(item)
            at += len(item)
            continue
        start = at
        if item.point:
            parts.append(" ")
            at += 1
        else:
            at = _flatten(item.children, seg, parts, at)
        seg.spans[id(item)] = (start, at)
    return at


def segments(root: Node) -> list[Node | Segment]:
    """The line in order: structural nodes (kept, their content segmented in turn) and
    segments of inline content."""
    out: list[Node | Segment] = []
    run: list[Node | str] = []

    def flush() -> None:
        if run:
            seg = Segment(list(run))
            parts: list[str] = []
            _flatten(seg.items, seg, parts, 0)
            seg.text = "".join(parts)
            out.append(seg)
            run.clear()

    for child in root.children:
        if isinstance(child, Node) and child.structural():
            flush()
            out.append(child)
        else:
            run.append(child)
    flush()
    return out


def layout(root: Node) -> list[tuple[str, Node | Segment]]:
    """The line as a sequence of ("raw", text) pieces and ("segment", Segment)s, structure
    written as it was and its content segmented."""
    pieces: list[tuple[str, Node | Segment]] = []
    for part in segments(root):
        if isinstance(part, Segment):
            pieces.append(("segment", part))
        elif part.point or part.verbatim:
            pieces.append(("raw", part))
        else:
            pieces.append(("open", part))
            pieces.extend(layout(part))
            pieces.append(("close", part))
    return pieces


_WORD = re.compile(r"\S+")


def _escape(text: str) -> str:
    return html.escape(text, quote=False)


def render(seg: Segment, target: str, alignment: list[tuple[int, int]]) -> str:
    """The segment's translation `target` with the segment's inline nodes put back around
    the target words that their source words align to: (source word, target word) pairs, in
    the words of seg.text (core) and `target`."""
    if not seg.text.strip():  # nothing translated: the segment as written
        return "".join(i if isinstance(i, str) else i.source() for i in seg.items)
    src_words = [(m.start(), m.end()) for m in _WORD.finditer(seg.text)]
    words = target.split()
    to_target: dict[int, list[int]] = {}
    for i, j in alignment:
        if 0 <= j < len(words):
            to_target.setdefault(i, []).append(j)

    def after_word_before(a: int) -> int:
        """Target position just after the words aligned to the source words before char a."""
        before = [i for i, (_, end) in enumerate(src_words) if end <= a]
        for i in reversed(before):
            if i in to_target:
                return max(to_target[i]) + 1
        return 0

    def place(node: Node) -> tuple[int, int]:
        a, b = seg.spans[id(node)]
        if node.point:
            p = after_word_before(a)
            return p, p
        inside = [i for i, (ws, we) in enumerate(src_words) if ws < b and we > a]
        found = [j for i in inside for j in to_target.get(i, [])]
        if not found:
            p = after_word_before(a)
            return p, p
        return min(found), max(found) + 1

    spaced: set[int] = set()

    def word(j: int) -> str:
        space = "" if j == 0 or j in spaced else " "
        spaced.add(j)
        return space + _escape(words[j])

    def emit(children: list[Node | str], lo: int, hi: int) -> str:
        nodes = [c for c in children if isinstance(c, Node)]
        placed = []
        for node in nodes:
            s, e = place(node)
            s = min(max(s, lo), hi)
            placed.append((s, min(max(e, s), hi), node))
        placed.sort(key=lambda x: (x[0], x[1]))
        out, k = [], lo
        for s, e, node in placed:
            s = max(s, k)  # siblings never overlap: each starts where the last ended
            e = max(e, s)
            out += [word(j) for j in range(k, s)]
            if node.point:
                # a point between words stands apart, as the space it was in the text read
                if s:
                    out.append(" " + node.start)
                else:
                    out.append(node.start + (" " if hi > 0 else ""))
                    spaced.add(0)
            else:
                if s < e and s not in spaced and s > 0:
                    out.append(" ")
                    spaced.add(s)
                out.append(node.start + emit(node.children, s, e) + node.end)
            k = e
        out += [word(j) for j in range(k, hi)]
        return "".join(out)

    lead = seg.text[: len(seg.text) - len(seg.text.lstrip())]
    trail = seg.text[len(seg.text.rstrip()) :]
    return _escape(lead) + emit(seg.items, 0, len(words)) + _escape(trail)


def tags_of(text: str, kind: str) -> list[str]:
    """Every tag, entity, comment and declaration of a line as written, in order of their
    start (what must all come back); text left out."""
    root = parse(text, kind)
    found: list[str] = []

    def walk(node: Node) -> None:
        for c in node.children:
            if isinstance(c, Node):
                found.append(c.start)
                if not c.point:
                    walk(c)
                    found.append(c.end)

    walk(root)
    return found


def is_well_formed(text: str, kind: str) -> bool:
    """XML: xml.etree parses it. HTML: every non-void element is closed in order."""
    if kind == "xml":
        try:
            ET.fromstring(f"<nmt-line>{text}</nmt-line>")
        except ET.ParseError:
            return False
        return True
    builder = _Checker()
    builder.feed(text)
    builder.close()
    return builder.ok and not builder.open


class _Checker(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.open: list[str] = []
        self.ok = True

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag not in VOID:
            self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs) -> None:
        pass  # <x/> opens nothing

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open[-1] != tag:
            self.ok = False
        else:
            self.open.pop()
