"""Throughput and latency of `nmt serve` under concurrent clients, against `nmt translate`.

Starts `nmt serve CKPT` on 127.0.0.1 (a free port), then for each client count sends
--requests requests from that many client threads, one source sentence a request; every
tenth request (--bad-every) is malformed or over a limit and must get a 4xx. Prints, per client
count: sentences/s, p50 and p99 latency of the good requests, unexpected errors (a 5xx, a lost
connection, a good request not answered 200 or a bad one not answered 4xx); then the
sentences/s of one `Translator.translate` call on the same sentences (what `nmt translate`
runs on a file: the batch ceiling), and last `speedup at C clients vs 1: X.XXx` for the
largest and smallest client counts. Run it with nothing else busy on the machine.

usage: python tools/bench_serve.py CKPT --clients 1 8 32 --requests 10000
       [--source FILE]   (one sentence a line; default Multi30k's 2016 German test set)
       [--beam-size 5] [--workers N] [--threads N] [--max-wait-ms T] [--max-batch-tokens N]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from nmt.search import SearchOptions

REPO = Path(__file__).resolve().parents[1]
MULTI30K = Path(os.environ.get("MULTI30K_DIR", REPO.parent / "shared/data/multi30k"))

# (body, content type) of requests that must be refused with a 4xx; the server's default
# limits: 2,000 characters a sentence, beam size 16
BAD = [
    (b'{"text": "a sentence"', "application/json"),  # cut short
    (b'{"text": "caf\xe9"}', "application/json"),  # not UTF-8
    (b'{"text": "' + b"a" * 2_001 + b'"}', "application/json"),  # max_chars
    (b'{"text": "a", "beam_size": 17}', "application/json"),  # max_beam
    (b'{"text": 5}', "application/json"),  # a wrong type
    (b'{"text": "a", "nbest": 9, "beam_size": 2}', "application/json"),  # nbest > beam
    (b"[]", "text/plain"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args: argparse.Namespace) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "nmt", "serve", str(args.checkpoint), "--port", str(port)]
    cmd += ["--workers", str(args.workers), "--threads", str(args.threads)]
    cmd += [
        "--max-wait-ms",
        str(args.max_wait_ms),
        "--max-batch-tokens",
        str(args.max_batch_tokens),
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        if proc.poll() is not None:
            sys.exit(f"nmt serve exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    sys.exit("nmt serve did not start within 120 s")


def run_clients(url: str, sentences: list[str], clients: int, requests: int, args) -> dict:
    """Send `requests` requests from `clients` threads; latencies of the good ones, errors."""
    jobs = iter(range(requests))
    lock = threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []
    good = 0

    def client() -> None:
        nonlocal good
        with httpx.Client(base_url=url, timeout=120) as http:
            while True:
                with lock:
                    i = next(jobs, None)
                if i is None:
                    return
                bad = args.bad_every and i % args.bad_every == args.bad_every - 1
                if bad:
                    body, kind = BAD[(i // args.bad_every) % len(BAD)]
                else:
                    text = sentences[i % len(sentences)]
                    body = json.dumps({"text": text, "beam_size": args.beam_size}).encode()
                    kind = "application/json"
                start = time.perf_counter()
                try:
                    r = http.post("/translate", content=body, headers={"content-type": kind})
                    status = r.status_code
                except httpx.HTTPError as e:
                    status, r = 0, e
                took = time.perf_counter() - start
                with lock:
                    if bad and not 400 <= status < 500:
                        errors.append(f"bad request answered {status}")
                    elif not bad and status != 200:
                        errors.append(f"good request answered {status}: {r}")
                    elif not bad:
                        latencies.append(took)
                        good += 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    latencies.sort()
    return {
        "rate": good / wall,
        "p50": 1000 * statistics.median(latencies) if latencies else float("nan"),
        "p99": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
        if latencies
        else float("nan"),
        "errors": errors,
    }


def translate_rate(args: argparse.Namespace, sentences: list[str]) -> float:
    """Sentences/s of one translate call over the sentences, as `nmt translate` runs a file."""
    from nmt.translation.translator import Translator

    translator = Translator(args.checkpoint, threads=args.threads, workers=args.workers)
    translator.translate(sentences[:8], SearchOptions(beam_size=args.beam_size))  # first-call costs
    start = time.perf_counter()
    translator.translate(sentences, SearchOptions(beam_size=args.beam_size, scores=False))
    rate = len(sentences) / (time.perf_counter() - start)
    translator.close()
    return rate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--requests", type=int, default=1000)
    p.add_argument("--source", type=Path, default=MULTI30K / "test_2016_flickr.de")
    p.add_argument("--beam-size", type=int, default=5)
    p.add_argument("--bad-every", type=int, default=10, help="every Nth request is bad (0: none)")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--max-wait-ms", type=float, default=10.0)
    p.add_argument("--max-batch-tokens", type=int, default=4096)
    args = p.parse_args()
    sys.path.insert(0, str(REPO))
    sentences = [s for s in args.source.read_text(encoding="utf-8").splitlines() if s.strip()]
    proc, url = start_server(args)
    rates = {}
    try:
        print(f"{'clients':>7} {'sent/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
        for clients in args.clients:
            found = run_clients(url, sentences, clients, args.requests, args)
            rates[clients] = found["rate"]
            print(
                f"{clients:>7} {found['rate']:>8.1f} {found['p50']:>8.1f} {found['p99']:>8.1f} "
                f"{len(found['errors']):>7}",
                flush=True,
            )
            for e in itertools.islice(found["errors"], 3):
                print(f"        {e}")
    finally:
        proc.terminate()
        code = proc.wait(timeout=60)
    good = args.requests - (args.requests // args.bad_every if args.bad_every else 0)
    ceiling = translate_rate(args, [sentences[i % len(sentences)] for i in range(good)])
    most = max(args.clients)
    print(f"server exit code after SIGTERM: {code}")
    print(f"nmt translate, the same {good} sentences in one call: {ceiling:.1f} sent/s")
    print(f"{most} clients vs nmt translate: {rates[most] / ceiling:.0%}")
    fewest = min(args.clients)
    print(f"speedup at {most} clients vs {fewest}: {rates[most] / rates[fewest]:.2f}x")


if __name__ == "__main__":
    main()
