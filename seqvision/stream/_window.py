"""Long untrimmed videos labelled window by window: streaming decode, a bounded buffer of CNN features, the
offline model on each window (any model: bidirectional and attention ones too)."""

from __future__ import annotations

import math
import os
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from ..errors import VideoDecodeError
from ._online import FramePreparer
from ._source import FrameSource, RateSampler

__all__ = ["label_windows", "WindowLabels"]


@dataclass
class WindowLabels:
    """All windows of one video, and for frame models the per-frame timeline.

    Attributes:
        windows: one dict per window: ``start`` / ``end`` (s), ``frames`` (frame indices used), ``label`` and
            ``probs`` (top-k ``{name: p}``; classify), ``frame_labels`` (frames), ``caption`` (caption).
        timeline: frames task: ``[{"time", "frame", "label"}]`` for every sampled frame, labelled by the window
            whose centre is nearest (so overlapping windows agree on one label per frame).
        max_buffered: the most frame features held at once (bounded by the window, not the video's length).
        end_reason: the frame source's ``end_reason`` (``"eof"`` when the whole file was read), or ``"eof after
            a decode error (...)"`` when the source gave up part way (too many damaged packets in a row).
        end_error: the exception that stopped decoding before the file's end (the frame source's ``end_error``,
            or the :class:`~seqvision.errors.VideoDecodeError` it raised part way); ``None`` when the file was
            read to its end.
        until_s: stream time (s) of the last decoded frame; ``None`` when none was decoded.
    """

    path: str
    task: str
    windows: list[dict] = field(default_factory=list)
    timeline: list[dict] = field(default_factory=list)
    max_buffered: int = 0
    end_reason: str = ""
    end_error: BaseException | None = None
    until_s: float | None = None

    @property
    def error(self) -> str | None:
        """Why decoding stopped before the file's end (e.g. ``"eof after a decode error (InvalidDataError:
        ...)"``: the windows after ``until_s`` were never labelled), or ``None`` when the file was read to its
        end (``end_error`` is ``None``). Callers must report it: the windows returned so far look like a complete
        run."""
        return None if self.end_error is None else (self.end_reason or str(self.end_error))


