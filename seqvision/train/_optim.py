"""Optimiser, per-step learning-rate schedule and AMP gradient scaler from ``cfg.train``."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import Config

__all__ = ["make_optimizer", "make_schedule", "make_scaler"]


def make_optimizer(cfg: Config, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    """``train.optimizer`` (AdamW, Adam or SGD with momentum 0.9) with ``train.lr`` / ``train.weight_decay``."""
    t = cfg.train
    if t.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)
    if t.optimizer == "adam":
        return torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay)
    return torch.optim.SGD(params, lr=t.lr, momentum=0.9, weight_decay=t.weight_decay)


def make_schedule(cfg: Config, optimizer: torch.optim.Optimizer, steps_per_epoch: int):
    """Per-step LambdaLR: linear warm-up over ``train.warmup_epochs``, then cosine to 0, step decay
    (``gamma`` every ``step_size`` epochs), or constant."""
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


def make_scaler(cfg: Config, device: torch.device) -> torch.amp.GradScaler:
    """A GradScaler, enabled only for fp16 autocast on CUDA (``train.amp`` fp16, or auto without bf16)."""
    mode = cfg.train.amp
    enabled = device.type == "cuda" and (mode == "fp16" or (mode == "auto" and not torch.cuda.is_bf16_supported()))
    return torch.amp.GradScaler("cuda", enabled=enabled)
