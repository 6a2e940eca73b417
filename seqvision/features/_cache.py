"""The feature cache: one ``.npy`` array ``(T, D)`` per video plus one small JSON record per entry.

Layout (``<cache_dir>`` is ``data.cache_dir`` or ``<out>/features``)::

    <cache_dir>/
      encoder.pt                    # random-init encoder of the latest extraction (see FeatureCache.encoder_path)
      <fingerprint>/                # one folder per set of settings that change the features
        settings.json               # those settings, readable
        encoder.pt                  # the random-init encoder these features came from (weights "none")
        entries/<key>.npy           # float16 (T, D), memory-mappable
        entries/<key>.json          # record: id, path, video size/mtime, shape, dtype, length, sha1, the
                                    # clip's duration (s) and frame rate (clip_seconds, video_fps), ...

The fingerprint hashes every setting that changes features (sampler and its options, frame size / resize / crop,
backend, encoder name, weights (a local file by path + size + mtime), pooling, grid, seed for random init,
precision, dtype); the entry key adds the video's identity (path, size, mtime, id, start, end). Changing any of
them makes a new key, so stale features are never reused.

Every file is written to a temporary file in the same folder, fsync'ed, then moved into place with
``os.replace``; the record is written after its array, so an entry exists exactly when its record does. Two
processes writing the same entry write the same bytes; the last ``os.replace`` wins and the cache stays whole.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Config
from .._fileio import atomic_write
from ..errors import CacheError
from ._encoder import _is_path

__all__ = ["FeatureCache", "CacheEntry", "cache_settings", "default_cache_dir", "CACHE_VERSION"]

CACHE_VERSION = 1
FRAME_INDEX_VERSION = 2  # seqvision.io's frame numbering (see cache_settings)


def default_cache_dir(cfg: Config) -> Path:
    """``data.cache_dir``, or ``<out>/features`` when it is empty."""
    return Path(cfg.data.cache_dir) if cfg.data.cache_dir else Path(cfg.out) / "features"


def _file_identity(path: str | os.PathLike) -> dict[str, Any]:
    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        return {"path": str(p.resolve()), "size": None, "mtime_ns": None}
    return {"path": str(p.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def cache_settings(cfg: Config, *, precision: str = "fp32", dtype: str = "float16",
                   resize_on: str = "decoder") -> dict[str, Any]:
    """Every setting that changes the cached features (hashed into the cache fingerprint).

    Extraction always uses the deterministic ``data.sampler`` (never ``train_sampler``) and a centre crop.
    ``resize_on`` is where extraction resized the frames (``"decoder"`` or ``"device"``: other resampling).
    """
    d, e = cfg.data, cfg.encoder
    weights: Any = e.weights
    if e.weights != "none" and _is_path(e.weights):  # local files are identified by path + size + mtime
        weights = _file_identity(e.weights)
    settings = {
        "version": CACHE_VERSION,
        "sampler": d.sampler,
        "num_frames": d.num_frames,
        "stride": d.stride,
        "fps": d.fps,
        "max_frames": d.max_frames,
        "short_policy": d.short_policy,
        "size": d.size,
        "resize": d.resize,
        "crop": d.crop,
        "backend": d.backend,
        "encoder": e.name,
        "weights": weights,
        "pooling": e.pooling,
        "grid": e.grid if e.pooling == "grid" else None,
        "seed": cfg.seed if e.weights == "none" else None,  # random init is drawn from the seed
        "precision": precision,  # autocast on CUDA changes the numbers
        "dtype": dtype,
    }
    if resize_on != "decoder":  # absent for decoder resizing, so caches made before this setting keep their key
        settings["resize_on"] = resize_on
    # the frame index follows the ffmpeg CLI since io index version 2 (AVI B-frames, edit lists, rotation, TS/PS,
    # stream choice): features extracted with the old index may hold other frames
    settings["frame_index"] = FRAME_INDEX_VERSION
    if getattr(d, "stream", -1) != -1:
        settings["stream"] = d.stream
    if not getattr(d, "autorotate", True):
        settings["autorotate"] = False
    return settings


def _digest(obj: Any) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temp file in the same folder, fsync, ``os.replace``."""
    atomic_write(path, lambda f: f.write(data))


