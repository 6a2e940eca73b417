"""Frame samplers: pure functions of the frame count and options, reproducible from a seed."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from seqvision.errors import ArgumentError
from seqvision.io._types import SampledIndices

__all__ = ["sample_indices", "SAMPLERS"]

SAMPLERS = ("uniform", "random_segment", "dense", "fps", "all")


def _check(ok: bool, key: str, reason: str) -> None:
    if not ok:
        raise ArgumentError(key, reason)


def _finish(real: list[int], target: int, short_policy: str) -> SampledIndices:
    """Pad ``real`` to ``target`` by repeating its last index ("repeat") or leave it short ("truncate")."""
    length = len(real)
    if short_policy == "repeat" and length < target:
        real = real + [real[-1]] * (target - length)
    return SampledIndices(indices=real, length=length)


def _window_start(n: int, span: int, rng: np.random.Generator | None, *, centred: bool) -> int:
    """Start of a window of ``span`` frames inside ``n``: random when seeded, else centred (or 0)."""
    slack = n - span
    if slack <= 0:
        return 0
    if rng is not None:
        return int(rng.integers(0, slack + 1))
    return slack // 2 if centred else 0


def sample_indices(
    num_video_frames: int,
    *,
    sampler: Literal["uniform", "random_segment", "dense", "fps", "all"] = "uniform",
    num_frames: int = 16,
    stride: int = 1,
    fps: float = 0.0,
    video_fps: float | None = None,
    max_frames: int = 0,
    short_policy: Literal["repeat", "truncate"] = "repeat",
    seed: int | None = None,
) -> SampledIndices:
    """Choose which frames of a video to decode.

    Samplers (``N = num_video_frames``, ``T = num_frames``):

    - ``"uniform"``: split the video into ``T`` equal segments and take each segment's centre (TSN test
      sampling): ``floor((k + 0.5) * N / T)``. Deterministic; ``seed`` is ignored.
    - ``"random_segment"``: one random frame from each of the ``T`` segments (TSN training sampling). With
      ``seed=None`` it takes the segment centres (same as ``"uniform"``).
    - ``"dense"``: ``T`` frames ``stride`` apart, ``start, start + stride, ...``; the start is random when
      ``seed`` is given, centred in the video otherwise.
    - ``"fps"``: frames at ``fps`` per second of video (needs ``video_fps``), at most ``max_frames``
      (0 = ``T``); a longer video gives a window of consecutive samples, random when seeded, centred otherwise.
    - ``"all"``: every frame, at most ``max_frames`` (0 = ``T``); a longer video gives a window of
      consecutive frames starting at a random frame when seeded, at frame 0 otherwise.

    Short videos: when fewer real frames exist than the target (``T``, or the cap for ``"fps"``/``"all"``),
    ``short_policy="repeat"`` pads ``indices`` to the target by repeating the last real frame (``length`` =
    real count); ``"truncate"`` returns only the real frames. For ``"dense"`` a video shorter than the clip
    span takes frames ``0, stride, 2 * stride, ...`` that exist.

    Args:
        num_video_frames: frames in the video (>= 1).
        sampler: one of ``SAMPLERS``.
        num_frames: ``T``, frames per clip (>= 1).
        stride: frame step for ``"dense"`` (>= 1).
        fps: sampling rate for ``"fps"`` (> 0).
        video_fps: the video's frame rate, needed by ``"fps"``.
        max_frames: cap for ``"fps"`` and ``"all"`` (0 = ``num_frames``).
        short_policy: ``"repeat"`` or ``"truncate"``.
        seed: makes the random samplers reproducible; ``None`` = deterministic choice.
    Returns:
        ``SampledIndices(indices, length)``; ``indices`` is sorted (non-decreasing) and in ``[0, N)``.
    Raises:
        ArgumentError: a bad option, named by ``argument`` (``"sampler"``, ``"num_frames"``, ``"fps"``, ...;
            ``"video_fps"`` when the ``"fps"`` sampler gets no frame rate). ``VideoDataset.from_config`` reports
            the ``data.*`` key of the same name.

    Example:
        >>> sample_indices(100, num_frames=4).indices
        [12, 37, 62, 87]
    """
    _check(sampler in SAMPLERS, "sampler", f"got {sampler!r}; allowed: {', '.join(map(repr, SAMPLERS))}")
    _check(short_policy in ("repeat", "truncate"), "short_policy",
           f"got {short_policy!r}; allowed: 'repeat', 'truncate'")
    _check(isinstance(num_frames, int) and num_frames >= 1, "num_frames", f"must be an int >= 1, got {num_frames!r}")
    _check(isinstance(stride, int) and stride >= 1, "stride", f"must be an int >= 1, got {stride!r}")
    _check(isinstance(max_frames, int) and max_frames >= 0, "max_frames", f"must be an int >= 0, got {max_frames!r}")
    if not isinstance(num_video_frames, (int, np.integer)) or num_video_frames < 1:
        raise ValueError(f"num_video_frames must be an int >= 1, got {num_video_frames!r}")
    n, t = int(num_video_frames), num_frames
    rng = np.random.default_rng(seed) if seed is not None else None

    if sampler in ("uniform", "random_segment"):
        if n < t:
            return _finish(list(range(n)), t, short_policy)
        edges = [k * n / t for k in range(t + 1)]  # segment k is [edges[k], edges[k+1])
        if sampler == "random_segment" and rng is not None:
            out = []
            for k in range(t):
                lo, hi = math.ceil(edges[k]), max(math.ceil(edges[k]), math.ceil(edges[k + 1]) - 1)
                out.append(int(rng.integers(lo, hi + 1)))
        else:
            out = [min(n - 1, int((k + 0.5) * n / t)) for k in range(t)]
        return _finish(out, t, short_policy)

    if sampler == "dense":
        span = (t - 1) * stride + 1
        if n < span:
            return _finish(list(range(0, n, stride))[:t], t, short_policy)
        start = _window_start(n, span, rng, centred=True)
        return _finish([start + k * stride for k in range(t)], t, short_policy)

    cap = max_frames or t
    if sampler == "fps":
        _check(fps > 0, "fps", f"must be > 0 for the 'fps' sampler, got {fps!r}")
        if video_fps is None or not video_fps > 0:
            raise ArgumentError("video_fps", f"the 'fps' sampler needs the video's frame rate (video_fps), got {video_fps!r}")
        step = video_fps / fps  # video frames per sample
        count = max(1, int(math.floor((n - 1) / step)) + 1)
        times = [min(n - 1, int(math.floor(k * step + 1e-9))) for k in range(count)]
        start = _window_start(len(times), cap, rng, centred=True)
        return _finish(times[start : start + cap], cap, short_policy)

    # "all"
    start = _window_start(n, cap, rng, centred=False)
    return _finish(list(range(start, min(n, start + cap))), cap, short_policy)
