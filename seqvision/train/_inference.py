"""Rebuilding a trained model from a :class:`Checkpoint` for inference."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import torch
from torch import nn

from ..config import Config, config_from_dict
from ..data.vocab import Vocabulary
from ..errors import CheckpointError, ConfigError
from ..features import build_encoder
from ..tasks import Labels, Task, build_task
from ._checkpoint import Checkpoint

__all__ = ["LoadedModel", "load_model", "checkpoint_config", "checkpoint_task", "model_from_checkpoint",
           "encoder_from_checkpoint"]


@dataclass
class LoadedModel:
    """A checkpoint ready for inference (model in eval mode on the requested device)."""

    model: nn.Module
    encoder: nn.Module | None  # FrameEncoder for raw video (None when ``with_encoder=False``)
    config: Config
    task: Task  # what the model's outputs mean (names, metrics, records)
    checkpoint: Checkpoint

    @property
    def label_names(self) -> list[str]:
        return self.task.labels.label_names

    @property
    def frame_label_names(self) -> list[str]:
        return self.task.labels.frame_label_names

    @property
    def vocab(self) -> Vocabulary | None:
        return self.task.labels.vocab

    @property
    def input_dim(self) -> int:
        return self.checkpoint.input_dim


def checkpoint_config(ckpt: Checkpoint, *, path: str | os.PathLike = "<checkpoint>",
                      overrides: dict | None = None) -> Config:
    """The checkpoint's config (``overrides``: a config dict to use instead of the stored one).

    Raises:
        CheckpointError: the stored config is not valid in this seqvision.
    """
    try:
        return config_from_dict(overrides if overrides is not None else ckpt.config, source=str(path))
    except ConfigError as exc:
        raise CheckpointError(f"{path}: the config stored in the checkpoint is not valid here ({exc})") from None


def checkpoint_task(ckpt: Checkpoint, *, path: str | os.PathLike = "<checkpoint>") -> Task:
    """The checkpoint's :class:`~seqvision.tasks.Task` with its label names and vocabulary.

    Raises:
        CheckpointError: an unknown task or an unreadable vocabulary.
    """
    try:
        vocab = Vocabulary.from_dict(ckpt.vocab) if ckpt.vocab is not None else None
        return build_task(ckpt.task, Labels(list(ckpt.label_names), list(ckpt.frame_label_names), vocab))
    except (ConfigError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: the checkpoint's task or vocabulary is not usable ({exc})") from None


def model_from_checkpoint(ckpt: Checkpoint, cfg: Config, task: Task, *,
                          path: str | os.PathLike = "<checkpoint>") -> nn.Module:
    """Build the sequence model of ``cfg`` for ``task`` and load the checkpoint's weights (CPU, train mode)."""
    try:
        model = task.build_model(cfg.model, input_dim=int(ckpt.input_dim))
    except ConfigError as exc:
        raise CheckpointError(f"{path}: the checkpoint's model cannot be built ({exc})") from None
    try:
        model.load_state_dict(ckpt.model_state)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: the weights do not fit the model its config describes ({exc})") from None
    return model


def encoder_from_checkpoint(ckpt: Checkpoint, cfg: Config, *, path: str | os.PathLike = "<checkpoint>") -> nn.Module:
    """The frame encoder: rebuilt from ``cfg.encoder``; the checkpoint's encoder weights are loaded when it has
    them (random-init or fine-tuned encoders), else the configured pretrained weights are used."""
    if ckpt.encoder_state is None:
        return build_encoder(cfg.encoder)
    encoder = build_encoder(dataclasses.replace(cfg.encoder, weights="none"))
    try:
        encoder.load_state_dict(ckpt.encoder_state)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: the saved encoder weights do not fit encoder {cfg.encoder.name!r} "
                              f"({exc})") from None
    return encoder


def load_model(path: str | os.PathLike, *, device: str | torch.device = "cpu",
               with_encoder: bool = True) -> LoadedModel:
    """Load a checkpoint for inference: the model (eval mode), its frame encoder, its task (names, vocabulary).

    Args:
        path: a ``best.pt`` / ``last.pt`` written by training.
        device: where to put the model and encoder.
        with_encoder: also rebuild the frame encoder (needed for raw video; skip it for features).

    Raises:
        CheckpointError: the file is missing, corrupt, not plain data, or does not fit its config.

    Example:
        >>> lm = load_model("runs/exp/best.pt")
        >>> probs = lm.model.predict(lm.encoder(video), lengths).probs   # (B, K)
    """
    ckpt = Checkpoint.load(path)
    cfg = checkpoint_config(ckpt, path=path)
    dev = torch.device(device) if not isinstance(device, torch.device) else device
    task = checkpoint_task(ckpt, path=path)
    model = model_from_checkpoint(ckpt, cfg, task, path=path).to(dev).eval()
    encoder = encoder_from_checkpoint(ckpt, cfg, path=path).to(dev).eval() if with_encoder else None
    return LoadedModel(model=model, encoder=encoder, config=cfg, task=task, checkpoint=ckpt)
