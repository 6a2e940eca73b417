"""Feature extraction: decode every video once (DataLoader workers), run the frozen CNN, cache ``(T, D)`` arrays."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .._faults import fault_point
from ..config import Config
from ..errors import CacheError, DatasetError
from ._cache import FeatureCache, atomic_write_bytes, default_cache_dir
from ._encoder import FrameEncoder, build_encoder

__all__ = ["ExtractSummary", "extract_features"]

_DTYPES = ("float16", "float32")


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


def _collate_steps(samples):
    """``seqvision.data.collate`` plus what it pads away: each good sample's own steps, indices and frame labels."""
    from ..data import collate

    batch = collate(samples)
    good = [s for s in samples if "error" not in s]
    batch["_steps"] = [int(s["video"].shape[0]) for s in good]
    batch["_indices"] = [_as_list(s.get("indices")) for s in good]
    batch["_frame_labels"] = [_as_list(s.get("frame_labels")) for s in good]
    return batch


def _as_list(x):
    if x is None:
        return None
    if isinstance(x, torch.Tensor):
        return [int(v) for v in x.tolist()]
    return [int(v) for v in x]


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


def extract_features(cfg: Config, *, splits: list[str] | str | None = None, progress: bool = True,
                     rank: int | None = None, world_size: int | None = None, device: str | None = None,
                     dtype: str = "float16", batch_size: int | None = None) -> ExtractSummary:
    """Decode every video of ``splits``, encode its frames, and cache one ``(T, D)`` array per video.

    Resumable (cached videos are skipped), atomic (a killed run leaves no half-written entry) and safe to run in
    several processes at once. Bad videos are skipped, reported in ``summary.errors`` and written to
    ``<cache>/errors.json``; they never stop the run.

    Args:
        cfg: the experiment config (``data`` and ``encoder`` sections, ``seed`` for random-init encoders).
        splits: split names to extract (``None`` = every video of the dataset).
        progress: show a tqdm bar.
        rank, world_size: process ``rank`` handles every ``world_size``-th video (defaults: torch.distributed
            when initialised, else the whole dataset).
        device: ``"cpu"``, ``"cuda"``, ... (default: ``cfg.train.device``).
        dtype: ``"float16"`` (default, half the disk) or ``"float32"``.
        batch_size: clips per CNN forward (default: ``encoder.chunk_size // data.num_frames``, at least 1).

    Returns:
        An :class:`ExtractSummary`.

    Example:
        >>> summary = extract_features(load_config("configs/synthetic_classify.yaml"))
        >>> print(summary)
    """
    from torch.utils.data import DataLoader

    from ..data import ErrorReport, VideoDataset, load_index
    from ..runtime import select_device

    if dtype not in _DTYPES:
        raise ValueError(f"extract_features: dtype must be one of {_DTYPES}, got {dtype!r}")
    rank, world_size = _dist_shard(rank, world_size)
    dev = select_device(device or cfg.train.device)
    cache = FeatureCache.from_config(cfg, precision=_precision(dev, cfg.encoder), dtype=dtype)
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
                             world_size=world_size, errors=ErrorReport())

    encoder = _make_encoder(cfg, cache, dev)
    summary.dim = encoder.dim
    if not todo:
        return summary

    data_cfg = dataclasses.replace(cfg.data, on_error="skip")
    dataset = VideoDataset.from_config(data_cfg, todo, train=False)
    bs = batch_size or max(1, cfg.encoder.chunk_size // max(1, cfg.data.num_frames))
    workers = min(cfg.data.num_workers, len(todo))
    loader = DataLoader(dataset, batch_size=bs, num_workers=workers, collate_fn=_collate_steps,
                        pin_memory=dev.type == "cuda", persistent_workers=False,
                        prefetch_factor=4 if workers > 0 else None)
    by_path: dict[tuple[str, str], object] = {(r.id, str(r.path)): r for r in todo}
    by_id = {r.id: r for r in todo}
    np_dtype = getattr(np, dtype)
    start = time.perf_counter()
    bar = tqdm(total=len(todo), desc="features", unit="video", disable=not progress, dynamic_ncols=True)
    try:
        for batch in loader:
            errors = batch.get("errors") or []
            ids = batch.get("id") or []
            if errors:
                summary.errors.add(errors)
                for path, reason in errors:
                    rec = next((r for r in todo if str(r.path) == str(path)), None)
                    if rec is not None:
                        cache.write_failure(rec, reason)
                summary.failed += len(errors)
                bar.update(len(errors))
                loaded = summary.done + summary.skipped + len(ids)  # this batch's good clips count as loaded
                summary.errors.raise_if_systemic(total=len(records), ok=loaded)  # stops when every video fails
            if not ids:
                continue
            video = batch["video"].to(dev, non_blocking=True)  # (B, T, C, H, W) uint8
            feats = encoder(video).cpu().numpy()  # (B, T, D) float32
            for i, vid in enumerate(ids):
                rec = by_path.get((vid, str(batch["path"][i]))) or by_id[vid]
                steps = batch["_steps"][i]
                arr = feats[i, :steps].astype(np_dtype)  # (T_i, D): the clip's own steps, batch padding dropped
                if not np.isfinite(arr).all():
                    raise CacheError(f"{rec.path}: features are not finite in {dtype} (max |x| = "
                                     f"{float(np.abs(feats[i]).max()):.3g}); extract with dtype='float32'")
                cache.write(rec, arr, length=int(batch["lengths"][i]), indices=batch["_indices"][i],
                            frame_labels=batch["_frame_labels"][i])
                summary.frames += steps
                summary.done += 1
                fault_point("extract", summary.done)  # tests only (seqvision._faults)
            bar.update(len(ids))
    finally:
        bar.close()
        summary.seconds = time.perf_counter() - start
        if summary.errors.count:
            try:
                summary.errors.write(cache.dir / f"errors.rank{rank}.json")
            except Exception:  # noqa: BLE001 - the report is a convenience; the summary still carries it
                pass
    return summary


def _make_encoder(cfg: Config, cache: FeatureCache, dev: torch.device) -> FrameEncoder:
    """Build the frozen encoder; a random-init one is seeded from ``cfg.seed`` and saved beside the cache."""
    enc_cfg = dataclasses.replace(cfg.encoder, trainable=False)
    encoder = build_encoder(enc_cfg, seed=cfg.seed).to(dev).eval()
    if cfg.encoder.weights == "none":
        import io

        buf = io.BytesIO()
        torch.save({k: v.detach().cpu() for k, v in encoder.state_dict().items()}, buf)
        if not cache.encoder_path.exists():
            atomic_write_bytes(cache.encoder_path, buf.getvalue())
        # The latest extraction's encoder also at the cache root, where seqvision.train looks for it.
        atomic_write_bytes(Path(default_cache_dir(cfg)) / "encoder.pt", buf.getvalue())
    return encoder
