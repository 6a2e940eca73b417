"""The training loop: optimiser, LR schedule, clipping, AMP, validation, early stopping, checkpoints, resume, DDP.

Written against the model protocol of DESIGN.md: ``model.loss(x, lengths, batch) -> scalar`` and
``model.predict(x, lengths, **opts) -> dict``; ``x`` is ``(B, T, D)`` features, from the cache or from the frame
encoder in front of the model.
"""

from __future__ import annotations

import csv
import importlib
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, Sampler
from tqdm.auto import tqdm

from .._faults import fault_point
from ..config import Config, config_to_dict, save_config
from ..data import ErrorReport
from ..errors import CheckpointError, ConfigError, DatasetError, SeqVisionError
from ..runtime import autocast, seed_everything
from . import distributed as dist_utils
from ._checkpoint import capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint

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

    def __str__(self) -> str:
        best = "n/a" if self.best_metric is None else f"{self.best_metric:.4f}"
        lines = [f"trained {self.epochs_run} epoch(s){' (early stop)' if self.stopped_early else ''} -> {self.out}",
                 f"  best {self.metric} = {best} at epoch {self.best_epoch}",
                 f"  last: {self.last_checkpoint}",
                 f"  best: {self.best_checkpoint}"]
        if self.num_errors:
            lines.append(f"  {self.num_errors} video(s) failed to load: see {self.out / 'errors.json'}")
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------------


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

    def __init__(self, model: nn.Module, encoder: nn.Module | None):
        super().__init__()
        self.model = model
        self.encoder = encoder if encoder is not None else nn.Identity()

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor, batch: dict) -> torch.Tensor:
        x = self.encoder(inputs)  # (B, T, D)
        return self.model.loss(x, lengths, batch)


def _to_device(batch: dict, device: torch.device) -> dict:
    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


def _batch_size(batch: dict) -> int:
    lengths = batch.get("lengths")
    return 0 if lengths is None else int(lengths.shape[0])


def _lower_is_better(metric: str) -> bool:
    return "loss" in metric.lower() or "error" in metric.lower()


def _make_optimizer(cfg: Config, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    t = cfg.train
    if t.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)
    if t.optimizer == "adam":
        return torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay)
    return torch.optim.SGD(params, lr=t.lr, momentum=0.9, weight_decay=t.weight_decay)


