"""PNG plots for reports and benchmarks. Each function takes plain arrays and an output path and returns the path.

Figures are built with ``matplotlib.figure.Figure`` on an Agg canvas, never through ``pyplot``: no global state,
no display needed, safe in threads and alongside other users of matplotlib.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..errors import SeqVisionError

__all__ = [
    "plot_confusion_matrix",
    "plot_training_curves",
    "plot_gates",
    "plot_attention",
    "frame_strip",
    "plot_lines",
    "plot_bars",
]

_SIGMOID_GATES = {"forget", "input", "output", "reset", "update", "f", "i", "o", "r", "z"}
_DPI = 110


def _array(x, *, name: str, ndim: tuple[int, ...] | None = None) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor, without importing torch here
        x = x.detach().cpu()
        if str(getattr(x, "dtype", "")) in ("torch.bfloat16", "torch.float16"):
            x = x.float()
        x = x.numpy()
    a = np.asarray(x)
    if ndim is not None and a.ndim not in ndim:
        want = " or ".join(f"{d}-D" for d in ndim)
        raise SeqVisionError(f"{name} must be {want}, got shape {tuple(a.shape)}")
    return a


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(max(width, 2.0), max(height, 1.5)), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise SeqVisionError(f"{path}: plots are written as PNG; use a path ending in .png")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=_DPI)
    return path


def _check_frame_indices(frame_indices, t: int) -> list[int] | None:
    if frame_indices is None:
        return None
    out = [int(i) for i in frame_indices]
    if len(out) != t:
        raise SeqVisionError(f"frame_indices has {len(out)} entries but the plot has T={t} frames")
    return out


def _frame_axis(ax, t: int, frame_indices: list[int] | None, frame_labels: Sequence | None = None) -> None:
    """The frame (x) axis of ``ax``: steps 0..T-1, or with ``frame_indices`` the video's frame index of each step
    (labelled "video frame"), the steps then kept on a secondary axis along the top."""
    if frame_indices is None:
        ax.set_xlabel("frame")
        if frame_labels is not None:
            step = max(1, math.ceil(t / 40))
            idx = list(range(0, t, step))
            ax.set_xticks(idx, [f"{i}\n{frame_labels[i]}" for i in idx], fontsize=7)
        return
    step = max(1, math.ceil(t / 16))  # video frame numbers are wider than steps
    idx = list(range(0, t, step))
    names = [f"{frame_indices[i]}" + (f"\n{frame_labels[i]}" if frame_labels is not None else "") for i in idx]
    ax.set_xticks(idx, names, fontsize=7)
    ax.set_xlabel("video frame (0-based index in the file)")


def _step_axis(ax, t: int) -> None:
    """Steps 0..T-1 of the clip along the top of ``ax`` (the bottom names video frames)."""
    top = ax.secondary_xaxis("top")
    step = max(1, math.ceil(t / 16))
    top.set_xticks(list(range(0, t, step)))
    top.tick_params(labelsize=7)
    top.set_xlabel("step in the sampled clip", fontsize=8)


def plot_confusion_matrix(cm, label_names: Sequence[str], path, *, normalize: bool = True, title: str = "") -> Path:
    """Heat map of a confusion matrix (rows true, columns predicted).

    Args:
        cm: ``(K, K)`` counts, e.g. ``classification_metrics(...)["confusion_matrix"]``.
        label_names: K class names.
        path: output ``.png``.
        normalize: show each row as fractions of its true class (counts are still printed in small matrices).
    """
    c = _array(cm, name="cm", ndim=(2,)).astype(np.float64)
    k = c.shape[0]
    if c.shape != (k, k):
        raise SeqVisionError(f"cm must be square (K, K), got shape {c.shape}")
    names = [str(n) for n in label_names]
    if len(names) != k:
        raise SeqVisionError(f"label_names has {len(names)} names but cm is {k}x{k}")
    rows = c.sum(axis=1, keepdims=True)
    shown = np.divide(c, rows, out=np.zeros_like(c), where=rows > 0) if normalize else c
    side = min(3.0 + 0.45 * k, 16.0)
    fig = _new_figure(side + 1.2, side)
    ax = fig.add_subplot()
    im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1.0 if normalize else max(shown.max(), 1.0))
    fig.colorbar(im, ax=ax, shrink=0.8, label="fraction of true class" if normalize else "count")
    ticks = np.arange(k)
    fs = max(5, 10 - k // 8)
    ax.set_xticks(ticks, names, rotation=45 if k > 4 else 0, ha="right" if k > 4 else "center", fontsize=fs)
    ax.set_yticks(ticks, names, fontsize=fs)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or ("confusion matrix (row-normalised)" if normalize else "confusion matrix"))
    if k <= 20:
        thresh = (shown.max() or 1.0) / 2
        for i in range(k):
            for j in range(k):
                txt = f"{shown[i, j]:.2f}" if normalize else f"{int(c[i, j])}"
                ax.text(j, i, txt, ha="center", va="center", fontsize=fs - 1,
                        color="white" if shown[i, j] > thresh else "black")
    return _save(fig, path)


def plot_training_curves(history: Sequence[Mapping], path, *, title: str = "training") -> Path:
    """Loss curves (left) and other validation/training metrics (right) per epoch.

    Args:
        history: one dict per epoch, e.g. ``{"epoch": 3, "train_loss": 0.8, "val_loss": 0.9, "val_top1": 0.7}``;
            numeric keys other than ``epoch`` become curves (keys containing "loss" on the left panel).
        path: output ``.png``.
    """
    if not history:
        raise SeqVisionError("plot_training_curves needs at least one epoch in history, got an empty list")
    keys: list[str] = []
    for h in history:
        if not isinstance(h, Mapping):
            raise SeqVisionError(f"history entries must be dicts, got {type(h).__name__}")
        for k, v in h.items():
            if k != "epoch" and k not in keys and isinstance(v, (int, float, np.number)) and not isinstance(v, bool):
                keys.append(k)
    if not keys:
        raise SeqVisionError("history has no numeric values to plot besides 'epoch'")
    x = [h.get("epoch", i) for i, h in enumerate(history)]
    losses = [k for k in keys if "loss" in k]
    others = [k for k in keys if k not in losses]
    panels = [p for p in (losses, others) if p]
    fig = _new_figure(5.0 * len(panels), 3.6)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, group, name in zip(axes, panels, ["loss" if losses else "metric", "metric"]):
        for k in group:
            pts = [(xi, h[k]) for xi, h in zip(x, history) if k in h and h[k] is not None]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, ms=3, label=k)
        ax.set_xlabel("epoch")
        ax.set_ylabel(name if group is losses else "value")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    return _save(fig, path)


def plot_gates(gates: Mapping[str, object], path, *, title: str = "", frame_labels: Sequence | None = None,
               frame_indices: Sequence[int] | None = None) -> Path:
    """Heat maps of RNN gate activations and states over time: one row per entry, x = frame, y = unit.

    Args:
        gates: ``{name: (T, H) array}`` in display order, e.g. LSTM ``forget``/``input``/``input modulation``/
            ``output`` (+ ``hidden``, ``cell``) or GRU ``reset``/``update``/``candidate``. Sigmoid gates share a
            0..1 scale; other rows (tanh candidates, states) a symmetric scale around 0. Each row has a colourbar.
        path: output ``.png``.
        title: figure title.
        frame_labels: optional T labels (e.g. the true frame classes) written under the frame axis.
        frame_indices: optional T video frame indices of the steps (the sampler's picks): the frame axis names
            them, and the steps 0..T-1 go along the top.
    """
    if not gates:
        raise SeqVisionError("plot_gates needs at least one gate: gates is empty")
    arrays = {str(k): _array(v, name=f"gates[{k!r}]", ndim=(2,)).astype(np.float64) for k, v in gates.items()}
    t = {a.shape[0] for a in arrays.values()}
    if len(t) != 1:
        raise SeqVisionError(f"all gates must have the same number of frames T, got shapes "
                             f"{ {k: a.shape for k, a in arrays.items()} }")
    (t,) = t
    if frame_labels is not None and len(frame_labels) != t:
        raise SeqVisionError(f"frame_labels has {len(frame_labels)} entries but the gates have T={t} frames")
    frame_indices = _check_frame_indices(frame_indices, t)
    n = len(arrays)
    fig = _new_figure(min(3.0 + 0.12 * t, 14.0), 1.9 * n + 0.6)
    axes = fig.subplots(n, 1, squeeze=False, sharex=True)[:, 0]
    for ax, (name, a) in zip(axes, arrays.items()):
        if name.lower().replace("_", " ").removesuffix(" gate").strip() in _SIGMOID_GATES:
            kw = {"cmap": "viridis", "vmin": 0.0, "vmax": 1.0}
        else:
            m = float(np.nanmax(np.abs(a))) if a.size else 1.0
            kw = {"cmap": "RdBu_r", "vmin": -(m or 1.0), "vmax": m or 1.0}
        im = ax.imshow(a.T, aspect="auto", interpolation="nearest", origin="lower", **kw)
        fig.colorbar(im, ax=ax, pad=0.01, fraction=0.04)
        ax.set_ylabel(f"{name}\nunit", fontsize=9)
    _frame_axis(axes[-1], t, frame_indices, frame_labels)
    if frame_indices is not None:
        _step_axis(axes[0], t)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_attention(weights, path, *, words: Sequence[str] | None = None, title: str = "",
                   frame_indices: Sequence[int] | None = None) -> Path:
    """Attention over frames: ``(L, T)`` as a heat map with one row per generated word, ``(T,)`` as bars.

    Args:
        weights: ``(L, T)`` decoder attention (rows = generated words) or ``(T,)`` attention-pooling weights.
        path: output ``.png``.
        words: L words labelling the rows of a 2-D map.
        title: figure title.
        frame_indices: optional T video frame indices of the steps (the sampler's picks): the frame axis names
            them, and the steps 0..T-1 go along the top.
    """
    w = _array(weights, name="weights", ndim=(1, 2)).astype(np.float64)
    if w.ndim == 1:
        t = w.shape[0]
        fig = _new_figure(min(3.0 + 0.15 * t, 12.0), 3.0)
        ax = fig.add_subplot()
        frame_indices = _check_frame_indices(frame_indices, t)
        ax.bar(np.arange(t), w, color="tab:blue")
        _frame_axis(ax, t, frame_indices)
        ax.set_ylabel("attention weight")
        ax.grid(axis="y", alpha=0.3)
    else:
        ell, t = w.shape
        if words is not None and len(words) != ell:
            raise SeqVisionError(f"words has {len(words)} entries but weights has L={ell} rows")
        frame_indices = _check_frame_indices(frame_indices, t)
        fig = _new_figure(min(3.0 + 0.18 * t, 14.0), min(1.5 + 0.28 * ell, 14.0))
        ax = fig.add_subplot()
        im = ax.imshow(w, aspect="auto", interpolation="nearest", cmap="magma", vmin=0.0)
        fig.colorbar(im, ax=ax, pad=0.01, label="attention")
        _frame_axis(ax, t, frame_indices)
        ax.set_yticks(np.arange(ell), [str(x) for x in words] if words is not None else np.arange(ell), fontsize=8)
        ax.set_ylabel("generated word")
    if frame_indices is not None:
        _step_axis(ax, t)
    if title:
        ax.set_title(title)
    return _save(fig, path)


def frame_strip(frames, path, *, max_frames: int = 8, indices: Sequence[int] | None = None,
                times: Sequence[float] | None = None) -> Path:
    """A strip of evenly spaced thumbnails, each titled with its frame index (and time).

    Args:
        frames: uint8 ``(T, H, W, 3)`` or ``(T, 3, H, W)`` (numpy or torch), RGB.
        path: output ``.png``.
        max_frames: at most this many thumbnails, evenly spaced over the clip.
        indices: optional T frame numbers to print instead of 0..T-1 (e.g. the sampled video frame indices).
        times: optional T times in seconds printed under the frame numbers.
    """
    f = _array(frames, name="frames", ndim=(4,))
    if f.shape[-1] != 3 and f.shape[1] == 3:
        f = f.transpose(0, 2, 3, 1)  # (T, 3, H, W) -> (T, H, W, 3)
    if f.shape[-1] != 3:
        raise SeqVisionError(f"frames must be (T, H, W, 3) or (T, 3, H, W) RGB, got shape {tuple(frames.shape)}")
    if f.dtype != np.uint8:
        if np.issubdtype(f.dtype, np.floating) and f.size and f.max() <= 1.0:
            f = f * 255.0
        f = np.clip(f, 0, 255).astype(np.uint8)
    t = f.shape[0]
    if t == 0:
        raise SeqVisionError("frames is empty (T = 0)")
    if max_frames < 1:
        raise SeqVisionError(f"max_frames must be >= 1, got {max_frames}")
    if indices is not None and len(indices) != t:
        raise SeqVisionError(f"indices has {len(indices)} entries but frames has T={t}")
    if times is not None and len(times) != t:
        raise SeqVisionError(f"times has {len(times)} entries but frames has T={t}")
    pick = np.unique(np.linspace(0, t - 1, num=min(max_frames, t)).round().astype(int))
    h, w = f.shape[1:3]
    thumb_w = 1.8
    fig = _new_figure(thumb_w * len(pick), thumb_w * h / w + (0.5 if times is not None else 0.35))
    axes = fig.subplots(1, len(pick), squeeze=False)[0]
    for ax, i in zip(axes, pick):
        ax.imshow(f[i], interpolation="bilinear" if max(h, w) > 160 else "nearest")
        name = f"frame {indices[i] if indices is not None else i}"
        ax.set_title(name + (f"\n{float(times[i]):.2f} s" if times is not None else ""), fontsize=8)
        ax.set_axis_off()
    return _save(fig, path)


def plot_lines(
    x: Sequence[float],
    series: Mapping[str, Sequence[float]],
    path,
    *,
    xlabel: str = "",
    ylabel: str = "",
    logx: bool = False,
    logy: bool = False,
    title: str = "",
) -> Path:
    """One line per series over a shared x (benchmarks: throughput vs batch size, ...).

    Args:
        x: the x values.
        series: ``{name: values}``, each as long as ``x``; ``None``/NaN values leave gaps.
        path: output ``.png``.
    """
    xs = _array(x, name="x", ndim=(1,)).astype(np.float64)
    if not series:
        raise SeqVisionError("plot_lines needs at least one series: series is empty")
    fig = _new_figure(5.5, 3.6)
    ax = fig.add_subplot()
    for name, ys in series.items():
        y = np.array([np.nan if v is None else v for v in ys], dtype=np.float64)
        if y.shape != xs.shape:
            raise SeqVisionError(f"series {name!r} has {y.shape[0]} values but x has {xs.shape[0]}")
        ax.plot(xs, y, marker="o", ms=3, label=str(name))
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return _save(fig, path)


def plot_bars(labels: Sequence[str], values: Sequence[float], path, *, ylabel: str = "", title: str = "") -> Path:
    """A bar chart with the value printed on each bar (benchmarks: time per stage, ...)."""
    vals = _array(values, name="values", ndim=(1,)).astype(np.float64)
    names = [str(x) for x in labels]
    if len(names) != vals.shape[0]:
        raise SeqVisionError(f"labels has {len(names)} entries but values has {vals.shape[0]}")
    fig = _new_figure(min(2.5 + 0.7 * len(names), 14.0), 3.6)
    ax = fig.add_subplot()
    bars = ax.bar(np.arange(len(names)), vals, color="tab:blue")
    ax.bar_label(bars, labels=[f"{v:.3g}" for v in vals], fontsize=8)
    long = max((len(n) for n in names), default=0) > 8
    ax.set_xticks(np.arange(len(names)), names, rotation=30 if long else 0, ha="right" if long else "center")
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    if title:
        ax.set_title(title)
    return _save(fig, path)

