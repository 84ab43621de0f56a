"""The training loop: updates, validation, checkpoints, resuming (the data: nmt/prepare.py).

The same seed and config give the same model on the CPU, and a run resumed from `last.pt`
continues exactly where it stopped: the data order of an epoch is a function of
(seed, epoch), and the checkpoint holds the optimizer, the step within the epoch and the RNG.

Shapes: B batch, T target length, N real (non-PAD) target tokens of a batch, V target vocab.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from nmt import NmtError
from nmt.atomic import copy_atomic, write_atomic
from nmt.batching import Batch, BatchPlan, make_batch, plan_batches, plan_epoch, prefetch
from nmt.cache import InMemoryPairs, TrainPairs
from nmt.checkpoint import load_checkpoint, require_training_state, save_checkpoint
from nmt.config import Config
from nmt.corpus import SeenPairs, filter_pairs
from nmt.distributed import (
    all_reduce_sum,
    init_distributed,
    local_device,
    rank0_decides,
    shard,
    shutdown,
)
from nmt.metrics import score
from nmt.model import build_model, count_parameters
from nmt.prepare import TrainData, pair_filter, prepare_data, probe_run_dir
from nmt.schedule import after_validation, learning_rate
from nmt.search import SearchOptions, search_ids
from nmt.tokenizer import PAD, Tokenizer

log = logging.getLogger(__name__)

Callback = Callable[[dict[str, Any]], None]


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise NmtError(f"train.device {name}: CUDA is not available on this machine")
    return torch.device(name)


# -- the state a checkpoint carries ------------------------------------------------------
@dataclass
class TrainState:
    """Where training stands; checkpoints hold it as a plain dict (`to_dict`)."""

    step: int = 0  # updates made
    epoch: int = 0  # epochs completed
    batch_in_epoch: int = 0  # batches of this epoch's plan used (skipped ones included)
    lr_scale: float = 1.0  # plateau decays so far (a product of train.lr_decay)
    best: float | None = None  # best validation value of train.valid_metric
    bad_valids: int = 0  # validations since the best (early stopping)
    bad_since_decay: int = 0  # validations without improvement since the last decay
    elapsed: float = 0.0  # training seconds, over every run resumed from this one

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrainState:
        """The state of a checkpoint's dict; other keys (optimizer, RNG) are left out."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in names})


