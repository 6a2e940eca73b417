"""Baselines trained in seconds beside every model, on the same cached features: is the sequence model learning?

- ``classify``: linear probes (multinomial logistic regression, full-batch Adam) on standardised clip vectors:
  the mean over frames, and ``[first, last, last - first]`` (the frame order a mean throws away).
- ``frames``: per-frame linear probes on the standardised frame feature ``x_t``, and on
  ``[x_t, x_t - x_{t-1}, x_{t+1} - x_t]`` (a frame and its change; 0 at the clip's ends).
- ``caption``: nearest-neighbour caption retrieval (Devlin et al. 2015, "Exploring Nearest Neighbor Approaches
  for Image Captioning"): each validation clip gets the first caption of the training clip closest in cosine
  distance of standardised mean-pooled features, scored with :func:`seqvision.metrics.caption_scores`.

Standardisation statistics come from the training split only. The reported score is the best probe's on the
validation split (the model's best epoch is picked on the same split, so both stand on the same footing).

Example:
    >>> from seqvision.baselines import run_baseline
    >>> b = run_baseline("classify", FeatureDataset(cfg, "train"), FeatureDataset(cfg, "val"))
    >>> b["metric"], b["score"], b["probes"]
    ('accuracy', 0.94, {'mean': 0.72, 'first_last': 0.94})
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from .features import stack_frames
from .metrics import caption_scores, classification_metrics

__all__ = ["run_baseline", "format_baseline", "linear_probe", "clip_vectors", "frame_vectors", "BASELINE_METRIC"]

# the validation metric each task's baseline reports, named as the trainer's (without the "val_" prefix)
BASELINE_METRIC = {"classify": "accuracy", "frames": "frame_accuracy", "caption": "CIDEr"}


def clip_vectors(clips: list[torch.Tensor], kind: str) -> torch.Tensor:
    """``(N, D')`` one vector per clip from its valid frames ``(n, D)``: ``"mean"`` (D' = D) or
    ``"first_last"`` = ``[x_0, x_{n-1}, x_{n-1} - x_0]`` (D' = 3D). Raises ValueError for another ``kind``."""
    if kind == "mean":
        return torch.stack([c.mean(0) for c in clips])
    if kind == "first_last":
        return torch.stack([torch.cat([c[0], c[-1], c[-1] - c[0]]) for c in clips])
    raise ValueError(f"clip_vectors: kind must be 'mean' or 'first_last', got {kind!r}")


def frame_vectors(clip: torch.Tensor, kind: str) -> torch.Tensor:
    """``(n, D')`` one vector per valid frame of ``clip (n, D)``: ``"frame"`` (x_t, D' = D) or ``"delta"``
    = ``[x_t, x_t - x_{t-1}, x_{t+1} - x_t]`` (D' = 3D; differences across the clip's ends are 0)."""
    if kind == "frame":
        return clip
    if kind == "delta":
        back = torch.cat([torch.zeros_like(clip[:1]), clip[1:] - clip[:-1]])  # (n, D)
        fwd = torch.cat([clip[1:] - clip[:-1], torch.zeros_like(clip[:1])])  # (n, D)
        return torch.cat([clip, back, fwd], dim=1)
    raise ValueError(f"frame_vectors: kind must be 'frame' or 'delta', got {kind!r}")


def _standardise(train: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    mean, std = train.mean(0), train.std(0, unbiased=False)
    std = torch.where(std > 1e-6 * float(std.max().clamp(min=1e-30)), std, torch.ones_like(std))
    return [(t - mean) / std for t in (train, *others)]


def linear_probe(x_train: torch.Tensor, y_train: torch.Tensor, x_eval: torch.Tensor, *, num_classes: int,
                 steps: int = 300, lr: float = 0.01, weight_decay: float = 1e-3, seed: int = 0) -> torch.Tensor:
    """Multinomial logistic regression trained full batch with Adam; returns the logits ``(M, K)`` of ``x_eval``.

    Args:
        x_train: ``(N, D)`` float features (standardise them first); y_train: ``(N,)`` int64 labels in
            ``[0, K)``; x_eval: ``(M, D)``.
        num_classes: K. steps, lr: Adam steps and learning rate. weight_decay: L2 penalty on the weights
            (added to the loss, ``wd/2 * ||W||^2``).
    """
    gen = torch.Generator().manual_seed(seed)
    D = x_train.shape[1]
    w = (torch.randn(D, num_classes, generator=gen) * 0.01).requires_grad_()
    b = torch.zeros(num_classes, requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=lr)
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(x_train @ w + b, y_train) + 0.5 * weight_decay * (w * w).sum()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return x_eval @ w + b


def _classify(train_clips, train_rest, val_clips, val_rest, num_classes: int | None, seed: int) -> dict:
    y_train = torch.tensor([int(r["label"]) for r in train_rest])
    y_val = torch.tensor([int(r["label"]) for r in val_rest])
    K = int(num_classes or int(max(y_train.max(), y_val.max())) + 1)
    probes = {}
    for kind in ("mean", "first_last"):
        xt, xv = _standardise(clip_vectors(train_clips, kind), clip_vectors(val_clips, kind))
        logits = linear_probe(xt, y_train, xv, num_classes=K, seed=seed)
        probes[kind] = float(classification_metrics(logits.numpy(), y_val.numpy(), topk=(1,))["top1"])
    return probes


def _frames(train_clips, train_rest, val_clips, val_rest, num_classes: int | None, seed: int) -> dict:
    def labels(clips, rest):
        out = []
        for c, r in zip(clips, rest):
            y = torch.as_tensor(r["frame_labels"]).long()[: c.shape[0]]
            out.append(torch.cat([y, torch.full((c.shape[0] - y.shape[0],), -100, dtype=torch.long)]))
        return torch.cat(out)

    y_train, y_val = labels(train_clips, train_rest), labels(val_clips, val_rest)
    K = int(num_classes or int(max(y_train.max(), y_val.max())) + 1)
    keep_t, keep_v = y_train >= 0, y_val >= 0
    probes = {}
    for kind in ("frame", "delta"):
        xt = torch.cat([frame_vectors(c, kind) for c in train_clips])
        xv = torch.cat([frame_vectors(c, kind) for c in val_clips])
        xt, xv = _standardise(xt[keep_t], xv)
        logits = linear_probe(xt, y_train[keep_t], xv, num_classes=K, seed=seed)
        pred = logits.argmax(-1)
        probes[kind] = float((pred[keep_v] == y_val[keep_v]).float().mean()) if bool(keep_v.any()) else 0.0
    return probes


def _caption(train_clips, train_rest, val_clips, val_rest, seed: int) -> tuple[dict, dict]:
    xt, xv = _standardise(clip_vectors(train_clips, "mean"), clip_vectors(val_clips, "mean"))
    sim = F.normalize(xv, dim=1) @ F.normalize(xt, dim=1).T  # (M, N) cosine
    nearest = sim.argmax(1).tolist()
    references, candidates = {}, {}
    for j, (r, k) in enumerate(zip(val_rest, nearest)):
        key = f"{j}:{r.get('id', j)}"
        references[key] = list(r["captions"])
        candidates[key] = list(train_rest[k]["captions"])[0]
    scores = caption_scores(references, candidates, meteor=False)
    return {"nearest_neighbour": float(scores["CIDEr"])}, {k: float(v) for k, v in scores.items()}


def run_baseline(task_name: str, train_ds, val_ds, *, num_classes: int | None = None, seed: int = 0,
                 progress: bool = False) -> dict:
    """Train the task's baseline on ``train_ds`` and score it on ``val_ds`` (cached-feature datasets).

    Args:
        task_name: ``"classify"``, ``"frames"`` or ``"caption"``.
        train_ds, val_ds: sequences of sample dicts with ``"features" (T, D)`` float, ``"length"`` and the task's
            targets (``"label"`` int, ``"frame_labels" (T,)`` int with -100 padding, ``"captions"`` list[str]),
            e.g. :class:`~seqvision.features.FeatureDataset`.
        num_classes: K (default: from the labels seen).
        seed: seeds the probes' initialisation.
        progress: a tqdm bar while reading the features.

    Returns:
        ``{"task", "metric" (as the trainer's validation metric without "val_"), "score" (the best probe's),
        "best" (its name), "probes" {name: score}, "seconds", "num_train", "num_val"}``; captioning adds
        ``"caption_scores"`` (BLEU-1..4, ROUGE-L, CIDEr of the retrieved captions). Accuracies are fractions in
        [0, 1]; CIDEr-D is on pycocoevalcap's 0-10 scale.

    Raises:
        ValueError: an unknown task, an empty split, or samples without features or the task's targets.
    """
    if task_name not in BASELINE_METRIC:
        raise ValueError(f"run_baseline: task must be one of {sorted(BASELINE_METRIC)}, got {task_name!r}")
    if train_ds is None or val_ds is None or len(train_ds) == 0 or len(val_ds) == 0:
        raise ValueError("run_baseline: needs a non-empty training and validation split")
    start = time.perf_counter()
    train_clips, train_rest = stack_frames(train_ds, progress=progress)
    val_clips, val_rest = stack_frames(val_ds, progress=progress)
    need = {"classify": "label", "frames": "frame_labels", "caption": "captions"}[task_name]
    for name, rest in (("train", train_rest), ("val", val_rest)):
        if any(need not in r for r in rest):
            raise ValueError(f"run_baseline: a {name} sample has no {need!r} (needed by task {task_name!r})")
    extra = {}
    with torch.enable_grad():
        if task_name == "classify":
            probes = _classify(train_clips, train_rest, val_clips, val_rest, num_classes, seed)
        elif task_name == "frames":
            probes = _frames(train_clips, train_rest, val_clips, val_rest, num_classes, seed)
        else:
            probes, extra["caption_scores"] = _caption(train_clips, train_rest, val_clips, val_rest, seed)
    best = max(probes, key=probes.get)
    return {"task": task_name, "metric": BASELINE_METRIC[task_name], "score": probes[best], "best": best,
            "probes": probes, "seconds": round(time.perf_counter() - start, 3), "num_train": len(train_clips),
            "num_val": len(val_clips), **extra}


def format_baseline(result: dict) -> str:
    """One line for logs: ``baseline (linear probe, first_last) val accuracy 0.944 [mean 0.72, ...] in 0.8 s``."""
    kind = "nearest-neighbour captions" if result["task"] == "caption" else "linear probe"
    others = ", ".join(f"{k} {v:.3f}" for k, v in result["probes"].items())
    return (f"baseline ({kind}, {result['best']}) val {result['metric']} {result['score']:.4f} "
            f"[{others}] in {result['seconds']:.1f} s")

