"""`nmt export --format web`: the page in a headless Chromium, served by a static HTTP server,
translates as the Python runtime translates the same export (greedy and beam, both
architectures); its messages where it cannot run; the export's refusals."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from conftest import browser_path, nmt, ok, user_error

from nmt.runs import web
from nmt.runtime.translator import RuntimeTranslator
from nmt.search_options import SearchOptions
from nmt.tokenizer import EOS

# the toy test split's first sentences, and some the page must survive
SENTENCES = 20
ODD = ["", "the", "The cat sees the cat sees the cat sees the cat sees the cat.", "Ünïcode ✓"]


def built() -> None:
    """The tests need the page's script (make web, which make test runs)."""
    try:
        web.bundle()
    except Exception as e:
        import os

        (pytest.fail if os.environ.get("CI") else pytest.skip)(str(e))


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The folder the static server serves: one exported page a subfolder."""
    return tmp_path_factory.mktemp("site")


@pytest.fixture(scope="module")
def url(site) -> Iterator[str]:
    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join()


def export(checkpoint: Path, out: Path, *options: str) -> Path:
    built()
    result = nmt("export", checkpoint, "--format", "web", "-o", out, *options)
    ok(result)
    assert f"python -m http.server --directory {out} 8000" in result.stderr
    return out


@pytest.fixture(scope="module")
def rnn_page(trained, site) -> Path:
    return export(trained, site / "rnn")


@pytest.fixture(scope="module")
def transformer_page(trained_transformer, site) -> Path:
    return export(trained_transformer, site / "transformer")


@pytest.fixture(scope="module")
def browser():
    chromium, chromedriver = browser_path("chromium"), browser_path("chromedriver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--window-size=1000,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    driver.set_script_timeout(120)
    yield driver
    driver.quit()


def open_page(browser, address: str) -> None:
    """Load the page and wait until its model is loaded (or it says why not)."""
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(address)
    WebDriverWait(browser, 60).until(
        lambda d: d.execute_script("return document.body.dataset.state") != "loading"
    )
    state = browser.execute_script("return document.body.dataset.state")
    assert state == "ready", browser.find_element("id", "error").text


def in_browser(browser, sentences: list[str], **options) -> list[dict]:
    got = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "window.nmt.translate(arguments[0], arguments[1]).then(done, e => done(String(e)));",
        sentences,
        options,
    )
    assert isinstance(got, list), got
    return got


def assert_same(browser, page: Path, sentences: list[str], beam: int, nbest: int) -> None:
    """The page's n-best lists are the runtime's, texts and pieces; scores to float32
    rounding (WebAssembly's kernels sum in another order than the CPU's)."""
    got = in_browser(browser, sentences, beamSize=beam, nbest=nbest, returnAttention=True)
    runtime = RuntimeTranslator(page, threads=1)
    want = runtime.translate(
        sentences, SearchOptions(beam_size=beam, nbest=nbest, return_attention=True)
    )
    for g, w in zip(got, want):
        assert g["srcTokens"] == w.src_tokens
        assert [h["text"] for h in g["hypotheses"]] == [h.text for h in w.hypotheses], w.source
        assert [h["tokens"] for h in g["hypotheses"]] == [h.tokens for h in w.hypotheses]
        assert [h["score"] for h in g["hypotheses"]] == pytest.approx(
            [h.score for h in w.hypotheses], abs=1e-4
        )
        for gh, wh in zip(g["hypotheses"], w.hypotheses):
            np.testing.assert_allclose(gh["attention"], wh.attention, atol=1e-4)


def test_rnn_page_translates_as_the_runtime(browser, url, rnn_page, toy_dir) -> None:
    sentences = (toy_dir / "test.en").read_text(encoding="utf-8").splitlines()[:SENTENCES]
    open_page(browser, f"{url}/rnn/")
    assert_same(browser, rnn_page, sentences + ODD, beam=1, nbest=1)
    assert_same(browser, rnn_page, sentences + ODD, beam=5, nbest=3)


def test_transformer_page_translates_as_the_runtime(
    browser, url, transformer_page, toy_dir
) -> None:
    sentences = (toy_dir / "test.en").read_text(encoding="utf-8").splitlines()[:SENTENCES]
    open_page(browser, f"{url}/transformer/")
    assert_same(browser, transformer_page, sentences, beam=1, nbest=1)
    assert_same(browser, transformer_page, sentences, beam=5, nbest=2)


def test_the_page_shows_translation_nbest_and_attention(browser, url, rnn_page, toy_dir) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    sentence = (toy_dir / "test.en").read_text(encoding="utf-8").splitlines()[3]
    open_page(browser, f"{url}/rnn/")
    browser.find_element(By.ID, "source").send_keys(sentence)
    browser.find_element(By.ID, "go").click()
    wait = WebDriverWait(browser, 30)
    wait.until(lambda d: d.find_element(By.ID, "translation").text)
    want = RuntimeTranslator(rnn_page, threads=1).translate(
        [sentence], SearchOptions(beam_size=5, nbest=3, return_attention=True)
    )[0]
    assert browser.find_element(By.ID, "translation").text == want.text
    items = browser.find_elements(By.CSS_SELECTOR, "#nbest li .text")
    assert [li.text for li in items] == [h.text for h in want.hypotheses]
    rows = browser.find_elements(By.CSS_SELECTOR, "#heatmap g.row")
    assert len(rows) == len(want.hypotheses[0].tokens)
    cells = rows[0].find_elements(By.CSS_SELECTOR, "rect.cell")
    assert len(cells) == len(want.src_tokens)
    ActionChains(browser).move_to_element(cells[0]).perform()
    wait.until(lambda d: d.find_element(By.ID, "weight").text)
    weight = want.hypotheses[0].attention[0][0]
    assert browser.find_element(By.ID, "weight").text.endswith(f"{weight:.4f}")


def test_without_webassembly_the_page_says_so(browser, url, rnn_page) -> None:
    from selenium.webdriver.common.by import By

    hidden = browser.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument", {"source": "delete window.WebAssembly;"}
    )
    try:
        browser.get(f"{url}/rnn/")
        assert "cannot run WebAssembly" in browser.find_element(By.ID, "fatal").text
        assert browser.execute_script("return document.body.dataset.state") == "unsupported"
    finally:
        browser.execute_cdp_cmd(
            "Page.removeScriptToEvaluateOnNewDocument", {"identifier": hidden["identifier"]}
        )


def test_from_a_file_the_page_says_how_to_serve_it(browser, rnn_page) -> None:
    from selenium.webdriver.common.by import By

    browser.get((rnn_page / "index.html").as_uri())
    assert "python -m http.server" in browser.find_element(By.ID, "fatal").text


# -- the search alone, in node: search.ts against nmt/runtime/search.py ----------------------
class Scripted:
    """Log-probabilities that depend on the sentence, the step and the previous token only
    (a table both searches read): EOS likelier as the output grows, and at once in some
    sentences (min_len decides there); a third of the other tokens impossible, so that beams
    run short of candidates (the rules for -inf decide there)."""

    def __init__(self, sentences: int, steps: int = 24, vocab: int = 9, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        logits = rng.normal(0, 2, (sentences, steps, vocab, vocab))
        logits[..., EOS] += np.arange(steps)[None, :, None] * 0.4 - 3
        logits[::3, :, :, EOS] += 6
        impossible = rng.random(logits.shape) < 0.33
        impossible[..., EOS] = False
        logits[impossible] = -np.inf
        logits -= logits.max(-1, keepdims=True)
        log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        self.table = log_probs.astype(np.float32)
        self.steps = steps

    def encode(self, src, src_lengths):
        rows = np.arange(src.shape[0])
        return rows, (rows, np.zeros_like(rows))

    def decode_step(self, state, prev, enc):
        sent, step = state
        log_probs = self.table[sent, np.minimum(step, self.steps - 1), prev].copy()
        return log_probs, (sent, step + 1), None

    def select_state(self, state, rows):
        return state[0][rows], state[1][rows]

    def select_encoded(self, enc, sentences):
        return enc[sentences]


SEARCHES = [
    dict(beam_size=1),
    dict(beam_size=1, min_len=3, max_len_ratio=0.5, max_len_offset=2),
    dict(beam_size=2, nbest=2, length_penalty=0.0),
    dict(beam_size=3, nbest=3, length_penalty=1.0),
    dict(beam_size=5, nbest=4, length_penalty="avg", min_len=2),
    dict(beam_size=4, nbest=2, length_penalty=0.6, stopping="exact"),
    dict(beam_size=5, length_penalty=2.0, max_len_ratio=0.0, max_len_offset=1),
    dict(beam_size=6, nbest=6, length_penalty=1.0, max_len_ratio=3.0, max_len_offset=0),
    dict(beam_size=6, nbest=3, min_len=3, length_penalty=0.6),
    dict(beam_size=8, nbest=8, min_len=1, length_penalty="avg", stopping="exact"),
    dict(beam_size=8, nbest=8, min_len=1, max_len_ratio=0.0, max_len_offset=1),
]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_search_is_the_runtimes_rule_for_rule(seed) -> None:
    """Greedy and beam, every length penalty, min/max length, stopping early or exact, n-best:
    the same hypotheses, log-probabilities bit for bit, scores to the last bits of pow."""
    import json
    import shutil
    import subprocess

    from nmt.runtime.search import search_batch

    built()
    node = shutil.which("node")
    if node is None:
        pytest.skip("node not found")
    rng = np.random.default_rng(seed)
    sources = [rng.integers(4, 9, rng.integers(1, 9)).tolist() for _ in range(12)]
    model = Scripted(len(sources), seed=seed)
    keys = dict(beam_size="beamSize", length_penalty="lengthPenalty", min_len="minLen")
    keys.update(max_len_ratio="maxLenRatio", max_len_offset="maxLenOffset")
    cases = []
    for search in SEARCHES:
        options = {"nbest": 1, "stopping": "early", "returnAttention": False}
        options |= {"lengthPenalty": 1.0, "minLen": 0, "maxLenRatio": 1.5, "maxLenOffset": 10}
        options |= {keys.get(k, k): v for k, v in search.items()}
        cases.append({"sources": sources, "options": options})
    request = {
        # JSON has no infinities: -inf travels as null
        "table": [None if v == -np.inf else v for v in model.table.reshape(-1).tolist()],
        "steps": model.steps,
        "vocab": model.table.shape[-1],
        "cases": cases,
    }
    script = Path(__file__).with_name("web_search.mjs")
    run = subprocess.run(
        [node, str(script), str(web.BUNDLE / "search.mjs")],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr[-2000:]

    def number(value: float | None) -> float:
        return -np.inf if value is None else value  # JSON.stringify writes -Infinity as null

    for search, got in zip(SEARCHES, json.loads(run.stdout)):
        want = search_batch(model, sources, SearchOptions(**search))  # type: ignore[arg-type]
        for g, w in zip(got, want):
            assert [h["tokens"] for h in g] == [h.tokens for h in w], search
            assert [number(h["logProb"]) for h in g] == [h.log_prob for h in w], search
            scores = [number(h["score"]) for h in g]
            assert scores == pytest.approx([h.score for h in w], rel=1e-12), search


# -- the export's refusals: one line each, before any work ---------------------------------
def test_an_unbuilt_script_names_the_make_target(trained, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(web, "BUNDLE", tmp_path / "dist")
    user_error(nmt("export", trained, "--format", "web", "-o", tmp_path / "page"), "make web")
    assert not (tmp_path / "page").exists()


def test_an_earlier_web_export_is_replaced_whole(trained, tmp_path) -> None:
    old = tmp_path / "page"
    old.mkdir()
    for name in ("model.json", "page.json", "stale.txt"):
        (old / name).write_text("{}")
    export(trained, old)
    assert not (old / "stale.txt").exists()
    assert web.is_web_export(old) and (old / "index.html").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["page"]  # nothing left beside it


def test_an_out_folder_that_is_not_an_export_is_refused(trained, tmp_path) -> None:
    built()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    line = user_error(nmt("export", trained, "--format", "web", "-o", tmp_path / "mine"), "-o")
    assert "not a web export" in line
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path) -> None:
    built()
    (tmp_path / "x.pt").write_text("not a checkpoint")
    user_error(nmt("export", tmp_path / "x.pt", "--format", "web", "-o", tmp_path / "page"))
    assert [p.name for p in tmp_path.iterdir()] == ["x.pt"]  # no temporary folder left
