"""The two points where the trainer hands the model and data to other parts, once per run.

- :func:`prepare_model`: after the datasets and the model are built, before the loop (and before a resume loads
  its weights, which then overwrite anything set here that lives in the state dict). Feature standardisation
  statistics over the training split are set here.
- :func:`baseline_metrics`: after the loop, on the main rank: a baseline's metrics on the same data (e.g. a
  linear probe on pooled features), reported next to the model's (``train.log``, ``<out>/metrics.json``,
  :attr:`TrainResult.baseline`).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..config import Config
from ..tasks import Task

__all__ = ["prepare_model", "baseline_metrics"]


def prepare_model(model: nn.Module, data: Any, cfg: Config, *, progress: bool = False) -> None:
    """Set data-dependent model state before training (``data`` is the run's
    :class:`~seqvision.train._data.TrainData`). Runs on every rank with the same data, so ranks agree."""


def baseline_metrics(data: Any, task: Task, cfg: Config, *, progress: bool = False) -> dict[str, Any]:
    """A baseline's validation metrics on the run's data, keyed like the history rows (e.g.
    ``{"baseline_val_accuracy": 0.94}``); ``{}`` when there is none."""
    return {}
