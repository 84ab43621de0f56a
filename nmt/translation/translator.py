"""Translation with torch: the in-memory `Translator` over checkpoint files; its text side
(sentences to ids, outputs) is nmt/runtime/base.py, streaming translation of files is in
nmt/translation/streaming.py."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import torch

from nmt import NmtError
from nmt.checkpoint import Checkpoint, load_checkpoint
from nmt.constraints import constrained_id_batches
from nmt.distributed import pick_device
from nmt.procs import available_cores
from nmt.runtime.base import Output, Translation, TranslatorBase, check_threads
from nmt.search import Hypothesis, SearchModel, SearchOptions, search_id_batches
from nmt.terms import word_pieces
from nmt.transformer import Transformer
from nmt.translation.ensemble import Ensemble, ensemble_weights
from nmt.translation.quantize import quantize_int8
from nmt.translation.workers import WorkerPool

log = logging.getLogger(__name__)

__all__ = ["Output", "Translation", "Translator"]


# with workers "auto", a call with fewer source tokens than this is searched in this
# process: starting the worker processes costs more than they save on it
POOL_MIN_TOKENS = 2000


@contextmanager
def _threads(threads: int) -> Iterator[None]:
    """torch's CPU threads set to `threads` (0: left as they are), restored afterwards."""
    if not threads:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _same_tokenizer(
    first: Checkpoint, other: Checkpoint, first_path: str | Path, other_path: str | Path
) -> None:
    """Refuse an ensemble member whose tokenizer (either side) differs from the first's."""
    a, b = first.tokenizer.to_state(), other.tokenizer.to_state()
    for side in ("tgt", "src"):
        if a.get(side, a["src"]) != b.get(side, b["src"]):
            kind = "target" if side == "tgt" else "source"
            raise NmtError(
                f"checkpoints {first_path} and {other_path} have different {kind} tokenizers: "
                "an ensemble's models must share one tokenizer"
            )


def _choose_attention(
    model: torch.nn.Module, path: str | Path, layer: int, head: int | None
) -> None:
    """Set the Transformer's heatmap layer and head; an RNN has one attention to show."""
    if isinstance(model, Transformer):
        model.choose_attention(layer, head)
    elif layer != -1 or head is not None:
        raise NmtError(
            f"chooses among a Transformer's attentions; {path} is an RNN, which has one",
            option="attention_layer" if layer != -1 else "attention_head",
        )


