"""The training loop: optimiser, LR schedule, clipping, AMP, validation, early stopping, checkpoints, resume, DDP.

It knows no task: a :class:`~seqvision.tasks.Task` turns batches into losses, predictions and metrics. The run
directory's files (log, CSV, TensorBoard, plots) are in ``_run.py``; optimiser and schedule in ``_optim.py``; the
file format in ``_checkpoint.py``. ``x`` is ``(B, T, D)`` features, from the cache or from the frame encoder in
front of the model.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, Sampler
from tqdm.auto import tqdm

from .._faults import fault_point
from ..config import Config, config_to_dict
from ..data import ErrorReport, worker_context
from ..errors import CheckpointError, ConfigError, DatasetError, SeqVisionError
from ..runtime import autocast, seed_everything
from ..tasks import DecodeOptions, Labels, Task, build_task
from . import distributed as dist_utils
from ._checkpoint import Checkpoint, capture_rng_state, restore_rng_state
from ._data import TrainData, build_train_data
from ._hooks import baseline_metrics, format_pace, prepare_model, training_pace
from ._optim import make_optimizer, make_scaler, make_schedule
from ._run import RunLog, check_tensorboard, log_to_file, plot_curves, prepare_run_dir, write_errors, write_run_metrics

__all__ = ["TrainingError", "TrainResult", "Trainer", "train", "Callback"]

log = logging.getLogger("seqvision.train")

Callback = Callable[["Trainer", int, dict], None]  # (trainer, epoch, metrics row), after the epoch's checkpoint


class TrainingError(SeqVisionError):
    """Training cannot go on (a NaN/inf loss or gradient, ...). The message names the epoch and step."""


@dataclass
class TrainResult:
    """What a training run left behind."""

    out: Path  # run directory
    last_checkpoint: Path
    best_checkpoint: Path | None
    metric: str  # the metric that selects best.pt ("val_accuracy", "val_CIDEr", "train_loss", ...)
    best_metric: float | None
    best_epoch: int  # 1-based; 0 = none
    epochs_run: int  # epochs completed in total (a resumed run counts the earlier ones)
    stopped_early: bool
    history: list[dict] = field(default_factory=list)  # one row of metrics per epoch
    num_errors: int = 0  # videos that failed to load (see errors.json)
    baseline: dict = field(default_factory=dict)  # a baseline's metrics on the same data (see _hooks.py)

    def __str__(self) -> str:
        best = "n/a" if self.best_metric is None else f"{self.best_metric:.4f}"
        lines = [f"trained {self.epochs_run} epoch(s){' (early stop)' if self.stopped_early else ''} -> {self.out}",
                 f"  best {self.metric} = {best} at epoch {self.best_epoch}",
                 f"  last: {self.last_checkpoint}",
                 f"  best: {self.best_checkpoint}"]
        lines += [f"  baseline {k} = {v:.4f}" for k, v in self.baseline.items() if isinstance(v, float)]
        if self.num_errors:
            lines.append(f"  {self.num_errors} video(s) failed to load: see {self.out / 'errors.json'}")
        return "\n".join(lines)


class _ShardSampler(Sampler[int]):
    """Rank ``r`` of ``w`` gets indices r, r+w, ... in order, without padding (for evaluation)."""

    def __init__(self, n: int, rank: int, world: int):
        self.indices = list(range(rank, n, world))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class _LossModule(nn.Module):
    """What DDP wraps: the sequence model, plus the frame encoder when it is trained end to end."""

    def __init__(self, task: Task, model: nn.Module, encoder: nn.Module | None):
        super().__init__()
        self.task = task
        self.model = model
        self.encoder = encoder if encoder is not None else nn.Identity()

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor, batch: dict) -> torch.Tensor:
        return self.task.loss(self.model, self.encoder(inputs), lengths, batch)  # encoder: (B, T, D)


def _to_device(batch: dict, device: torch.device) -> dict:
    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


def _batch_size(batch: dict) -> int:
    lengths = batch.get("lengths")
    return 0 if lengths is None else int(lengths.shape[0])


def _selection_metric(wanted: str, task: Task, has_val: bool) -> str:
    """The history key that selects best.pt: ``train.metric`` with its ``val_`` / ``train_`` prefix."""
    if wanted == "auto":
        return f"val_{task.default_metric}" if has_val else "train_loss"
    return wanted if wanted.startswith(("val_", "train_")) else ("val_" if has_val else "train_") + wanted


def _metric_key(metric: str, row: dict, configured: str) -> str:
    """``metric`` as spelled in ``row`` (matched case-insensitively); a ConfigError naming train.metric if absent."""
    spelled = {k.lower(): k for k in row}
    if metric.lower() in spelled:
        return spelled[metric.lower()]
    avail = ", ".join(k for k in row if k not in ("epoch", "time_s", "lr"))
    raise ConfigError("train.metric", f"{configured!r} is not a metric of this run; available: {avail}")


def _lower_is_better(metric: str) -> bool:
    return "loss" in metric.lower() or "error" in metric.lower()


class Trainer:
    """Trains a sequence model (optionally with the frame encoder in front of it) from a :class:`Config`.

    Without data and a model it builds everything from ``cfg`` (:func:`build_train_data`, then the task's model).
    Python users and tests pass ready-made pieces: a :class:`TrainData` as ``data``, or its parts as keywords
    (``train_data``, ``val_data``, ``label_names``, ...: the fields of TrainData and its ``labels``).

    Args:
        cfg: the experiment config (``cfg.train`` holds the optimisation settings, ``cfg.out`` the run dir).
        data: the datasets, labels and encoder.
        model: a task model with ``loss(x, lengths, batch)`` and ``predict(x, lengths, **opts) -> ModelOutput``
            (default: the task's model of ``cfg.model``).
        callbacks: called as ``cb(trainer, epoch, row)`` after each epoch's checkpoints are written.
        progress: tqdm bars (also off when ``cfg.train.progress`` is False).

    Example:
        >>> result = Trainer(cfg).fit()
        >>> print(result.best_metric, result.best_checkpoint)
    """

    def __init__(self, cfg: Config, *, data: TrainData | None = None, model: nn.Module | None = None,
                 callbacks: Iterable[Callback] = (), progress: bool = True, train_data=None, val_data=None,
                 encoder: nn.Module | None = None, label_names: list[str] | None = None,
                 frame_label_names: list[str] | None = None, vocab=None, input_dim: int | None = None,
                 encoder_state: dict | None = None, collate_fn: Callable | None = None):
        self.cfg = cfg
        self.progress = bool(progress and cfg.train.progress)
        self.callbacks = list(callbacks)
        self.dist = dist_utils.init_from_env(device=cfg.train.device, device_key="train.device")
        self.device = self.dist.device
        self.is_main = self.dist.is_main
        self.out = Path(cfg.out)
        seed_everything(cfg.seed, deterministic=cfg.train.deterministic)  # before data and model: same weights
        if self.is_main:
            check_tensorboard(cfg)
        if data is None and train_data is None:
            data = build_train_data(cfg, progress=self.progress)
        elif data is None:
            data = TrainData(train=train_data, val=val_data,
                             labels=Labels(list(label_names or []), list(frame_label_names or []), vocab),
                             input_dim=input_dim or 0, encoder=encoder, encoder_state=encoder_state,
                             **({"collate": collate_fn} if collate_fn is not None else {}))
        if len(data.train) == 0:
            raise DatasetError(f"data.split: the training split {cfg.data.split!r} is empty")
        # Again before the model: building the data may have drawn from the global RNG (feature extraction's
        # DataLoader seeds its workers from it when the cache was missing), and the model's initial weights must
        # not depend on whether the features were already cached.
        seed_everything(cfg.seed, deterministic=cfg.train.deterministic)
        self.data = data
        self.task = build_task(cfg.model.task, data.labels)
        model = model if model is not None else self.task.build_model(cfg.model, input_dim=data.input_dim)
        # data-dependent state (feature statistics); the training frames read for it, kept for the baseline
        self._train_frames = prepare_model(model, data, cfg, baseline_task=self.task if self.is_main else None,
                                           progress=self.progress)
        self.pace = training_pace(data, cfg)  # the frame rate the model learns at, kept in every checkpoint
        self.model = model.to(self.device)
        self.encoder = data.encoder
        self.encoder_trainable = bool(self.encoder is not None and cfg.encoder.trainable)
        if self.encoder is not None:
            self.encoder.to(self.device)
            if not self.encoder_trainable:
                self.encoder.eval()
                self.encoder.requires_grad_(False)
        self.metric = _selection_metric(cfg.train.metric, self.task, data.val is not None)
        # One caption per clip per step, drawn with a generator whose state is checkpointed.
        self.caption_generator = torch.Generator().manual_seed(cfg.seed * 1009 + 7919 * self.dist.rank + 17)
        self.history: list[dict] = []
        self.best_metric: float | None = None
        self.best_epoch = 0
        self.global_step = 0
        self._errors: list[tuple[str, str]] = [(str(p), str(r)) for p, r in data.skipped]

    # -- the run ---------------------------------------------------------------------------------------------

    def fit(self, *, resume: bool = False) -> TrainResult:
        """Train for ``cfg.train.epochs`` epochs (or until early stopping); ``resume=True`` continues from
        ``<out>/last.pt`` (bit-identical to an uninterrupted run on CPU)."""
        cfg = self.cfg
        if not self.is_main:
            return self._fit(resume, None)
        prepare_run_dir(cfg, self.out)
        with log_to_file(self.out / "train.log"):
            run_log = None
            try:
                run_log = RunLog(self.out, tensorboard=cfg.train.tensorboard, console=self.progress)
                return self._fit(resume, run_log)
            except TrainingError as exc:
                log.error("%s", exc)
                raise
            finally:
                write_errors(self._all_errors(), self.out / "errors.json")
                if run_log is not None:
                    run_log.close()

    def _fit(self, resume: bool, run_log: RunLog | None) -> TrainResult:
        cfg = self.cfg
        params = [p for p in self.model.parameters() if p.requires_grad]
        if self.encoder_trainable:
            params += [p for p in self.encoder.parameters() if p.requires_grad]
        optimizer = make_optimizer(cfg, params)
        steps_per_epoch = math.ceil(math.ceil(len(self.data.train) / self.dist.world_size) / cfg.train.batch_size)
        scheduler = make_schedule(cfg, optimizer, steps_per_epoch)
        scaler = make_scaler(cfg, self.device)
        module = _LossModule(self.task, self.model, self.encoder if self.encoder_trainable else None)
        wrapped: nn.Module = module
        if self.dist.distributed:
            wrapped = DistributedDataParallel(module, device_ids=[self.device.index] if self.device.type == "cuda"
                                              else None)
        start = self._resume(optimizer, scheduler, scaler) if resume else 0
        if self.is_main:
            log.info("training %s on %s (world size %d): %d train / %d val samples, %d steps per epoch, "
                     "selecting on %s", self.task.name, self.device, self.dist.world_size, len(self.data.train),
                     len(self.data.val) if self.data.val is not None else 0, steps_per_epoch, self.metric)
            if self.pace is not None:
                log.info("%s", format_pace(self.pace))
        # The baseline first (seconds, its own seeded generator): its score is in the log before epoch 1, so a
        # run that is not learning shows at once, and the training frames read for it are freed before the loop
        baseline: dict = {}
        if self.is_main:
            baseline = baseline_metrics(self.data, self.task, cfg, train_frames=self._train_frames,
                                        progress=self.progress)
            if baseline:
                log.info("baseline: %s", "  ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                                                   for k, v in baseline.items()))
        self._train_frames = None  # up to 256 MiB, read once by prepare_model for the statistics and the baseline
        stopped_early = False
        for epoch in range(start + 1, cfg.train.epochs + 1):
            if self._patience_over(epoch - 1):
                stopped_early = True
                if self.is_main:
                    log.info("early stop after epoch %d: %s has not improved for %d epochs (best %.4f at %d)",
                             epoch - 1, self.metric, cfg.train.early_stop, self.best_metric, self.best_epoch)
                break
            t0 = time.perf_counter()
            row: dict[str, Any] = {"epoch": epoch}
            row.update(self._train_epoch(epoch, wrapped, optimizer, scheduler, scaler, params))
            row["lr"] = float(scheduler.get_last_lr()[0])
            if self.data.val is not None:
                row.update({f"val_{k}": v for k, v in self.validate(self.data.val).items()})
            row["time_s"] = round(time.perf_counter() - t0, 3)
            self.metric = _metric_key(self.metric, row, cfg.train.metric)
            improved = self.best_metric is None or (row[self.metric] < self.best_metric if _lower_is_better(
                self.metric) else row[self.metric] > self.best_metric)
            if improved:
                self.best_metric, self.best_epoch = float(row[self.metric]), epoch
            self.history.append(row)
            fault_point("epoch", epoch)  # tests only (seqvision._faults)
            ckpt = self._checkpoint(epoch, optimizer, scheduler, scaler)  # collective in DDP: all ranks
            if self.is_main:
                # best.pt first: last.pt is the resume point and records this epoch as the best, so a kill
                # between the two saves must not leave a last.pt that claims a best.pt never written
                fault_point("save", "before_best")
                if improved:
                    ckpt.save(self.out / "best.pt")
                fault_point("save", "after_best")
                ckpt.save(self.out / "last.pt")
                fault_point("save", "after_last")
                run_log.epoch(row, self.history)
            dist_utils.barrier()
            for cb in self.callbacks:
                cb(self, epoch, row)
        if self.is_main:
            write_run_metrics(self.out / "metrics.json", metric=self.metric, best_metric=self.best_metric,
                              best_epoch=self.best_epoch, history=self.history, baseline=baseline)
            plot_curves(self.history, self.out / "training_curves.png", title=f"{self.task.name}: {self.out.name}")
        best = self.out / "best.pt"
        return TrainResult(out=self.out, last_checkpoint=self.out / "last.pt",
                           best_checkpoint=best if best.is_file() else None, metric=self.metric,
                           best_metric=self.best_metric, best_epoch=self.best_epoch, epochs_run=len(self.history),
                           stopped_early=stopped_early, history=[dict(r) for r in self.history],
                           num_errors=len(self._all_errors()), baseline=baseline)

    def _patience_over(self, epoch: int) -> bool:
        """Early stopping: ``train.early_stop`` epochs after ``epoch`` without a better metric."""
        patience = self.cfg.train.early_stop
        return bool(patience) and self.best_epoch > 0 and epoch - self.best_epoch >= patience

    # -- one epoch -------------------------------------------------------------------------------------------

    def _train_epoch(self, epoch: int, wrapped: nn.Module, optimizer, scheduler, scaler, params) -> dict:
        cfg = self.cfg
        wrapped.train()
        if self.encoder is not None and not self.encoder_trainable:
            self.encoder.eval()
        loader = self._loader(self.data.train, train=True, epoch=epoch)
        total_loss = torch.zeros((), dtype=torch.float64)
        total_n = 0
        bar = tqdm(loader, desc=f"epoch {epoch}/{cfg.train.epochs}", unit="batch", leave=False,
                   disable=not (self.progress and self.is_main), dynamic_ncols=True)
        guard = ErrorReport()  # only for the systemic-failure rule; self._errors lists every failure
        for step, batch in enumerate(bar, start=1):
            self._errors.extend(tuple(e) for e in batch.get("errors", []) or [])
            guard.check(batch, total=len(loader.sampler))  # stops the run when every video fails
            n = _batch_size(batch)
            if self._any_rank(n == 0):
                continue  # every clip of this batch failed to load (on some rank): skip the step everywhere
            inputs = self._frozen_features(self._inputs(batch))
            lengths = batch["lengths"].to(self.device)
            batch = _to_device(self.task.training_batch(batch, generator=self.caption_generator), self.device)
            optimizer.zero_grad(set_to_none=True)
            with autocast(self.device, cfg.train.amp):
                loss = wrapped(inputs, lengths, batch).float()
            value = float(loss.detach())
            where = f"epoch {epoch}, step {step} (global step {self.global_step + 1})"
            if self._any_rank(not math.isfinite(value)):
                raise TrainingError(f"{where}: the loss is {value} (not finite); training stopped. The last good "
                                    f"checkpoint {self.out / 'last.pt'} is unchanged. Try a lower train.lr, "
                                    "gradient clipping (train.clip_grad) or train.amp=off.")
            scaler.scale(loss).backward()
            if cfg.train.clip_grad > 0:
                scaler.unscale_(optimizer)
                norm = torch.nn.utils.clip_grad_norm_(params, cfg.train.clip_grad)
                if not scaler.is_enabled() and not torch.isfinite(norm):
                    raise TrainingError(f"{where}: the gradient norm is {float(norm)}; training stopped. The last "
                                        f"good checkpoint {self.out / 'last.pt'} is unchanged. Try a lower "
                                        "train.lr or train.amp=off.")
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            self.global_step += 1
            fault_point("step", self.global_step)  # tests only (seqvision._faults)
            total_loss += value * n
            total_n += n
            bar.set_postfix(loss=f"{value:.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
        bar.close()
        sums = dist_utils.all_reduce_sum(torch.tensor([float(total_loss), float(total_n)], dtype=torch.float64))
        return {"train_loss": float(sums[0] / max(sums[1], 1.0))}

    @torch.no_grad()
    def validate(self, dataset, *, desc: str = "val", decode: DecodeOptions = DecodeOptions()) -> dict:
        """Loss and the task's validation metrics on ``dataset`` (all ranks take part; every rank gets the
        result): ``loss`` plus ``accuracy`` (classify), ``frame_accuracy`` (frames) or the caption scores
        (``CIDEr``, ``BLEU-4``, ... of greedy decoding by default)."""
        cfg = self.cfg
        self.model.eval()
        if self.encoder is not None:
            self.encoder.eval()
        metrics = self.task.metrics()
        sums = torch.zeros(2, dtype=torch.float64)  # loss * n, n
        bar = tqdm(self._loader(dataset, train=False), desc=desc, unit="batch", leave=False,
                   disable=not (self.progress and self.is_main), dynamic_ncols=True)
        for batch in bar:
            self._errors.extend(tuple(e) for e in batch.get("errors", []) or [])
            n = _batch_size(batch)
            if n == 0:
                continue
            inputs = self._inputs(batch)
            lengths = batch["lengths"].to(self.device)
            with autocast(self.device, cfg.train.amp):
                x = self.encoder(inputs).float() if self.encoder is not None else inputs  # (B, T, D)
                if x.is_inference():
                    x = x.clone()
                target = _to_device(self.task.training_batch(batch), self.device)  # deterministic choice
                loss = self.task.loss(self.model, x, lengths, target).float()
                out = self.task.predict(self.model, x, lengths, decode)
            sums += torch.tensor([float(loss) * n, n], dtype=torch.float64)
            metrics.update(batch, out)
        bar.close()
        sums = dist_utils.all_reduce_sum(sums)
        parts = dist_utils.all_gather_objects(metrics.state())
        scores = None
        if self.is_main:
            metrics.merge(parts)
            scores = metrics.compute()
        return {"loss": float(sums[0] / max(float(sums[1]), 1.0)), **dist_utils.broadcast_object(scores)}

    # -- pieces ----------------------------------------------------------------------------------------------

    def _loader(self, dataset, *, train: bool, epoch: int = 0) -> DataLoader:
        cfg = self.cfg
        cached = cfg.train.input == "features" and self.encoder is None
        workers = cfg.train.num_workers if cached else cfg.data.num_workers
        if train:
            if hasattr(dataset, "set_epoch"):
                dataset.set_epoch(epoch)  # per-epoch random draws (e.g. random_segment, crops) of VideoDataset
            sampler: Sampler = DistributedSampler(dataset, num_replicas=self.dist.world_size, rank=self.dist.rank,
                                                  shuffle=True, seed=cfg.seed, drop_last=False)
            sampler.set_epoch(epoch)
        else:
            sampler = _ShardSampler(len(dataset), self.dist.rank, self.dist.world_size)
        # Worker seeds depend on (seed, epoch) only, so a resumed run sees the same augmentation draws.
        gen = torch.Generator().manual_seed(cfg.seed * 100003 + epoch * 31 + (0 if train else 1))
        return DataLoader(dataset, batch_size=cfg.train.batch_size, sampler=sampler, num_workers=workers,
                          collate_fn=self.data.collate, generator=gen, pin_memory=self.device.type == "cuda",
                          persistent_workers=False, multiprocessing_context=worker_context(dataset, workers))

    def _inputs(self, batch: dict) -> torch.Tensor:
        if "features" in batch:
            return batch["features"].to(self.device, non_blocking=True).float()  # (B, T, D)
        if "video" in batch:
            return batch["video"].to(self.device, non_blocking=True)  # (B, T, C, H, W) uint8
        raise DatasetError("a batch holds neither 'features' nor 'video'")

    def _frozen_features(self, inputs: torch.Tensor) -> torch.Tensor:
        """Run the frozen encoder (if any) outside autograd."""
        if self.encoder is None or self.encoder_trainable:
            return inputs
        with torch.no_grad():
            x = self.encoder(inputs)  # (B, T, D)
        if x.is_inference():
            x = x.clone()
        return x.float()

    def _any_rank(self, flag: bool) -> bool:
        if not self.dist.distributed:
            return flag
        return bool(dist_utils.all_reduce_sum(torch.tensor([float(flag)], dtype=torch.float64)).item() > 0)

    def _all_errors(self) -> list[tuple[str, str]]:
        seen: dict[str, str] = {}
        for path, why in self._errors:
            seen.setdefault(str(path), str(why))
        return list(seen.items())

    # -- checkpoints -----------------------------------------------------------------------------------------

    def _checkpoint(self, epoch: int, optimizer, scheduler, scaler) -> Checkpoint:
        rng = capture_rng_state(generator=self.caption_generator)
        rng_ranks = dist_utils.all_gather_objects(rng) if self.dist.distributed else None
        encoder_state = self.data.encoder_state
        if self.encoder is not None:
            encoder_state = {k: v.detach().cpu() for k, v in self.encoder.state_dict().items()}
        labels = self.task.labels
        return Checkpoint(
            config=config_to_dict(self.cfg),
            model_state={k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            input_dim=int(self.data.input_dim), task=self.task.name, label_names=list(labels.label_names),
            frame_label_names=list(labels.frame_label_names),
            vocab=labels.vocab.to_dict() if labels.vocab is not None else None, encoder_state=encoder_state,
            optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
            scaler=scaler.state_dict() if scaler.is_enabled() else None, epoch=epoch, global_step=self.global_step,
            rng=rng, rng_ranks=rng_ranks, world_size=self.dist.world_size, metrics=[dict(r) for r in self.history],
            metric=self.metric, best_metric=self.best_metric, best_epoch=self.best_epoch, pace=self.pace)

    def _resume(self, optimizer, scheduler, scaler) -> int:
        path = self.out / "last.pt"
        if not path.is_file():
            log.warning("resume asked for but %s does not exist: starting from scratch", path)
            return 0
        ckpt = Checkpoint.load(path)
        try:
            self.model.load_state_dict(ckpt.model_state)
            if self.encoder is not None and ckpt.encoder_state is not None:
                self.encoder.load_state_dict(ckpt.encoder_state)
            optimizer.load_state_dict(ckpt.optimizer)
            scheduler.load_state_dict(ckpt.scheduler)
            if ckpt.scaler is not None and scaler.is_enabled():
                scaler.load_state_dict(ckpt.scaler)
        except (KeyError, RuntimeError, ValueError, TypeError, AttributeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(f"{path}: cannot resume from this checkpoint: it does not match the model and "
                                  f"optimiser built from the current config ({first}); use the config it was "
                                  f"trained with, or a fresh `out` directory") from None
        ranks = ckpt.rng_ranks
        restore_rng_state(ranks[self.dist.rank] if ranks and len(ranks) == self.dist.world_size else ckpt.rng,
                          generator=self.caption_generator)
        self.history = [dict(r) for r in ckpt.metrics]
        self.best_metric, self.best_epoch = ckpt.best_metric, int(ckpt.best_epoch or 0)
        self.global_step = int(ckpt.global_step or 0)
        log.info("resumed from %s after epoch %d", path, ckpt.epoch)
        return int(ckpt.epoch)


def train(cfg: Config, *, resume: bool = False, progress: bool = True) -> TrainResult:
    """Train from a config (the ``seqvision train`` command; also under ``torchrun`` for DDP).

    Args:
        cfg: the experiment config; the run directory is ``cfg.out``.
        resume: continue from ``<out>/last.pt`` if it exists.
        progress: show tqdm bars.

    Returns:
        A :class:`TrainResult` (on every rank).
    """
    started = not dist_utils.is_distributed()
    try:
        return Trainer(cfg, progress=progress).fit(resume=resume)
    finally:
        if started:
            dist_utils.cleanup()
