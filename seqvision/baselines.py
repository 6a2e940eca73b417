"""Baselines trained in seconds beside every model, on the same cached features: is the sequence model learning?

- ``classify``: linear probes (multinomial logistic regression, full-batch Adam) on standardised clip vectors:
  the mean over frames, and ``[first, last, last - first]`` (the frame order a mean throws away).
- ``frames``: per-frame linear probes on the standardised frame feature ``x_t``, and on
  ``[x_t, x_t - x_{t-1}, x_{t+1} - x_t]`` (a frame and its change; 0 at the clip's ends).
- ``caption``: nearest-neighbour caption retrieval (Devlin et al. 2015, "Exploring Nearest Neighbor Approaches
  for Image Captioning"): each validation clip gets the first caption of the training clip closest in cosine
  distance of standardised mean-pooled features, scored with :func:`seqvision.metrics.caption_scores`.

Each task's baseline is its :meth:`seqvision.tasks.Task.baseline` (built from :mod:`seqvision.probes`), so a new
task brings its own. Standardisation statistics come from the training split only. The reported score is the best probe's on the
validation split (the model's best epoch is picked on the same split, so both stand on the same footing).

Example:
    >>> from seqvision.baselines import run_baseline
    >>> b = run_baseline("classify", FeatureDataset(cfg, "train"), FeatureDataset(cfg, "val"))
    >>> b["metric"], b["score"], b["probes"]
    ('accuracy', 0.94, {'mean': 0.72, 'first_last': 0.94})
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping

import torch

from .features import stack_frames
from .probes import clip_vectors, frame_vectors, linear_probe
from .tasks import get_task, list_tasks

__all__ = ["run_baseline", "format_baseline", "linear_probe", "clip_vectors", "frame_vectors", "BASELINE_METRIC"]


class _BaselineMetrics(Mapping):
    """``{task name: the validation metric its baseline reports}`` (the trainer's name without ``"val_"``), read
    live from the task registry: the tasks with a ``baseline_target``."""

    def _names(self) -> list[str]:
        return [n for n in list_tasks() if get_task(n).baseline_target is not None]

    def __getitem__(self, name: str) -> str:
        if name not in self._names():
            raise KeyError(name)
        return get_task(name).default_metric

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())


# the validation metric each task's baseline reports, named as the trainer's (without the "val_" prefix)
BASELINE_METRIC: Mapping[str, str] = _BaselineMetrics()


def run_baseline(task_name: str, train_ds, val_ds, *, num_classes: int | None = None, seed: int = 0,
                 progress: bool = False, max_values: int = 2**26) -> dict:
    """Train the task's baseline on ``train_ds`` and score it on ``val_ds`` (cached-feature datasets).

    Args:
        task_name: ``"classify"``, ``"frames"`` or ``"caption"``.
        train_ds, val_ds: sequences of sample dicts with ``"features" (T, D)`` float, ``"length"`` and the task's
            targets (``"label"`` int, ``"frame_labels" (T,)`` int with -100 padding, ``"captions"`` list[str]),
            e.g. :class:`~seqvision.features.FeatureDataset`. ``train_ds`` may instead be what
            ``seqvision.features.read_split(train, max_values=max_values, seed=seed)`` returned (the trainer's
            one read of its training split), used without reading again.
        num_classes: K (default: from the labels seen).
        seed: seeds the probes' initialisation.
        progress: a tqdm bar while reading the features.
        max_values: a memory bound: a split whose features hold more than this many numbers (clips x T x D;
            the default 2^26 is 256 MiB of float32) is read as a seeded random subset of clips that fits, e.g.
            2048 of UCF101's 9.5k training clips at T=16, D=2048. The probes' scores are then estimates.

    Returns:
        ``{"task", "metric" (as the trainer's validation metric without "val_"), "score" (the best probe's),
        "best" (its name), "probes" {name: score}, "seconds", "num_train", "num_val" (the clips used),
        "subsampled" (bool)}``; captioning adds ``"caption_scores"`` (BLEU-1..4, ROUGE-L, CIDEr of the retrieved
        captions). Accuracies are fractions in [0, 1]; CIDEr-D is on pycocoevalcap's 0-10 scale.

    Raises:
        ValueError: an unknown task, an empty split, or samples without features or the task's targets.
    """
    if task_name not in BASELINE_METRIC:
        raise ValueError(f"run_baseline: task must be one of {sorted(BASELINE_METRIC)}, got {task_name!r}")
    if train_ds is None or val_ds is None or len(train_ds) == 0 or len(val_ds) == 0:
        raise ValueError("run_baseline: needs a non-empty training and validation split")
    start = time.perf_counter()
    train_clips, train_rest = stack_frames(train_ds, progress=progress, max_values=max_values, seed=seed)
    val_clips, val_rest = stack_frames(val_ds, progress=progress, max_values=max_values, seed=seed + 1)
    task = get_task(task_name)()
    need = task.baseline_target
    for name, rest in (("train", train_rest), ("val", val_rest)):
        if any(need not in r for r in rest):
            raise ValueError(f"run_baseline: a {name} sample has no {need!r} (needed by task {task_name!r})")
    with torch.enable_grad():
        probes, extra = task.baseline(train_clips, train_rest, val_clips, val_rest, num_classes=num_classes,
                                      seed=seed)
    best = max(probes, key=probes.get)
    return {"task": task_name, "metric": task.default_metric, "score": probes[best], "best": best,
            "probes": probes, "seconds": round(time.perf_counter() - start, 3), "num_train": len(train_clips),
            "num_val": len(val_clips),
            "subsampled": len(train_clips) < len(train_ds) or len(val_clips) < len(val_ds), **extra}


def format_baseline(result: dict) -> str:
    """One line for logs: ``baseline (linear probe, first_last) val accuracy 0.944 [mean 0.72, ...] in 0.8 s``."""
    kind = get_task(result["task"]).baseline_kind
    others = ", ".join(f"{k} {v:.3f}" for k, v in result["probes"].items())
    return (f"baseline ({kind}, {result['best']}) val {result['metric']} {result['score']:.4f} "
            f"[{others}] in {result['seconds']:.1f} s"
            + (f" (random subset: {result['num_train']} train, {result['num_val']} val clips)"
               if result.get("subsampled") else ""))

