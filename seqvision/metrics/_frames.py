"""Frame labelling metrics: frame accuracy, segmental edit score and F1@{10,25,50} (Lea et al. 2017; MS-TCN)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import SeqVisionError
from ._classification import _int_labels, to_numpy

__all__ = ["frame_metrics", "segments", "edit_score", "f1_overlap"]

IGNORE_INDEX = -100


def segments(labels: Sequence[int], *, ignore: Sequence[int] = ()) -> list[tuple[int, int, int]]:
    """Runs of equal labels as ``(label, start, end)`` with ``end`` exclusive; labels in ``ignore`` are dropped.

    Example:
        >>> segments([0, 0, 1, 1, 1, 0])
        [(0, 0, 2), (1, 2, 5), (0, 5, 6)]
    """
    out = []
    a = np.asarray(labels).reshape(-1)
    if a.size == 0:
        return out
    change = np.flatnonzero(a[1:] != a[:-1]) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [a.size]])
    ign = set(int(x) for x in ignore)
    for s, e in zip(starts, ends):
        if int(a[s]) not in ign:
            out.append((int(a[s]), int(s), int(e)))
    return out


def _levenshtein(p: list[int], y: list[int]) -> int:
    d = np.arange(len(y) + 1)
    for i in range(1, len(p) + 1):
        prev, d[0] = d.copy(), i
        for j in range(1, len(y) + 1):
            d[j] = prev[j - 1] if p[i - 1] == y[j - 1] else 1 + min(prev[j], d[j - 1], prev[j - 1])
    return int(d[-1])


def edit_score(pred: Sequence[int], target: Sequence[int], *, ignore: Sequence[int] = ()) -> float:
    """Segmental edit score in [0, 1]: ``1 - levenshtein(P, Y) / max(|P|, |Y|)`` over segment label sequences.

    Two empty segment sequences (everything ignored) score 1.
    """
    p = [s[0] for s in segments(pred, ignore=ignore)]
    y = [s[0] for s in segments(target, ignore=ignore)]
    n = max(len(p), len(y))
    return 1.0 if n == 0 else 1.0 - _levenshtein(p, y) / n


def f1_overlap(pred, target, overlap: float, *, ignore: Sequence[int] = ()) -> tuple[int, int, int]:
    """True positives, false positives and false negatives of predicted segments at an IoU threshold.

    Each predicted segment is matched to the same-label true segment with the highest IoU; it is a TP if that IoU
    is at least ``overlap`` and the true segment is not matched yet (as in MS-TCN's ``f_score``).
    """
    ps = segments(pred, ignore=ignore)
    ys = segments(target, ignore=ignore)
    hits = np.zeros(len(ys), dtype=bool)
    tp = fp = 0
    if ys:
        y_lab = np.array([s[0] for s in ys])
        y_start = np.array([s[1] for s in ys])
        y_end = np.array([s[2] for s in ys])
    for lab, start, end in ps:
        if not ys:
            fp += 1
            continue
        inter = np.minimum(end, y_end) - np.maximum(start, y_start)
        union = np.maximum(end, y_end) - np.minimum(start, y_start)
        iou = np.clip(inter, 0, None) / union * (y_lab == lab)
        j = int(iou.argmax())
        if iou[j] >= overlap and not hits[j]:
            tp += 1
            hits[j] = True
        else:
            fp += 1
    return tp, fp, int(len(ys) - hits.sum())


def frame_metrics(
    pred,
    target,
    *,
    lengths=None,
    mask=None,
    overlaps: Sequence[float] = (0.10, 0.25, 0.50),
    ignore_labels: Sequence[int] = (),
) -> dict:
    """Per-frame accuracy and segment metrics for frame labelling (temporal action segmentation).

    Args:
        pred: ``(N, T)`` predicted class ids, or ``(N, T, K)`` scores (arg-maxed); ``(T,)`` is one clip.
        target: ``(N, T)`` true ids; ``-100`` marks steps to ignore (padding).
        lengths: optional ``(N,)`` valid lengths; steps ``t >= lengths[n]`` are ignored.
        mask: optional ``(N, T)`` bool, True on valid steps.
        overlaps: IoU thresholds of the F1 scores.
        ignore_labels: class ids left out of the segments (e.g. a background class), as MS-TCN's ``bg_class``;
            frame accuracy still counts them.

    Returns:
        ``{"frame_accuracy", "edit", "F1@10", "F1@25", "F1@50", "num_frames", "num_clips"}``, all in [0, 1]
        (papers print these x100). Frame accuracy pools all valid frames; edit is the mean over clips; F1 pools
        TP/FP/FN over clips, as MS-TCN's evaluation does. Segments are built from each clip's valid frames.
    """
    p = to_numpy(pred, name="pred")
    if p.ndim >= 2 and p.ndim == to_numpy(target, name="target").ndim + 1:
        p = p.argmax(axis=-1)
    p = _int_labels(p, name="pred")
    y = _int_labels(target, name="target")
    if y.ndim == 1:
        y, p = y[None], p.reshape(1, -1) if p.ndim == 1 else p
    if p.shape != y.shape or y.ndim != 2:
        raise SeqVisionError(f"pred and target must both be (N, T), got {tuple(p.shape)} and {tuple(y.shape)}")
    n, t = y.shape
    valid = y != IGNORE_INDEX
    if lengths is not None:
        ln = _int_labels(lengths, name="lengths").reshape(-1)
        if ln.shape != (n,) or (ln < 0).any() or (ln > t).any():
            raise SeqVisionError(f"lengths must be (N,)=({n},) with values in [0, {t}], got {ln.tolist()}")
        valid &= np.arange(t)[None, :] < ln[:, None]
    if mask is not None:
        m = to_numpy(mask, name="mask").astype(bool)
        if m.shape != (n, t):
            raise SeqVisionError(f"mask must be (N, T)=({n}, {t}), got {tuple(m.shape)}")
        valid &= m
    total = int(valid.sum())
    if total == 0:
        raise SeqVisionError("frame_metrics: no valid frames (all targets are -100 or masked out)")
    if (y[valid] < 0).any():
        raise SeqVisionError(f"target holds negative ids other than {IGNORE_INDEX}: {sorted(set(y[valid][y[valid] < 0].tolist()))}")

    out = {"frame_accuracy": float((p[valid] == y[valid]).sum() / total)}
    edits = []
    counts = np.zeros((len(overlaps), 3), dtype=np.int64)
    clips = 0
    for i in range(n):
        v = valid[i]
        if not v.any():
            continue
        clips += 1
        pi, yi = p[i][v], y[i][v]
        edits.append(edit_score(pi, yi, ignore=ignore_labels))
        for j, ov in enumerate(overlaps):
            counts[j] += f1_overlap(pi, yi, ov, ignore=ignore_labels)
    out["edit"] = float(np.mean(edits))
    for (tp, fp, fn), ov in zip(counts, overlaps):
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        out[f"F1@{round(ov * 100):d}"] = float(2 * prec * rec / (prec + rec)) if prec + rec else 0.0
    out["num_frames"] = total
    out["num_clips"] = clips
    return out