def _make_schedule(cfg: Config, optimizer, steps_per_epoch: int):
    """Per-step LambdaLR: linear warm-up, then cosine to 0, step decay, or constant."""
    t = cfg.train
    total = max(1, t.epochs * steps_per_epoch)
    warmup = int(round(t.warmup_epochs * steps_per_epoch))

    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if t.schedule == "cosine":
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        if t.schedule == "step":
            return t.gamma ** ((step // steps_per_epoch) // max(1, t.step_size))
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _auto_metric(task: str, has_val: bool) -> str:
    if not has_val:
        return "train_loss"
    return {"classify": "val_accuracy", "frames": "val_frame_accuracy", "caption": "val_CIDEr"}[task]


class Trainer:
    """Trains a sequence model (optionally with the frame encoder in front of it) from a :class:`Config`.

    Without datasets and a model it builds everything from ``cfg`` (dataset index, feature cache or videos,
    vocabulary, model). Python users and tests can instead pass ready-made pieces.

    Args:
        cfg: the experiment config (``cfg.train`` holds the optimisation settings, ``cfg.out`` the run dir).
        model: a task model with ``loss(x, lengths, batch)`` and ``predict(x, lengths, **opts)``.
        train_data: a Dataset of sample dicts (``features`` (T, D) or ``video`` (T, C, H, W) uint8, ...).
        val_data: validation Dataset, or None.
        encoder: FrameEncoder in front of the model (for ``video`` samples); trained when
            ``cfg.encoder.trainable``, else frozen.
        label_names, frame_label_names, vocab: saved in checkpoints for inference.
        input_dim: feature width D (inferred from the data when not given).
        encoder_state: the random-init encoder's weights that made cached features (saved in checkpoints).
        collate_fn: batch builder (default ``seqvision.data.collate``).
        callbacks: called as ``cb(trainer, epoch, row)`` after each epoch's checkpoints are written.
        progress: tqdm bars (also off when ``cfg.train.progress`` is False).

    Example:
        >>> result = Trainer(cfg).fit()
        >>> print(result.best_metric, result.best_checkpoint)
    """

    def __init__(self, cfg: Config, *, model: nn.Module | None = None, train_data=None, val_data=None,
                 encoder: nn.Module | None = None, label_names: list[str] | None = None,
                 frame_label_names: list[str] | None = None, vocab=None, input_dim: int | None = None,
                 encoder_state: dict | None = None, collate_fn: Callable | None = None,
                 callbacks: Iterable[Callback] = (), progress: bool = True):
        self.cfg = cfg
        self.progress = bool(progress and cfg.train.progress)
        self.callbacks = list(callbacks)
        self.dist = dist_utils.init_from_env(device=cfg.train.device)
        self.device = self.dist.device
        self.is_main = self.dist.is_main
        self.out = Path(cfg.out)
        seed_everything(cfg.seed, deterministic=cfg.train.deterministic)
        if cfg.train.tensorboard and self.is_main:
            try:
                importlib.import_module("torch.utils.tensorboard")
            except ImportError:
                raise ConfigError("train.tensorboard", "needs the 'tensorboard' package, which is not installed: "
                                  "pip install 'seqvision[tensorboard]' or set train.tensorboard=false") from None
        if train_data is None:
            from ._data import build_train_data

            data = build_train_data(cfg, progress=self.progress)
            train_data, val_data = data.train, data.val
            encoder = encoder if encoder is not None else data.encoder
            label_names = label_names if label_names is not None else data.label_names
            frame_label_names = frame_label_names if frame_label_names is not None else data.frame_label_names
            vocab = vocab if vocab is not None else data.vocab
            input_dim = input_dim or data.input_dim
            encoder_state = encoder_state if encoder_state is not None else data.encoder_state
            skipped = data.skipped
        else:
            skipped = []
        if len(train_data) == 0:
            raise DatasetError(f"data.split: the training split {cfg.data.split!r} is empty")
        self.train_data = train_data
        self.val_data = val_data if (val_data is not None and len(val_data) > 0) else None
        self.label_names = list(label_names or [])
        self.frame_label_names = list(frame_label_names or [])
        self.vocab = vocab
        self.encoder = encoder
        if input_dim is None:
            if encoder is not None:
                input_dim = int(encoder.dim)
            else:
                from ._data import sample_input_dim

                input_dim = sample_input_dim(train_data)
        self.input_dim = int(input_dim)
        self.encoder_state = encoder_state
        if collate_fn is None:
            from ._data import get_collate

            collate_fn = get_collate()
        self.collate_fn = collate_fn
        if model is None:
            from ..models import build_model

            num_classes = {"classify": len(self.label_names), "frames": len(self.frame_label_names)}.get(
                cfg.model.task, 0)
            model = build_model(cfg.model, input_dim=self.input_dim, num_classes=num_classes, vocab=vocab)
        self.model = model.to(self.device)
        self.task = getattr(model, "task", cfg.model.task)
        self.encoder_trainable = bool(encoder is not None and cfg.encoder.trainable)
        if self.encoder is not None:
            self.encoder.to(self.device)
            if not self.encoder_trainable:
                self.encoder.eval()
                self.encoder.requires_grad_(False)
        self.metric = cfg.train.metric
        if self.metric == "auto":
            self.metric = _auto_metric(self.task, self.val_data is not None)
        elif not self.metric.startswith(("val_", "train_")):
            self.metric = ("val_" if self.val_data is not None else "train_") + self.metric
        # One caption per clip per step, drawn with a generator whose state is checkpointed.
        self.caption_generator = torch.Generator().manual_seed(cfg.seed * 1009 + 7919 * self.dist.rank + 17)
        self.history: list[dict] = []
        self.best_metric: float | None = None
        self.best_epoch = 0
        self.global_step = 0
        self._errors: list[tuple[str, str]] = [(str(p), str(r)) for p, r in skipped]

    # -- pieces ----------------------------------------------------------------------------------------------

    def _loader(self, dataset, *, train: bool, epoch: int = 0) -> DataLoader:
        cfg = self.cfg
        workers = cfg.train.num_workers if cfg.train.input == "features" else cfg.data.num_workers
        if self.encoder is not None and cfg.train.input == "features":
            workers = cfg.data.num_workers
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
                          collate_fn=self.collate_fn, generator=gen, pin_memory=self.device.type == "cuda",
                          persistent_workers=False)

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

    def _pick_captions(self, batch: dict) -> dict:
        captions = batch.get("captions")
        if self.task != "caption" or captions is None:
            return batch
        picked = []
        for i, refs in enumerate(captions):
            if isinstance(refs, str):
                picked.append(refs)
                continue
            if not refs:
                raise DatasetError(f"{batch['path'][i] if 'path' in batch else i}: training clip has no caption")
            j = int(torch.randint(len(refs), (1,), generator=self.caption_generator))
            picked.append(refs[j])
        return {**batch, "captions": picked, "references": captions}

    def _use_scaler(self) -> bool:
        mode = self.cfg.train.amp
        if self.device.type != "cuda":
            return False
        return mode == "fp16" or (mode == "auto" and not torch.cuda.is_bf16_supported())

    def _any_rank(self, flag: bool) -> bool:
        if not self.dist.distributed:
            return flag
        return bool(dist_utils.all_reduce_sum(torch.tensor([float(flag)], dtype=torch.float64)).item() > 0)

    # -- checkpoints -----------------------------------------------------------------------------------------

    def _state(self, epoch: int, optimizer, scheduler, scaler) -> dict[str, Any]:
        rng = capture_rng_state(generator=self.caption_generator)
        rng_ranks = dist_utils.all_gather_objects(rng) if self.dist.distributed else None
        encoder_state = None
        if self.encoder is not None:
            encoder_state = {k: v.detach().cpu() for k, v in self.encoder.state_dict().items()}
        elif self.encoder_state is not None:
            encoder_state = self.encoder_state
        state = {
            "config": config_to_dict(self.cfg),
            "model_state": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "encoder_state": encoder_state,
            "input_dim": self.input_dim,
            "task": self.task,
            "label_names": list(self.label_names),
            "frame_label_names": list(self.frame_label_names),
            "vocab": self.vocab.to_dict() if self.vocab is not None else None,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler.is_enabled() else None,
            "epoch": epoch,
            "global_step": self.global_step,
            "rng": rng,
            "rng_ranks": rng_ranks,
            "world_size": self.dist.world_size,
            "metrics": [dict(r) for r in self.history],
            "metric": self.metric,
            "best_metric": self.best_metric,
            "best_epoch": self.best_epoch,
        }
        return state

    def _resume(self, optimizer, scheduler, scaler) -> int:
        path = self.out / "last.pt"
        if not path.is_file():
            log.warning("resume asked for but %s does not exist: starting from scratch", path)
            return 0
        ckpt = load_checkpoint(path, map_location="cpu")
        try:
            self.model.load_state_dict(ckpt["model_state"])
            if self.encoder is not None and ckpt.get("encoder_state") is not None:
                self.encoder.load_state_dict(ckpt["encoder_state"])
            optimizer.load_state_dict(ckpt["optimizer"])
            scheduler.load_state_dict(ckpt["scheduler"])
            if ckpt.get("scaler") is not None and scaler.is_enabled():
                scaler.load_state_dict(ckpt["scaler"])
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(f"{path}: cannot resume from this checkpoint: it does not match the model and "
                                  f"optimiser built from the current config ({first}); use the config it was "
                                  f"trained with, or a fresh `out` directory") from None
        rng = ckpt["rng"]
        ranks = ckpt.get("rng_ranks")
        if ranks and len(ranks) == self.dist.world_size:
            rng = ranks[self.dist.rank]
        restore_rng_state(rng, generator=self.caption_generator)
        self.history = [dict(r) for r in ckpt.get("metrics", [])]
        self.best_metric = ckpt.get("best_metric")
        self.best_epoch = int(ckpt.get("best_epoch", 0) or 0)
        self.global_step = int(ckpt.get("global_step", 0) or 0)
        epoch = int(ckpt.get("epoch", 0))
        log.info("resumed from %s after epoch %d", path, epoch)
        return epoch

    # -- loops -----------------------------------------------------------------------------------------------

    def _train_epoch(self, epoch: int, wrapped: nn.Module, optimizer, scheduler, scaler, params) -> dict:
        cfg = self.cfg
        wrapped.train()
        if self.encoder is not None and not self.encoder_trainable:
            self.encoder.eval()
        loader = self._loader(self.train_data, train=True, epoch=epoch)
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
            batch = _to_device(self._pick_captions(batch), self.device)
            optimizer.zero_grad(set_to_none=True)
            with autocast(self.device, cfg.train.amp):
                loss = wrapped(inputs, lengths, batch)
            loss = loss.float()
            value = float(loss.detach())
            if self._any_rank(not math.isfinite(value)):
                raise TrainingError(
                    f"epoch {epoch}, step {step} (global step {self.global_step + 1}): the loss is {value} "
                    f"(not finite); training stopped. The last good checkpoint {self.out / 'last.pt'} is "
                    "unchanged. Try a lower train.lr, gradient clipping (train.clip_grad) or train.amp=off.")
            scaler.scale(loss).backward()
            if cfg.train.clip_grad > 0:
                scaler.unscale_(optimizer)
                norm = torch.nn.utils.clip_grad_norm_(params, cfg.train.clip_grad)
                if not scaler.is_enabled() and not torch.isfinite(norm):
                    raise TrainingError(
                        f"epoch {epoch}, step {step} (global step {self.global_step + 1}): the gradient norm is "
                        f"{float(norm)}; training stopped. The last good checkpoint {self.out / 'last.pt'} is "
                        "unchanged. Try a lower train.lr or train.amp=off.")
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
    def validate(self, dataset, *, desc: str = "val", beam_size: int = 1) -> dict:
        """Loss and the task metric on ``dataset`` (all ranks take part; every rank gets the result).

        Keys: ``loss`` plus ``accuracy`` (classify), ``frame_accuracy`` (frames), or the caption scores
        (``CIDEr``, ``Bleu_4``, ... from greedy decoding) for captioning.
        """
        cfg = self.cfg
        self.model.eval()
        if self.encoder is not None:
            self.encoder.eval()
        loader = self._loader(dataset, train=False)
        sums = torch.zeros(4, dtype=torch.float64)  # loss*n, n, correct, count
        candidates: dict[str, str] = {}
        references: dict[str, list[str]] = {}
        bar = tqdm(loader, desc=desc, unit="batch", leave=False,
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
                loss_batch = batch
                if self.task == "caption":
                    loss_batch = {**batch, "captions": [refs[0] if refs else "" for refs in batch["captions"]]}
                loss = self.model.loss(x, lengths, _to_device(loss_batch, self.device)).float()
                if self.task == "caption":
                    out = self.model.predict(x, lengths, beam_size=beam_size)
                else:
                    out = self.model.predict(x, lengths)
            sums[0] += float(loss) * n
            sums[1] += n
            if self.task == "classify":
                scores = out.get("logits", out.get("probs"))  # (B, K)
                pred = scores.argmax(-1).cpu()
                sums[2] += float((pred == batch["label"].cpu()).sum())
                sums[3] += n
            elif self.task == "frames":
                scores = out.get("logits", out.get("probs"))  # (B, T, K)
                pred = scores.argmax(-1).cpu()
                target = batch["frame_labels"].cpu()  # (B, T), -100 on padding
                valid = target != -100
                sums[2] += float(((pred == target) & valid).sum())
                sums[3] += float(valid.sum())
            else:
                for vid, text, refs in zip(batch["id"], out["texts"], batch["captions"]):
                    candidates[str(vid)] = text
                    references[str(vid)] = list(refs)
        bar.close()
        sums = dist_utils.all_reduce_sum(sums)
        result = {"loss": float(sums[0] / max(float(sums[1]), 1.0))}
        if self.task in ("classify", "frames"):
            key = "accuracy" if self.task == "classify" else "frame_accuracy"
            result[key] = float(sums[2] / max(float(sums[3]), 1.0))
        else:
            parts = dist_utils.all_gather_objects((candidates, references))
            scores = None
            if self.is_main:
                cands: dict[str, str] = {}
                refs_all: dict[str, list[str]] = {}
                for c, r in parts:
                    cands.update(c)
                    refs_all.update(r)
                from ..metrics import caption_scores

                # METEOR (a Java process, seconds) is left to `seqvision eval`; per epoch BLEU/ROUGE/CIDEr suffice
                scores = ({k: float(v) for k, v in caption_scores(refs_all, cands, meteor=False).items()}
                          if cands else {})
            scores = dist_utils.broadcast_object(scores)
            result.update(scores)
        return result

    # -- the run ---------------------------------------------------------------------------------------------

    def fit(self, *, resume: bool = False) -> TrainResult:
        """Train for ``cfg.train.epochs`` epochs (or until early stopping); ``resume=True`` continues from
        ``<out>/last.pt`` (bit-identical to an uninterrupted run on CPU)."""
        cfg = self.cfg
        handler = None
        writer = None
        if self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            for stale in self.out.glob(".*.pt.*.tmp"):  # left by a run killed mid-save; the .pt files are intact
                stale.unlink(missing_ok=True)
            save_config(cfg, self.out / "config.yaml")
            handler = logging.FileHandler(self.out / "train.log", encoding="utf-8")
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
            log.addHandler(handler)
            if log.level == logging.NOTSET or log.level > logging.INFO:
                log.setLevel(logging.INFO)
        try:
            params = [p for p in self.model.parameters() if p.requires_grad]
            if self.encoder_trainable:
                params += [p for p in self.encoder.parameters() if p.requires_grad]
            optimizer = _make_optimizer(cfg, params)
            steps_per_epoch = math.ceil(math.ceil(len(self.train_data) / self.dist.world_size) / cfg.train.batch_size)
            scheduler = _make_schedule(cfg, optimizer, steps_per_epoch)
            scaler = torch.amp.GradScaler("cuda", enabled=self._use_scaler())
            module = _LossModule(self.model, self.encoder if self.encoder_trainable else None)
            wrapped: nn.Module = module
            if self.dist.distributed:
                from torch.nn.parallel import DistributedDataParallel as DDP

                ids = [self.device.index] if self.device.type == "cuda" else None
                wrapped = DDP(module, device_ids=ids)
            start = self._resume(optimizer, scheduler, scaler) if resume else 0
            if self.is_main:
                log.info("training %s on %s (world size %d): %d train / %d val samples, %d steps per epoch, "
                         "selecting on %s", self.task, self.device, self.dist.world_size, len(self.train_data),
                         len(self.val_data) if self.val_data is not None else 0, steps_per_epoch, self.metric)
                if cfg.train.tensorboard:
                    from torch.utils.tensorboard import SummaryWriter

                    writer = SummaryWriter(log_dir=str(self.out / "tensorboard"))
            stopped_early = False
            epoch = start
            if start and self._should_stop(start):
                stopped_early = True
            for epoch in range(start + 1, cfg.train.epochs + 1):
                if stopped_early:
                    break
                t0 = time.perf_counter()
                row: dict[str, Any] = {"epoch": epoch}
                row.update(self._train_epoch(epoch, wrapped, optimizer, scheduler, scaler, params))
                row["lr"] = float(scheduler.get_last_lr()[0])
                if self.val_data is not None:
                    row.update({f"val_{k}": v for k, v in self.validate(self.val_data).items()})
                row["time_s"] = round(time.perf_counter() - t0, 3)
                value = self._metric_value(row)
                improved = self.best_metric is None or (
                    value < self.best_metric if _lower_is_better(self.metric) else value > self.best_metric)
                if improved:
                    self.best_metric, self.best_epoch = value, epoch
                self.history.append(row)
                fault_point("epoch", epoch)  # tests only (seqvision._faults)
                state = self._state(epoch, optimizer, scheduler, scaler)  # collective in DDP: all ranks
                if self.is_main:
                    # best.pt first: last.pt is the resume point and records this epoch as the best, so a kill
                    # between the two saves must not leave a last.pt that claims a best.pt never written
                    fault_point("save", "before_best")  # tests only (seqvision._faults)
                    if improved:
                        save_checkpoint(state, self.out / "best.pt")
                    fault_point("save", "after_best")
                    save_checkpoint(state, self.out / "last.pt")
                    fault_point("save", "after_last")
                    self._write_logs(row, writer)
                dist_utils.barrier()
                for cb in self.callbacks:
                    cb(self, epoch, row)
                if self._should_stop(epoch):
                    stopped_early = epoch < cfg.train.epochs
                    if stopped_early and self.is_main:
                        log.info("early stop after epoch %d: %s has not improved for %d epochs (best %.4f at %d)",
                                 epoch, self.metric, cfg.train.early_stop, self.best_metric, self.best_epoch)
                    if stopped_early:
                        break
            if self.is_main:
                self._plot()
            best = self.out / "best.pt"
            return TrainResult(out=self.out, last_checkpoint=self.out / "last.pt",
                               best_checkpoint=best if best.is_file() else None, metric=self.metric,
                               best_metric=self.best_metric, best_epoch=self.best_epoch,
                               epochs_run=len(self.history), stopped_early=stopped_early,
                               history=[dict(r) for r in self.history], num_errors=len(self._all_errors()))
        except TrainingError as exc:
            if self.is_main:
                log.error("%s", exc)
            raise
        finally:
            if self.is_main:
                self._write_errors()
            if writer is not None:
                writer.close()
            if handler is not None:
                log.removeHandler(handler)
                handler.close()

    def _should_stop(self, epoch: int) -> bool:
        patience = self.cfg.train.early_stop
        return bool(patience) and self.best_epoch > 0 and epoch - self.best_epoch >= patience

    def _metric_value(self, row: dict) -> float:
        if self.metric in row:
            return float(row[self.metric])
        lowered = {k.lower(): k for k in row}
        if self.metric.lower() in lowered:
            self.metric = lowered[self.metric.lower()]
            return float(row[self.metric])
        avail = ", ".join(k for k in row if k not in ("epoch", "time_s", "lr"))
        raise ConfigError("train.metric", f"{self.cfg.train.metric!r} is not a metric of this run; "
                          f"available: {avail}")

    def _write_logs(self, row: dict, writer) -> None:
        keys: list[str] = []
        for r in self.history:
            keys.extend(k for k in r if k not in keys)
        with open(self.out / "metrics.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            for r in self.history:
                w.writerow(r)
        summary = "  ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())
        log.info("%s", summary)
        if self.progress:
            tqdm.write(summary)
        if writer is not None:
            for k, v in row.items():
                if k != "epoch" and isinstance(v, (int, float)):
                    writer.add_scalar(k, v, row["epoch"])
            writer.flush()

    def _plot(self) -> None:
        if not self.history:
            return
        try:
            from ..report import plot_training_curves
        except ImportError:
            return
        try:
            curves = [{k: v for k, v in r.items() if k not in ("lr", "time_s")} for r in self.history]
            plot_training_curves(curves, self.out / "training_curves.png", title=f"{self.task}: {self.out.name}")
        except Exception as exc:  # noqa: BLE001 - a plot must never fail a finished run
            log.warning("could not plot the training curves: %s", exc)

    def _all_errors(self) -> list[tuple[str, str]]:
        seen: dict[str, str] = {}
        for path, why in self._errors:
            seen.setdefault(str(path), str(why))
        return list(seen.items())

    def _write_errors(self) -> None:
        errors = self._all_errors()
        if not errors:
            return
        try:
            from ..data import ErrorReport

            report = ErrorReport()
            report.add(errors)
            report.write(self.out / "errors.json")
        except ImportError:
            (self.out / "errors.json").write_text(
                json.dumps([{"path": p, "reason": r} for p, r in errors], indent=2), encoding="utf-8")
        log.warning("%d video(s) failed to load; see %s", len(errors), self.out / "errors.json")


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
