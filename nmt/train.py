"""The training loop: updates, validation, checkpoints, resuming (the data: nmt/data/prepare.py).

The same seed and config give the same model on the CPU, and a run resumed from `last.pt`
continues exactly where it stopped: the data order of an epoch is a function of
(seed, epoch), and the checkpoint holds the optimizer, the step within the epoch and the RNG.

Shapes: B batch, T target length, N real (non-PAD) target tokens of a batch, V target vocab.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nmt import NmtError
from nmt.batching import Batch
from nmt.checkpoint import (
    Checkpoint,
    TrainState,
    check_init,
    load_checkpoint,
    load_resumable,
    save_checkpoint,
)
from nmt.config import Config
from nmt.data.epochs import Epochs
from nmt.data.prepare import TrainData, prepare_data, probe_run_dir
from nmt.distributed import (
    init_distributed,
    local_device,
    pick_device,
    rank0_decides,
    set_threads,
    shutdown,
)
from nmt.files import copy_atomic
from nmt.model import build_model, count_parameters
from nmt.runs.folder import claimed_run_dir, truncate_log
from nmt.runs.log import Callback, RunLog, Window
from nmt.runs.progress import Progress, SpeedWatch, describe_plan, eta_seconds, format_duration
from nmt.tokenizer import Tokenizer
from nmt.update import after_validation, groups, learning_rate, update
from nmt.validation import rank_kept, validate

log = logging.getLogger(__name__)

ProgressCallback = Callable[[Progress], None]


@dataclass
class _Clock:
    """Training time over resumed runs: what train.max_minutes and the log's `time` count."""

    before: float  # training seconds of the runs this one resumed
    started: float  # time.perf_counter() when this process started training

    def elapsed(self, now: float) -> float:
        return self.before + now - self.started


