"""Per-dimension statistics of cached features, for the sequence models' input standardisation, and the one
bounded read of a split that the trainer's preparation and the baseline share."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

__all__ = ["feature_stats", "stack_frames", "read_split", "SplitFrames"]


@dataclass(repr=False)
class SplitFrames:
    """A split's cached features read once (:func:`read_split`): its valid frames, within a memory bound, and
    the per-dimension statistics of all of it. :func:`stack_frames` (so ``principal_basis`` and ``run_baseline``)
    takes one in place of the dataset and returns its clips without reading again.

    ``len()`` is the number of clips in the split (``len(dataset)``), not of the clips kept.
    """

    clips: list[torch.Tensor]  # valid frames (length, D) float32 of each kept clip, in dataset order
    rest: list[dict]  # the rest of each kept sample (labels, captions), as stack_frames returns it
    indices: list[int]  # the kept clips' indices in the split: all, or a seeded subset beyond the bound
    num_clips: int  # clips in the split (len(dataset))
    first_shape: tuple[int, int]  # (T, D) of the first sample's features: what the bound is judged from
    mean: torch.Tensor  # (D,) float32 over every valid frame of the split (== feature_stats(dataset))
    std: torch.Tensor  # (D,) float32, population std over the same frames

    def __len__(self) -> int:
        return self.num_clips

    def __repr__(self) -> str:
        return f"SplitFrames({len(self.clips)} of {self.num_clips} clips, first (T, D)={self.first_shape})"


def _picked(n: int, shape: tuple[int, int], max_values: int | None, seed: int) -> list[int]:
    """The clips stack_frames reads: all ``n``, or beyond ``max_values`` numbers (judged from the first sample's
    ``(T, D)``) a seeded random subset that fits (at least 64), in dataset order."""
    if max_values is None or n == 0:
        return list(range(n))
    T, D = shape
    fits = max(64, max_values // max(1, T * D))
    if n <= fits:
        return list(range(n))
    picked = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:fits].sort().values
    return [int(i) for i in picked]


class _Moments:
    """Running float64 sums of the valid frames, clip by clip (the order of the additions fixes the result)."""

    def __init__(self) -> None:
        self.total = self.sq = None
        self.count = 0

    def add(self, features, length: int) -> None:
        f = torch.as_tensor(features)[:length].double()  # (n, D)
        self.total = f.sum(0) if self.total is None else self.total + f.sum(0)
        self.sq = (f * f).sum(0) if self.sq is None else self.sq + (f * f).sum(0)
        self.count += f.shape[0]

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        mean = self.total / self.count
        var = (self.sq / self.count - mean * mean).clamp(min=0.0)
        return mean.float(), var.sqrt().float()


def _frames_and_rest(s: dict) -> tuple[torch.Tensor, dict]:
    f = torch.as_tensor(s["features"]).float()
    return f[: int(s.get("length", f.shape[0]))], {k: v for k, v in s.items() if k != "features"}


def _features(s: dict, i: int, who: str) -> dict:
    if "features" not in s:
        raise ValueError(f"{who}sample {i} has no 'features': statistics need cached features")
    return s


def stack_frames(dataset, *, progress: bool = False, max_values: int | None = None,
                 seed: int = 0) -> tuple[list[torch.Tensor], list[dict]]:
    """Every sample's valid frames ``(length, D)`` float32 and the rest of the sample (labels, captions).

    ``dataset`` is any sequence of sample dicts with ``"features" (T, D)`` and optionally ``"length"``
    (e.g. a :class:`~seqvision.features.FeatureDataset`), or a :class:`SplitFrames` already read by
    :func:`read_split`: its clips are returned as they are, without reading. ``max_values``: a memory bound:
    when the clips' features (judged from the first sample's ``(T, D)``) hold more numbers, only a seeded random
    subset of clips that fits is read (at least 64, in dataset order); ``len(clips) < len(dataset)`` then tells.

    Raises:
        ValueError: a sample has no ``features``, or a :class:`SplitFrames` was read with a bound and seed that
            keep other clips than ``max_values`` and ``seed`` would.
    """
    if isinstance(dataset, SplitFrames):
        if _picked(dataset.num_clips, dataset.first_shape, max_values, seed) != dataset.indices:
            raise ValueError(f"stack_frames: the SplitFrames kept other clips ({len(dataset.indices)} of "
                             f"{dataset.num_clips}) than max_values={max_values}, seed={seed} would; read the "
                             "dataset with read_split(..., max_values=max_values, seed=seed)")
        return dataset.clips, dataset.rest
    first = _features(dataset[0], 0, "") if len(dataset) else None
    shape = tuple(torch.as_tensor(first["features"]).shape) if first is not None else (0, 0)
    clips, rest = [], []
    for i in tqdm(_picked(len(dataset), shape, max_values, seed), desc="read features", unit="clip",
                  disable=not progress, leave=False):
        f, r = _frames_and_rest(first if i == 0 else _features(dataset[i], i, ""))
        clips.append(f)
        rest.append(r)
    return clips, rest


def read_split(dataset, *, max_values: int | None = None, seed: int = 0, progress: bool = False) -> SplitFrames:
    """One pass over ``dataset``: :func:`feature_stats` over every clip (exact, streamed) and the clips
    :func:`stack_frames` with the same ``max_values`` and ``seed`` would return (the split, or a seeded subset
    of it beyond the bound), each sample read once. The trainer reads its training split this way once and
    hands the result to the standardisation, the PCA input projection and the baseline.

    Args:
        dataset: a non-empty sequence of sample dicts with ``"features" (T, D)`` and ``"length"`` (a
            :class:`~seqvision.features.FeatureDataset`, or a list of such dicts).
        max_values: the memory bound on the clips kept (numbers; None = keep every clip), as in
            :func:`stack_frames`; the statistics always cover the whole split.
        seed: seeds the subset beyond the bound.
        progress: a tqdm bar over the clips.

    Returns:
        a :class:`SplitFrames`; ``mean``/``std`` are bit-identical to ``feature_stats(dataset)``, ``clips`` and
        ``rest`` to ``stack_frames(dataset, max_values=max_values, seed=seed)``.

    Raises:
        ValueError: the dataset is empty or a sample has no ``features``.
    """
    if len(dataset) == 0:
        raise ValueError("read_split: the dataset is empty")
    first = _features(dataset[0], 0, "read_split: ")
    first_shape = tuple(torch.as_tensor(first["features"]).shape)
    picked = _picked(len(dataset), first_shape, max_values, seed)
    keep = set(picked)
    moments = _Moments()
    clips, rest = [], []
    for i in tqdm(range(len(dataset)), desc="read features", unit="clip", disable=not progress, leave=False):
        s = first if i == 0 else _features(dataset[i], i, "read_split: ")
        f = torch.as_tensor(s["features"])
        moments.add(f, int(s.get("length", f.shape[0])))
        if i in keep:
            frames, r = _frames_and_rest(s)
            clips.append(frames)
            rest.append(r)
    mean, std = moments.result()
    return SplitFrames(clips=clips, rest=rest, indices=picked, num_clips=len(dataset), first_shape=first_shape,
                       mean=mean, std=std)


def feature_stats(dataset, *, progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and standard deviation ``(D,)`` float32 over all valid frames of ``dataset``.

    Meant for the *training* split only (the statistics are part of the model, like BatchNorm's running
    statistics); padded steps (``t >= length``) are left out. Sums are accumulated in float64, streaming (one
    clip in memory at a time). :func:`read_split` computes the same statistics while keeping the frames.

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
    moments = _Moments()
    for i in tqdm(range(len(dataset)), desc="feature stats", unit="clip", disable=not progress, leave=False):
        s = dataset[i]
        if "features" not in s:
            raise ValueError(f"feature_stats: sample {i} has no 'features' (statistics need cached features)")
        f = torch.as_tensor(s["features"])
        moments.add(f, int(s.get("length", f.shape[0])))
    return moments.result()