class Translator(TranslatorBase):
    """A model loaded from a checkpoint file, or an ensemble of several, ready to translate
    lists of sentences.

    `checkpoint`: one file, or a list of files whose models are searched as an ensemble
    (nmt/translation/ensemble.py: per-step log-probabilities averaged with `weights`, equal
    by default);
    they must share one tokenizer, and the attention shown is the first model's.
    `attention_layer` and `attention_head` (None: the mean over heads) choose which of a
    Transformer's cross-attentions the attention output shows (the first model's).
    `threads` > 0: torch's CPU threads while it translates (restored after each call), or
    of each worker process with `workers` > 1 (0 meaning 1 there). `workers` "auto": one
    worker process per available core on the CPU (one process on a GPU), used for calls of
    POOL_MIN_TOKENS source tokens or more. `device` "auto": CUDA when available.
    """

    def __init__(
        self,
        checkpoint: str | Path | Sequence[str | Path],
        device: str = "auto",
        quantize: str | None = None,
        threads: int = 0,
        workers: int | str = 1,
        *,
        weights: Sequence[float] | None = None,
        attention_layer: int = -1,
        attention_head: int | None = None,
    ) -> None:
        self._pool: WorkerPool | None = None  # worker processes, started at the first call
        self._word_pieces: torch.Tensor | None = None  # (V,) made at the first constrained call
        self.auto_workers = check_threads(threads, workers)
        if quantize not in (None, "none", "int8"):
            raise NmtError(f"must be one of none, int8, got {quantize!r}", option="quantize")
        paths = [checkpoint] if isinstance(checkpoint, (str, Path)) else list(checkpoint)
        if not paths:
            raise NmtError("give at least one checkpoint")
        mix = ensemble_weights(weights, len(paths))  # checked before anything loads
        if quantize == "int8" or (isinstance(workers, int) and workers > 1):
            if device not in ("auto", "cpu"):
                if quantize == "int8":
                    raise NmtError("int8 runs on the CPU only", option="quantize")
                raise NmtError("above 1 run on the CPU only", option="workers")
            device = "cpu"
        device = pick_device(device)
        if self.auto_workers:
            workers = available_cores() if device == "cpu" else 1
        assert isinstance(workers, int)  # "auto" is replaced, anything else passed require_whole
        self.workers, self.threads, self.device, self.quantize = workers, threads, device, quantize
        self.checkpoints = [Path(p) for p in paths]
        self.weights, self.attention = mix, (attention_layer, attention_head)
        with _threads(threads):
            ckpts = [load_checkpoint(p, device, mmap=True) for p in paths]
            for path, ckpt in zip(paths[1:], ckpts[1:]):
                _same_tokenizer(ckpts[0], ckpt, paths[0], path)
            _choose_attention(ckpts[0].model, paths[0], attention_layer, attention_head)
            models = [ckpt.model for ckpt in ckpts]
            if quantize == "int8":
                models = [quantize_int8(m, copy=False) for m in models]
        self.config, self.tokenizer = ckpts[0].config, ckpts[0].tokenizer
        self.model = models[0] if len(models) == 1 else Ensemble(models, mix)
        # every member reads the source: it is cut to the shortest limit among them
        self.max_src_len = min(ckpt.config.data.max_len for ckpt in ckpts)

    def _search(
        self, src_ids: list[list[int]], options: SearchOptions, batch_tokens: int
    ) -> Iterator[tuple[list[int], list[list[Hypothesis]]]]:
        """(indices into src_ids, hypotheses) batch by batch, searched here or by the
        worker processes."""
        tokens = sum(len(seq) + 1 for seq in src_ids)
        if self.workers == 1 or (self.auto_workers and tokens < POOL_MIN_TOKENS):
            with _threads(self.threads):
                yield from search_id_batches(
                    cast(SearchModel, self.model), src_ids, options, batch_tokens
                )
            return
        if self._pool is None:
            self._pool = WorkerPool(self.model, self.workers, self.threads or 1)
        batch_tokens = self._pool.batch_tokens(src_ids, batch_tokens)
        yield from search_id_batches(
            cast(SearchModel, self.model), src_ids, options, batch_tokens, self._pool.map_batches
        )

    def _search_constrained(
        self,
        src_ids: list[list[int]],
        constraints: list[list[list[int]]],
        options: SearchOptions,
        batch_tokens: int,
    ) -> Iterator[tuple[list[int], list[list[Hypothesis]]]]:
        """(indices into src_ids, hypotheses) batch by batch, the outputs of sentences with
        constraints holding them all (nmt/constraints.py); searched in this process."""
        if self._word_pieces is None:
            self._word_pieces = torch.tensor(word_pieces(self.tokenizer))
        with _threads(self.threads):
            yield from constrained_id_batches(
                cast(SearchModel, self.model), src_ids, constraints, options, batch_tokens,
                self._word_pieces,
            )  # fmt: skip

    def fingerprint(self) -> dict[str, Any]:
        """What the outputs depend on besides the search options: the checkpoint file (by
        size and modification time: hashing it would read it whole), device, quantization."""
        files = [{"size": st.st_size, "mtime_ns": st.st_mtime_ns} for st in self._stats()]
        record: dict[str, Any] = {**files[0], "device": self.device}
        record["quantize"] = self.quantize or "none"
        if len(files) > 1:  # an ensemble: every member and the weights of their mix
            record.update(members=files, weights=list(self.weights))
        if self.attention != (-1, None):
            record["attention"] = list(self.attention)
        return record

    def _stats(self) -> list[os.stat_result]:
        return [p.stat() for p in self.checkpoints]

    def close(self) -> None:
        """Stop the worker processes (also done when the Translator is garbage-collected)."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None
