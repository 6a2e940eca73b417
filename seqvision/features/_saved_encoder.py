"""The random-init frame encoder a feature cache was made with: the cache owns where it keeps it.

Extraction with ``encoder.weights: none`` saves the seeded random encoder beside the cache (``encoder.pt`` in the
entry folder, and the latest one at the cache root). Training asks :func:`cached_encoder_state` for it and stores
the weights in its checkpoints, so raw-video inference reproduces the cached features; nothing outside
``seqvision.features`` knows the file's name or place.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from ..config import Config
from ..errors import CacheError
from ._cache import default_cache_dir

__all__ = ["cached_encoder_state"]

log = logging.getLogger("seqvision.features")


def cached_encoder_state(cfg: Config, dataset=None) -> dict | None:
    """The state dict of the random-init encoder that made the cached features, or None when the config's
    pretrained weights rebuild it (``encoder.weights`` is not ``"none"``) or the cache holds none (a warning).

    Args:
        cfg: the experiment config (``data.cache_dir``, ``encoder.weights``).
        dataset: a :class:`~seqvision.features.FeatureDataset`: its own cache entry's encoder is preferred to
            the cache root's (the latest extraction's).

    Raises:
        CacheError: naming the file, when it cannot be read safely (``weights_only=True``) or is not a state
            dict of tensors.
    """
    if cfg.encoder.weights != "none":
        return None
    path = Path(default_cache_dir(cfg)) / "encoder.pt"
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