class Trainer:
    """Trains a model from `data` and `tokenizer` as the config says, on `device`; with
    several processes (`world` > 1, started by torchrun) this is process `rank`."""

    def __init__(
        self,
        config: Config,
        data: TrainData,
        tokenizer: Tokenizer,
        *,
        device: torch.device,
        rank: int = 0,
        world: int = 1,
        on_log: Callback | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> None:
        t = config.train
        self.config, self.data, self.tokenizer = config, data, tokenizer
        self.device, self.rank, self.world = device, rank, world
        self.on_progress = on_progress if rank == 0 else None
        self.run_dir = Path(t.run_dir)
        self.runlog = RunLog(self.run_dir, rank, on_log, t.tensorboard)
        self.epochs = Epochs(config, data, tokenizer, rank, world)
        self.valid_src_ids = tokenizer.encode_src(data.valid_src)
        self.valid_tgt_ids = tokenizer.encode_tgt(data.valid_tgt)
        if not len(self.epochs.pairs):
            raise NmtError("no training pair is left after filtering (check data.max_len)")
        torch.manual_seed(t.seed)
        self.model = build_model(
            config.model, src_vocab=tokenizer.src_vocab_size, tgt_vocab=tokenizer.tgt_vocab_size
        ).to(device)
        n_params = count_parameters(self.model)
        if rank == 0:
            # last + best + their temp copies, with the optimizer's two moments in each
            probe_run_dir(self.run_dir, need_bytes=4 * 3 * 4 * n_params)
        # what the update calls: the model, or its DistributedDataParallel wrapper that
        # all-reduces the gradients in backward()
        self.ddp_model: torch.nn.Module = self.model
        if world > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [device.index] if device.type == "cuda" else None
            self.ddp_model = DistributedDataParallel(self.model, device_ids=ids)
        log.info("model: %s parameters", f"{n_params:,}")
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=t.lr, betas=t.adam_betas, eps=t.adam_eps
        )
        self.state = TrainState(data_key=self._data_key())
        self.bad_steps = 0  # non-finite losses in a row
        self.grad_norm = 0.0  # of the last update, before clipping
        # the step validated last: every last.pt is written after a validation at its step
        self.validated_step: int | None = None

    # -- checkpoints --------------------------------------------------------------------
    def _data_key(self) -> str:
        return self.data.train_ids.meta["key"] if self.data.train_ids is not None else ""

    def _save(self, name: str) -> None:
        if self.rank != 0:
            return
        state = self.state.to_dict()
        state["optimizer"] = self.optimizer.state_dict()
        state["rng"] = torch.get_rng_state()
        save_checkpoint(
            self.run_dir / name,
            model=self.model,
            config=self.config,
            tokenizer=self.tokenizer,
            train_state=state,
        )

    def resume(self, path: str | Path, ckpt: Checkpoint | None = None) -> None:
        """Continue from the checkpoint at `path` (`ckpt`: that file, already loaded)."""
        ckpt = ckpt or load_resumable(path, self.config)
        if ckpt.tokenizer.to_state() != self.tokenizer.to_state():
            raise NmtError(f"checkpoint {path} was trained with another tokenizer")
        self.model.load_state_dict(ckpt.model.state_dict())
        train_state = ckpt.train_state
        if train_state is None:
            raise NmtError(f"checkpoint {path} has no training state to resume from")
        self.optimizer.load_state_dict(train_state["optimizer"])
        torch.set_rng_state(train_state["rng"])
        self.state = TrainState.from_dict(train_state)
        now = self._data_key()
        if self.state.data_key and now and self.state.data_key != now:
            raise NmtError(
                f"the training data changed since {path} was written (its corpus files, "
                "tokenizer or filters): a resumed run would not continue the same data order; "
                "restore the files, or start over with --overwrite"
            )
        self.state.data_key = now
        self.validated_step = self.state.step
        if self.rank == 0:
            # records written after the checkpoint (by a killed run) would repeat
            truncate_log(self.run_dir / "log.jsonl", self.state.step)
        self.epochs.resume(self.state.epoch)
        log.info("resumed from %s at step %d", path, self.state.step)

    # -- validation ---------------------------------------------------------------------
    def validate(self) -> tuple[dict[str, float], list[dict[str, str]]]:
        """Validation metrics and examples (nmt/validation.py) of the model as it is."""
        self.model.eval()
        found = validate(
            self.model,
            self.tokenizer,
            self.valid_src_ids,
            self.valid_tgt_ids,
            self.data.valid_tgt,
            batch_tokens=self.config.train.batch_tokens,
            device=self.device,
            sources=self.data.valid_src,
        )
        self.model.train()
        return found

    def _after_validation(self, metrics: dict[str, float]) -> bool:
        """Keep the best checkpoint, let the schedule see the result; True to stop early."""
        t, s = self.config.train, self.state
        value = metrics["valid_loss"] if t.valid_metric == "loss" else metrics[t.valid_metric]
        better = s.best is None or (value < s.best if t.valid_metric == "loss" else value > s.best)
        if better:
            s.best, s.best_step, s.bad_valids = value, s.step, 0
        else:
            s.bad_valids += 1
        s.lr_scale, s.bad_since_decay = after_validation(t, better, s.lr_scale, s.bad_since_decay)
        dropped: list[int] = []
        if t.keep_best > 1:
            s.kept, dropped = rank_kept(s.kept, value, s.step, t.keep_best, t.valid_metric)
        self.validated_step = s.step
        # best.pt before last.pt: a kill between the two leaves last.pt behind, and the
        # resumed run repeats this validation and writes both again; the other order left a
        # last.pt that names a best which best.pt does not hold
        if better and self.rank == 0:
            self._save("best.pt")
            copy_atomic(self.run_dir / "best.pt", self.run_dir / "last.pt")
        else:
            self._save("last.pt")
        if self.rank == 0:
            if any(step == s.step for _, step in s.kept):
                copy_atomic(self.run_dir / "last.pt", self.run_dir / f"best-step-{s.step}.pt")
            for step in dropped:
                (self.run_dir / f"best-step-{step}.pt").unlink(missing_ok=True)
        return bool(t.patience) and s.bad_valids >= t.patience

    def _validate_and_save(self) -> bool:
        """Validation and checkpoints happen on rank 0; the others wait for its verdict."""
        s = self.state
        if self.rank != 0:
            self.validated_step = s.step
            return rank0_decides(False, self.device, self.world)
        if self.on_progress is not None:
            self.on_progress(self._progress("valid"))
        metrics, examples = self.validate()
        stop = self._after_validation(metrics)
        rank0_decides(stop, self.device, self.world)
        self.runlog.valid(
            metrics, step=s.step, elapsed=s.elapsed, epoch=self._epoch_label(), lr=self._lr(),
            best=s.best, examples=examples,
        )  # fmt: skip
        return stop

    # -- the loop -----------------------------------------------------------------------
    def _lr(self) -> float:
        """The rate of the next update."""
        return learning_rate(self.config.train, self.state.step, self.state.lr_scale)

    def _done(self, clock: _Clock) -> bool:
        t, s = self.config.train, self.state
        minutes = clock.elapsed(time.perf_counter()) / 60
        return bool(
            (t.max_steps and s.step >= t.max_steps)
            or (t.max_epochs and s.epoch >= t.max_epochs)
            or (t.max_minutes and minutes >= t.max_minutes)
        )

    def _epoch_label(self) -> int:
        """The epoch the log names: the one in progress, or the one just completed."""
        return self.state.epoch + (1 if self.state.batch_in_epoch else 0)

    def _progress(self, phase: str) -> Progress:
        s, now = self.state, time.monotonic()
        rate = (s.step - self._start_step) / max(now - self._start_time, 1e-9)
        return Progress(
            phase=phase,
            step=s.step,
            epoch=s.epoch + 1,
            batch=s.batch_in_epoch,
            batches=self.batches_per_epoch,
            tokens_per_s=self._tokens / max(now - self._start_time, 1e-9),
            elapsed=s.elapsed,
            eta=eta_seconds(self.config.train, s, self.batches_per_epoch, rate),
        )

    def _start(self) -> None:
        """Log the plan; a new run's log starts with what the data gave."""
        t, s = self.config.train, self.state
        # this epoch's plan (kept for the epoch): its batches on this rank
        self.batches_per_epoch = len(self.epochs.plan(s.epoch, s.batch_in_epoch)[1])
        self._start_step, self._start_time, self._tokens = s.step, time.monotonic(), 0
        self._estimated = False
        self._speed = SpeedWatch()
        if self.rank != 0:
            return
        if s.step == 0:
            cache = self.data.train_ids.path if self.data.train_ids is not None else None
            self.runlog.data(
                self.epochs.filter_stats, self.config.data.max_len, self.batches_per_epoch, cache
            )
        log.info(
            "plan: %s", describe_plan(t, self.epochs.filter_stats, self.batches_per_epoch, s.step)
        )

    def train(self) -> dict[str, Any]:
        """Train until a limit, early stopping or the end of the plan; the final result."""
        t, s = self.config.train, self.state
        self.model.train()
        self.bad_steps = 0
        self._start()
        clock = _Clock(before=s.elapsed, started=time.perf_counter())
        window = Window(start=time.perf_counter())
        stop = False
        while not stop and not self._done(clock):
            stop = self._train_epoch(clock, window)
        if self.validated_step != s.step:
            self._validate_and_save()
        self.runlog.close()
        return {
            "step": s.step,
            "epoch": self._epoch_label(),
            "best": s.best,
            "metric": t.valid_metric,
            "best_step": s.best_step,
            "run_dir": str(self.run_dir),
        }

    def epoch_batches(self) -> Generator[Batch, None, None]:
        """This rank's batches of the current epoch from `state.batch_in_epoch` on."""
        return self.epochs.batches(self.state.epoch, self.state.batch_in_epoch)

    def _train_epoch(self, clock: _Clock, window: Window) -> bool:
        """Train on the rest of the current epoch; True to stop (patience or time is up)."""
        t, s = self.config.train, self.state
        batches = self.epoch_batches()
        for group in groups(batches, t.accumulate):
            lr = self._lr()
            group = [batch.to(self.device) for batch in group]
            params = tuple(self.model.parameters())
            done = update(
                self.ddp_model, self.optimizer, group, lr, t, world=self.world, parameters=params
            )
            mean_loss, n_tokens = done.mean_loss, done.n_tokens
            s.batch_in_epoch += len(group)
            if not math.isfinite(mean_loss):
                self._skip_bad_step()
                continue
            self.bad_steps, self.grad_norm = 0, done.grad_norm
            s.step += 1
            window.add(mean_loss, n_tokens, self.grad_norm, t.clip_norm)
            self._tokens += n_tokens
            now = time.perf_counter()
            s.elapsed = clock.elapsed(now)
            if self.on_progress is not None:
                self.on_progress(self._progress("train"))
            if s.step % t.log_every == 0:
                self._log_train(window, lr, now)
            stop = False
            if s.step % t.valid_every == 0:
                paused = time.perf_counter()
                stop = self._validate_and_save()
                window.start += time.perf_counter() - paused  # the window's speed: training's
            if t.max_minutes and self.world > 1:
                # clocks differ: rank 0 decides when time is up
                time_up = self._done(clock)
                stop = stop or rank0_decides(time_up, self.device, self.world)
            if stop or self._done(clock):
                batches.close()
                return stop
        s.epoch += 1
        s.batch_in_epoch = 0
        return False

    def _skip_bad_step(self) -> None:
        """A non-finite loss skipped its update; too many in a row stop the training."""
        self.bad_steps += 1
        log.warning("step %d: non-finite loss, update skipped", self.state.step + 1)
        if self.bad_steps >= self.config.train.max_bad_steps:
            raise NmtError(
                f"training stopped: {self.bad_steps} non-finite losses in a row at step "
                f"{self.state.step}; the last good checkpoint is {self.run_dir / 'last.pt'}"
                " (try a lower train.lr)"
            )

    def _log_train(self, window: Window, lr: float, now: float) -> None:
        """A train record of the window; after the first, the estimated time to the end."""
        s = self.state
        slow = self._speed.check(window.speed(now), torch.get_num_threads())
        if slow and self.rank == 0:
            log.warning(slow)
        self.runlog.train(  # resets the window
            window, step=s.step, elapsed=s.elapsed, epoch=self._epoch_label(), lr=lr, now=now
        )
        if not self._estimated and self.rank == 0:
            # the pace of the first window: a rough guide, said once
            self._estimated = True
            eta = self._progress("train").eta
            if eta is not None:
                log.info("estimated time to the end: %s", format_duration(eta))


