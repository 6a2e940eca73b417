"""From a config to the training inputs: datasets, the task's labels, the encoder in front of the model."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from ..config import Config
from ..data import VideoDataset, collate, load_index
from ..errors import CacheError, DatasetError
from ..features import FeatureDataset, build_encoder, cached_encoder_state, extract_features
from ..tasks import Labels, get_task
from . import distributed as dist_utils

__all__ = ["TrainData", "build_train_data", "build_split_dataset", "sample_input_dim", "load_encoder_state"]

log = logging.getLogger("seqvision.train")

load_encoder_state = cached_encoder_state  # the 0.1 name (seqvision.features owns the cache's layout)


@dataclass
class TrainData:
    """Everything :class:`~seqvision.train.Trainer` needs besides the config and the model.

    Attributes:
        train, val: torch Datasets of sample dicts (``features (T, D)`` or ``video (T, C, H, W)`` uint8, ...);
            ``val`` may be None.
        labels: the task's output names (class names, frame label names, caption vocabulary).
        input_dim: D, the feature width (0 = the encoder's, else read from the first training sample).
        encoder: the FrameEncoder in front of the model (``train.input: video``), else None.
        encoder_state: the random-init encoder weights that made the cached features (kept in checkpoints).
        skipped: ``(path, reason)`` of videos whose feature extraction failed.
        collate: the batch builder.
    """

    train: Any
    val: Any | None = None
    labels: Labels = field(default_factory=Labels)
    input_dim: int = 0
    encoder: nn.Module | None = None
    encoder_state: dict | None = None
    skipped: list = field(default_factory=list)
    collate: Callable = collate

    def __post_init__(self):
        if self.val is not None and len(self.val) == 0:
            self.val = None
        if not self.input_dim:
            self.input_dim = int(self.encoder.dim) if self.encoder is not None else sample_input_dim(self.train)


def sample_input_dim(dataset) -> int:
    """Feature width D from the first good sample (features datasets)."""
    for i in range(min(len(dataset), 8)):
        s = dataset[i]
        if "features" in s:
            return int(s["features"].shape[-1])
    raise DatasetError("cannot infer the feature width: the first samples of the training set have no 'features'")


def _feature_dataset(cfg: Config, split: str, *, progress: bool) -> FeatureDataset:
    """The cached features of ``split``; extracts them first when the cache lacks them. Under DDP every rank
    takes part in the (sharded) extraction and waits for the others before reading the cache."""
    try:
        dataset, missing = FeatureDataset(cfg, split), False
    except CacheError as exc:
        dataset, missing = None, True
        log.info("feature cache not usable for split %r (%s): extracting features first", split, exc)
    if dist_utils.is_distributed():
        missing = bool(dist_utils.all_reduce_sum(torch.tensor([float(missing)], dtype=torch.float64)).item() > 0)
    if not missing:
        return dataset
    extract_features(cfg, splits=[split], progress=progress and dist_utils.is_main())
    dist_utils.barrier()
    return FeatureDataset(cfg, split)


def build_split_dataset(cfg: Config, records, split: str, *, train: bool, progress: bool = True):
    """A dataset of one split, per ``cfg.train.input`` (cached features or decoded video)."""
    if cfg.train.input == "features":
        return _feature_dataset(cfg, split, progress=progress)
    return VideoDataset.from_config(cfg.data, records, train=train, seed=cfg.seed)


def build_train_data(cfg: Config, *, progress: bool = True) -> TrainData:
    """Index the dataset, take the task's labels from it (vocabulary from the training captions), and build the
    train / val datasets and the frame encoder (raw-video training) or the cached features' encoder weights.

    Raises:
        DatasetError: naming the ``data.*`` key: an empty split, or a dataset that cannot train the task.
    """
    index = load_index(cfg.data, seed=cfg.seed)
    train_records = index.split(cfg.data.split)
    if not train_records:
        raise DatasetError(f"data.split: the dataset has no videos in split {cfg.data.split!r} "
                           f"(splits: {getattr(index, 'splits', '?')})")
    labels = get_task(cfg.model.task).labels_from_index(index, train_records, cfg.model)
    val_records = index.split(cfg.data.val_split) if cfg.data.val_split else []
    train_ds = build_split_dataset(cfg, train_records, cfg.data.split, train=True, progress=progress)
    val_ds = (build_split_dataset(cfg, val_records, cfg.data.val_split, train=False, progress=progress)
              if val_records else None)
    skipped = list(getattr(train_ds, "skipped", []) or []) + list(getattr(val_ds, "skipped", []) or [])
    if cfg.train.input == "video":
        return TrainData(train=train_ds, val=val_ds, labels=labels, encoder=build_encoder(cfg.encoder),
                         skipped=skipped)
    return TrainData(train=train_ds, val=val_ds, labels=labels, input_dim=int(getattr(train_ds, "dim", 0) or 0),
                     encoder_state=cached_encoder_state(cfg, train_ds), skipped=skipped)
