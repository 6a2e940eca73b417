"""Per-dimension statistics of cached features, for the sequence models' input standardisation."""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

__all__ = ["feature_stats", "stack_frames"]


def stack_frames(dataset, *, progress: bool = False, max_values: int | None = None,
                 seed: int = 0) -> tuple[list[torch.Tensor], list[dict]]:
    """Every sample's valid frames ``(length, D)`` float32 and the rest of the sample (labels, captions).

    ``dataset`` is any sequence of sample dicts with ``"features" (T, D)`` and optionally ``"length"``
    (e.g. a :class:`~seqvision.features.FeatureDataset`). ``max_values``: a memory bound: when the clips'
    features (judged from the first sample's ``(T, D)``) hold more numbers, only a seeded random subset of clips
    that fits is read (at least 64, in dataset order); ``len(clips) < len(dataset)`` then tells. Raises
    ValueError if a sample has no ``features``.
    """
    picked = range(len(dataset))
    if max_values is not None and len(dataset):
        T, D = torch.as_tensor(dataset[0]["features"]).shape
        fits = max(64, max_values // max(1, T * D))
        if len(dataset) > fits:
            picked = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:fits].sort().values
            picked = [int(i) for i in picked]
    clips, rest = [], []
    for i in tqdm(picked, desc="read features", unit="clip", disable=not progress, leave=False):
        s = dataset[i]
        if "features" not in s:
            raise ValueError(f"sample {i} has no 'features': statistics need cached features")
        f = torch.as_tensor(s["features"]).float()
        n = int(s.get("length", f.shape[0]))
        clips.append(f[:n])
        rest.append({k: v for k, v in s.items() if k != "features"})
    return clips, rest


def feature_stats(dataset, *, progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and standard deviation ``(D,)`` float32 over all valid frames of ``dataset``.

    Meant for the *training* split only (the statistics are part of the model, like BatchNorm's running
    statistics); padded steps (``t >= length``) are left out. Sums are accumulated in float64.

    Args:
        dataset: a sequence of sample dicts with ``"features" (T, D)`` float and ``"length"`` (a
            :class:`~seqvision.features.FeatureDataset`, or a list of such dicts).
        progress: a tqdm bar over the clips.

    Returns:
        ``(mean, std)``, each ``(D,)`` float32; ``std`` is the population standard deviation (0 for a constant
        dimension: :meth:`SequenceEncoder.set_feature_stats` maps those to 1).

    Raises:
        ValueError: the dataset is empty or its samples have no ``features``.

    Example:
        >>> mean, std = feature_stats(FeatureDataset(cfg, "train"))
        >>> model.encoder.set_feature_stats(mean, std)
    """
    if len(dataset) == 0:
        raise ValueError("feature_stats: the dataset is empty")
    total = sq = None
    count = 0
    for i in tqdm(range(len(dataset)), desc="feature stats", unit="clip", disable=not progress, leave=False):
        s = dataset[i]
        if "features" not in s:
            raise ValueError(f"feature_stats: sample {i} has no 'features' (statistics need cached features)")
        f = torch.as_tensor(s["features"])
        f = f[: int(s.get("length", f.shape[0]))].double()  # (n, D)
        total = f.sum(0) if total is None else total + f.sum(0)
        sq = (f * f).sum(0) if sq is None else sq + (f * f).sum(0)
        count += f.shape[0]
    mean = total / count
    var = (sq / count - mean * mean).clamp(min=0.0)
    return mean.float(), var.sqrt().float()
