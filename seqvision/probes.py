"""Baselines' building blocks on cached clip features: linear probes (multinomial logistic regression, full-batch
Adam) on clip and frame vectors, nearest-neighbour caption retrieval (Devlin et al. 2015, "Exploring Nearest
Neighbor Approaches for Image Captioning"). Each task's :meth:`seqvision.tasks.Task.baseline` picks its own;
:func:`seqvision.baselines.run_baseline` runs it.

Clips are lists of valid frames ``(n, D)`` float; standardisation statistics come from the training split only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .metrics import caption_scores, classification_metrics

__all__ = ["clip_vectors", "frame_vectors", "standardise", "linear_probe", "clip_probes", "frame_probes",
           "caption_retrieval"]


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


def standardise(train: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    """``train`` and ``others`` standardised with ``train``'s per-column mean and std (constant columns: std 1)."""
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


def clip_probes(train_clips, train_rest, val_clips, val_rest, num_classes: int | None, seed: int) -> dict:
    """Linear probes on clip vectors (``"mean"``, ``"first_last"``) -> ``{kind: validation top-1 accuracy}``.
    ``*_clips``: valid frames ``(n, D)`` per clip; ``*_rest``: sample dicts with ``"label"``; K = ``num_classes``
    or from the labels seen."""
    y_train = torch.tensor([int(r["label"]) for r in train_rest])
    y_val = torch.tensor([int(r["label"]) for r in val_rest])
    K = int(num_classes or int(max(y_train.max(), y_val.max())) + 1)
    probes = {}
    for kind in ("mean", "first_last"):
        xt, xv = standardise(clip_vectors(train_clips, kind), clip_vectors(val_clips, kind))
        logits = linear_probe(xt, y_train, xv, num_classes=K, seed=seed)
        probes[kind] = float(classification_metrics(logits.numpy(), y_val.numpy(), topk=(1,))["top1"])
    return probes


def frame_probes(train_clips, train_rest, val_clips, val_rest, num_classes: int | None, seed: int) -> dict:
    """Per-frame linear probes (``"frame"``, ``"delta"``) -> ``{kind: validation frame accuracy}`` over the
    labelled frames (``"frame_labels"``, -100 = none)."""
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
        xt, xv = standardise(xt[keep_t], xv)
        logits = linear_probe(xt, y_train[keep_t], xv, num_classes=K, seed=seed)
        pred = logits.argmax(-1)
        probes[kind] = float((pred[keep_v] == y_val[keep_v]).float().mean()) if bool(keep_v.any()) else 0.0
    return probes


def caption_retrieval(train_clips, train_rest, val_clips, val_rest, seed: int) -> tuple[dict, dict]:
    """Nearest-neighbour captions (Devlin et al. 2015): each validation clip gets the first caption of the
    training clip nearest in cosine distance of standardised mean-pooled features ->
    ``({"nearest_neighbour": CIDEr}, caption_scores)``."""
    xt, xv = standardise(clip_vectors(train_clips, "mean"), clip_vectors(val_clips, "mean"))
    sim = F.normalize(xv, dim=1) @ F.normalize(xt, dim=1).T  # (M, N) cosine
    nearest = sim.argmax(1).tolist()
    references, candidates = {}, {}
    for j, (r, k) in enumerate(zip(val_rest, nearest)):
        key = f"{j}:{r.get('id', j)}"
        references[key] = list(r["captions"])
        candidates[key] = list(train_rest[k]["captions"])[0]
    scores = caption_scores(references, candidates, meteor=False)
    return {"nearest_neighbour": float(scores["CIDEr"])}, {k: float(v) for k, v in scores.items()}
