"""The video Dataset: decode a clip per record with :mod:`seqvision.io`, sample frames, transform."""

from __future__ import annotations

import traceback
from typing import Callable, Literal, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..config import DataConfig
from ..errors import ArgumentError, ConfigError, DatasetError, SeqVisionError, VideoDecodeError
from ..io import VideoReader, check_reader_options, decord_used, sample_indices
from ._collate import IGNORE_INDEX
from ._records import VideoRecord
from ._transforms import as_video, build_transform, plain

__all__ = ["VideoDataset"]

def _reason(exc: BaseException) -> str:
    if isinstance(exc, VideoDecodeError):
        return exc.reason
    if isinstance(exc, SeqVisionError):
        return str(exc)
    where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    at = f" (at {where.name}, {where.filename.rsplit('/', 1)[-1]}:{where.lineno})" if where else ""
    return f"{type(exc).__name__}: {exc}{at}"


class VideoDataset(Dataset):
    """Decoded clips of a list of :class:`VideoRecord`, as sample dicts (see ``docs/DESIGN.md``).

    Each item is ``{"video": uint8 (T, C, H, W), "length": int, "label": int | None, "frame_labels": long (T,),
    "captions": list[str], "path": str, "id": str, "index": int, "frame_indices": list[int], "frame_times":
    list[float], "video_fps": float | None, "clip_seconds": float | None}`` (the decoded video frames and their
    times in seconds from the video's first frame, from the reader's index; the video's frame rate in Hz and the
    duration of the window sampled from, its frames / ``video_fps`` in seconds, None when the file gives no
    rate: what the training pace is computed from). ``length`` counts the real frames; under
    ``short_policy="repeat"`` the clip is padded to ``num_frames`` by repeating its last frame and
    ``frame_labels`` is -100 on those steps (and everywhere when the record has no frame labels).

    A video that cannot be decoded gives ``{"error": (path, reason), "error_type", "path", "id", "kind": "video"}``
    under ``on_error="skip"`` (also for unexpected exceptions, so DataLoader workers never die; :func:`collate`
    lists them in ``batch["errors"]`` and ``batch["error_types"]``), or raises under ``on_error="raise"``:
    :class:`VideoDecodeError`, or the library error it met. ``error_type`` is the class name "raise" would raise.

    Random choices (``random_segment`` / ``dense`` / ``fps`` / ``all`` windows, random crop, flip) are seeded from
    ``(seed, epoch, index)``: reproducible across runs and worker counts. Call :meth:`set_epoch` each epoch (with
    non-persistent workers, the default, the new epoch reaches the workers). ``seed=None`` takes the
    deterministic choice (centred windows), for evaluation.

    Args:
        records: the videos.
        num_frames, sampler, stride, fps, max_frames, short_policy: frame sampling, as
            :func:`seqvision.io.sample_indices` (``data.*`` keys of the same names).
        size, resize: decode-time resize (``size=0``: keep the video's size).
        backend: ``"pyav"`` or ``"decord"``.
        stream, autorotate: passed to :class:`~seqvision.io.VideoReader` (``data.stream`` < 0 means ``None``:
            the video stream the ffmpeg CLI picks; ``data.autorotate``: apply the display matrix).
        transform: called on the clip (a ``tv_tensors.Video``, uint8 ``(T, C, H, W)``), e.g.
            :func:`build_transform`.
        on_error: ``"skip"`` or ``"raise"``.
        seed: base seed of the random choices, or None for deterministic sampling.
        decode_threads: FFmpeg threads per video (0 = FFmpeg's choice, about one per core); use 1 in DataLoader
            workers, where the workers are the parallelism (more threads per worker only oversubscribe the cores).

    Raises:
        ArgumentError: a bad ``on_error``, a sampling option (from :func:`seqvision.io.sample_indices`) or a
            reader option (``backend``, ``size``, ``resize``, ``stream``, ``autorotate``, ``decode_threads``;
            from :func:`seqvision.io.check_reader_options`), named by ``argument``; :meth:`from_config` reports
            the ``data.*`` key.

    Example:
        >>> ds = VideoDataset(index.split("train"), num_frames=16, size=112, sampler="random_segment")
        >>> loader = DataLoader(ds, batch_size=8, num_workers=2, collate_fn=collate)
    """

    def __init__(
        self,
        records: Sequence[VideoRecord],
        *,
        num_frames: int = 16,
        sampler: Literal["uniform", "random_segment", "dense", "fps", "all"] = "uniform",
        stride: int = 1,
        fps: float = 0.0,
        max_frames: int = 0,
        short_policy: Literal["repeat", "truncate"] = "repeat",
        size: int | tuple[int, int] | None = 112,
        resize: Literal["square", "short_side"] = "square",
        backend: Literal["pyav", "decord"] = "pyav",
        transform: Callable | None = None,
        on_error: Literal["skip", "raise"] = "skip",
        seed: int | None = 0,
        decode_threads: int = 0,
        stream: int | None = None,
        autorotate: bool = True,
    ):
        if on_error not in ("skip", "raise"):
            raise ArgumentError("on_error", f"got {on_error!r}; allowed: 'skip', 'raise'")
        try:  # the reader's options fail here, not at the first item (io names its own argument)
            check_reader_options(backend=backend, size=size or None, resize=resize, num_threads=decode_threads,
                                 stream=stream, autorotate=autorotate)
        except ArgumentError as exc:
            if exc.argument == "num_threads":
                raise ArgumentError("decode_threads", exc.reason) from None
            raise
        self.records = list(records)
        self.num_frames = num_frames
        self.sampler = sampler
        self.stride = stride
        self.fps = fps
        self.max_frames = max_frames
        self.short_policy = short_policy
        self.size = size or None
        self.resize = resize
        self.backend = backend
        self.transform = transform
        self.on_error = on_error
        self.seed = seed
        self.decode_threads = decode_threads
        self.stream = stream  # VideoReader's stream= (None: the one the ffmpeg CLI picks)
        self.autorotate = autorotate
        self.epoch = 0
        self._sample(100, 25.0, None)  # bad sampling options fail now (ArgumentError), not as a skipped video later

    @classmethod
    def from_config(cls, data_cfg: DataConfig, records: Sequence[VideoRecord], *, train: bool,
                    seed: int = 0) -> "VideoDataset":
        """A dataset with the ``data.*`` options; ``train`` picks ``data.train_sampler``, random augmentation
        (:func:`build_transform`) and seeded sampling, otherwise deterministic sampling and centre crop.

        Raises:
            ConfigError: naming the ``data.*`` key of a bad option.
        """
        sampler = (data_cfg.train_sampler or data_cfg.sampler) if train else data_cfg.sampler
        try:
            return cls(records, num_frames=data_cfg.num_frames, sampler=sampler, stride=data_cfg.stride,
                       fps=data_cfg.fps, max_frames=data_cfg.max_frames, short_policy=data_cfg.short_policy,
                       size=data_cfg.size, resize=data_cfg.resize, backend=data_cfg.backend,
                       transform=build_transform(data_cfg, train=train), on_error=data_cfg.on_error,
                       seed=seed if train else None, stream=None if data_cfg.stream < 0 else data_cfg.stream,
                       autorotate=data_cfg.autorotate)
        except ArgumentError as exc:  # the config boundary: the argument is the data section's key
            key = "train_sampler" if exc.argument == "sampler" and train and data_cfg.train_sampler else exc.argument
            raise ConfigError(f"data.{key}", exc.reason) from None

    def set_epoch(self, epoch: int) -> None:
        """Use a new draw of the random choices (part of the seed with ``seed`` and the item index)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.records)

    def _seeds(self, index: int) -> tuple[int | None, int | None]:
        if self.seed is None:
            return None, None
        a, b = np.random.SeedSequence([int(self.seed), self.epoch, index]).generate_state(2)
        return int(a), int(b)

    def _sample(self, count: int, video_fps: float | None, seed: int | None):
        return sample_indices(count, sampler=self.sampler, num_frames=self.num_frames, stride=self.stride,
                              fps=self.fps, video_fps=video_fps, max_frames=self.max_frames,
                              short_policy=self.short_policy, seed=seed)

    def __getitem__(self, index: int) -> dict:
        record = self.records[index]
        try:
            return self._load(record, index)
        except (ConfigError, ArgumentError):
            raise  # a bad option is not a bad video
        except Exception as exc:  # noqa: BLE001 -- a worker must survive any bad file; the reason is reported
            if self.on_error == "raise":
                if isinstance(exc, SeqVisionError):
                    raise
                raise VideoDecodeError(record.path, _reason(exc)) from exc
            kind = type(exc).__name__ if isinstance(exc, SeqVisionError) else "VideoDecodeError"  # as "raise" says
            return {"error": (record.path, _reason(exc)), "error_type": kind, "path": record.path, "id": record.id,
                    "kind": "video"}

    def _window(self, record: VideoRecord, n: int, video_fps: float) -> tuple[int, int]:
        """First frame and frame count of ``record.start``/``end`` (seconds) inside an ``n``-frame video."""
        if record.start is None and record.end is None:
            return 0, n
        first = int(np.floor((record.start or 0.0) * video_fps))
        stop = n if record.end is None else min(n, int(np.ceil(record.end * video_fps)))
        if first >= stop:
            raise DatasetError(f"{record.path}: start={record.start}s end={record.end}s select no frames of this "
                               f"{n}-frame video at {video_fps:g} fps")
        return first, stop - first

    def _load(self, record: VideoRecord, index: int) -> dict:
        sample_seed, transform_seed = self._seeds(index)
        with VideoReader(record.path, backend=self.backend, size=self.size, resize=self.resize,
                         num_threads=self.decode_threads, stream=self.stream, autorotate=self.autorotate) as reader:
            n = len(reader)
            video_fps = float(reader.fps)
            if n < 1:
                raise VideoDecodeError(record.path, "the video has no frames")
            first, count = self._window(record, n, video_fps)
            sampled = self._sample(count, video_fps, sample_seed)
            indices = [first + i for i in sampled.indices]
            video = reader.get_frames(indices)  # (T, C, H, W) uint8
            first = reader.pts_seconds([0])[0]
            times = [round(t - first, 6) for t in reader.pts_seconds(indices)]  # s from the video's first frame
        length = sampled.length

        frame_labels = torch.full((len(indices),), IGNORE_INDEX, dtype=torch.long)  # (T,)
        if record.frame_labels is not None:
            labels = record.frame_labels
            if abs(len(labels) - n) > 2:  # decoders may disagree on a frame at the ends; more is a wrong file
                raise DatasetError(f"{record.path}: {len(labels)} frame labels for a video of {n} frames")
            last = len(labels) - 1
            frame_labels[:length] = torch.tensor([labels[min(i, last)] for i in indices[:length]], dtype=torch.long)

        if self.transform is not None:
            if transform_seed is None:
                video = plain(self.transform(as_video(video)))
            else:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(transform_seed)
                    video = plain(self.transform(as_video(video)))
        return {"video": video, "length": length, "label": record.label, "frame_labels": frame_labels,
                "captions": list(record.captions), "path": record.path, "id": record.id, "index": index,
                "frame_indices": indices, "frame_times": times, "video_fps": video_fps if video_fps > 0 else None,
                "clip_seconds": count / video_fps if video_fps > 0 else None}

    def __repr__(self) -> str:
        return (f"VideoDataset({len(self.records)} videos, num_frames={self.num_frames}, sampler={self.sampler!r}, "
                f"size={self.size}, backend={self.backend!r}, on_error={self.on_error!r})")


def worker_context(dataset, num_workers: int) -> str | None:
    """The DataLoader ``multiprocessing_context`` for ``dataset`` with ``num_workers`` workers.

    ``"spawn"`` when the workers decode with decord or this process has used decord: decord is not fork-safe (a
    worker forked after the parent process used decord dies with SIGSEGV, whatever the worker decodes with), so
    those workers start fresh; else None (the platform's default).
    """
    if num_workers <= 0:
        return None
    return "spawn" if getattr(dataset, "backend", None) == "decord" or decord_used() else None

