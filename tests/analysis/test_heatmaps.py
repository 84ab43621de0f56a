"""Tests for nmt.analysis.heatmaps: maps from translations, every export format, merge_words,
fonts and logging while drawing, a browser render."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import warnings
import xml.etree.ElementTree as ET
from html import escape
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from conftest import browser_path

from nmt.analysis import render
from nmt.analysis.heatmaps import (
    FORMATS,
    AttentionMap,
    attention_maps,
    merge_words,
    save_attention,
    save_attention_maps,
)
from nmt.search import SearchOptions

# Tokens that need HTML escaping, a special token and a non-Latin one.
SRC = ["▁the", "▁re", "d", "▁car", "▁&", '▁"x"', "<unk>", "</s>"]
TGT = ["▁das", "▁ro", "te", "▁Auto", "▁<b>", "ü", "</s>"]


def _weights(n_tgt: int, n_src: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = rng.random((n_tgt, n_src)) + np.eye(n_tgt, n_src) * 3
    return w / w.sum(axis=1, keepdims=True)


@pytest.fixture
def maps() -> list[AttentionMap]:
    return [
        AttentionMap(7, SRC, TGT, _weights(len(TGT), len(SRC))),
        AttentionMap(12, ["▁hi", "</s>"], ["▁hallo", "</s>"], _weights(2, 2, seed=1)),
    ]


def _no_temp_files(out: Path) -> bool:
    return not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_import_is_standalone() -> None:
    code = (
        "import sys, nmt.analysis.heatmaps, nmt.analysis.curves; "
        "bad = [m for m in ('torch', 'matplotlib') if m in sys.modules]; "
        "assert not bad, bad"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)


def test_png(tmp_path: Path, maps: list[AttentionMap]) -> None:
    import matplotlib.image

    paths = save_attention(maps, tmp_path / "out", "png")
    assert [p.name for p in paths] == ["attention-00007.png", "attention-00012.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        pixels = matplotlib.image.imread(p)
        assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100
        assert pixels[..., :3].std() > 0.05
    # Figure size follows the token counts.
    big, small = (matplotlib.image.imread(p).shape for p in paths)
    assert big[0] > small[0] and big[1] > small[1]
    assert _no_temp_files(tmp_path / "out")


def test_svg_and_pdf(tmp_path: Path, maps: list[AttentionMap]) -> None:
    (svg,) = save_attention(maps[:1], tmp_path, "svg")
    assert svg.name == "attention-00007.svg"
    root = ET.parse(svg).getroot()
    assert root.tag.endswith("svg")
    # svg.fonttype "none" keeps labels as text (searchable, browser font fallback).
    assert "▁car" in svg.read_text(encoding="utf-8")

    (pdf,) = save_attention(maps[:1], tmp_path, "PDF")
    assert pdf.name == "attention-00007.pdf"
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF") and b"%%EOF" in data[-64:]


class _TableParser(HTMLParser):
    """Collects the text, cell titles/classes and links of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.cells: list[tuple[str, set[str]]] = []
        self.links: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        a = dict(attrs)
        if tag == "td" and a.get("title") is not None:
            self.cells.append((a["title"] or "", set((a.get("class") or "").split())))
        if tag == "a":
            self.links.append(a.get("href") or "")

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(path: Path) -> _TableParser:
    parser = _TableParser()
    parser.feed(path.read_text(encoding="utf-8"))
    parser.close()
    return parser


def test_html(tmp_path: Path, maps: list[AttentionMap]) -> None:
    paths = save_attention(maps, tmp_path, "html")
    assert [p.name for p in paths] == ["attention-00007.html", "attention-00012.html", "index.html"]
    for m, page in zip(maps, paths, strict=False):
        raw = page.read_text(encoding="utf-8")
        # Self-contained: no scripts, no remote assets.
        assert "<script" not in raw and "http://" not in raw and "https://" not in raw
        parsed = _parse(page)
        for tok in (*m.src_tokens, *m.tgt_tokens):
            assert escape(tok) in raw
            assert tok in parsed.text
        assert "<unk>" not in raw.replace("&lt;unk&gt;", "")
        n_tgt, n_src = m.weights.shape
        assert len(parsed.cells) == n_tgt * n_src
        for k, (title, classes) in enumerate(parsed.cells):
            i, j = divmod(k, n_src)
            assert title.endswith(f"{m.weights[i, j]:.3f}")
            assert ("max" in classes) == (j == int(np.argmax(m.weights[i])))
    index = _parse(paths[-1])
    assert index.links == ["attention-00007.html", "attention-00012.html"]
    assert _no_temp_files(tmp_path)


