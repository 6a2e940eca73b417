"""Clip transforms on uint8 video tensors ``(T, C, H, W)``, built from torchvision ``transforms.v2``.

The same random crop / flip is applied to every frame of a clip (v2 draws its parameters once per call and
treats a :class:`torchvision.tv_tensors.Video` as one clip). Resizing happens at decode time
(``data.size`` / ``data.resize``), so these only crop and flip. Normalisation belongs to the frame encoder;
:class:`Normalize` is here for users who feed clips to their own models.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from ..config import DataConfig

__all__ = ["build_transform", "Normalize", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def build_transform(data_cfg: DataConfig, *, train: bool) -> v2.Compose | None:
    """The clip transform for a split: random crop + flip for training, centre crop otherwise.

    Args:
        data_cfg: uses ``crop`` (0 = none) and ``flip`` (random horizontal flip, training only).
        train: training split (random) or evaluation (deterministic).

    Returns:
        A ``v2.Compose`` taking and returning a uint8 video ``(T, C, H, W)``, or None when there is nothing to do.

    Example:
        >>> t = build_transform(DataConfig(size=128, crop=112, flip=True), train=True)
        >>> t(tv_tensors.Video(torch.zeros(8, 3, 128, 128, dtype=torch.uint8))).shape
        torch.Size([8, 3, 112, 112])
    """
    steps: list = []
    if data_cfg.crop:
        steps.append(v2.RandomCrop(data_cfg.crop) if train else v2.CenterCrop(data_cfg.crop))
    if train and data_cfg.flip:
        steps.append(v2.RandomHorizontalFlip(p=0.5))
    return v2.Compose(steps) if steps else None


def as_video(x: torch.Tensor) -> tv_tensors.Video:
    """Mark a ``(T, C, H, W)`` tensor as one clip for v2 transforms."""
    return tv_tensors.Video(x)


def plain(x) -> torch.Tensor:
    """Back to a plain tensor (v2 returns tv_tensors subclasses)."""
    return x.as_subclass(torch.Tensor) if isinstance(x, torch.Tensor) else torch.as_tensor(x)


class Normalize(torch.nn.Module):
    """uint8 (or float in [0, 1]) ``(..., C, H, W)`` -> float32 ``(x / 255 - mean) / std``.

    Example:
        >>> Normalize()(torch.full((2, 3, 4, 4), 255, dtype=torch.uint8)).shape
        torch.Size([2, 3, 4, 4])
    """

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32)[:, None, None], persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32)[:, None, None], persistent=False)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        x = plain(video)
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        return (x - self.mean) / self.std  # (..., C, H, W)
