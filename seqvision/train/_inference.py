"""Rebuilding a trained model from a checkpoint for inference."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..config import Config, config_from_dict
from ..errors import CheckpointError, ConfigError
from ._checkpoint import load_checkpoint

__all__ = ["LoadedModel", "load_model", "model_from_checkpoint"]


@dataclass
class LoadedModel:
    """A checkpoint ready for inference (model in eval mode on the requested device)."""

    model: nn.Module
    encoder: nn.Module | None  # FrameEncoder for raw video (None when ``with_encoder=False``)
    config: Config
    label_names: list[str] = field(default_factory=list)
    frame_label_names: list[str] = field(default_factory=list)
    vocab: Any | None = None  # seqvision.data.vocab.Vocabulary (captioning)
    input_dim: int = 0
    checkpoint: dict = field(default_factory=dict, repr=False)  # the raw checkpoint (epoch, metrics, ...)

    @property
    def task(self) -> str:
        return getattr(self.model, "task", self.config.model.task)


def _num_classes(cfg: Config, ckpt: dict) -> int:
    if cfg.model.task == "classify":
        return len(ckpt.get("label_names") or [])
    if cfg.model.task == "frames":
        return len(ckpt.get("frame_label_names") or [])
    return 0


def model_from_checkpoint(ckpt: dict, cfg: Config, *, path: str | os.PathLike = "<checkpoint>") -> tuple[nn.Module, Any]:
    """Build the sequence model of ``cfg`` and load the checkpoint's weights. Returns ``(model, vocab)``."""
    from ..models import build_model

    vocab = None
    if ckpt.get("vocab") is not None:
        from ..data.vocab import Vocabulary

        vocab = Vocabulary.from_dict(ckpt["vocab"])
    model = build_model(cfg.model, input_dim=int(ckpt["input_dim"]), num_classes=_num_classes(cfg, ckpt), vocab=vocab)
    try:
        model.load_state_dict(ckpt["model_state"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: the weights do not fit the model its config describes ({exc})") from None
    return model, vocab


def encoder_from_checkpoint(ckpt: dict, cfg: Config, *, path: str | os.PathLike = "<checkpoint>"):
    """The frame encoder: rebuilt from ``cfg.encoder``; the saved weights are loaded when the checkpoint has them
    (random-init or fine-tuned encoders), else the configured pretrained weights are used."""
    import dataclasses

    from ..features import build_encoder

    state = ckpt.get("encoder_state")
    if state is None:
        return build_encoder(cfg.encoder)
    encoder = build_encoder(dataclasses.replace(cfg.encoder, weights="none"))
    try:
        encoder.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: the saved encoder weights do not fit encoder {cfg.encoder.name!r} "
                              f"({exc})") from None
    return encoder


def load_model(path: str | os.PathLike, *, device: str | torch.device = "cpu", with_encoder: bool = True) -> LoadedModel:
    """Load a checkpoint for inference: the model (eval mode), its frame encoder, names and vocabulary.

    Args:
        path: a ``best.pt`` / ``last.pt`` written by training.
        device: where to put the model and encoder.
        with_encoder: also rebuild the frame encoder (needed for raw video; skip it for features).

    Raises:
        CheckpointError: the file is missing, corrupt, not plain data, or does not fit its config.

    Example:
        >>> lm = load_model("runs/exp/best.pt")
        >>> probs = lm.model.predict(lm.encoder(video), lengths)["probs"]
    """
    ckpt = load_checkpoint(path, map_location="cpu")
    try:
        cfg = config_from_dict(ckpt["config"], source=str(path))
    except ConfigError as exc:
        raise CheckpointError(f"{path}: the config stored in the checkpoint is not valid here ({exc})") from None
    dev = torch.device(device) if not isinstance(device, torch.device) else device
    model, vocab = model_from_checkpoint(ckpt, cfg, path=path)
    model.to(dev).eval()
    encoder = None
    if with_encoder:
        encoder = encoder_from_checkpoint(ckpt, cfg, path=path).to(dev).eval()
    return LoadedModel(model=model, encoder=encoder, config=cfg, label_names=list(ckpt.get("label_names") or []),
                       frame_label_names=list(ckpt.get("frame_label_names") or []), vocab=vocab,
                       input_dim=int(ckpt["input_dim"]), checkpoint=ckpt)