def test_npz_round_trip(tmp_path: Path, maps: list[AttentionMap]) -> None:
    maps.append(AttentionMap(3, ["a"], ["b"], np.array([[1.0]], dtype=np.float32)))
    (path,) = save_attention(maps, tmp_path, "npz")
    assert path.name == "attention.npz"
    with np.load(path) as data:  # allow_pickle=False
        for m in maps:
            w = data[f"weights_{m.index}"]
            assert w.dtype == m.weights.dtype
            np.testing.assert_array_equal(w, m.weights)
            assert data[f"src_{m.index}"].tolist() == m.src_tokens
            assert data[f"tgt_{m.index}"].tolist() == m.tgt_tokens


def test_json_round_trip(tmp_path: Path, maps: list[AttentionMap]) -> None:
    (path,) = save_attention(maps, tmp_path, "json")
    assert path.name == "attention.json"
    records = json.loads(path.read_text(encoding="utf-8"))
    assert [r["index"] for r in records] == [7, 12]
    for r, m in zip(records, maps, strict=True):
        assert r["src_tokens"] == m.src_tokens and r["tgt_tokens"] == m.tgt_tokens
        # rounded to 6 significant digits
        np.testing.assert_allclose(np.array(r["weights"]), m.weights, rtol=1e-5, atol=0)


def _significant_digits(number: str) -> int:
    mantissa = number.lstrip("-").lower().split("e")[0].replace(".", "")
    return len(mantissa.lstrip("0")) or 1


def test_json_weights_are_rounded(tmp_path: Path) -> None:
    # float64 thirds and a float32 weight print with 16 and 17 digits unrounded
    thirds = AttentionMap(1, ["a", "b", "c"], ["x"], np.full((1, 3), 1 / 3))
    small = AttentionMap(2, ["a", "b"], ["x"], np.array([[1e-9 / 3, 1 - 1e-9 / 3]], np.float32))
    (path,) = save_attention([thirds, small], tmp_path, "json")
    text = path.read_text(encoding="utf-8")
    numbers: list[str] = []
    json.loads(text, parse_float=numbers.append)  # the weights as written
    assert len(numbers) == 5 and max(map(_significant_digits, numbers)) <= 6, numbers
    assert json.loads(text)[0]["weights"] == [[0.333333] * 3]