def train(
    config: Config,
    resume: str | Path | None = None,
    on_log: Callback | None = None,
    *,
    overwrite: bool = False,
    on_progress: ProgressCallback | None = None,
    init: str | Path | None = None,
) -> dict:
    """Train a model as the config says; returns the final step, epoch and best score.

    A new run needs a run dir without a run in it, or `overwrite` (which removes that run);
    `resume` continues the run of a checkpoint; `init` starts a new run (fine-tuning) from a
    checkpoint's weights and tokenizer, with a fresh optimizer and schedule (its config's
    model and tokenizer options must be the checkpoint's: `checkpoint.init_config`).
    `on_log` receives every log record, `on_progress` the state after every update (both on
    rank 0 only).
    """
    t = config.train
    if overwrite and resume:
        raise NmtError("--overwrite starts a new run and --resume continues one: give one")
    if init and resume:
        raise NmtError("--init starts a new run from a model and --resume continues one: give one")
    device = torch.device(pick_device(t.device, "train.device"))
    rank, world = init_distributed(device)
    if rank != 0:
        # the other ranks train alike: their progress and plan would repeat rank 0's
        logging.getLogger("nmt").setLevel(logging.WARNING)
    device = local_device(device, world)
    ckpt = load_resumable(resume, config) if resume else None
    start = load_checkpoint(init) if init else None  # an export will do: only its weights
    if start is not None:
        check_init(start.config, config, str(init))
    with claimed_run_dir(config, resume=resume, overwrite=overwrite, owner=rank == 0):
        from_ckpt = ckpt or start
        saved_tokenizer = from_ckpt.tokenizer if from_ckpt else None
        data, tokenizer = prepare_data(config, rank=rank, world=world, saved=saved_tokenizer)
        set_threads(t.threads, device, world)
        trainer = Trainer(
            config,
            data,
            tokenizer,
            device=device,
            rank=rank,
            world=world,
            on_log=on_log,
            on_progress=on_progress,
        )
        if ckpt is not None:
            assert resume is not None  # ckpt was loaded from it
            trainer.resume(resume, ckpt)
        if start is not None:
            # in place: the optimizer built on these parameters stays fresh (step 0, no moments)
            trainer.model.load_state_dict(start.model.state_dict())
            log.info("fine-tuning the weights of %s", init)
        result = trainer.train()
    shutdown(world)
    return result
