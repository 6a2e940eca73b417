"""From a config to the training inputs: datasets, label names, vocabulary, the encoder in front of the model."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import Config
from ..errors import CacheError, DatasetError

__all__ = ["TrainData", "build_train_data", "build_split_dataset", "cache_dir", "load_encoder_state",
           "get_collate", "sample_input_dim"]

log = logging.getLogger("seqvision.train")


@dataclass
class TrainData:
    """What :class:`~seqvision.train.Trainer` needs besides the model."""

    train: Any  # torch Dataset of sample dicts
    val: Any | None
    label_names: list[str] = field(default_factory=list)
    frame_label_names: list[str] = field(default_factory=list)
    vocab: Any | None = None  # seqvision.data.vocab.Vocabulary for captioning
    input_dim: int = 0
    encoder: nn.Module | None = None  # FrameEncoder in front of the model (input == "video")
    encoder_state: dict | None = None  # saved in checkpoints so raw-video inference matches cached features
    skipped: list = field(default_factory=list)  # (path, reason) of videos whose feature extraction failed


def cache_dir(cfg: Config) -> Path:
    return Path(cfg.data.cache_dir) if cfg.data.cache_dir else Path(cfg.out) / "features"


def get_collate():
    from ..data import collate

    return collate


def load_encoder_state(cfg: Config, dataset=None) -> dict | None:
    """The random-init encoder's weights the feature cache was made with, if any: the cache entry's own
    ``<cache>/<fingerprint>/encoder.pt`` when ``dataset`` is a FeatureDataset, else ``<cache>/encoder.pt``.

    Only needed when ``encoder.weights == "none"``: pretrained weights are rebuilt from the config.
    """
    if cfg.encoder.weights != "none":
        return None
    path = cache_dir(cfg) / "encoder.pt"
    specific = getattr(getattr(dataset, "cache", None), "encoder_path", None)
    if specific is not None and Path(specific).is_file():
        path = Path(specific)
    if not path.is_file():
        log.warning("%s not found: checkpoints will not hold the random-init encoder's weights, so raw-video "
                    "inference will not reproduce the cached features", path)
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure means the file is unusable
        raise CacheError(f"{path}: cannot read the encoder weights of the feature cache ({exc})") from None
    if isinstance(state, dict):
        for key in ("state_dict", "encoder_state", "model_state", "model"):
            if isinstance(state.get(key), dict):
                return state[key]
        if all(isinstance(v, torch.Tensor) for v in state.values()):
            return state
    raise CacheError(f"{path}: expected a state dict of the frame encoder")


def sample_input_dim(dataset) -> int:
    """Feature width D from the first good sample (features datasets)."""
    for i in range(min(len(dataset), 8)):
        s = dataset[i]
        if "features" in s:
            return int(s["features"].shape[-1])
    raise DatasetError("cannot infer the feature width: the first samples of the training set have no 'features'")


def _feature_dataset(cfg: Config, split: str, *, train: bool, progress: bool):
    """The cached features of ``split``; extracts them first when the cache lacks them. Under DDP every rank
    takes part in the (sharded) extraction and waits for the others before reading the cache."""
    from ..features import FeatureDataset
    from . import distributed as dist_utils

    try:
        dataset, missing = FeatureDataset(cfg, split), False
    except CacheError as exc:
        dataset, missing = None, True
        log.info("feature cache not usable for split %r (%s): extracting features first", split, exc)
    if dist_utils.is_distributed():
        missing = bool(dist_utils.all_reduce_sum(torch.tensor([float(missing)], dtype=torch.float64)).item() > 0)
    if not missing:
        return dataset
    from ..features import extract_features

    extract_features(cfg, splits=[split], progress=progress and dist_utils.is_main())
    dist_utils.barrier()
    return FeatureDataset(cfg, split)


def build_split_dataset(cfg: Config, records, split: str, *, train: bool, progress: bool = True):
    """A dataset of one split, per ``cfg.train.input`` (cached features or decoded video)."""
    if cfg.train.input == "features":
        return _feature_dataset(cfg, split, train=train, progress=progress)
    from ..data import VideoDataset

    return VideoDataset.from_config(cfg.data, records, train=train, seed=cfg.seed)


def build_train_data(cfg: Config, *, progress: bool = True) -> TrainData:
    """Index the dataset, build the vocabulary from the training captions, and the train / val datasets."""
    from ..data import load_index

    index = load_index(cfg.data, seed=cfg.seed)
    train_records = index.split(cfg.data.split)
    if not train_records:
        raise DatasetError(f"data.split: the dataset has no videos in split {cfg.data.split!r} "
                           f"(splits: {getattr(index, 'splits', '?')})")
    val_records = index.split(cfg.data.val_split) if cfg.data.val_split else []
    vocab = None
    if cfg.model.task == "caption":
        from ..data.vocab import Vocabulary

        captions = [c for r in train_records for c in r.captions]
        if not captions:
            raise DatasetError(f"data.split: split {cfg.data.split!r} has no captions to train a captioner on")
        vocab = Vocabulary.build(captions, min_freq=cfg.model.vocab_min_freq, max_size=cfg.model.vocab_max_size)
    if cfg.model.task == "frames" and not index.frame_label_names:
        raise DatasetError("model.task: 'frames' needs per-frame labels, and this dataset has none")
    train_ds = build_split_dataset(cfg, train_records, cfg.data.split, train=True, progress=progress)
    val_ds = (build_split_dataset(cfg, val_records, cfg.data.val_split, train=False, progress=progress)
              if val_records else None)
    encoder = None
    encoder_state = None
    if cfg.train.input == "video":
        from ..features import build_encoder

        encoder = build_encoder(cfg.encoder)
        input_dim = int(encoder.dim)
    else:
        input_dim = int(getattr(train_ds, "dim", 0) or sample_input_dim(train_ds))
        encoder_state = load_encoder_state(cfg, train_ds)
    skipped = list(getattr(train_ds, "skipped", []) or []) + list(getattr(val_ds, "skipped", []) or [])
    return TrainData(skipped=skipped, train=train_ds, val=val_ds, label_names=list(index.label_names),
                     frame_label_names=list(index.frame_label_names), vocab=vocab, input_dim=input_dim,
                     encoder=encoder, encoder_state=encoder_state)
