"""The training loop: data preparation, updates, validation, checkpoints, resuming.

The same seed and config give the same model on the CPU, and a run resumed from `last.pt`
continues exactly where it stopped: the data order of an epoch is a function of
(seed, epoch), and the checkpoint holds the optimizer, the step within the epoch and the RNG.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from nmt import NmtError
from nmt.atomic import write_atomic
from nmt.batching import make_batch, plan_batches
from nmt.checkpoint import load_checkpoint, require_training_state, save_checkpoint
from nmt.config import Config
from nmt.corpus import filter_pairs, read_dataset, read_parallel
from nmt.metrics import score
from nmt.model import Seq2Seq, count_parameters
from nmt.search import SearchOptions, search_ids
from nmt.tokenizer import PAD, Tokenizer, train_tokenizer

log = logging.getLogger(__name__)

Callback = Callable[[dict[str, Any]], None]


@dataclass
class TrainData:
    train_src: list[str]
    train_tgt: list[str]
    valid_src: list[str]
    valid_tgt: list[str]


def read_data(config: Config) -> TrainData:
    """The raw training and validation text named by the config."""
    d = config.data
    if d.dataset:
        train = read_dataset(d.dataset, d.train_split, d.src_lang, d.tgt_lang)
        valid = read_dataset(d.dataset, d.valid_split, d.src_lang, d.tgt_lang)
    else:
        for name in ("train_src", "train_tgt", "valid_src", "valid_tgt"):
            if not getattr(d, name):
                raise NmtError(f"config: data.{name} is not set (or set data.dataset)")
        train = read_parallel(d.train_src, d.train_tgt)
        valid = read_parallel(d.valid_src, d.valid_tgt)
    if not any(s.strip() and t.strip() for s, t in zip(*train)):
        where = d.dataset or f"{d.train_src} and {d.train_tgt}"
        raise NmtError(f"the training set is empty: {where} hold no pair with two non-empty sides")
    return TrainData(*train, *valid)


def get_tokenizer(config: Config, data: TrainData, run_dir: Path) -> Tokenizer:
    if config.data.tokenizer:
        return Tokenizer.load(config.data.tokenizer)
    tok_dir = run_dir / "tokenizer"
    if (tok_dir / "src.model").is_file():
        return Tokenizer.load(tok_dir)
    log.info("training a tokenizer into %s", tok_dir)
    tok = train_tokenizer(
        data.train_src,
        data.train_tgt,
        vocab_size=config.data.vocab_size,
        model_type=config.data.model_type,
        joint=config.data.joint_vocab,
    )
    tok.save(tok_dir)
    return tok


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise NmtError(f"train.device {name}: CUDA is not available on this machine")
    return torch.device(name)


def probe_run_dir(run_dir: Path, need_bytes: int) -> None:
    """Fail before training, not at the first checkpoint, when the run dir is unusable."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-probe"
        probe.write_bytes(b"x" * 1024)
        probe.unlink()
    except OSError as e:
        raise NmtError(f"run dir {run_dir} is not writable ({e.strerror or e})") from None
    free = shutil.disk_usage(run_dir).free
    if free < need_bytes:
        raise NmtError(
            f"run dir {run_dir}: {free // 2**20} MiB free, checkpoints need about "
            f"{need_bytes // 2**20} MiB"
        )