def label_windows(loaded, video: str | os.PathLike, *, window: float, stride: float | None = None,
                  fps: float | None = None, top_k: int = 5, beam_size: int | None = None,
                  batch: int = 8) -> Iterator[dict]:
    """Label ``video`` window by window; yields each window's dict as soon as the window is complete, and
    finally returns (``StopIteration.value``) a :class:`WindowLabels` (use :func:`collect_windows`).

    Windows start every ``stride`` seconds (default ``window``) and last ``window`` seconds of stream time.
    Frames are kept at ``fps`` (default ``data.num_frames / window``: about the frames a training clip had),
    decoded front to back once, and only their CNN features within the open windows are held. Each window is
    labelled as ``seqvision classify`` labels a clip: ``data.num_frames`` picked uniformly from its frames
    (classify, caption); the frames task labels every kept frame.

    Each window's dict: ``start`` and ``end`` (s; the windows after the last complete one end with the video:
    the last decoded frame's time plus one frame), ``frames`` (the decoded indices of the frames used: few for a
    tail window), and the task's answer (:meth:`seqvision.tasks.Task.window_output`).

    Args:
        loaded: a :class:`seqvision.train.LoadedModel` with its frame encoder.
        window, stride: seconds (> 0).

    A file whose decoding fails part way (a corrupt packet the frame source cannot skip) does not raise: the
    windows up to that point are yielded, and the returned :class:`WindowLabels` says so (``error``,
    ``end_error``, ``end_reason``, ``until_s``); callers must check ``error`` (``seqvision classify --window``
    reports the file as failed, exit code 1).

    Raises:
        ValueError: ``window`` or ``stride`` not > 0 and finite, or ``stride`` shorter than the video's frame
            interval (more windows than frames). VideoDecodeError: the video cannot be opened.
    """
    stride = window if stride is None else stride
    if not (math.isfinite(window) and math.isfinite(stride) and window > 0 and stride > 0):
        raise ValueError(f"--window and --stride must be > 0 seconds, got {window}, {stride}")
    model, encoder, cfg = loaded.model.eval(), loaded.encoder.eval(), loaded.config
    task, spec = model.task, loaded.task  # spec: the Task, which answers for a window (Task.window_output)
    fps = fps or cfg.data.num_frames / window
    beam = beam_size or cfg.eval.beam_size
    prepare = FramePreparer(cfg)
    device = next(model.parameters()).device
    result = WindowLabels(path=os.fspath(video), task=task)
    buf: deque[tuple[float, int, torch.Tensor]] = deque()  # (time, frame index, (D,) features)
    pending: list = []  # decoded frames waiting for a CNN batch
    nearest: dict[int, tuple[float, float, str]] = {}  # frame -> (distance to window centre, time, label)
    k = 0  # the next window to emit

    @torch.inference_mode()
    def encode_pending():
        if pending:
            x = torch.stack([prepare(sf.frame) for sf in pending]).to(device)  # (N, 3, H, W)
            feats = encoder(x).float()  # (N, D)
            buf.extend((sf.time, sf.index, f) for sf, f in zip(pending, feats))
            pending.clear()
            result.max_buffered = max(result.max_buffered, len(buf))

    @torch.inference_mode()
    def emit(k: int, video_end: float | None = None) -> dict | None:
        start, end = k * stride, k * stride + window
        rows = [(t, i, f) for t, i, f in buf if start - 1e-9 <= t < end - 1e-9]
        if not rows:
            return None
        feats = torch.stack([f for _, _, f in rows])[None]  # (1, n, D)
        shown_end = end if video_end is None else min(end, video_end)  # a tail window ends with the video
        out = {"start": round(start, 6), "end": round(shown_end, 6), "frames": [i for _, i, _ in rows]}
        out.update(spec.window_output(model, feats, cfg, top_k=top_k, beam_size=beam))
        if "frame_labels" in out:  # per-frame answers: each frame takes the label of the nearest window centre
            centre = (start + end) / 2
            for (t, i, _), label in zip(rows, out["frame_labels"]):
                d = abs(t - centre)
                if i not in nearest or d < nearest[i][0]:
                    nearest[i] = (d, t, label)
        result.windows.append(out)
        return out

    keep = RateSampler(fps)
    last_time = None
    source = FrameSource(video)
    decoded_until = None
    gave_up: VideoDecodeError | None = None  # the source raised part way
    try:
        for sf in source:
            if decoded_until is None and source.rate and stride < 1.0 / source.rate - 1e-9:
                raise ValueError(f"a stride of {stride:g} s is shorter than {video}'s frame interval "
                                 f"({1.0 / source.rate:g} s at {source.rate:g} fps): more windows than frames; "
                                 f"use a stride (or window) of at least {1.0 / source.rate:g} s")
            decoded_until = sf.time
            if not keep(sf.time):
                continue
            last_time = sf.time
            pending.append(sf)
            if len(pending) >= batch or sf.time >= k * stride + window:
                encode_pending()
            while buf and buf[-1][0] >= k * stride + window - 1e-9:  # window k is complete
                out = emit(k)
                if out is not None:
                    yield out
                k += 1
                while buf and buf[0][0] < k * stride - 1e-9:  # no later window needs these
                    buf.popleft()
    except VideoDecodeError as exc:  # the source gave up part way (e.g. too many damaged packets in a row)
        if decoded_until is None:
            raise  # nothing decoded: the file cannot be read, reported as classify reports it
        gave_up = exc
    encode_pending()
    video_end = None if decoded_until is None else decoded_until + 1.0 / (source.rate or fps)
    while last_time is not None and k * stride <= last_time + 1e-9:  # the last, partial windows
        out = emit(k, video_end)
        if out is not None:
            yield out
        k += 1
    if gave_up is not None:
        result.end_reason, result.end_error = f"eof after a decode error ({gave_up.reason})", gave_up
    else:
        result.end_reason, result.end_error = source.end_reason, source.end_error
    result.until_s = decoded_until
    result.timeline = [{"time": round(t, 6), "frame": i, "label": lab} for i, (_, t, lab) in sorted(nearest.items())]
    return result


def collect_windows(loaded, video, **options) -> WindowLabels:
    """Run :func:`label_windows` to the end and return its :class:`WindowLabels`."""
    gen = label_windows(loaded, video, **options)
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value
