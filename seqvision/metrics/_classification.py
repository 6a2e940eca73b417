"""Clip classification metrics: top-k accuracy, mean per-class accuracy, confusion matrix, per-class P/R/F1."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..errors import SeqVisionError

__all__ = ["classification_metrics", "confusion_matrix", "to_numpy"]


def to_numpy(x, *, name: str) -> np.ndarray:
    """A torch tensor, numpy array or (nested) list as a numpy array (detached, on the CPU)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype == torch.bfloat16 or x.dtype == torch.float16:
            x = x.float()
        return x.numpy()
    try:
        return np.asarray(x)
    except Exception as e:  # ragged lists and the like
        raise SeqVisionError(f"{name}: cannot convert {type(x).__name__} to an array ({e})") from e


def _int_labels(x, *, name: str) -> np.ndarray:
    a = to_numpy(x, name=name)
    if a.size and not np.issubdtype(a.dtype, np.integer):
        if not np.issubdtype(a.dtype, np.floating) or not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
            raise SeqVisionError(f"{name} must hold integer class ids, got dtype {a.dtype}")
    return a.astype(np.int64)


def confusion_matrix(preds, labels, num_classes: int) -> np.ndarray:
    """Counts ``cm[true, predicted]`` as an int64 ``(num_classes, num_classes)`` array.

    Args:
        preds: predicted class ids ``(N,)`` (torch or numpy).
        labels: true class ids ``(N,)``.
        num_classes: K; every id must be in ``[0, K)``.

    Example:
        >>> confusion_matrix([0, 1, 1], [0, 0, 1], 2).tolist()
        [[1, 1], [0, 1]]
    """
    p = _int_labels(preds, name="preds").reshape(-1)
    y = _int_labels(labels, name="labels").reshape(-1)
    if p.shape != y.shape:
        raise SeqVisionError(f"preds and labels must have the same length, got {p.shape[0]} and {y.shape[0]}")
    if not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise SeqVisionError(f"num_classes must be a positive int, got {num_classes!r}")
    for name, a in (("preds", p), ("labels", y)):
        if a.size and (a.min() < 0 or a.max() >= num_classes):
            bad = a[(a < 0) | (a >= num_classes)][0]
            raise SeqVisionError(f"{name} holds class id {bad}, outside the allowed range [0, {num_classes})")
    return np.bincount(y * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def classification_metrics(
    scores,
    labels,
    *,
    label_names: Sequence[str] | None = None,
    topk: Sequence[int] = (1, 5),
) -> dict:
    """Clip classification metrics as a JSON-safe dict.

    Args:
        scores: ``(N, K)`` logits or probabilities (any monotone score: only the ranking is used).
        labels: ``(N,)`` true class ids in ``[0, K)``.
        label_names: K names (default ``"0" .. "K-1"``), used as keys of ``per_class``.
        topk: the k of each top-k accuracy; k larger than K is clipped to K (so top-5 of 3 classes is 1.0).

    Returns:
        ``{"num_samples", "top1", "top5", ..., "mean_class_accuracy", "macro_f1", "per_class": {name:
        {"precision", "recall", "f1", "support"}}, "confusion_matrix": [[...]] (rows true, cols predicted),
        "label_names"}``. Accuracies are fractions in [0, 1]. ``mean_class_accuracy`` averages recall over the
        classes present in ``labels``; precision of a never-predicted class is 0.

    Example:
        >>> classification_metrics(torch.tensor([[2.0, 1.0], [0.1, 0.9]]), torch.tensor([0, 0]))["top1"]
        0.5
    """
    s = to_numpy(scores, name="scores")
    y = _int_labels(labels, name="labels")
    if s.ndim != 2:
        raise SeqVisionError(f"scores must be (N, K) logits or probabilities, got shape {tuple(s.shape)}")
    n, k = s.shape
    if y.shape != (n,):
        raise SeqVisionError(f"labels must have shape ({n},) to match scores {tuple(s.shape)}, got {tuple(y.shape)}")
    if n == 0 or k == 0:
        raise SeqVisionError(f"classification_metrics needs at least one sample and one class, got scores {s.shape}")
    s = s.astype(np.float64)
    if np.isnan(s).any():
        raise SeqVisionError("scores contain NaN")
    if label_names is None:
        label_names = [str(i) for i in range(k)]
    label_names = [str(x) for x in label_names]
    if len(label_names) != k:
        raise SeqVisionError(f"label_names has {len(label_names)} names but scores have K={k} classes")
    if len(set(label_names)) != k:
        raise SeqVisionError("label_names must be unique (they key the per-class results)")
    ks = list(topk)
    if not ks or any(not isinstance(t, (int, np.integer)) or t < 1 for t in ks):
        raise SeqVisionError(f"topk must be a non-empty sequence of positive ints, got {topk!r}")

    preds = s.argmax(axis=1)
    cm = confusion_matrix(preds, y, k)
    out: dict = {"num_samples": int(n)}
    # Rank of the true class: how many classes score strictly higher (ties count in the sample's favour,
    # consistent with argmax picking the first maximum only for top-1).
    true_score = s[np.arange(n), y]
    higher = (s > true_score[:, None]).sum(axis=1)
    for t in ks:
        kk = min(int(t), k)
        hit = (preds == y) if kk == 1 else (higher < kk)
        out[f"top{int(t)}"] = float(hit.mean())

    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    tp = np.diag(cm).astype(np.float64)
    recall = np.divide(tp, support, out=np.zeros(k), where=support > 0)
    precision = np.divide(tp, predicted, out=np.zeros(k), where=predicted > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(k), where=denom > 0)
    present = support > 0
    out["mean_class_accuracy"] = float(recall[present].mean())
    out["macro_f1"] = float(f1[present].mean())
    out["per_class"] = {
        name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
               "support": int(support[i])}
        for i, name in enumerate(label_names)
    }
    out["confusion_matrix"] = cm.tolist()
    out["label_names"] = label_names
    return out
