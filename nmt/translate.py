"""Translation: the in-memory `Translator` and streaming translation of files of any size.

Line alignment is kept whatever the input: output line i translates input line i, an empty
line gives an empty line, an over-long line is truncated (with a warning), never dropped.
"""

from __future__ import annotations

import json
import logging
import os
import weakref
from collections.abc import Callable, Iterable, Iterator
from copy import deepcopy
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import torch

from nmt import NmtError
from nmt.checkpoint import load_checkpoint
from nmt.corpus import decode_line
from nmt.model import Seq2Seq
from nmt.search import Hypothesis, SearchOptions, search_batch, search_ids

log = logging.getLogger(__name__)


@dataclass
class Output:
    text: str
    log_prob: float
    score: float
    tokens: list[str] = field(default_factory=list)  # target pieces
    attention: list[list[float]] | None = None  # (len(tokens) + 1, len(src_tokens) + 1), EOS incl.


@dataclass
class Translation:
    source: str
    src_tokens: list[str]
    hypotheses: list[Output]

    @property
    def text(self) -> str:
        return self.hypotheses[0].text if self.hypotheses else ""


class Translator:
    """A model loaded from one checkpoint file, ready to translate lists of sentences."""

    def __init__(
        self,
        checkpoint: str | Path,
        device: str = "cpu",
        quantize: str | None = None,
        threads: int = 0,
        workers: int = 1,
    ) -> None:
        self._pool = None  # worker processes, started at the first translation
        if workers < 1:
            raise NmtError(f"--workers must be >= 1, got {workers}")
        if workers > 1 and device != "cpu":
            raise NmtError("--workers above 1 runs on the CPU only")
        if threads:
            torch.set_num_threads(threads)
        ckpt = load_checkpoint(checkpoint, device, mmap=True)
        self.config, self.tokenizer, self.model = ckpt.config, ckpt.tokenizer, ckpt.model
        self.max_src_len = self.config.data.max_len
        if quantize == "int8":
            if device != "cpu":
                raise NmtError("--quantize int8 runs on the CPU only")
            self.model = quantize_int8(self.model, copy=False)
        elif quantize not in (None, "none"):
            raise NmtError(f"--quantize {quantize}: allowed values are none, int8")
        self.workers = workers
        self.worker_threads = threads or 1

    def translate(
        self,
        sentences: list[str],
        beam_size: int = 5,
        batch_tokens: int = 4096,
        line_numbers: Iterable[int] | None = None,
        **options: Any,
    ) -> list[Translation]:
        """Translate in memory; `options` are the fields of `SearchOptions` (nbest,
        length_penalty, max_len_ratio, max_len_offset, min_len, stopping,
        return_attention, scores)."""
        opts = SearchOptions(beam_size=beam_size, **options)
        check_options(opts)
        ids = self.tokenizer.encode_src(sentences)
        numbers = list(line_numbers) if line_numbers is not None else range(1, len(ids) + 1)
        for n, seq in zip(numbers, ids):
            if len(seq) > self.max_src_len:
                log.warning(
                    "line %d: %d tokens, truncated to the model's %d",
                    n,
                    len(seq),
                    self.max_src_len,
                )
                del seq[self.max_src_len :]
        todo = [i for i, seq in enumerate(ids) if seq]
        todo_ids = [ids[i] for i in todo]
        if self.workers > 1:
            # several batches a worker, so that none waits long for the last one to finish
            tokens = sum(len(seq) + 1 for seq in todo_ids)
            split = BATCHES_PER_WORKER * self.workers
            batch_tokens = max(1, min(batch_tokens, -(-tokens // split)))
        found = search_ids(self.model, todo_ids, opts, batch_tokens, self._map_batches())
        # one detokenizer call for all hypotheses: each sentencepiece batch call has a fixed
        # cost (0.45 ms measured here), which a call per sentence paid on every line
        texts = iter(self.tokenizer.decode_tgt([h.tokens for hyps in found for h in hyps]))
        results = [Translation(s, [], []) for s in sentences]
        for i, hyps in zip(todo, found):
            results[i] = Translation(
                sentences[i],
                self.tokenizer.src_pieces(ids[i]) + ["</s>"],
                [self._output(h, next(texts), opts.return_attention) for h in hyps],
            )
        return results

    def _map_batches(self) -> Callable[[list[list[list[int]]], SearchOptions], list] | None:
        """Batches to the worker processes, results in order; None: search in this process."""
        if self.workers == 1:
            return None
        if self._pool is None:
            import multiprocessing

            # fork: the workers share the loaded model's memory instead of loading their own
            ctx = multiprocessing.get_context("fork")
            self._pool = ctx.Pool(self.workers, _worker_init, (self.model, self.worker_threads))
            # stops the workers when the Translator is collected, or at the latest at exit
            # while the modules terminate() needs are still there
            self._stop_pool = weakref.finalize(self, self._pool.terminate)
        pool = self._pool

        def map_batches(batches: list[list[list[int]]], opts: SearchOptions) -> list:
            # the largest batches first, so that the small ones fill the gaps at the end
            order = sorted(range(len(batches)), key=lambda i: -_padded_tokens(batches[i]))
            found = pool.imap(_worker_search, [(batches[i], opts) for i in order])
            results: list = [None] * len(batches)
            for i, hyps in zip(order, found):
                results[i] = hyps
            return results

        return map_batches

    def close(self) -> None:
        """Stop the worker processes (also done when the Translator is garbage-collected)."""
        if self._pool is not None:
            self._stop_pool()
            self._pool = None

    def _output(self, hyp: Hypothesis, text: str, with_attention: bool) -> Output:
        return Output(
            text=text,
            log_prob=round(hyp.log_prob, 6),
            score=round(hyp.score, 6),
            tokens=self.tokenizer.tgt_pieces(hyp.tokens) + ["</s>"],
            attention=hyp.attention.tolist()
            if with_attention and hyp.attention is not None
            else None,
        )


# Each worker process translates whole batches, on one thread by default: decoder steps are
# small matmuls and elementwise passes that two threads on a CPU speed up far less than
# twice, while two processes each on its own core come closer (see README, Performance).
_worker_model: Seq2Seq | None = None
# beam 5 over the 1,000 Multi30k test sentences with 2 workers, mean of 4 runs: 9.2 s with
# 2 batches a worker, 8.3 s with 4, 8.1 s with 6 (smaller batches use the cores less well)
BATCHES_PER_WORKER = 4


def _padded_tokens(batch: list[list[int]]) -> int:
    return len(batch) * (max(map(len, batch)) + 1)


def _worker_init(model: Seq2Seq, threads: int) -> None:
    global _worker_model
    torch.set_num_threads(threads)
    _worker_model = model


def _worker_search(task: tuple[list[list[int]], SearchOptions]) -> list[list[Hypothesis]]:
    batch, opts = task
    return search_batch(_worker_model, batch, opts)


def check_options(opts: SearchOptions) -> None:
    if opts.beam_size < 1:
        raise NmtError(f"--beam-size must be >= 1, got {opts.beam_size}")
    if not 1 <= opts.nbest <= opts.beam_size:
        raise NmtError(
            f"--nbest must be between 1 and --beam-size ({opts.beam_size}), got {opts.nbest}"
        )
    if opts.max_len_ratio < 0 or opts.max_len_offset < 0 or opts.min_len < 0:
        raise NmtError("--max-len-ratio, --max-len-offset and --min-len must be >= 0")
    if opts.stopping not in ("early", "exact"):
        raise NmtError(f"--stopping must be early or exact, got {opts.stopping!r}")
    lp = opts.length_penalty
    if lp != "avg" and (isinstance(lp, str) or lp < 0):
        raise NmtError(f"--length-penalty must be a number >= 0 or avg, got {lp!r}")


def quantize_int8(model: Seq2Seq, copy: bool = True) -> Seq2Seq:
    """Dynamic int8 quantization of the Linear and recurrent layers (CPU inference).

    A tied output layer multiplies by the embedding matrix directly, which quantization
    would not see: it gets an int8 copy of its own, as it is the largest matmul of a step.
    Bahdanau's energy (A -> 1) stays float: quantizing its (B, S, A) input at every step
    costs more than the product saves (400 x 20 x 512: 1.5 ms float, 6 ms int8).
    """
    import warnings

    from torch.ao.quantization import default_dynamic_qconfig, quantize_dynamic

    if copy:  # otherwise `model` itself becomes the quantized one
        model = deepcopy(model)
    model.eval()
    # torch.ao.quantization warns that it is deprecated, and an empty Linear that its init
    # does nothing: both are known here
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if model.output is None:
            weight = model.tgt_embed.weight  # (V, E)
            # built empty and given the tied weights: a Linear(E, V) would first draw
            # V x E random numbers only to overwrite them
            output = model.output = torch.nn.Linear(0, 0)
            output.in_features, output.out_features = weight.size(1), weight.size(0)
            output.weight = torch.nn.Parameter(weight.detach().clone())
            output.bias = torch.nn.Parameter(model.output_bias.detach().clone())
        kinds = (torch.nn.Linear, torch.nn.GRU, torch.nn.LSTM, torch.nn.GRUCell, torch.nn.LSTMCell)
        spec = {
            name: default_dynamic_qconfig
            for name, module in model.named_modules()
            if isinstance(module, kinds) and not name.endswith("attention.energy")
        }
        return quantize_dynamic(model, spec, dtype=torch.qint8, inplace=True)


def read_chunks(
    stream: IO[bytes],
    chunk_lines: int,
    errors: str = "strict",
    name: str = "<stdin>",
    skip: int = 0,
) -> Iterator[tuple[int, list[str]]]:
    """(first line number, lines) chunks of a binary stream, decoded as UTF-8.

    Chunks always start at line 1 + k * chunk_lines; `skip` only drops the chunks before the
    one holding line skip + 1, so a resumed run batches (and scores) that chunk exactly as an
    uninterrupted run would.
    """
    chunk: list[str] = []
    start = skip - skip % chunk_lines
    first = start + 1
    for n, raw in enumerate(stream, 1):
        if n <= start:
            continue
        try:
            line = decode_line(raw, f"{name}:{n}")
        except NmtError:
            if errors != "replace":
                raise
            log.warning("%s:%d: invalid UTF-8 replaced", name, n)
            line = decode_line(raw, f"{name}:{n}", errors="replace")
        chunk.append(line)
        if len(chunk) == chunk_lines:
            yield first, chunk
            first, chunk = n + 1, []
    if chunk:
        yield first, chunk


def format_translation(t: Translation, fmt: str, with_attention: bool) -> str:
    """The output line(s) of one translation, newline included."""
    if fmt == "jsonl":
        record = {
            "source": t.source,
            "hypotheses": [
                {"text": h.text, "log_prob": h.log_prob, "score": h.score}
                | ({"tokens": h.tokens, "src_tokens": t.src_tokens} if with_attention else {})
                | ({"attention": h.attention} if with_attention else {})
                for h in t.hypotheses
            ],
        }
        return json.dumps(record, ensure_ascii=False) + "\n"
    if len(t.hypotheses) <= 1:
        return t.text.replace("\n", " ") + "\n"
    # n-best in text: one line per hypothesis, Moses style
    return "".join(f"{h.text} ||| {h.score:.4f}\n" for h in t.hypotheses)


def count_lines(path: Path) -> int:
    """Complete lines in a partial output; a trailing partial line is cut off."""
    if not path.exists():
        return 0
    data = path.read_bytes()
    keep = data.rfind(b"\n") + 1
    if keep != len(data):
        with path.open("r+b") as f:
            f.truncate(keep)
    return data[:keep].count(b"\n")


def translate_stream(
    translator: Translator,
    source: IO[bytes],
    sink: IO[str],
    *,
    chunk_lines: int = 10_000,
    batch_tokens: int = 4096,
    fmt: str = "text",
    errors: str = "strict",
    name: str = "<stdin>",
    skip: int = 0,
    on_progress: Callable[[int, int], None] | None = None,
    on_chunk: Callable[[list[Translation], int], None] | None = None,
    **options: Any,
) -> int:
    """Translate a stream chunk by chunk, writing results in input order; memory stays flat
    in the size of the input. Returns the number of lines translated."""
    if fmt not in ("text", "jsonl"):
        raise NmtError(f"--format must be text or jsonl, got {fmt!r}")
    done = 0
    with_attention = bool(options.get("return_attention"))
    for first, lines in read_chunks(source, chunk_lines, errors, name, skip):
        results = translator.translate(
            lines,
            batch_tokens=batch_tokens,
            line_numbers=range(first, first + len(lines)),
            **options,
        )
        if first <= skip:  # resuming inside this chunk: its first lines are already written
            results, lines = results[skip - first + 1 :], lines[skip - first + 1 :]
            first = skip + 1
        sink.write("".join(format_translation(t, fmt, with_attention) for t in results))
        sink.flush()
        if on_chunk is not None:
            on_chunk(results, first)
        done += len(lines)
        if on_progress is not None:
            on_progress(len(lines), sum(len(t.src_tokens) for t in results))
    return done


def translate_file(
    translator: Translator,
    source: IO[bytes],
    output: Path,
    resume: bool = False,
    **kwargs: Any,
) -> int:
    """Translate into OUTPUT through OUTPUT.partial, renamed when complete; with `resume`, a
    partial file left by a killed run is continued after its last complete line."""
    partial = output.with_name(output.name + ".partial")
    skip = 0
    if resume:
        if kwargs.get("fmt", "text") == "text" and kwargs.get("nbest", 1) > 1:
            raise NmtError("--resume works with one output line per input line (--nbest 1)")
        skip = count_lines(partial)
        if skip:
            log.info("resuming %s after line %d", output, skip)
    elif partial.exists():
        partial.unlink()
    try:
        sink = partial.open("a" if skip else "w", encoding="utf-8", newline="\n")
    except OSError as e:
        raise NmtError(f"cannot write {partial} ({e.strerror or e})") from None
    try:
        with sink:
            n = translate_stream(translator, source, sink, skip=skip, **kwargs)
            sink.flush()
            os.fsync(sink.fileno())
    except NmtError:
        # bad input or options: nothing half-written is left (a resumed partial is kept)
        if not skip:
            partial.unlink(missing_ok=True)
        raise
    os.replace(partial, output)
    return skip + n
