"""The two points where the trainer hands the model and data to other parts, once per run.

- :func:`prepare_model`: after the datasets and the model are built, before the loop (and before a resume loads
  its weights, which then overwrite anything set here that lives in the state dict). Feature standardisation
  statistics over the training split are set here.
- :func:`training_pace`: with the model, once: the rate the training clips' frames were sampled at (Hz), which
  the checkpoints record so that ``seqvision stream`` can feed frames at that pace.
- :func:`baseline_metrics`: before the first epoch, on the main rank: a baseline's metrics on the same data (e.g. a
  linear probe on pooled features), reported next to the model's (``train.log``, ``<out>/metrics.json``,
  :attr:`TrainResult.baseline`).

The training split is read from the feature cache once per run: :func:`prepare_model` reads it with
:func:`~seqvision.features.read_split` (statistics over every clip; the frames within the baseline's
memory bound, 2^26 numbers) and returns what it read for :func:`baseline_metrics`, which runs next, so the
frames are freed before the loop.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from torch import nn

from ..baselines import BASELINE_METRIC, format_baseline, run_baseline
from ..config import Config
from ..features import SplitFrames, read_split, stack_frames
from ..tasks import Task

log = logging.getLogger("seqvision.train")

__all__ = ["prepare_model", "baseline_metrics", "principal_basis", "training_pace", "format_pace", "PACE_SAMPLERS"]

# samplers that spread data.num_frames over each clip, so the pace a model learnt depends on the clips' lengths
# (the fps sampler's pace is data.fps; dense and all take consecutive frames)
PACE_SAMPLERS = ("uniform", "random_segment")

# the memory bound on the training frames held at once (256 MiB of float32): the PCA's and the baseline's, so
# one read (the same seeded subset of clips beyond it) serves both
MAX_VALUES = 2**26


def _baseline_applies(data: Any, task: Task, cfg: Config) -> bool:
    return bool(cfg.train.baseline and cfg.train.input == "features" and data.val is not None
                and task.name in BASELINE_METRIC)


def prepare_model(model: nn.Module, data: Any, cfg: Config, *, baseline_task: Task | None = None,
                  progress: bool = False) -> SplitFrames | None:
    """Set data-dependent model state before training (``data`` is the run's
    :class:`~seqvision.train._data.TrainData`). Runs on every rank with the same data, so ranks agree.

    The training split is read once (:func:`read_split`): the statistics cover every clip, the frames kept for
    the PCA and the baseline are the split or, beyond 2^26 numbers, the seeded subset ``stack_frames`` would read
    with ``seed=cfg.seed``. ``baseline_task``: the run's task on the rank that will call :func:`baseline_metrics`
    (None elsewhere); when its baseline will run, the frames read here are returned for it (``train_frames=``),
    held until then (at most 2^26 numbers). Returns None otherwise, and when nothing was read.

    ``model.standardize`` (cached features only): the per-dimension mean / std of the training split's frames
    go into the sequence encoder's buffers (:meth:`SequenceEncoder.set_feature_stats`), so every later use of
    the model (eval, CLI, inspect, streaming) standardises its input the same way. With ``model.input_proj`` k > 0
    as well, the input projection becomes the top-k principal components of the standardised training frames,
    fixed (:func:`principal_basis`, :meth:`SequenceEncoder.set_input_basis`)."""
    encoder = getattr(model, "encoder", None)
    if not cfg.model.standardize or cfg.train.input != "features" or not hasattr(encoder, "set_feature_stats"):
        return None
    frames = read_split(data.train, max_values=MAX_VALUES, seed=cfg.seed, progress=progress)
    encoder.set_feature_stats(frames.mean, frames.std)
    log.info("input standardisation from %d training clips: feature mean |m| median %.3g, std median %.3g",
             len(data.train), float(frames.mean.abs().median()), float(frames.std.median()))
    k = int(cfg.model.input_proj)
    if k > 0 and hasattr(encoder, "set_input_basis"):
        basis, explained = principal_basis(frames, encoder.feature_mean, encoder.feature_std, k, seed=cfg.seed,
                                           transform=getattr(encoder, "norm", None), progress=progress)
        encoder.set_input_basis(basis, trainable=False)
        log.info("input projection: the top %d principal components of the standardised training frames (%.1f%% "
                 "of their variance), fixed", k, 100.0 * explained)
    return frames if baseline_task is not None and _baseline_applies(data, baseline_task, cfg) else None


def training_pace(data: Any, cfg: Config) -> dict[str, Any] | None:
    """The pace the model is trained at: the rate the training clips' real frames were sampled at, in Hz
    (``length / clip duration`` per clip, from the feature cache's records, see
    :attr:`seqvision.features.CacheEntry.sampled_rate`), for samplers that spread ``data.num_frames`` over each
    clip (``data.sampler`` uniform or random_segment) and cached features.

    Returns:
        ``{"fps": median, "min", "q1", "q3", "max" (Hz), "clips": clips measured, "of": training clips,
        "sampler", "num_frames"}`` (plain data, kept in :attr:`~seqvision.train.Checkpoint.pace`), or None:
        another sampler, video input, or a cache written before its records kept the clips' durations.
    """
    if cfg.train.input != "features" or cfg.data.sampler not in PACE_SAMPLERS:
        return None
    rates_of = getattr(data.train, "sampled_rates", None)
    rates = [r for r in (rates_of() if callable(rates_of) else []) if r is not None]
    if not rates:
        return None
    q = np.quantile(np.asarray(rates, dtype=np.float64), [0.0, 0.25, 0.5, 0.75, 1.0])
    return {"fps": float(q[2]), "min": float(q[0]), "q1": float(q[1]), "q3": float(q[3]), "max": float(q[4]),
            "clips": len(rates), "of": len(data.train), "sampler": cfg.data.sampler,
            "num_frames": int(cfg.data.num_frames)}


def format_pace(pace: dict[str, Any]) -> str:
    """One line of :func:`training_pace`'s result, for the training log."""
    return (f"training pace: {pace['num_frames']} frames per clip sampled at {pace['fps']:.2f} Hz (median of "
            f"{pace['clips']} of {pace['of']} training clips; quartiles {pace['q1']:.2f}-{pace['q3']:.2f}, range "
            f"{pace['min']:.2f}-{pace['max']:.2f}); the checkpoints record it for `seqvision stream`")


