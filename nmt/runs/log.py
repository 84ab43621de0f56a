"""What a training run reports in RUN_DIR/log.jsonl, one JSON record a line: `data` (what the
filters kept, once at the start of a new run), `train` (loss, speed and gradient norm of the
updates since the previous one, every train.log_every updates) and `valid` (the validation
scores and a few example translations). Rank 0 writes them; `on_log` receives each too. `nmt
plot` and `nmt info` read them. With `train.tensorboard` the same figures (and the examples)
also go to TensorBoard event files in RUN_DIR/tensorboard, through the tensorboard package's
writer (torch.utils.tensorboard).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nmt import NmtError
from nmt.data.corpus import FilterStats

log = logging.getLogger(__name__)

Callback = Callable[[dict[str, Any]], None]


@dataclass
class Window:
    """Training tokens and loss since the last train record, for its loss and speed."""

    start: float  # time.perf_counter() when the window opened
    tokens: int = 0
    loss: float = 0.0  # summed over the tokens
    grad_norm: float = 0.0  # the global gradient norm before clipping, of the last update
    clipped: int = 0  # updates whose gradient train.clip_norm scaled down
    updates: int = 0

    def add(self, mean_loss: float, tokens: int, grad_norm: float, clip_norm: float) -> None:
        """An update of `tokens` target tokens at `mean_loss` a token."""
        self.tokens += tokens
        self.loss += mean_loss * tokens
        self.updates += 1
        self.grad_norm = grad_norm
        self.clipped += bool(clip_norm) and grad_norm > clip_norm

    def speed(self, now: float) -> float:
        """Target tokens a second since the window opened (`now`: time.perf_counter())."""
        return self.tokens / max(now - self.start, 1e-9)

    def reset(self) -> None:
        self.tokens, self.loss, self.start = 0, 0.0, time.perf_counter()
        self.clipped = self.updates = 0


class RunLog:
    """The log.jsonl of the run in `run_dir`, written by rank 0 only."""

    def __init__(
        self, run_dir: Path, rank: int, on_log: Callback | None, tensorboard: bool = False
    ) -> None:
        self.path, self.rank, self.on_log = run_dir / "log.jsonl", rank, on_log
        self.board: Any = None  # a SummaryWriter with train.tensorboard, on rank 0
        if tensorboard and rank == 0:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise NmtError(
                    "train.tensorboard needs the tensorboard package: pip install tensorboard"
                ) from None
            try:
                self.board = SummaryWriter(str(run_dir / "tensorboard"))
            except OSError as e:
                where = run_dir / "tensorboard"
                raise NmtError(f"train.tensorboard: {where}: {e.strerror or e}") from None

    def write(self, record: dict[str, Any]) -> None:
        if self.rank != 0:
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self.board is not None and record["kind"] in ("train", "valid"):
            self._to_board(record)
        if self.on_log is not None:
            self.on_log(record)

    def _to_board(self, record: dict[str, Any]) -> None:
        """A record's numbers as scalars named KIND/NAME at its step; examples as text."""
        step, kind = record["step"], record["kind"]
        for name, value in record.items():
            if isinstance(value, (int, float)) and name not in ("step", "epoch"):
                self.board.add_scalar(f"{kind}/{name}", value, step)
        for i, example in enumerate(record.get("examples", [])):
            text = "  \n".join(f"**{k}**: {v}" for k, v in example.items())
            self.board.add_text(f"examples/{i + 1}", text, step)
        self.board.flush()

    def close(self) -> None:
        if self.board is not None:
            self.board.close()

    def data(
        self, stats: FilterStats, max_len: int, batches_per_epoch: int, cache: Path | None
    ) -> None:
        """The data record: pairs read, kept, and dropped by each filter."""
        log.info(
            "training pairs: %d kept of %d; dropped: %d with an empty side, %d over %d tokens, "
            "%d over the length ratio, %d identical, %d repeated",
            stats.kept,
            stats.read,
            stats.empty,
            stats.too_long,
            max_len,
            stats.ratio,
            stats.identical,
            stats.duplicate,
        )
        self.write(
            {
                "kind": "data",
                "step": 0,
                "read": stats.read,
                "pairs": stats.kept,
                "dropped_empty": stats.empty,
                "dropped_too_long": stats.too_long,
                "dropped_ratio": stats.ratio,
                "dropped_identical": stats.identical,
                "dropped_duplicate": stats.duplicate,
                "max_len": max_len,
                "batches_per_epoch": batches_per_epoch,
                "cache": str(cache) if cache is not None else None,
            }
        )

    def train(
        self, window: Window, *, step: int, elapsed: float, epoch: int, lr: float, now: float
    ) -> None:
        """A train record of the window's loss and speed; then a new window opens."""
        self.write(
            {
                "kind": "train",
                "step": step,
                "time": round(elapsed, 2),
                "epoch": epoch,
                "loss": window.loss / max(window.tokens, 1),
                "lr": lr,
                "tokens_per_s": window.speed(now),
                "grad_norm": window.grad_norm,
                "clipped": window.clipped / max(window.updates, 1),
            }
        )
        window.reset()

    def valid(
        self,
        metrics: dict[str, float],
        *,
        step: int,
        elapsed: float,
        epoch: int,
        lr: float,
        best: float | None,
        examples: Sequence[dict[str, str]] = (),
    ) -> None:
        """A valid record: the metrics, and a few sentences translated (source, reference,
        hypothesis)."""
        self.write(
            {
                "kind": "valid",
                "step": step,
                "time": round(elapsed, 2),
                "epoch": epoch,
                **{k: round(v, 4) for k, v in metrics.items()},
                "lr": lr,
                "best": best,
                "examples": list(examples),
            }
        )