def test_pdf_keeps_fonttools_progress_out_of_the_logs(
    tmp_path: Path,
    maps: list[AttentionMap],
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    # fontTools logs each step of subsetting the embedded fonts at INFO ("glyf pruned", ...),
    # about 150 lines a PDF; here logging prints INFO records to stderr, as the nmt command does
    fonttools = logging.getLogger("fontTools")
    level = fonttools.level
    root = logging.getLogger()
    to_stderr = logging.StreamHandler(sys.stderr)
    root.addHandler(to_stderr)
    try:
        with caplog.at_level(logging.INFO):
            (pdf,) = save_attention(maps[:1], tmp_path, "pdf")
    finally:
        root.removeHandler(to_stderr)
    assert pdf.read_bytes().startswith(b"%PDF")
    assert [r for r in caplog.records if r.name.startswith("fontTools")] == []
    err = capfd.readouterr().err
    assert "pruned" not in err and "subsetted" not in err, err[:500]
    assert fonttools.level == level  # the caller's setting is back


def _translations():
    from nmt.translation.translator import Output, Translation

    def out(tokens: list[str], attention: list[list[float]] | None) -> Output:
        return Output("".join(tokens), -1.0, -1.0, tokens, attention)

    src = ["▁the", "▁re", "d", "</s>"]
    weights = _weights(3, 4).tolist()
    return [
        Translation("the red", src, [out(["▁das", "▁ro", "</s>"], weights)]),
        Translation("", [], []),  # an empty line: no hypothesis
        Translation("the red", src, [out(["▁das", "</s>"], None)]),  # searched without
        Translation("red", src[1:], [out(["▁ro", "te", "</s>"], _weights(3, 3).tolist())]),
    ]


def test_attention_maps_from_translations() -> None:
    translations = _translations()
    maps = attention_maps(translations, 5)
    assert [m.index for m in maps] == [5, 8]  # numbered by line; lines 6 and 7 have none
    assert maps[0].src_tokens == ["▁the", "▁re", "d", "</s>"]
    assert maps[0].tgt_tokens == ["▁das", "▁ro", "</s>"]
    assert maps[0].weights.dtype == np.float32
    np.testing.assert_array_equal(maps[0].weights, np.float32(_weights(3, 4)))
    (words,) = attention_maps(translations[3:], 2, words=True)
    assert words.index == 2 and words.tgt_tokens == ["rote", "</s>"]
    np.testing.assert_allclose(
        words.weights, merge_words(attention_maps(translations[3:])[0]).weights
    )


def test_save_attention_maps_equals_its_two_steps(tmp_path: Path) -> None:
    translations = _translations()
    paths = save_attention_maps(translations, tmp_path / "a", "html", first_line=3, words=True)
    steps = save_attention(attention_maps(translations, 3, words=True), tmp_path / "b", "html")
    assert [p.name for p in paths] == [p.name for p in steps]
    assert [p.read_bytes() for p in paths] == [p.read_bytes() for p in steps]


def test_python_api_writes_what_nmt_attention_writes(trained: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from nmt.cli.main import app
    from nmt.translation.translator import Translator

    sentences = ["The red cat sees the dog.", "Two big houses."]
    (tmp_path / "in.txt").write_text("x\n" + "\n".join(sentences) + "\n", encoding="utf-8")
    args = ["attention", str(trained), "-i", str(tmp_path / "in.txt"), "--lines", "2-3"]
    args += ["-o", str(tmp_path / "cli"), "--format", "json", "-b", "2", "--words"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    results = Translator(trained).translate(
        sentences, SearchOptions(beam_size=2, return_attention=True)
    )
    (path,) = save_attention_maps(results, tmp_path / "api", "json", first_line=2, words=True)
    assert path.read_bytes() == (tmp_path / "cli" / "attention.json").read_bytes()


def test_layer_and_head_options_of_attention_and_translate(
    trained_transformer: Path, trained: Path, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from nmt.cli.main import app
    from nmt.translation.translator import Translator

    text = "The red cat sees the dog."
    runner = CliRunner()
    args = ["attention", str(trained_transformer), "--text", text, "--format", "json", "-b", "2"]
    result = runner.invoke(app, [*args, "-o", str(tmp_path / "cli"), "--layer", "0", "--head", "3"])
    assert result.exit_code == 0, result.output
    chosen = Translator(trained_transformer, attention_layer=0, attention_head=3)
    results = chosen.translate([text], SearchOptions(beam_size=2, return_attention=True))
    (path,) = save_attention_maps(results, tmp_path / "api", "json")
    assert path.read_bytes() == (tmp_path / "cli" / "attention.json").read_bytes()
    # translate's jsonl records show the same weights
    cmd = [
        "translate",
        str(trained_transformer),
        "--format",
        "jsonl",
        "--with-attention",
        "-b",
        "2",
    ]
    result = runner.invoke(app, [*cmd, "--layer", "0", "--head", "3", "-q"], input=text + "\n")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["hypotheses"][0]["attention"] == results[0].hypotheses[0].attention
    for bad, line in [
        (["--head", "x"], "--head must be a head number or mean, got 'x'"),
        (["--layer", "7"], "--layer must be between -2 and 1"),
    ]:
        result = runner.invoke(app, [*args, "-o", str(tmp_path / "bad"), *bad])
        assert result.exit_code == 2 and result.stderr.strip() == f"error: {line}" + (
            "" if "head" in line else " (the model has 2 decoder layers), got 7"
        )
    result = runner.invoke(
        app, ["attention", str(trained), "--text", text, "-o", str(tmp_path / "r"), "--head", "0"]
    )
    assert result.exit_code == 2 and "is an RNN, which has one" in result.stderr


def test_bad_inputs(tmp_path: Path, maps: list[AttentionMap]) -> None:
    with pytest.raises(ValueError, match="unknown attention format 'gif'.*png, svg, pdf, html"):
        save_attention(maps, tmp_path, "gif")
    assert not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match="index 7"):
        save_attention([maps[0], maps[0]], tmp_path, "json")
    with pytest.raises(ValueError, match="shape"):
        AttentionMap(1, ["a", "b"], ["c"], np.ones((2, 1)))
    assert FORMATS == ("png", "svg", "pdf", "html", "npz", "json")


def test_merge_words() -> None:
    src = ["▁the", "▁re", "d", "▁car", "</s>"]
    tgt = ["▁das", "▁ro", "te", "▁Auto", "</s>"]
    w = _weights(len(tgt), len(src), seed=3)
    merged = merge_words(AttentionMap(4, src, tgt, w))
    assert merged.index == 4
    assert merged.src_tokens == ["the", "red", "car", "</s>"]
    assert merged.tgt_tokens == ["das", "rote", "Auto", "</s>"]
    assert merged.weights.shape == (4, 4)
    np.testing.assert_allclose(merged.weights.sum(axis=1), 1.0)
    # Source pieces are summed, target pieces averaged.
    np.testing.assert_allclose(merged.weights[0], [w[0, 0], w[0, 1] + w[0, 2], w[0, 3], w[0, 4]])
    np.testing.assert_allclose(merged.weights[1, 0], (w[1, 0] + w[2, 0]) / 2)
    np.testing.assert_allclose(merged.weights[1, 1], (w[1, 1] + w[1, 2] + w[2, 1] + w[2, 2]) / 2)


def test_merge_words_edge_cases() -> None:
    # A special token is its own word, also when the next piece has no "▁"; a lone "▁" piece
    # joins the following piece (sentencepiece does this before CJK and punctuation).
    pieces = ["x", "▁a", "<unk>", "b", "▁", "東京", "</s>"]
    amap = AttentionMap(1, pieces, ["▁y"], _weights(1, len(pieces)))
    merged = merge_words(amap)
    assert merged.src_tokens == ["x", "a", "<unk>", "b", "東京", "</s>"]
    np.testing.assert_allclose(merged.weights.sum(axis=1), 1.0)
    empty = merge_words(AttentionMap(2, [], [], np.zeros((0, 0))))
    assert empty.weights.shape == (0, 0)


def test_cjk_without_font_warns_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    render.warn_once.cache_clear()
    cjk = [
        AttentionMap(i, ["▁東京", "▁へ", "</s>"], ["▁to", "▁Tokyo", "</s>"], _weights(3, 3))
        for i in (1, 2)
    ]
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        save_attention(cjk, tmp_path, "png")
        save_attention(cjk, tmp_path, "png")
    assert not [w for w in caught if "missing from font" in str(w.message)]
    ours = [r for r in caplog.records if r.name == "nmt.analysis.render"]
    if render.fonts()[1]:
        assert ours == []
    else:
        assert len(ours) == 1 and "CJK" in ours[0].getMessage()


def test_html_renders_in_chromium(tmp_path: Path, maps: list[AttentionMap]) -> None:
    import matplotlib.image

    chromium = browser_path("chromium")
    page = save_attention(maps[:1], tmp_path / "html", "html")[0]
    shot = tmp_path / "shot.png"
    cmd = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
        "--window-size=800,600", page.resolve().as_uri(),
    ]  # fmt: skip
    try:
        subprocess.run(cmd, capture_output=True, timeout=60, check=False)
    finally:
        shutil.rmtree(tmp_path / "profile", ignore_errors=True)
    assert shot.exists(), "chromium wrote no screenshot"
    pixels = matplotlib.image.imread(shot)[..., :3]
    assert pixels.std() > 0.02
    # The shaded cells are blue (rgba(30, 90, 200, weight) over white).
    blue = (pixels[..., 2] - pixels[..., 0]) > 0.15
    assert blue.sum() > 500