@torch.no_grad()
def principal_basis(dataset: Any, mean: torch.Tensor, std: torch.Tensor, k: int, *, max_frames: int = 8192,
                    seed: int = 0, transform: Any = None, progress: bool = False) -> tuple[torch.Tensor, float]:
    """The top-``k`` principal directions of the standardised frames ``(x - mean) / std`` of ``dataset``
    (valid frames only; clips are read up to 2^26 numbers, a seeded subset of clips beyond, as the baseline does;
    then a seeded subset of ``max_frames`` frames when there are more), as rows of ``(k, D)`` float32 scaled so
    the projection on the first has unit variance, and the fraction of the variance they hold.
    ``transform``: applied to the standardised frames first (the encoder's input LayerNorm, what the projection
    reads; None = none).

    Randomised PCA (Halko, Martinsson & Tropp 2011, ``torch.pca_lowrank``) under a forked, seeded RNG, so the
    global RNG (model init, dropout) is untouched and a run is reproducible. Rows past the rank (fewer frames
    than ``k``) are 0.

    ``dataset``: sample dicts (a :class:`~seqvision.features.FeatureDataset`), or the
    :class:`~seqvision.features.SplitFrames` that ``read_split(dataset, max_values=2**26, seed=seed)``
    returned (used without reading again).

    Raises:
        ValueError: the dataset has no valid frames, or a ``SplitFrames`` read with another bound or seed.
    """
    clips, _ = stack_frames(dataset, progress=progress, max_values=MAX_VALUES, seed=seed)  # 256 MiB of float32
    frames = torch.cat(clips) if clips else torch.zeros(0, mean.numel())  # (N, D)
    if frames.shape[0] == 0:
        raise ValueError("principal_basis: the training split has no valid frames")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if frames.shape[0] > max_frames:
            frames = frames[torch.randperm(frames.shape[0])[:max_frames]]
        z = (frames - mean.cpu()) / std.cpu()  # (N, D) standardised
        if transform is not None:
            where = next((p.device for p in transform.parameters()), z.device) if isinstance(transform, nn.Module) \
                else z.device
            z = transform(z.to(where)).float().cpu()
        q = min(k, *z.shape)
        _, s, v = torch.pca_lowrank(z, q=q, center=False, niter=4)  # v: (D, q)
    basis = torch.zeros(k, z.shape[1])
    unit = float(s[0]) / z.shape[0] ** 0.5 if float(s[0]) > 0 else 1.0  # std of the first component
    basis[:q] = v.T / unit
    explained = float((s ** 2).sum() / (z ** 2).sum().clamp(min=1e-30))
    return basis, explained


def baseline_metrics(data: Any, task: Task, cfg: Config, *, train_frames: SplitFrames | None = None,
                     progress: bool = False) -> dict[str, Any]:
    """A baseline's validation metrics on the run's data, keyed like the history rows (e.g.
    ``{"baseline_val_accuracy": 0.94}``); ``{}`` when there is none.

    With ``train.baseline`` and cached features: :func:`seqvision.baselines.run_baseline` on ``data.train`` /
    ``data.val``; ``baseline_val_<metric>`` is the best probe, ``baseline_val_<metric>_<probe>`` each probe.
    ``train_frames``: what :func:`prepare_model` read of ``data.train`` (then not read again); None = read it."""
    if not _baseline_applies(data, task, cfg):
        return {}
    try:
        result = run_baseline(task.name, train_frames if train_frames is not None else data.train, data.val,
                              num_classes=task.num_outputs or None, seed=cfg.seed, progress=progress,
                              max_values=MAX_VALUES)
    except ValueError as exc:  # the baseline is a report beside the model: it never fails a finished run
        log.warning("no baseline for this run: %s", exc)
        return {}
    log.info("%s", format_baseline(result))
    key = f"baseline_val_{result['metric']}"
    out: dict[str, Any] = {key: result["score"], "baseline": result["best"]}
    out.update({f"{key}_{name}": score for name, score in result["probes"].items()})
    return out
