"""A dataset of cached per-frame features, with labels and captions from the dataset index."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..config import Config
from ..data import load_index
from ..errors import CacheError
from ..runtime import select_device
from ._cache import CacheEntry, FeatureCache
from ._extract import feature_cache

__all__ = ["FeatureDataset"]


class FeatureDataset(Dataset):
    """Samples of cached features: ``{"features": float32 (T, D), "length", "label", "frame_labels", "captions",
    "path", "id"}`` (collate with ``seqvision.data.collate``).

    Construct from a config (``FeatureDataset(cfg, "train")`` or :meth:`from_config`) or from a
    :class:`FeatureCache` and records (``FeatureDataset(cache, records, label_names=...)``). Every record must
    be in the cache: a missing entry raises :class:`~seqvision.errors.CacheError` at construction, naming the
    video and the command that fills the cache. Videos whose extraction failed (bad files) are left out and
    listed in :attr:`skipped`. Arrays are memory-mapped and their checksums checked the first time each is read.

    Attributes:
        label_names, frame_label_names: class names from the dataset index.
        dim: feature width D.
        skipped: ``(path, reason)`` of videos left out because their extraction failed.
        cache: the :class:`FeatureCache`.

    Example:
        >>> ds = FeatureDataset(cfg, "train")
        >>> ds[0]["features"].shape        # (T, D)
    """

    def __init__(self, source: Config | FeatureCache, records: str | Sequence | None = None, *,
                 label_names: Sequence[str] = (), frame_label_names: Sequence[str] = (), verify: bool = True,
                 hint: str = ""):
        if isinstance(source, Config):
            if not isinstance(records, str):
                raise TypeError("FeatureDataset(cfg, split): split must be a split name such as 'train'")
            other = FeatureDataset.from_config(source, records, verify=verify)
            self.__dict__.update(other.__dict__)
            return
        if not isinstance(source, FeatureCache):
            raise TypeError(f"FeatureDataset: expected a Config or a FeatureCache, got {type(source).__name__}")
        self.cache = source
        self.label_names = list(label_names)
        self.frame_label_names = list(frame_label_names)
        self.verify = verify
        self.hint = hint
        self.records, self.entries, self.skipped = [], [], []
        missing = []
        for rec in records or []:
            entry = self.cache.entry(rec)
            if entry is None:
                missing.append(rec)
            elif entry.error is not None:
                self.skipped.append((rec.path, entry.error))
            else:
                self.records.append(rec)
                self.entries.append(entry)
        if missing:
            more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
            raise CacheError(f"{missing[0].path}: no cached features in {self.cache.dir}{more}; "
                             f"run extraction first{hint or ' (seqvision extract --config ...)'}")
        dims = {e.shape[1] for e in self.entries}
        self.dim = dims.pop() if len(dims) == 1 else (0 if not dims else -1)
        if self.dim == -1:
            raise CacheError(f"{self.cache.dir}: entries of different feature widths; re-run extraction")

    @classmethod
    def from_config(cls, cfg: Config, split: str, *, verify: bool = True) -> "FeatureDataset":
        """The cached features of one split, for the settings in ``cfg`` (see :func:`extract_features`)."""
        index = load_index(cfg.data, seed=cfg.seed)
        cache = feature_cache(cfg, select_device(cfg.train.device, key="train.device"))
        return cls(cache, index.split(split), label_names=index.label_names,
                   frame_label_names=index.frame_label_names, verify=verify,
                   hint=f" (seqvision extract --config <your config> --split {split})")

    def __len__(self) -> int:
        return len(self.entries)

    def sampled_rates(self) -> list[float | None]:
        """Per clip, in dataset order: the rate its real frames were sampled at, in Hz (frames sampled per second
        of the source clip: ``length / clip_seconds``, :attr:`CacheEntry.sampled_rate`); None for a clip whose
        cache record has no duration (extracted before the cache kept it)."""
        return [e.sampled_rate for e in self.entries]

    def _frame_labels(self, rec, entry: CacheEntry, steps: int) -> torch.Tensor | None:
        labels = None
        if rec.frame_labels is not None and entry.indices is not None:
            n = len(rec.frame_labels)
            labels = [rec.frame_labels[min(i, n - 1)] for i in entry.indices[:steps]]
        elif entry.frame_labels is not None:
            labels = list(entry.frame_labels[:steps])
        if labels is None:
            return None
        out = torch.full((steps,), -100, dtype=torch.long)
        k = min(entry.length, len(labels), steps)
        out[:k] = torch.tensor(labels[:k], dtype=torch.long)
        return out  # (T,), -100 on padded steps

    def __getitem__(self, i: int) -> dict:
        rec, entry = self.records[i], self.entries[i]
        arr = self.cache.load(entry, verify=self.verify, hint=self.hint)
        feats = torch.from_numpy(np.array(arr, dtype=np.float32))  # (T, D), a copy out of the memmap
        sample = {"features": feats, "length": int(entry.length), "captions": list(rec.captions),
                  "path": str(rec.path), "id": rec.id}
        if rec.label is not None:
            sample["label"] = int(rec.label)
        frame_labels = self._frame_labels(rec, entry, feats.shape[0])
        if frame_labels is not None:
            sample["frame_labels"] = frame_labels
        return sample

    def __repr__(self) -> str:
        return f"FeatureDataset({len(self)} videos, dim={self.dim}, cache={str(self.cache.dir)!r})"