@dataclass
class _Window:
    """Training tokens and loss since the last train record, for its loss and speed."""

    start: float  # time.perf_counter() when the window opened
    tokens: int = 0
    loss: float = 0.0  # summed over the tokens


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
    ) -> None:
        t = config.train
        self.config, self.data, self.tokenizer = config, data, tokenizer
        self.device, self.rank, self.world = device, rank, world
        self.on_log = on_log
        self.run_dir = Path(t.run_dir)
        # the training pairs: the cache's token ids on disk, or the text encoded in memory
        self.pairs: TrainPairs
        if data.train_ids is not None:
            self.pairs, self.filter_stats = data.train_ids, data.train_ids.stats
        else:
            self.pairs = self._encode_train(epoch=0)
        self.valid_src_ids = tokenizer.encode_src(data.valid_src)
        self.valid_tgt_ids = tokenizer.encode_tgt(data.valid_tgt)
        if not len(self.pairs):
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
        self.state = TrainState()
        self.bad_steps = 0  # non-finite losses in a row

    def _encode_train(self, epoch: int) -> InMemoryPairs:
        d, t = self.config.data, self.config.train
        if d.sampling_alpha > 0:
            import sentencepiece

            # subword sampling drawn per epoch from (seed, epoch): resuming redraws the same
            sentencepiece.set_random_generator_seed(t.seed * 1000 + epoch)
        src = self.tokenizer.encode_src(self.data.train_src, d.sampling_alpha)
        tgt = self.tokenizer.encode_tgt(self.data.train_tgt, d.sampling_alpha)
        texts = (self.data.train_src, self.data.train_tgt)
        keep, stats = filter_pairs(src, tgt, pair_filter(d), texts=texts, seen=SeenPairs())
        if epoch == 0:
            self.filter_stats = stats
        return InMemoryPairs([src[i] for i in keep], [tgt[i] for i in keep])

    def _log_data(self) -> None:
        """The data record of log.jsonl: pairs read, kept, and dropped by each filter."""
        stats = self.filter_stats
        log.info(
            "training pairs: %d kept of %d; dropped: %d with an empty side, %d over %d tokens, "
            "%d over the length ratio, %d identical, %d repeated",
            stats.kept,
            stats.read,
            stats.empty,
            stats.too_long,
            self.config.data.max_len,
            stats.ratio,
            stats.identical,
            stats.duplicate,
        )
        if self.rank == 0:
            cache = self.data.train_ids
            record = {"kind": "data", "step": 0, **dataclasses.asdict(stats)}
            record["cache"] = str(cache.path) if cache is not None else None
            with open(self.run_dir / "log.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")

    # -- checkpoints --------------------------------------------------------------------
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

    def resume(self, path: str | Path) -> None:
        ckpt = load_checkpoint(path)
        require_training_state(ckpt, path)
        if ckpt.config.model != self.config.model:
            raise NmtError(f"checkpoint {path} was trained with another model config")
        self.model.load_state_dict(ckpt.model.state_dict())
        self.optimizer.load_state_dict(ckpt.train_state["optimizer"])
        torch.set_rng_state(ckpt.train_state["rng"])
        self.state = TrainState.from_dict(ckpt.train_state)
        if self.rank == 0:
            self._truncate_log(self.state.step)
        if self.data.train_ids is None and self.config.data.sampling_alpha > 0:
            self.pairs = self._encode_train(self.state.epoch)
        log.info("resumed from %s at step %d", path, self.state.step)

    def _truncate_log(self, step: int) -> None:
        # records written after the checkpoint (by a killed run) would repeat on resume
        path = self.run_dir / "log.jsonl"
        if not path.is_file():
            return
        lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
        kept = []
        for ln in lines:
            try:
                if json.loads(ln).get("step", 0) <= step:
                    kept.append(ln)
            except json.JSONDecodeError:
                break
        write_atomic(path, "".join(k + "\n" for k in kept).encode())

    def _log(self, record: dict[str, Any]) -> None:
        if self.rank != 0:
            return
        with open(self.run_dir / "log.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self.on_log is not None:
            self.on_log(record)

    # -- validation ---------------------------------------------------------------------
    def validate(self) -> dict[str, float]:
        self.model.eval()
        total, n_tokens = 0.0, 0
        with torch.inference_mode():
            lengths = [len(s) for s in self.valid_src_ids]
            tgt_lengths = [len(t) for t in self.valid_tgt_ids]
            for idxs in plan_batches(lengths, tgt_lengths, self.config.train.batch_tokens):
                batch = make_batch(
                    [self.valid_src_ids[i] for i in idxs], [self.valid_tgt_ids[i] for i in idxs]
                ).to(self.device)
                logits, _ = self.model(batch.src, batch.src_lengths, batch.tgt_in)
                total += float(
                    F.cross_entropy(
                        logits.float().flatten(0, 1),
                        batch.tgt_out.flatten(),
                        ignore_index=PAD,
                        reduction="sum",
                    )
                )
                n_tokens += batch.n_tokens
            hyps = search_ids(
                self.model,
                self.valid_src_ids,
                SearchOptions(beam_size=1, scores=False),  # BLEU needs the tokens only
                self.config.train.batch_tokens,
            )
        outputs = self.tokenizer.decode_tgt([h[0].tokens for h in hyps])
        bleu, chrf = score(outputs, self.data.valid_tgt, ("bleu", "chrf"))
        self.model.train()
        loss = total / max(n_tokens, 1)
        return {
            "valid_loss": loss,
            "valid_ppl": math.exp(min(loss, 50)),
            "bleu": bleu.score,
            "chrf": chrf.score,
        }

    def _after_validation(self, metrics: dict[str, float]) -> bool:
        """Keep the best checkpoint, let the schedule see the result; True to stop early."""
        t, s = self.config.train, self.state
        value = metrics["valid_loss"] if t.valid_metric == "loss" else metrics[t.valid_metric]
        better = s.best is None or (value < s.best if t.valid_metric == "loss" else value > s.best)
        if better:
            s.best, s.bad_valids = value, 0
        else:
            s.bad_valids += 1
        s.lr_scale, s.bad_since_decay = after_validation(t, better, s.lr_scale, s.bad_since_decay)
        self._save("last.pt")
        if better and self.rank == 0:
            copy_atomic(self.run_dir / "last.pt", self.run_dir / "best.pt")
        return bool(t.patience) and s.bad_valids >= t.patience

    def _validate_and_save(self) -> bool:
        """Validation and checkpoints happen on rank 0; the others wait for its verdict."""
        s = self.state
        if self.rank != 0:
            return rank0_decides(False, self.device, self.world)
        metrics = self.validate()
        stop = self._after_validation(metrics)
        rank0_decides(stop, self.device, self.world)
        self._log(
            {
                "kind": "valid",
                "step": s.step,
                "time": round(s.elapsed, 2),
                "epoch": s.epoch + 1,
                **{k: round(v, 4) for k, v in metrics.items()},
                "lr": self._lr(),
                "best": s.best,
            }
        )
        return stop

    # -- the loop -----------------------------------------------------------------------
    def _lr(self) -> float:
        """The rate of the next update."""
        return learning_rate(self.config.train, self.state.step, self.state.lr_scale)

    def _done(self, clock: _Clock) -> bool:
        t, s = self.config.train, self.state
        minutes = clock.elapsed(time.perf_counter()) / 60
        return (
            (t.max_steps and s.step >= t.max_steps)
            or (t.max_epochs and s.epoch >= t.max_epochs)
            or (t.max_minutes and minutes >= t.max_minutes)
        )

    def train(self) -> dict[str, Any]:
        t, s = self.config.train, self.state
        self.model.train()
        self.bad_steps = 0
        if s.step == 0:
            self._log_data()
        clock = _Clock(before=s.elapsed, started=time.perf_counter())
        window = _Window(start=time.perf_counter())
        stop = False
        while not stop and not self._done(clock):
            stop = self._train_epoch(clock, window)
        if s.step % t.valid_every != 0 or s.step == 0:
            self._validate_and_save()
        return {"step": s.step, "epoch": s.epoch, "best": s.best, "run_dir": str(self.run_dir)}

    def _epoch_plan(self) -> tuple[BatchPlan, list[int]]:
        """The batch plan of the current epoch and the numbers of this rank's batches in it."""
        t, s = self.config.train, self.state
        gen = torch.Generator().manual_seed(t.seed * 1000 + s.epoch)
        resample = self.config.data.sampling_alpha and self.data.train_ids is None
        if s.batch_in_epoch == 0 and s.epoch > 0 and resample:
            self.pairs = self._encode_train(s.epoch)
        plan = plan_epoch(self.pairs.src_lens, self.pairs.tgt_lens, t.batch_tokens, gen)
        return plan, shard(list(range(len(plan))), self.rank, self.world)

    def epoch_batches(self) -> Iterator[Batch]:
        """This rank's batches of the current epoch from `state.batch_in_epoch` on, each
        gathered (from the cache's files) and padded a few batches ahead."""
        plan, mine = self._epoch_plan()
        return prefetch(
            lambda k: make_batch(*self.pairs.pairs(plan.batch(k))),
            mine[self.state.batch_in_epoch :],
        )

    def _train_epoch(self, clock: _Clock, window: _Window) -> bool:
        """Train on the rest of the current epoch; True to stop (patience or time is up)."""
        t, s = self.config.train, self.state
        batches = self.epoch_batches()
        for batch in batches:
            batch = batch.to(self.device)
            lr = self._lr()
            mean_loss, n_tokens = self._update(batch, lr)
            s.batch_in_epoch += 1
            if not math.isfinite(mean_loss):
                self._skip_bad_step()
                continue
            self.bad_steps = 0
            s.step += 1
            window.tokens += n_tokens
            window.loss += mean_loss * n_tokens
            now = time.perf_counter()
            s.elapsed = clock.elapsed(now)
            if s.step % t.log_every == 0:
                self._log_train(window, lr, now)
            stop = s.step % t.valid_every == 0 and self._validate_and_save()
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

    def _update(self, batch: Batch, lr: float) -> tuple[float, int]:
        """One update at rate `lr` on this rank's `batch` of the global batch (all ranks).

        Returns the global batch's mean loss per target token and its target token count;
        a non-finite loss (the same on every rank) makes no update.
        """
        t = self.config.train
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        autocast = self.device.type == "cuda"
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=autocast):
            keep = batch.tgt_out != PAD  # (B, T)
            logits, _ = self.ddp_model(
                batch.src, batch.src_lengths, batch.tgt_in, t.teacher_forcing_ratio, keep=keep
            )  # (N, V) at real target tokens
        loss_sum = F.cross_entropy(
            logits.float(),
            batch.tgt_out[keep],  # (N,): no PAD left to ignore
            label_smoothing=t.label_smoothing,
            reduction="sum",
        )
        # global loss and token count: every rank sees the same (non-)finite value
        totals = all_reduce_sum(
            torch.stack([loss_sum.detach().float(), loss_sum.new_tensor(float(batch.n_tokens))]),
            self.world,
        )
        n_tokens = int(totals[1])
        # DDP averages gradients over ranks, hence * world: the update is that of the mean
        # loss per token of the global batch
        loss = loss_sum * self.world / max(n_tokens, 1)
        mean_loss = float(totals[0]) / max(n_tokens, 1)
        self.optimizer.zero_grad(set_to_none=True)
        if math.isfinite(mean_loss):
            loss.backward()
            if t.clip_norm:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.clip_norm)
            self.optimizer.step()
        return mean_loss, n_tokens

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

    def _log_train(self, window: _Window, lr: float, now: float) -> None:
        """A train record of the window's loss and speed; then a new window opens."""
        s = self.state
        self._log(
            {
                "kind": "train",
                "step": s.step,
                "time": round(s.elapsed, 2),
                "epoch": s.epoch + 1,
                "loss": window.loss / max(window.tokens, 1),
                "lr": lr,
                "tokens_per_s": window.tokens / max(now - window.start, 1e-9),
            }
        )
        window.tokens, window.loss, window.start = 0, 0.0, time.perf_counter()


def train(config: Config, resume: str | Path | None = None, on_log: Callback | None = None) -> dict:
    """Train a model as the config says; returns the final step, epoch and best score."""
    t = config.train
    if t.threads:
        torch.set_num_threads(t.threads)
    device = pick_device(t.device)
    rank, world = init_distributed(device)
    device = local_device(device, world)
    data, tokenizer = prepare_data(config, rank=rank, world=world)
    trainer = Trainer(config, data, tokenizer, device=device, rank=rank, world=world, on_log=on_log)
    if resume:
        trainer.resume(resume)
    result = trainer.train()
    shutdown(world)
    return result
