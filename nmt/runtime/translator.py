"""The runtime's translator: exported folders (one, or several as an ensemble) searched with
numpy and onnxruntime; the same `translate` and `translate_batches` as the torch Translator,
which `nmt translate DIR` and `nmt serve DIR` use through the same streaming code."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from itertools import repeat
from pathlib import Path
from typing import Any

from nmt import NmtError
from nmt.config import config_from_dict
from nmt.procs import available_cores
from nmt.runtime import folder
from nmt.runtime.base import TranslatorBase, check_threads
from nmt.runtime.model import Ensemble, OnnxModel, ensemble_weights
from nmt.runtime.search import ArrayModel, search_batch, search_id_batches
from nmt.search_options import Hypothesis, SearchOptions, max_length

# with workers "auto", calls with fewer source tokens than this are searched here
POOL_MIN_TOKENS = 2000


def _tokenizer_files(path: Path) -> tuple[bytes, bytes | None]:
    tgt = path / folder.TGT_MODEL
    return (path / folder.SRC_MODEL).read_bytes(), tgt.read_bytes() if tgt.is_file() else None


def _load(
    paths: Sequence[Path],
    weights: Sequence[float],
    threads: int,
    manifests: Sequence[folder.Manifest] | None = None,
) -> ArrayModel:
    """The folders' models, one or an ensemble, checked against each other (`manifests`:
    the folders' manifests when already read)."""
    manifests = manifests or [folder.read_manifest(p) for p in paths]
    first = _tokenizer_files(paths[0])
    for p in paths[1:]:
        if _tokenizer_files(p) != first:
            raise NmtError(
                f"exports {paths[0]} and {p} have different tokenizers: an ensemble's models "
                "must share one tokenizer"
            )
    models = [OnnxModel(p, m, threads) for p, m in zip(paths, manifests)]
    return models[0] if len(models) == 1 else Ensemble(models, weights)


_worker_model: ArrayModel | None = None


def _worker_start(paths: Sequence[Path], weights: Sequence[float], threads: int) -> None:
    global _worker_model
    _worker_model = _load(paths, weights, threads)


def _worker_search(batch: list[list[int]], options: SearchOptions) -> list[list[Hypothesis]]:
    assert _worker_model is not None  # set by _worker_start
    return search_batch(_worker_model, batch, options)


class RuntimeTranslator(TranslatorBase):
    """Exported model folders ready to translate lists of sentences, without torch.

    `directory`: one folder, or a list whose models are searched as an ensemble (weights
    equal by default); they must share one tokenizer. `threads`: onnxruntime's threads per
    search (0: one per available core without workers, 1 with them). `workers` > 1 (or
    "auto": one per available core, for calls of POOL_MIN_TOKENS source tokens or more):
    that many processes, each searching whole batches.
    """

    def __init__(
        self,
        directory: str | Path | Sequence[str | Path],
        threads: int = 0,
        workers: int | str = 1,
        *,
        weights: Sequence[float] | None = None,
    ) -> None:
        self.auto_workers = check_threads(threads, workers)
        paths = [directory] if isinstance(directory, (str, Path)) else list(directory)
        if not paths:
            raise NmtError("give at least one exported model folder")
        self.weights = ensemble_weights(weights, len(paths))
        self.paths = [Path(p) for p in paths]
        if self.auto_workers:
            workers = available_cores()
        assert isinstance(workers, int)
        self.workers, self.threads = workers, threads
        self.manifests = [folder.read_manifest(p) for p in self.paths]
        self.tokenizer = folder.read_tokenizer(self.paths[0])
        threads_here = threads or (1 if workers > 1 else 0)
        self.model = _load(self.paths, self.weights, threads_here, self.manifests)
        self.max_src_len = min(m.max_src_len for m in self.manifests)
        self.config = config_from_dict(self.manifests[0].config)
        self.device, self.quantize = "cpu", self.manifests[0].precision
        self._pool: ProcessPoolExecutor | None = None

    def _search(
        self, src_ids: list[list[int]], options: SearchOptions, batch_tokens: int
    ) -> Iterator[tuple[list[int], list[list[Hypothesis]]]]:
        self._check_positions(src_ids, options)
        tokens = sum(len(seq) + 1 for seq in src_ids)
        if self.workers == 1 or (self.auto_workers and tokens < POOL_MIN_TOKENS):
            yield from search_id_batches(self.model, src_ids, options, batch_tokens)
            return
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.workers,
                # a fresh interpreter a worker: onnxruntime's thread pools do not survive fork
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_worker_start,
                initargs=(self.paths, self.weights, self.threads or 1),
            )
        pool = self._pool

        def map_batches(
            batches: list[list[list[int]]], opts: SearchOptions
        ) -> Iterable[list[list[Hypothesis]]]:
            return pool.map(_worker_search, batches, repeat(opts))

        # batches small enough that every worker gets several
        per_worker = max(1, tokens // (self.workers * 4))
        yield from search_id_batches(
            self.model, src_ids, options, min(batch_tokens, max(per_worker, 64)), map_batches
        )

    def _check_positions(self, src_ids: list[list[int]], options: SearchOptions) -> None:
        """A Transformer with learned positions reads at most max_positions target tokens."""
        limits = [m.max_positions for m in self.manifests if m.max_positions is not None]
        if not limits or not src_ids:
            return
        longest = max(max_length(len(s) + 1, options) for s in src_ids)
        if longest + 1 > min(limits):
            raise NmtError(
                f"a sequence of {longest + 1} tokens is longer than the model's learned "
                f"positions (model.max_positions {min(limits)}); lower --max-len-ratio or "
                "--max-len-offset"
            )

    def fingerprint(self) -> dict[str, Any]:
        """The folders' graph files (size and modification time) and the mix of an ensemble."""
        files = []
        for p in self.paths:
            stats = [(p / name).stat() for name in (folder.ENCODER, folder.DECODER)]
            files.append(
                {
                    "size": sum(s.st_size for s in stats),
                    "mtime_ns": max(s.st_mtime_ns for s in stats),
                }
            )
        record: dict[str, Any] = {**files[0], "device": "onnxruntime", "quantize": self.quantize}
        if len(files) > 1:
            record.update(members=files, weights=list(self.weights))
        return record

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None
