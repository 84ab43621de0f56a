"""The tokenized training corpus on disk: token ids in flat arrays, memory-mapped.

A cache is a folder holding, for each side (src, tgt), `SIDE.ids` (the token ids of every kept
pair, one pair after the other), `SIDE.off` (where pair i starts in them: N + 1 offsets) and
`SIDE.len` (its token count: all the batch plan reads), and `meta.json` (the key it was built
for, the array sizes, the filter counts). Its name is its key, a hash of the corpus files
(path, size, modification time, content hash), the tokenizer's bytes and the filter settings:
a changed corpus, tokenizer or filter never meets an old cache.

A build writes into a temporary folder, renamed into place once whole and synced; opening a
cache still checks every array's size against meta.json, so that a damaged one is rebuilt,
never read. Training holds the lengths and the batch plan in memory (a few bytes a pair) and
reads each batch's ids from the files when it is used.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import socket
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from nmt import NmtError
from nmt.data.corpus import FilterStats, PairFilter, SeenPairs, filter_lengths
from nmt.data.token_ids import encode_chunks
from nmt.files import fsync_dir, write_atomic
from nmt.procs import available_cores
from nmt.tokenizer import Tokenizer

log = logging.getLogger(__name__)

FORMAT = 2  # bump when the layout changes: older caches are then rebuilt
SIDES = ("src", "tgt")
HASH_WHOLE = 64 << 20  # files up to this size are hashed whole, larger ones by their ends
EDGE = 1 << 20  # bytes hashed at each end of a larger file

# (pairs read, fraction of the corpus read)
Progress = Callable[[int, float], None]


def file_identity(path: str | Path) -> dict[str, Any]:
    """What tells a corpus file from an edited one: path, size, mtime and a content hash
    (whole up to HASH_WHOLE bytes, else its first and last EDGE bytes)."""
    p = Path(path).resolve()
    if not p.is_file():
        raise NmtError(f"{path}: file does not exist")
    st = p.stat()
    digest = hashlib.sha256()
    with p.open("rb") as f:
        if st.st_size <= HASH_WHOLE:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        else:
            digest.update(f.read(EDGE))
            f.seek(-EDGE, os.SEEK_END)
            digest.update(f.read(EDGE))
    return {
        "path": str(p),
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "sha256": digest.hexdigest(),
    }


def cache_key(corpus: Any, tokenizer: Tokenizer, rules: PairFilter) -> str:
    """The name of the cache of `corpus` (plain data identifying it) tokenized and filtered."""
    protos = hashlib.sha256(tokenizer.src_proto + b"\0" + (tokenizer.tgt_proto or b""))
    blob = {
        "format": FORMAT,
        "corpus": corpus,
        "tokenizer": protos.hexdigest(),
        "joint": tokenizer.joint,
        "filter": dataclasses.asdict(rules),
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:32]


class TrainPairs(Protocol):
    """Training pairs as the trainer reads them: lengths for the plan, ids per batch."""

    src_lens: np.ndarray  # (N,) tokens of each source
    tgt_lens: np.ndarray  # (N,) tokens of each target

    def __len__(self) -> int: ...

    def pairs(self, idxs: Sequence[int]) -> tuple[list[list[int]], list[list[int]]]: ...


class InMemoryPairs:
    """Pairs encoded in memory (subword sampling encodes them anew every epoch)."""

    def __init__(self, src_ids: list[list[int]], tgt_ids: list[list[int]]) -> None:
        self.src_ids, self.tgt_ids = src_ids, tgt_ids
        self.src_lens = np.fromiter(map(len, src_ids), dtype=np.int64, count=len(src_ids))
        self.tgt_lens = np.fromiter(map(len, tgt_ids), dtype=np.int64, count=len(tgt_ids))

    def __len__(self) -> int:
        return len(self.src_ids)

    def pairs(self, idxs: Sequence[int]) -> tuple[list[list[int]], list[list[int]]]:
        return [self.src_ids[i] for i in idxs], [self.tgt_ids[i] for i in idxs]


class TokenCache:
    """A built cache: the lengths memory-mapped for the batch plan, ids read per batch."""

    def __init__(self, path: Path, meta: dict[str, Any]) -> None:
        self.path, self.meta = path, meta
        self.stats = FilterStats(**meta["stats"])
        n = meta["pairs"]
        self._ids_dtype = np.dtype(meta["ids_dtype"])
        # ids and offsets are read with pread, not mapped: the pages of a mapping that a
        # batch touches (and the kernel's read-ahead around them) would count in the
        # process's memory for the rest of the run, up to the whole cache; read pages stay
        # in the page cache, shared and reclaimable
        self._fds = [
            (os.open(path / f"{side}.ids", os.O_RDONLY), os.open(path / f"{side}.off", os.O_RDONLY))
            for side in SIDES
        ]
        self._close = weakref.finalize(self, _close_all, [fd for fds in self._fds for fd in fds])
        lens = [_map(path / f"{side}.len", meta["len_dtype"], n) for side in SIDES]
        self.src_lens, self.tgt_lens = lens  # (N,) each

    def __len__(self) -> int:
        return self.meta["pairs"]

    def close(self) -> None:
        self._close()

    def offsets(self, side: int, i: int) -> tuple[int, int]:
        """Where pair `i`'s ids start and end in side `side`'s ids (0 source, 1 target)."""
        raw = os.pread(self._fds[side][1], 16, 8 * i)
        if len(raw) != 16:
            raise NmtError(f"cache {self.path}: {SIDES[side]}.off is shorter than meta.json says")
        a, b = np.frombuffer(raw, dtype=np.int64).tolist()
        return a, b

    def pairs(self, idxs: Sequence[int]) -> tuple[list[list[int]], list[list[int]]]:
        """The source and target ids of the pairs `idxs`, read from the files."""
        size = self._ids_dtype.itemsize
        out: list[list[list[int]]] = []
        for side, (ids_fd, _) in enumerate(self._fds):
            seqs = []
            for i in idxs:
                a, b = self.offsets(side, i)
                raw = os.pread(ids_fd, (b - a) * size, a * size)
                seqs.append(np.frombuffer(raw, dtype=self._ids_dtype).tolist())
            out.append(seqs)
        return out[0], out[1]


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def _digest(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def _map(path: Path, dtype: str, count: int) -> np.ndarray:
    if count == 0:
        return np.zeros(0, dtype=dtype)
    # a plain array over the mapping (np.memmap's subclass makes every slice slower)
    return np.asarray(np.memmap(path, dtype=dtype, mode="r", shape=(count,)))


def open_cache(path: Path, key: str) -> TokenCache | None:
    """The cache at `path` if it is whole and was built for `key`; None otherwise."""
    try:
        meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT or meta.get("key") != key:
            return None
        n, ids_size, len_size = (
            meta["pairs"],
            np.dtype(meta["ids_dtype"]).itemsize,
            np.dtype(meta["len_dtype"]).itemsize,
        )
        for side in SIDES:
            sizes = {
                "ids": meta[f"{side}_tokens"] * ids_size,
                "off": (n + 1) * 8,
                "len": n * len_size,
            }
            for ext, size in sizes.items():
                if (path / f"{side}.{ext}").stat().st_size != size:
                    log.warning("cache %s: %s.%s is damaged; rebuilding", path, side, ext)
                    return None
        # a file of the right size can still hold other bytes (a disk or copy error): the
        # digests catch it before a wrong id reaches an embedding
        for name, digest in meta["digests"].items():
            if _digest(path / name) != digest:
                log.warning("cache %s: %s is damaged; rebuilding", path, name)
                return None
        cache = TokenCache(path, meta)
        for k, side in enumerate(SIDES):
            first, last = cache.offsets(k, 0)[0], cache.offsets(k, n - 1)[1]
            if first != 0 or last != meta[f"{side}_tokens"]:
                cache.close()
                log.warning("cache %s: %s.off is damaged; rebuilding", path, side)
                return None
    except (OSError, ValueError, KeyError, TypeError, NmtError):
        return None
    return cache


def build_cache(
    chunks: Iterable[tuple[list[str], list[str], float]],
    tokenizer: Tokenizer,
    rules: PairFilter,
    *,
    path: Path,
    key: str,
    where: str,
    on_progress: Progress | None = None,
) -> TokenCache:
    """Tokenize and filter the pairs of `chunks` into the cache at `path` (built for `key`).

    `where` names the corpus in errors. Leftovers of builds that died on this host (their
    temporary folders) are removed first; a folder at `path` that is not a whole cache for
    `key` is replaced.
    """
    created = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
    tmp = path.parent / f".{path.name}.{socket.gethostname()}.{os.getpid()}.tmp"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_leftovers(path)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    except OSError as e:  # a file on the way, a folder of the kernel's (/proc), no room
        raise NmtError(f"cache {path}: cannot make its folder ({e.strerror or e})") from None
    try:
        meta = _write_arrays(chunks, tokenizer, rules, tmp, on_progress)
        _check_kept(FilterStats(**meta["stats"]), rules, where)
        meta["digests"] = {f.name: _digest(f) for f in sorted(tmp.iterdir())}
        write_atomic(tmp / "meta.json", json.dumps({**meta, "key": key}, indent=1).encode())
        fsync_dir(tmp)
        _publish(tmp, path, key)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        for p in created:  # leave no empty folder behind a failed first build
            if p.is_dir() and not any(p.iterdir()):
                p.rmdir()
        if isinstance(e, OSError):  # the disk full, say
            raise NmtError(f"cache {path}: cannot write it ({e.strerror or e})") from None
        raise
    cache = open_cache(path, key)
    if cache is None:
        raise NmtError(f"cache {path}: written but not readable back (is the disk full?)")
    return cache


def _check_kept(stats: FilterStats, rules: PairFilter, where: str) -> None:
    if stats.read == stats.empty:
        raise NmtError(f"the training set is empty: {where} hold no pair with two non-empty sides")
    if stats.kept == 0:
        raise NmtError(
            "no training pair is left after filtering (check data.max_len"
            + (", data.max_len_ratio" if rules.max_len_ratio else "")
            + ")"
        )


def _write_arrays(
    chunks: Iterable[tuple[list[str], list[str], float]],
    tokenizer: Tokenizer,
    rules: PairFilter,
    out: Path,
    on_progress: Progress | None,
) -> dict[str, Any]:
    """Write the arrays of every kept pair into the folder `out`; returns their meta data."""
    big_vocab = max(tokenizer.src_vocab_size, tokenizer.tgt_vocab_size) > 1 << 16
    ids_dtype = np.dtype(np.int32 if big_vocab else np.uint16)
    len_dtype = np.dtype(
        np.uint8 if rules.max_len < 1 << 8 else np.uint16 if rules.max_len < 1 << 16 else np.int32
    )
    stats, seen = FilterStats(), SeenPairs() if rules.drop_duplicates else None
    tokens = dict.fromkeys(SIDES, 0)
    report = on_progress or _log_progress()
    with contextlib.ExitStack() as stack:
        files = {
            f"{side}.{ext}": stack.enter_context(open(out / f"{side}.{ext}", "wb"))
            for side in SIDES
            for ext in ("ids", "off", "len")
        }
        for side in SIDES:
            files[f"{side}.off"].write(np.zeros(1, dtype=np.int64).tobytes())
        for (src_text, tgt_text, fraction), enc in encode_chunks(
            chunks, tokenizer, ids_dtype, workers=available_cores()
        ):
            keep, _ = filter_lengths(
                enc.src_lens, enc.tgt_lens, rules, texts=(src_text, tgt_text), seen=seen,
                stats=stats,
            )  # fmt: skip
            for side, ids, all_lens in zip(
                SIDES, (enc.src_ids, enc.tgt_ids), (enc.src_lens, enc.tgt_lens)
            ):
                # (tokens,) bool: the tokens of the kept pairs
                files[f"{side}.ids"].write(ids[np.repeat(keep, all_lens)].tobytes())
                lens = all_lens[keep]
                files[f"{side}.off"].write((tokens[side] + np.cumsum(lens)).tobytes())
                files[f"{side}.len"].write(lens.astype(len_dtype).tobytes())
                tokens[side] += int(lens.sum())
            report(stats.read, fraction)
        for f in files.values():
            f.flush()
            os.fsync(f.fileno())
    return {
        "format": FORMAT,
        "pairs": stats.kept,
        "ids_dtype": ids_dtype.name,
        "len_dtype": len_dtype.name,
        **{f"{side}_tokens": tokens[side] for side in SIDES},
        "stats": dataclasses.asdict(stats),
    }


def _log_progress(every: float = 30.0) -> Progress:
    """Progress as a log line every `every` seconds (when no progress bar is shown)."""
    last = time.perf_counter()

    def report(pairs: int, fraction: float) -> None:
        nonlocal last
        if time.perf_counter() - last >= every:
            last = time.perf_counter()
            log.info("tokenized %s pairs (%.0f%%)", f"{pairs:,}", 100 * fraction)

    return report


def _remove_leftovers(path: Path) -> None:
    """Remove the temporary folders of builds of `path` killed on this host."""
    host = socket.gethostname()
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        owner, _, pid = tmp.name[len(path.name) + 2 : -len(".tmp")].rpartition(".")
        if owner == host and pid.isdigit() and not _alive(int(pid)):
            log.info("removing %s, left by a build that did not finish", tmp)
            shutil.rmtree(tmp, ignore_errors=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # an earlier build of this process that failed: nothing uses it now
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _publish(tmp: Path, path: Path, key: str) -> None:
    """Rename the finished build `tmp` to `path`, unless another process got there first."""
    if path.exists():
        if open_cache(path, key) is not None:
            shutil.rmtree(tmp)  # an identical build by another process won the race
            return
        shutil.rmtree(path)  # damaged: replaced
    try:
        os.rename(tmp, path)
    except OSError:
        if open_cache(path, key) is None:
            raise
        shutil.rmtree(tmp)
    fsync_dir(path.parent)