class Trainer:
    def __init__(self, config: Config, on_log: Callback | None = None) -> None:
        self.config = config
        self.on_log = on_log
        t = config.train
        self.run_dir = Path(t.run_dir)
        if t.threads:
            torch.set_num_threads(t.threads)
        self.device = pick_device(t.device)
        self.rank, self.world = init_distributed(self.device)
        if self.device.type == "cuda" and self.world > 1:
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        data = read_data(config)
        if self.rank == 0:
            probe_run_dir(self.run_dir, need_bytes=0)
            self.tokenizer = get_tokenizer(config, data, self.run_dir)
        barrier(self.world)
        if self.rank != 0:
            self.tokenizer = get_tokenizer(config, data, self.run_dir)
        self.data = data
        self.src_ids, self.tgt_ids = self._encode_train(epoch=0)
        self.valid_src_ids = self.tokenizer.encode_src(data.valid_src)
        self.valid_tgt_ids = self.tokenizer.encode_tgt(data.valid_tgt)
        if not self.src_ids:
            raise NmtError("no training pair is left after filtering (check data.max_len)")
        torch.manual_seed(t.seed)
        self.model = Seq2Seq(
            config.model,
            src_vocab=self.tokenizer.src_vocab_size,
            tgt_vocab=self.tokenizer.tgt_vocab_size,
        ).to(self.device)
        n_params = count_parameters(self.model)
        if self.rank == 0:
            # last + best + their temp copies, with the optimizer's two moments in each
            probe_run_dir(self.run_dir, need_bytes=4 * 3 * 4 * n_params)
        self.forward = self.model
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.forward = DistributedDataParallel(self.model, device_ids=ids)
        log.info("model: %s parameters", f"{n_params:,}")
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=t.lr)
        self.state: dict[str, Any] = {
            "step": 0,
            "epoch": 0,
            "batch_in_epoch": 0,
            "lr_scale": 1.0,
            "best": None,
            "bad_valids": 0,
            "bad_since_decay": 0,
            "elapsed": 0.0,
        }

    def _encode_train(self, epoch: int) -> tuple[list[list[int]], list[list[int]]]:
        d, t = self.config.data, self.config.train
        if d.sampling_alpha > 0:
            import sentencepiece

            # subword sampling drawn per epoch from (seed, epoch): resuming redraws the same
            sentencepiece.set_random_generator_seed(t.seed * 1000 + epoch)
        src = self.tokenizer.encode_src(self.data.train_src, d.sampling_alpha)
        tgt = self.tokenizer.encode_tgt(self.data.train_tgt, d.sampling_alpha)
        keep, stats = filter_pairs(src, tgt, d.max_len)
        if epoch == 0:
            log.info(
                "training pairs: %d kept, %d dropped with an empty side, %d dropped over %d tokens",
                stats.kept,
                stats.empty,
                stats.too_long,
                d.max_len,
            )
            self.filter_stats = stats
        return [src[i] for i in keep], [tgt[i] for i in keep]

    # -- checkpoints --------------------------------------------------------------------
    def _save(self, name: str) -> None:
        if self.rank != 0:
            return
        state = dict(self.state)
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
        state = dict(ckpt.train_state)
        self.optimizer.load_state_dict(state.pop("optimizer"))
        torch.set_rng_state(state.pop("rng"))
        self.state.update(state)
        if self.rank == 0:
            self._truncate_log(self.state["step"])
        if self.config.data.sampling_alpha > 0:
            self.src_ids, self.tgt_ids = self._encode_train(self.state["epoch"])
        log.info("resumed from %s at step %d", path, self.state["step"])

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
        """Keep the best checkpoint, decay the LR on a plateau; True to stop early."""
        t, s = self.config.train, self.state
        value = metrics["valid_loss"] if t.valid_metric == "loss" else metrics[t.valid_metric]
        better = s["best"] is None or (
            value < s["best"] if t.valid_metric == "loss" else value > s["best"]
        )
        if better:
            s["best"], s["bad_valids"], s["bad_since_decay"] = value, 0, 0
        else:
            s["bad_valids"] += 1
            s["bad_since_decay"] += 1
            if s["bad_since_decay"] >= t.lr_patience:
                s["lr_scale"] *= t.lr_decay
                s["bad_since_decay"] = 0
        self._save("last.pt")
        if better and self.rank == 0:
            shutil.copyfile(self.run_dir / "last.pt", self.run_dir / ".best.pt.tmp")
            os.replace(self.run_dir / ".best.pt.tmp", self.run_dir / "best.pt")
        return bool(t.patience) and s["bad_valids"] >= t.patience

    # -- the loop -----------------------------------------------------------------------
    def _lr(self) -> float:
        t, s = self.config.train, self.state
        warm = min(1.0, (s["step"] + 1) / t.warmup_steps) if t.warmup_steps else 1.0
        return max(t.lr * s["lr_scale"], t.min_lr) * warm

    def _done(self, elapsed0: float, started: float) -> bool:
        """elapsed0: training seconds before this process, which started at `started`."""
        t, s = self.config.train, self.state
        minutes = (elapsed0 + time.perf_counter() - started) / 60
        return (
            (t.max_steps and s["step"] >= t.max_steps)
            or (t.max_epochs and s["epoch"] >= t.max_epochs)
            or (t.max_minutes and minutes >= t.max_minutes)
        )

    def train(self) -> dict[str, Any]:
        t, s = self.config.train, self.state
        self.model.train()
        started = time.perf_counter()
        elapsed0 = s["elapsed"]  # training time before this process
        window_tokens, window_loss, window_start = 0, 0.0, time.perf_counter()
        bad_steps = 0
        autocast = self.device.type == "cuda"
        stop = False
        while not stop and not self._done(elapsed0, started):
            gen = torch.Generator().manual_seed(t.seed * 1000 + s["epoch"])
            if s["batch_in_epoch"] == 0 and s["epoch"] > 0 and self.config.data.sampling_alpha:
                self.src_ids, self.tgt_ids = self._encode_train(s["epoch"])
            plan = plan_batches(
                [len(x) for x in self.src_ids], [len(y) for y in self.tgt_ids], t.batch_tokens, gen
            )
            if self.world > 1:
                # every rank builds the same plan and takes its share; equal counts per rank
                # keep the gradient all-reduce from waiting on a rank that has run out
                plan = plan[: len(plan) // self.world * self.world][self.rank :: self.world]
            for idxs in plan[s["batch_in_epoch"] :]:
                batch = make_batch(
                    [self.src_ids[i] for i in idxs], [self.tgt_ids[i] for i in idxs]
                ).to(self.device)
                lr = self._lr()
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=autocast):
                    keep = batch.tgt_out != PAD  # (B, T)
                    logits, _ = self.forward(
                        batch.src,
                        batch.src_lengths,
                        batch.tgt_in,
                        t.teacher_forcing_ratio,
                        keep=keep,
                    )  # (N, V) at real target tokens
                loss_sum = F.cross_entropy(
                    logits.float(),
                    batch.tgt_out[keep],  # (N,): no PAD left to ignore
                    label_smoothing=t.label_smoothing,
                    reduction="sum",
                )
                # global loss and token count: every rank sees the same (non-)finite value
                totals = all_reduce_sum(
                    torch.stack(
                        [loss_sum.detach().float(), loss_sum.new_tensor(float(batch.n_tokens))]
                    ),
                    self.world,
                )
                n_tokens = int(totals[1])
                # DDP averages gradients over ranks, hence * world: the update is that of the
                # mean loss per token of the global batch
                loss = loss_sum * self.world / max(n_tokens, 1)
                mean_loss = float(totals[0]) / max(n_tokens, 1)
                self.optimizer.zero_grad(set_to_none=True)
                s["batch_in_epoch"] += 1
                if not math.isfinite(mean_loss):
                    bad_steps += 1
                    log.warning("step %d: non-finite loss, update skipped", s["step"] + 1)
                    if bad_steps >= t.max_bad_steps:
                        raise NmtError(
                            f"training stopped: {bad_steps} non-finite losses in a row at step "
                            f"{s['step']}; the last good checkpoint is {self.run_dir / 'last.pt'}"
                            " (try a lower train.lr)"
                        )
                    continue
                bad_steps = 0
                loss.backward()
                if t.clip_norm:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.clip_norm)
                self.optimizer.step()
                s["step"] += 1
                window_tokens += n_tokens
                window_loss += mean_loss * n_tokens
                now = time.perf_counter()
                s["elapsed"] = elapsed0 + now - started
                if s["step"] % t.log_every == 0:
                    self._log(
                        {
                            "kind": "train",
                            "step": s["step"],
                            "time": round(s["elapsed"], 2),
                            "epoch": s["epoch"] + 1,
                            "loss": window_loss / max(window_tokens, 1),
                            "lr": lr,
                            "tokens_per_s": window_tokens / max(now - window_start, 1e-9),
                        }
                    )
                    window_tokens, window_loss, window_start = 0, 0.0, time.perf_counter()
                if s["step"] % t.valid_every == 0:
                    stop = self._validate_and_save()
                if t.max_minutes and self.world > 1:
                    # clocks differ: rank 0 decides when time is up
                    time_up = self._flag(self._done(elapsed0, started))
                    stop = stop or bool(broadcast(time_up, self.world))
                    window_start = time.perf_counter()
                if stop or self._done(elapsed0, started):
                    break
            else:
                s["epoch"] += 1
                s["batch_in_epoch"] = 0
        if s["step"] % t.valid_every != 0 or s["step"] == 0:
            self._validate_and_save()
        if self.world > 1:
            import torch.distributed as dist

            dist.destroy_process_group()
        return {
            "step": s["step"],
            "epoch": s["epoch"],
            "best": s["best"],
            "run_dir": str(self.run_dir),
        }

    def _flag(self, value: bool) -> torch.Tensor:
        return torch.tensor(float(value), device=self.device)

    def _validate_and_save(self) -> bool:
        """Validation and checkpoints happen on rank 0; the others wait for its verdict."""
        s = self.state
        if self.rank != 0:
            return bool(broadcast(self._flag(False), self.world))
        metrics = self.validate()
        stop = self._after_validation(metrics)
        broadcast(self._flag(stop), self.world)
        self._log(
            {
                "kind": "valid",
                "step": s["step"],
                "time": round(s["elapsed"], 2),
                "epoch": s["epoch"] + 1,
                **{k: round(v, 4) for k, v in metrics.items()},
                "lr": self._lr(),
                "best": s["best"],
            }
        )
        return stop


def init_distributed(device: torch.device) -> tuple[int, int]:
    """(rank, world size); joins the process group when started by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size()


def barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor, world: int) -> torch.Tensor:
    if world > 1:
        import torch.distributed as dist

        dist.all_reduce(tensor)
    return tensor


def broadcast(tensor: torch.Tensor, world: int) -> float:
    """Rank 0's value of a scalar on every rank."""
    if world > 1:
        import torch.distributed as dist

        dist.broadcast(tensor, src=0)
    return float(tensor)


def train(config: Config, resume: str | Path | None = None, on_log: Callback | None = None) -> dict:
    """Train a model as the config says; returns the final step, epoch and best score."""
    trainer = Trainer(config, on_log)
    if resume:
        trainer.resume(resume)
    return trainer.train()
