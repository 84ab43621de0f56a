"""The page of `nmt export --format web` in headless Chromium, against the Python runtime on
the same export.

Exports CKPT as a web page (and its ONNX graphs) into a temporary folder, serves it from a
local static HTTP server and opens it in headless Chromium with the HTTP cache off. Prints the
bundle's size (what a visitor downloads), then:
- first translation: seconds from the start of the page's navigation to the end of the first
  translation of one sentence (the page's HTML, script, WebAssembly binary, graphs and
  tokenizer fetched and started, then the search): the median of --loads fresh loads;
- sentences/s of one call translating the first --sentences lines of --source (after one
  pass over them, which compiles and optimizes the WebAssembly the search calls) in the browser
  (onnxruntime-web on one thread: a static server sends no cross-origin isolation headers, so
  no WebAssembly threads), and of the Python runtime (`nmt translate DIR`'s RuntimeTranslator)
  on one thread, greedy and beam --beam-size; identical outputs are counted.
Last line: `first translation: X.XX s; browser/runtime throughput: X.XXx` (beam --beam-size).
Run it with nothing else busy on the machine.

usage: python tools/bench_web.py [CKPT] [--source FILE] [--sentences 100] [--beam-size 5]
       [--precision float32|float16|int8] [--loads 3]
       CKPT defaults to runs/demo/best.pt (make demo), --source to its test split
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import statistics
import tempfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from nmt.runs.web import PAGE_INFO, SCRIPT, WASM, export_web
from nmt.runtime.translator import RuntimeTranslator
from nmt.search_options import SearchOptions

REPO = Path(__file__).resolve().parents[1]


class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium = os.environ.get("NMT_CHROMIUM") or shutil.which("chromium") or "chromium"
    driver_path = os.environ.get("NMT_CHROMEDRIVER") or shutil.which("chromedriver")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_script_timeout(600)
    # every load fetches everything again, as a first visit does
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": True})
    return driver


# resolves with {ms: performance.now() at the end (ms since navigation started), out}; the
# page's script sets window.nmt once it runs, which can be after the load event
TRANSLATE = """
const [sentences, options, done] = arguments;
const page = () =>
  window.nmt ? Promise.resolve(window.nmt) : new Promise(r => setTimeout(r, 5)).then(page);
page()
  .then(nmt => nmt.ready.then(() => nmt.translate(sentences, options)))
  .then(
    out => done({ms: performance.now(), out, timings: window.nmt.timings}),
    e => done({error: String(e)}),
  );
"""
# the same, timed inside the page: the translation alone
TIMED = """
const [sentences, options, done] = arguments;
window.nmt.ready.then(async () => {
  const start = performance.now();
  const out = await window.nmt.translate(sentences, options);
  done({ms: performance.now() - start, out});
}, e => done({error: String(e)}));
"""


def run(driver, script: str, sentences: list[str], options: dict) -> tuple[float, list]:
    got = driver.execute_async_script(script, sentences, options)
    if "error" in got:
        raise SystemExit(f"the page failed: {got['error']}")
    return got["ms"] / 1000, got["out"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", nargs="?", type=Path, default=REPO / "runs/demo/best.pt")
    parser.add_argument("--source", type=Path)
    parser.add_argument("--sentences", type=int, default=100)
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--precision", default="float32")
    parser.add_argument("--loads", type=int, default=3)
    args = parser.parse_args()
    if not args.checkpoint.is_file():
        raise SystemExit(f"{args.checkpoint}: no such checkpoint (make demo trains one)")
    source = args.source or args.checkpoint.parent / "data/test.en"
    sentences = source.read_text(encoding="utf-8").splitlines()[: args.sentences]

    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "page"
        export_web(args.checkpoint, page, precision=args.precision)
        sizes = {f.name: f.stat().st_size for f in page.iterdir()}
        loaded = sum(sizes[n] for n in ("index.html", SCRIPT, PAGE_INFO, "model.json"))
        loaded += sum(sizes[n] for n in sizes if n.endswith((".onnx", ".model", ".wasm")))
        graphs = sum(sizes[n] for n in sizes if n.endswith(".onnx"))
        print(
            f"bundle: {SCRIPT} {sizes[SCRIPT] / 1e6:.2f} MB + {WASM} {sizes[WASM] / 1e6:.2f} MB; "
            f"graphs {graphs / 1e6:.2f} MB ({args.precision}); a visitor downloads "
            f"{loaded / 1e6:.2f} MB"
        )
        handler = functools.partial(Quiet, directory=str(page))
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_port}/"
        driver = browser()
        try:
            firsts = []
            for _ in range(args.loads):
                driver.get("about:blank")
                driver.get(url)
                got = driver.execute_async_script(
                    TRANSLATE, sentences[:1], {"beamSize": args.beam_size}
                )
                if "error" in got:
                    raise SystemExit(f"the page failed: {got['error']}")
                firsts.append(got["ms"] / 1000)
                stages = ", ".join(f"{k} {v / 1000:.2f}" for k, v in got["timings"].items())
                print(f"load: {stages}, translated {got['ms'] / 1000:.2f} s")
            first = statistics.median(firsts)
            print(f"first translation after navigation: {', '.join(f'{t:.2f}' for t in firsts)} s")
            runtime = RuntimeTranslator(page, threads=1)
            ratios = {}
            for beam in (1, args.beam_size):
                options = {"beamSize": beam}
                # a pass first: WebAssembly functions are compiled, then optimized, as they
                # are first called (and the runtime's allocations warm up too)
                run(driver, TIMED, sentences, options)
                seconds, out = run(driver, TIMED, sentences, options)
                runtime.translate(sentences, SearchOptions(beam_size=beam))
                start = time.perf_counter()
                want = runtime.translate(sentences, SearchOptions(beam_size=beam))
                python = time.perf_counter() - start
                same = sum(o["hypotheses"][0]["text"] == w.text for o, w in zip(out, want))
                web_rate, py_rate = len(sentences) / seconds, len(sentences) / python
                ratios[beam] = web_rate / py_rate
                print(
                    f"beam {beam}: browser {web_rate:.1f} sentences/s, runtime (1 thread) "
                    f"{py_rate:.1f} sentences/s, {ratios[beam]:.2f}x; identical "
                    f"{same}/{len(sentences)}"
                )
        finally:
            driver.quit()
            server.shutdown()
    print(
        f"first translation: {first:.2f} s; browser/runtime throughput: "
        f"{ratios[args.beam_size]:.2f}x"
    )


if __name__ == "__main__":
    main()