def _positive_or_none(value: Any) -> float | None:
    """A record's optional positive number (absent in records written before it was kept)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    return None


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


@dataclass(frozen=True)
class CacheEntry:
    """A record of one cached video (the parsed ``<key>.json``)."""

    key: str
    id: str
    path: str
    shape: tuple[int, int]
    dtype: str
    length: int
    sha1: str
    nbytes: int
    indices: list[int] | None
    frame_labels: list[int] | None
    error: str | None  # set when extraction failed for this video (a known-bad file)
    # The source clip the frames were sampled from: its duration (s; its frames / video_fps, the record's
    # start..end when set) and the video's frame rate (Hz). None in records written before they were kept.
    clip_seconds: float | None = None
    video_fps: float | None = None

    @property
    def sampled_rate(self) -> float | None:
        """The rate the clip's real frames were sampled at (Hz): ``length / clip_seconds``; None when the record
        has no duration (an older cache) or for a failed video."""
        if self.error is not None or not self.clip_seconds or self.clip_seconds <= 0 or self.length <= 0:
            return None
        return self.length / self.clip_seconds


class FeatureCache:
    """One fingerprint folder of the feature cache.

    Args:
        root: the cache directory (``data.cache_dir`` or ``<out>/features``).
        settings: :func:`cache_settings` of the config; their hash names the sub-folder.

    Example:
        >>> cache = FeatureCache.from_config(cfg)
        >>> cache.load(record)           # (T, D) float16 memmap, checked against its record
    """

    def __init__(self, root: str | os.PathLike, settings: dict[str, Any]):
        self.root = Path(root)
        self.settings = dict(settings)
        self.fingerprint = _digest(self.settings)[:16]
        self.dir = self.root / self.fingerprint
        self.entries_dir = self.dir / "entries"
        self._verified: set[str] = set()

    @classmethod
    def from_config(cls, cfg: Config, *, precision: str = "fp32", dtype: str = "float16",
                    resize_on: str = "decoder") -> "FeatureCache":
        return cls(default_cache_dir(cfg), cache_settings(cfg, precision=precision, dtype=dtype,
                                                          resize_on=resize_on))

    # ------------------------------------------------------------------------------------------------------------
    @property
    def encoder_path(self) -> Path:
        """Where the random-init encoder of these features is saved (``<cache>/<fingerprint>/encoder.pt``)."""
        return self.dir / "encoder.pt"

    def prepare(self) -> None:
        """Create the folders and ``settings.json`` (idempotent, safe to run from several processes)."""
        self.entries_dir.mkdir(parents=True, exist_ok=True)
        settings_path = self.dir / "settings.json"
        if not settings_path.exists():
            atomic_write_bytes(settings_path, json.dumps(self.settings, indent=1, default=str).encode())

    def key(self, record) -> str:
        """Entry key of a :class:`~seqvision.data.VideoRecord`: the settings plus the video's identity."""
        ident = _file_identity(record.path)
        ident.update(id=record.id, start=record.start, end=record.end)
        return _digest([self.fingerprint, ident])[:24]

    def array_path(self, key: str) -> Path:
        return self.entries_dir / f"{key}.npy"

    def record_path(self, key: str) -> Path:
        return self.entries_dir / f"{key}.json"

    # ------------------------------------------------------------------------------------------------------------
    def write(self, record, features: np.ndarray, *, length: int, indices: list[int] | None = None,
              frame_labels: list[int] | None = None, clip_seconds: float | None = None,
              video_fps: float | None = None) -> CacheEntry:
        """Store ``features`` ``(T, D)`` of ``record`` atomically (array first, then its record).

        ``clip_seconds`` / ``video_fps``: the source clip's duration (s) and frame rate (Hz), kept in the record
        (:attr:`CacheEntry.sampled_rate`: the pace training records in its checkpoints)."""
        if features.ndim != 2:
            raise ValueError(f"features must be (T, D), got {features.shape}")
        key = self.key(record)
        data = _npy_bytes(features)
        array_sha1 = hashlib.sha1(np.ascontiguousarray(features).tobytes()).hexdigest()
        atomic_write_bytes(self.array_path(key), data)
        meta = {"key": key, "id": record.id, "path": str(record.path), "shape": list(features.shape),
                "dtype": str(features.dtype), "length": int(length), "sha1": array_sha1, "nbytes": len(data),
                "indices": None if indices is None else [int(i) for i in indices],
                "frame_labels": None if frame_labels is None else [int(i) for i in frame_labels],
                "clip_seconds": None if clip_seconds is None else float(clip_seconds),
                "video_fps": None if video_fps is None else float(video_fps),
                "error": None, "video": _file_identity(record.path)}
        atomic_write_bytes(self.record_path(key), json.dumps(meta).encode())
        return self._entry(meta)

    def write_failure(self, record, reason: str) -> None:
        """Mark a video that could not be decoded, so readers skip it knowingly (retried on the next run)."""
        key = self.key(record)
        meta = {"key": key, "id": record.id, "path": str(record.path), "shape": [0, 0], "dtype": "",
                "length": 0, "sha1": "", "nbytes": 0, "indices": None, "frame_labels": None,
                "error": str(reason), "video": _file_identity(record.path)}
        atomic_write_bytes(self.record_path(key), json.dumps(meta).encode())

    @staticmethod
    def _entry(meta: dict) -> CacheEntry:
        shape = meta["shape"]
        if meta.get("error") is None and not (isinstance(shape, list) and len(shape) == 2
                                              and all(isinstance(v, int) and v >= 0 for v in shape)):
            raise ValueError(f"bad shape {shape!r} in a cache record")  # a corrupt record counts as not cached
        return CacheEntry(key=meta["key"], id=meta["id"], path=meta["path"], shape=tuple(meta["shape"]),
                          dtype=meta["dtype"], length=int(meta["length"]), sha1=meta["sha1"],
                          nbytes=int(meta["nbytes"]), indices=meta.get("indices"),
                          frame_labels=meta.get("frame_labels"), error=meta.get("error"),
                          clip_seconds=_positive_or_none(meta.get("clip_seconds")),
                          video_fps=_positive_or_none(meta.get("video_fps")))

    def entry(self, record) -> CacheEntry | None:
        """The record of ``record``'s entry, or None when it is not cached (or its record is unreadable)."""
        path = self.record_path(self.key(record))
        try:
            return self._entry(json.loads(path.read_text()))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def is_done(self, record) -> bool:
        """True when a good entry exists (record present, array present with the recorded size)."""
        e = self.entry(record)
        if e is None or e.error is not None:
            return False
        try:
            return self.array_path(e.key).stat().st_size == e.nbytes
        except OSError:
            return False

    def load(self, entry: CacheEntry, *, verify: bool = True, hint: str = "") -> np.ndarray:
        """The ``(T, D)`` array of ``entry``, memory-mapped. ``verify``: check its sha1 (once per process).

        Raises:
            CacheError: the array is missing, truncated, of the wrong shape or fails its checksum.
        """
        path = self.array_path(entry.key)
        again = f"; re-run extraction{hint} to rebuild it"
        try:
            if path.stat().st_size != entry.nbytes:
                raise CacheError(f"{path}: corrupt feature cache entry for {entry.path} (size "
                                 f"{path.stat().st_size} != recorded {entry.nbytes}){again}")
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except CacheError:
            raise
        except (OSError, ValueError) as exc:
            raise CacheError(f"{path}: unreadable feature cache entry for {entry.path} ({exc}){again}") from None
        if tuple(arr.shape) != tuple(entry.shape) or str(arr.dtype) != entry.dtype:
            raise CacheError(f"{path}: corrupt feature cache entry for {entry.path} (shape {arr.shape} {arr.dtype}, "
                             f"recorded {tuple(entry.shape)} {entry.dtype}){again}")
        if verify and entry.key not in self._verified:
            if hashlib.sha1(np.ascontiguousarray(arr).tobytes()).hexdigest() != entry.sha1:
                raise CacheError(f"{path}: corrupt feature cache entry for {entry.path} (checksum mismatch){again}")
            self._verified.add(entry.key)
        return arr

    def __repr__(self) -> str:
        return f"FeatureCache({str(self.dir)!r}, encoder={self.settings.get('encoder')!r})"
