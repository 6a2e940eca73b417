"""Feature extraction: decode every video once (DataLoader workers), run the frozen CNN, cache ``(T, D)`` arrays.

The pipeline, and what keeps each stage from waiting on another:

1. **Decode** in ``data.num_workers`` DataLoader workers that split the cores between them (one FFmpeg thread
   each once there are as many workers as cores), a few clips per worker task so every worker has work even on small datasets. Each task returns
   its clips' frames concatenated, ``(N, C, H, W)`` uint8, with no padding (a short clip costs no CNN work).
   Frames are resized while decoding (swscale, CPU) or, with ``encoder.resize_on: device`` (the default on CUDA),
   decoded at their native size and resized on the CNN's device.
2. **Transfer**: pinned batches (DataLoader ``pin_memory``) copied with ``non_blocking`` on CUDA.
3. **Encode** chunks of at least ``encoder.chunk_size`` frames (512 on CUDA), optionally ``torch.compile``-d.
4. **Write** each video's array and record from a small thread pool (every cache file is fsync'ed: 5-10 ms each
   on common disks, which capped extraction at ~1-2k frames/s when the main loop waited for it), while the next
   chunk is decoded and encoded; on CUDA the features of chunk ``i`` are copied back while chunk ``i + 1`` runs.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import io
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from torch.utils.data import DataLoader, get_worker_info
from tqdm.auto import tqdm

from ..config import Config
from ..data import ErrorReport, VideoDataset, load_index, worker_context
from ..runtime import select_device
from ..errors import CacheError, DatasetError
from ._cache import FeatureCache, atomic_write_bytes, default_cache_dir
from ._encoder import FrameEncoder, build_encoder

__all__ = ["ExtractSummary", "extract_features", "device_resize"]

_DTYPES = ("float16", "float32")
_CUDA_CHUNK = 512  # frames per CNN forward on CUDA at least: small chunks leave the GPU idle between launches
_WRITERS = 4  # threads writing cache entries (I/O bound: fsync)
_MAX_PENDING_WRITES = 256  # videos queued for writing at most (bounds the memory held by finished features)


@dataclass
class ExtractSummary:
    """What one extraction run did.

    Attributes:
        cache_dir: the fingerprint folder that holds the entries.
        done: videos encoded in this run.
        skipped: videos already cached (not decoded again).
        failed: videos that could not be decoded (listed in ``errors``, a ``seqvision.data.ErrorReport``).
        frames: frames encoded in this run; ``seconds`` wall time; ``frames_per_s`` their ratio.
        dim: feature width D.
        rank, world_size: this process's shard.
        resize_on: where the frames were resized: ``"decoder"`` (CPU, while decoding) or ``"device"``.
    """

    cache_dir: str
    done: int = 0
    skipped: int = 0
    failed: int = 0
    frames: int = 0
    seconds: float = 0.0
    dim: int = 0
    rank: int = 0
    world_size: int = 1
    errors: object = field(default=None, repr=False)
    resize_on: str = "decoder"

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def __str__(self) -> str:
        shard = f" (rank {self.rank}/{self.world_size})" if self.world_size > 1 else ""
        lines = [f"features{shard}: {self.done} extracted, {self.skipped} already cached, {self.failed} failed; "
                 f"{self.frames} frames in {self.seconds:.1f} s ({self.frames_per_s:.1f} frames/s); D={self.dim}",
                 f"cache: {self.cache_dir}"]
        items = list(getattr(self.errors, "items", []) or [])
        for path, reason in items[:10]:
            lines.append(f"  failed: {path}: {reason}")
        if len(items) > 10:
            lines.append(f"  ... and {len(items) - 10} more")
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------------
# Geometry: the decoder's resize rule, applied on the device


def target_size(size: int, resize: str, height: int, width: int) -> tuple[int, int]:
    """``(H, W)`` a frame of ``height x width`` gets from ``data.size`` / ``data.resize``: the rule of
    :class:`seqvision.io.VideoReader` (``"square"``: ``size x size``; ``"short_side"``: short side = ``size``,
    the long side rounded to keep the aspect ratio)."""
    if resize == "square":
        return size, size
    if height <= width:
        return size, max(1, round(width * size / height))
    return max(1, round(height * size / width)), size


def device_resize(frames: torch.Tensor, *, size: int, resize: str = "square", crop: int = 0) -> torch.Tensor:
    """Resize native-size frames where they are (the CNN's device) as the decoder would, then centre-crop.

    Bilinear with antialiasing (``torchvision.transforms.v2.functional.resize``), the filter FFmpeg's swscale
    applies when the decoder resizes (PyAV's default ``SWS_BILINEAR``, which widens its kernel when
    downscaling). The two are not bit-identical: swscale converts YUV to RGB and scales in one pass with
    fixed-point arithmetic, so pixels differ by a few levels (see tests/test_features.py for the measured bound).

    Args:
        frames: uint8 ``(N, 3, H, W)`` RGB at the native size, on any device.
        size, resize: ``data.size`` and ``data.resize``.
        crop: ``data.crop`` (0 = none): centre crop after the resize, as extraction does on the decoder path.

    Returns:
        uint8 ``(N, 3, h, w)`` on the same device.
    """
    if frames.dtype != torch.uint8 or frames.ndim != 4:
        raise ValueError(f"device_resize: expected uint8 (N, 3, H, W) frames, got {frames.dtype} "
                         f"{tuple(frames.shape)}")
    h, w = target_size(size, resize, int(frames.shape[-2]), int(frames.shape[-1]))
    if (h, w) != tuple(frames.shape[-2:]):
        frames = TF.resize(frames, [h, w], antialias=True)  # (N, 3, h, w) uint8
    if crop:
        frames = TF.center_crop(frames, [crop, crop])  # (N, 3, crop, crop)
    return frames


# ----------------------------------------------------------------------------------------------------------------
# What a DataLoader worker returns


def _collate_frames(samples: list[dict]) -> dict:
    """Runs in the DataLoader worker: the good clips' frames concatenated without padding, per run of equal size.

    Returns ``{"runs": [uint8 (N_k, C, H_k, W_k)], "clips": [{"id", "path", "steps", "length", "indices",
    "frame_labels", "clip_seconds", "video_fps"}], "errors": [(path, reason)]}``; clip ``i``'s frames follow
    clip ``i - 1``'s.
    """
    good = [s for s in samples if "error" not in s]
    errors = [(str(s["error"][0]), str(s["error"][1])) for s in samples if "error" in s]
    clips = [{"id": str(s["id"]), "path": str(s["path"]), "steps": int(s["video"].shape[0]),
              "length": int(s["length"]), "indices": _as_list(s.get("frame_indices")),
              "frame_labels": _as_list(s.get("frame_labels")), "clip_seconds": s.get("clip_seconds"),
              "video_fps": s.get("video_fps")} for s in good]
    runs: list[list[torch.Tensor]] = []
    for s in good:
        video = s["video"]  # (T, C, H, W) uint8
        if runs and runs[-1][0].shape[1:] == video.shape[1:]:
            runs[-1].append(video)
        else:
            runs.append([video])
    return {"runs": [_concat(r) for r in runs], "clips": clips, "errors": errors}


def _concat(clips: list[torch.Tensor]) -> torch.Tensor:
    """``(T_i, C, H, W)`` clips -> ``(N, C, H, W)`` in channels_last memory (the decoder's NHWC layout).

    In a DataLoader worker the result is allocated in shared memory, as torch's default collate does, so handing
    it to the main process does not copy it again.
    """
    n = sum(int(c.shape[0]) for c in clips)
    _, ch, h, w = clips[0].shape
    out = torch.empty((n, h, w, ch), dtype=clips[0].dtype)  # (N, H, W, C)
    if get_worker_info() is not None:
        out.share_memory_()
    start = 0
    for c in clips:
        out[start:start + c.shape[0]] = c.permute(0, 2, 3, 1)  # (T_i, H, W, C)
        start += int(c.shape[0])
    return out.permute(0, 3, 1, 2)  # (N, C, H, W), a channels_last view


def _as_list(x):
    if x is None:
        return None
    if isinstance(x, torch.Tensor):
        return [int(v) for v in x.tolist()]
    return [int(v) for v in x]


# ----------------------------------------------------------------------------------------------------------------


def _cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _dist_shard(rank, world_size) -> tuple[int, int]:
    if rank is None or world_size is None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            rank = torch.distributed.get_rank() if rank is None else rank
            world_size = torch.distributed.get_world_size() if world_size is None else world_size
    rank, world_size = int(rank or 0), int(world_size or 1)
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"extract_features: need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    return rank, world_size


def _precision(device: torch.device, enc_cfg) -> str:
    if device.type == "cuda" and enc_cfg.amp:
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def _resize_on(device: torch.device, enc_cfg) -> str:
    """``encoder.resize_on`` resolved: ``"auto"`` is ``"device"`` on CUDA, else ``"decoder"``."""
    mode = getattr(enc_cfg, "resize_on", "auto")
    if mode == "auto":
        return "device" if device.type == "cuda" else "decoder"
    return mode


def feature_cache(cfg: Config, device: torch.device, *, dtype: str = "float16") -> FeatureCache:
    """The cache that extraction on ``device`` fills for ``cfg`` (precision and resize location follow the
    device): one definition for the writer (:func:`extract_features`) and the reader (``FeatureDataset``)."""
    return FeatureCache.from_config(cfg, precision=_precision(device, cfg.encoder), dtype=dtype,
                                    resize_on=_resize_on(device, cfg.encoder))


def chunk_frames(device: torch.device, enc_cfg) -> int:
    """Frames per CNN forward in extraction: ``encoder.chunk_size``, at least 512 on CUDA."""
    return max(enc_cfg.chunk_size, _CUDA_CHUNK) if device.type == "cuda" else enc_cfg.chunk_size


def decode_loader(cfg: Config, records, device: torch.device, *, chunk: int, batch_size: int | None = None):
    """The decode stage of extraction alone (also timed by ``benchmarks/pipeline.py``).

    Returns ``(loader, clips_per_forward)``: a DataLoader over ``records`` (deterministic sampling, centre crop,
    ``on_error="skip"``) in ``data.num_workers`` workers whose batches are :func:`_collate_frames` dicts, and
    the number of clips to gather per CNN forward (``batch_size``, else ``chunk // data.num_frames``).
    """
    data_cfg = dataclasses.replace(cfg.data, on_error="skip")
    workers = min(cfg.data.num_workers, len(records))
    dataset = VideoDataset.from_config(data_cfg, records, train=False)
    # Workers split the cores between them: one FFmpeg thread each once there are as many workers as cores;
    # FFmpeg's own choice (about one per core) would run workers x cores threads.
    dataset.decode_threads = max(1, _cores() // workers) if workers > 0 else 0
    if _resize_on(device, cfg.encoder) == "device":  # native size out of the decoder; resized on the device
        dataset.size, dataset.transform = None, None
    clips_per_forward = batch_size or max(1, chunk // max(1, cfg.data.num_frames))
    # A worker task is a few clips: enough tasks for every worker even on a small dataset (it is the unit of
    # parallelism), while the main process still gathers whole chunks for the CNN.
    per_task = clips_per_forward if workers == 0 else max(1, min(clips_per_forward, max(4, clips_per_forward // 4),
                                                                 math.ceil(len(records) / (2 * workers))))
    loader = DataLoader(dataset, batch_size=per_task, num_workers=workers, collate_fn=_collate_frames,
                        pin_memory=device.type == "cuda", persistent_workers=False,
                        multiprocessing_context=worker_context(dataset, workers),
                        prefetch_factor=max(2, math.ceil(2 * clips_per_forward / (per_task * workers)))
                        if workers > 0 else None)
    return loader, clips_per_forward


@dataclass
class _Chunk:
    """Frames gathered for one CNN call, then its features on their way back to the host."""

    pieces: list = field(default_factory=list)  # uint8 (N_k, C, H_k, W_k) on the device
    clips: list = field(default_factory=list)  # per clip: id, path, steps, length, indices, frame_labels, ...
    frames: int = 0
    feats: torch.Tensor | None = None  # (N, D) float32 on the host once copied
    ready: object = None  # a CUDA event recorded after the copy back (None on CPU)
    stored: bool = False


def extract_features(cfg: Config, *, splits: list[str] | str | None = None, progress: bool = True,
                     rank: int | None = None, world_size: int | None = None, device: str | None = None,
                     dtype: str = "float16", batch_size: int | None = None) -> ExtractSummary:
    """Decode every video of ``splits``, encode its frames, and cache one ``(T, D)`` array per video.

    Resumable (cached videos are skipped), atomic (a killed run leaves no half-written entry) and safe to run in
    several processes at once. Bad videos are skipped, reported in ``summary.errors`` and written to
    ``<cache>/errors.rank<r>.json``; they never stop the run. See the module docstring for how the stages
    overlap; ``encoder.resize_on`` says where frames are resized, ``encoder.compile`` compiles the CNN.

    Args:
        cfg: the experiment config (``data`` and ``encoder`` sections, ``seed`` for random-init encoders).
        splits: split names to extract (``None`` = every video of the dataset).
        progress: show a tqdm bar.
        rank, world_size: process ``rank`` handles every ``world_size``-th video (defaults: torch.distributed
            when initialised, else the whole dataset).
        device: ``"cpu"``, ``"cuda"``, ... (default: ``cfg.train.device``).
        dtype: ``"float16"`` (default, half the disk) or ``"float32"``.
        batch_size: clips per CNN forward (default: ``encoder.chunk_size // data.num_frames`` on CPU,
            at least 512 frames' worth on CUDA; at least 1).

    Returns:
        An :class:`ExtractSummary`.

    Raises:
        DatasetError: ``splits`` name no videos. CacheError: features overflow ``dtype``.

    Example:
        >>> summary = extract_features(load_config("configs/synthetic_classify.yaml"))
        >>> print(summary)
    """
    if dtype not in _DTYPES:
        raise ValueError(f"extract_features: dtype must be one of {_DTYPES}, got {dtype!r}")
    rank, world_size = _dist_shard(rank, world_size)
    dev = select_device(device or cfg.train.device, key="device" if device else "train.device")
    resize_on = _resize_on(dev, cfg.encoder)
    cache = feature_cache(cfg, dev, dtype=dtype)
    cache.prepare()

    index = load_index(cfg.data, seed=cfg.seed)
    if isinstance(splits, str):
        splits = [splits]
    records = list(index.records) if not splits else [r for s in splits for r in index.split(s)]
    if splits and not records:
        raise DatasetError(f"data.split: no videos in split(s) {', '.join(splits)} "
                           f"(splits: {getattr(index, 'splits', '?')})")
    records = records[rank::world_size]
    todo = [r for r in records if not cache.is_done(r)]
    summary = ExtractSummary(cache_dir=str(cache.dir), skipped=len(records) - len(todo), rank=rank,
                             world_size=world_size, errors=ErrorReport(), resize_on=resize_on)

    chunk = chunk_frames(dev, cfg.encoder)
    encoder = _make_encoder(cfg, cache, dev, chunk_size=chunk)
    summary.dim = encoder.dim
    if not todo:
        return summary

    loader, clips_per_forward = decode_loader(cfg, todo, dev, chunk=chunk, batch_size=batch_size)
    by_key = {(r.id, str(r.path)): r for r in todo}
    by_path = {str(r.path): r for r in todo}
    np_dtype = getattr(np, dtype)
    crop = cfg.data.crop
    bar = tqdm(total=len(todo), desc="features", unit="video", disable=not progress, dynamic_ncols=True)
    writer = concurrent.futures.ThreadPoolExecutor(max_workers=_WRITERS, thread_name_prefix="seqvision-cache")
    writes: list[concurrent.futures.Future] = []

    def settle(limit: int) -> None:
        """Wait for the oldest writes until at most ``limit`` are pending; re-raise a failed write."""
        while len(writes) > limit:
            writes.pop(0).result()

    def encode(c: _Chunk) -> None:
        """Resize on the device when asked, run the CNN, and start copying the features back."""
        if resize_on == "device":
            c.pieces = [device_resize(p, size=cfg.data.size, resize=cfg.data.resize, crop=crop) for p in c.pieces]
        shapes = {tuple(p.shape[1:]) for p in c.pieces}
        if len(shapes) == 1:
            x = torch.cat(c.pieces) if len(c.pieces) > 1 else c.pieces[0]  # (N, C, H, W)
            feats = encoder(x)  # (N, D) float32
        else:  # short_side frames of different aspect ratios: one forward per size
            feats = torch.cat([encoder(p) for p in c.pieces])
        c.pieces = []
        if dev.type == "cuda":
            c.feats = feats.to("cpu", non_blocking=True)
            c.ready = torch.cuda.Event()
            c.ready.record()
        else:
            c.feats = feats

    def store(c: _Chunk) -> None:
        """Wait for the chunk's features, check them, and queue one cache write per video."""
        c.stored = True
        if c.ready is not None:
            c.ready.synchronize()
        arr = c.feats.numpy().astype(np_dtype)  # (N, D)
        start = 0
        for clip in c.clips:
            steps = clip["steps"]
            a = arr[start:start + steps]  # (T_i, D): this clip's frames
            start += steps
            rec = by_key.get((clip["id"], clip["path"])) or by_path[clip["path"]]
            if not np.isfinite(a).all():
                raise CacheError(f"{rec.path}: features are not finite in {dtype} (max |x| = "
                                 f"{float(np.abs(c.feats.numpy()).max()):.3g}); extract with dtype='float32'")
            writes.append(writer.submit(cache.write, rec, a, length=clip["length"], indices=clip["indices"],
                                        frame_labels=clip["frame_labels"], clip_seconds=clip["clip_seconds"],
                                        video_fps=clip["video_fps"]))
            summary.frames += steps
            summary.done += 1
        bar.update(len(c.clips))
        settle(_MAX_PENDING_WRITES)

    start = time.perf_counter()
    gathering, in_flight = _Chunk(), None
    cudnn_ctx = _cudnn_benchmark() if dev.type == "cuda" else contextlib.nullcontext()
    try:
        with cudnn_ctx:
            for batch in loader:
                errors = batch["errors"]
                summary.errors.add(errors, loaded=len(batch["clips"]))  # every batch: the systemic rule needs both
                summary.errors.raise_if_systemic(total=len(records), ok=summary.errors.loaded + summary.skipped)
                if errors:
                    for path, reason in errors:
                        rec = by_path.get(str(path))
                        if rec is not None:
                            writes.append(writer.submit(cache.write_failure, rec, reason))
                    summary.failed += len(errors)
                    bar.update(len(errors))
                if not batch["clips"]:
                    continue
                for run in batch["runs"]:
                    gathering.pieces.append(run.to(dev, non_blocking=True))  # (N_k, C, H_k, W_k) uint8
                    gathering.frames += int(run.shape[0])
                gathering.clips.extend(batch["clips"])
                if len(gathering.clips) >= clips_per_forward:
                    encode(gathering)
                    if in_flight is not None:
                        store(in_flight)  # the previous chunk's writes overlap this chunk's CNN work on CUDA
                    gathering, in_flight = _Chunk(), gathering
            if gathering.clips:
                encode(gathering)
                if in_flight is not None:
                    store(in_flight)
                in_flight = gathering
        if in_flight is not None:
            store(in_flight)
            in_flight = None
    finally:
        # What was encoded before an interruption is still written (a resumed run skips it).
        try:
            if in_flight is not None and in_flight.feats is not None and not in_flight.stored:
                store(in_flight)
        finally:
            try:
                settle(0)
            finally:
                writer.shutdown(wait=True, cancel_futures=True)
                bar.close()
                summary.seconds = time.perf_counter() - start
                if summary.errors.count:
                    try:
                        summary.errors.write(cache.dir / f"errors.rank{rank}.json")
                    except Exception:  # noqa: BLE001 - the report is a convenience; the summary still carries it
                        pass
    return summary


class _cudnn_benchmark:
    """cuDNN picks the fastest convolution algorithms for the fixed chunk shapes (restored on exit)."""

    def __enter__(self):
        self.saved = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = True
        return self

    def __exit__(self, *exc):
        torch.backends.cudnn.benchmark = self.saved
        return False


def _make_encoder(cfg: Config, cache: FeatureCache, dev: torch.device, *, chunk_size: int) -> FrameEncoder:
    """Build the frozen encoder; a random-init one is seeded from ``cfg.seed`` and saved beside the cache.

    ``encoder.compile`` compiles the trunk in place (``nn.Module.compile``: the state dict keeps its keys).
    """
    enc_cfg = dataclasses.replace(cfg.encoder, trainable=False, chunk_size=chunk_size)
    encoder = build_encoder(enc_cfg, seed=cfg.seed).to(dev).eval()
    if cfg.encoder.weights == "none":
        buf = io.BytesIO()
        torch.save({k: v.detach().cpu() for k, v in encoder.state_dict().items()}, buf)
        if not cache.encoder_path.exists():
            atomic_write_bytes(cache.encoder_path, buf.getvalue())
        # The latest extraction's encoder also at the cache root, where seqvision.train looks for it.
        atomic_write_bytes(Path(default_cache_dir(cfg)) / "encoder.pt", buf.getvalue())
    if getattr(cfg.encoder, "compile", False):
        encoder.trunk.compile()
    return encoder
