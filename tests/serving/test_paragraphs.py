"""`nmt serve` with paragraphs: each text's lines and sentences translated one by one and
rebuilt (nothing dropped), confidence and token probabilities per sentence, and the page that
shades unsure words and offers a sentence's alternatives on click."""

from __future__ import annotations

import math
import signal

import pytest
from conftest import browser_path
from starlette.testclient import TestClient
from test_serve import _start

from nmt.search import SearchOptions
from nmt.serving.app import make_app, server_info
from nmt.serving.batcher import BatchOptions
from nmt.serving.requests import Limits
from nmt.translation.translator import Translator

A, B, C = "The tall girl sees two red cars.", "The boys eat.", "A cat runs."


@pytest.fixture(scope="module")
def translator(trained) -> Translator:
    return Translator(trained)


@pytest.fixture(scope="module")
def client(trained, translator):
    app = make_app(translator, server_info(trained, translator), Limits(), BatchOptions())
    with TestClient(app) as c:
        yield c


def _post(client, body) -> dict:
    r = client.post("/translate", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def test_two_sentences_and_two_lines_each_get_their_translation(client, translator) -> None:
    alone = {s: t.text for s, t in zip([A, B, C], translator.translate([A, B, C]))}
    got = _post(client, {"text": f"{A} {B}\n\n{C}"})["translations"][0]
    assert got["text"] == f"{alone[A]} {alone[B]}\n\n{alone[C]}"
    assert [(s["source"], s["line"], s["text"]) for s in got["sentences"]] == [
        (A, 0, alone[A]),
        (B, 0, alone[B]),
        (C, 2, alone[C]),
    ]
    # split false: one sentence to the model, as before
    whole = _post(client, {"text": f"{A} {B}", "split": False})["translations"][0]
    assert whole["text"] == translator.translate([f"{A} {B}"])[0].text
    assert "sentences" not in whole


def test_sentences_carry_confidence_token_probs_and_nbest(client, translator) -> None:
    got = _post(client, {"text": f"{A} {B}", "nbest": 3, "beam_size": 4})["translations"][0]
    want = translator.translate([A, B], SearchOptions(beam_size=4, nbest=3))
    for s, t in zip(got["sentences"], want):
        assert [h["text"] for h in s["nbest"]] == [h.text for h in t.hypotheses]
        best = t.hypotheses[0]
        assert s["confidence"] == pytest.approx(best.log_prob / len(best.tokens), abs=1e-5)
        assert s["tokens"] == best.tokens
        assert math.fsum(math.log(p) for p in s["token_probs"]) == pytest.approx(
            best.log_prob, abs=1e-3
        )
    pieces = sum(len(s["tokens"]) for s in got["sentences"])
    total = sum(s["log_prob"] for s in got["sentences"])
    assert got["confidence"] == pytest.approx(total / pieces, abs=1e-5)


def test_one_sentence_keeps_its_nbest_and_attention(client, translator) -> None:
    got = _post(client, {"text": A, "nbest": 2, "attention": True})["translations"][0]
    want = translator.translate([A], SearchOptions(nbest=2, return_attention=True))[0]
    assert [h["text"] for h in got["nbest"]] == [h.text for h in want.hypotheses]
    assert got["attention"]["target"] == want.hypotheses[0].tokens
    assert got["sentences"][0]["attention"] == got["attention"]


def test_split_must_be_a_boolean(client) -> None:
    r = client.post("/translate", json={"text": A, "split": "yes"})
    assert r.status_code == 422 and "split" in r.json()["error"]


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser_path("chromium")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--window-size=1000,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(browser_path("chromedriver")), options=options)
    yield driver
    driver.quit()


def test_page_translates_paragraphs_shades_words_and_offers_alternatives(
    browser, trained, translator
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    want = translator.translate([A, B, C], SearchOptions(beam_size=5, nbest=3))
    proc, url = _start(trained)
    try:
        browser.get(url + "/")
        box = browser.find_element(By.ID, "source")
        box.send_keys(f"{A} {B}", Keys.SHIFT, Keys.ENTER, Keys.SHIFT, C)
        browser.find_element(By.ID, "go").click()
        wait = WebDriverWait(browser, 30)
        wait.until(lambda d: d.find_element(By.ID, "translation").text)
        shown = browser.find_element(By.ID, "translation").text
        assert shown == f"{want[0].text} {want[1].text}\n{want[2].text}"
        words = browser.find_elements(By.CSS_SELECTOR, "#translation .word")
        assert len(words) == sum(len(t.text.split()) for t in want)
        assert all(0 < float(w.get_attribute("data-prob")) <= 1 for w in words)
        # a word of the second sentence: that sentence's alternatives, and one chosen
        second = browser.find_elements(By.CSS_SELECTOR, "#translation .sentence")[1]
        second.find_element(By.CSS_SELECTOR, ".word").click()
        items = browser.find_elements(By.CSS_SELECTOR, "#alternatives li")
        assert [li.text.split("confidence")[0].strip() for li in items] == [
            h.text for h in want[1].hypotheses
        ]
        items[-1].click()
        assert second.text == want[1].hypotheses[-1].text
        assert not browser.find_element(By.ID, "alternatives").is_displayed()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def test_markup_is_kept_and_bad_markup_is_a_422(client) -> None:
    from nmt.translation.markup import is_well_formed, tags_of

    text = 'The <b>tall</b> girl sees <a href="#">two cars</a>.\n<p>The boys eat.</p>'
    got = _post(client, {"text": text, "markup": "html"})["translations"][0]["text"]
    assert len(got.split("\n")) == 2
    for line, out in zip(text.split("\n"), got.split("\n")):
        assert is_well_formed(out, "html")
        assert sorted(tags_of(out, "html")) == sorted(tags_of(line, "html"))
    r = client.post("/translate", json={"text": ["fine", "a\n<b>open"], "markup": "xml"})
    assert r.status_code == 422 and "text 2 line 2" in r.json()["error"]
    r = client.post("/translate", json={"text": "a", "markup": "xml", "split": False})
    assert r.status_code == 422 and "split" in r.json()["error"]
