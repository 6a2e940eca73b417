"""Synthetic videos with known labels, per-frame labels and captions: real H.264 ``.mp4`` files, no download.

Each video shows one shape (circle, square, triangle) in a solid colour on a plain dark background. The shape
holds still for a random number of frames, performs its action (the clip label), then may hold still again:

- ``moves_left`` / ``moves_right`` / ``moves_up`` / ``moves_down``: travels 30-45% of the frame; start positions
  are random, so one frame does not tell the direction, only the frame order does;
- ``grows`` / ``shrinks``: the radius goes between the same two sizes, up or down.

Per-frame labels are ``still`` / ``moving`` (a frame is ``moving`` when the shape changed since the frame before).
Captions are built from templates over (size, colour, shape, action): 3-5 per video, the first always the
canonical "a small red circle moves to the right".

Example:
    >>> manifest = make_synthetic_dataset("data/synth", num_videos=240, seed=0)
    >>> index = load_index(DataConfig(format="synthetic", root="data/synth"))
"""

from __future__ import annotations

import json
import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from tqdm.auto import tqdm

from ..errors import DatasetError

__all__ = ["make_synthetic_dataset", "background", "SYNTH_CLASSES", "SYNTH_FRAME_LABELS", "COLOURS", "SHAPES"]

SYNTH_CLASSES = ("moves_left", "moves_right", "moves_up", "moves_down", "grows", "shrinks")
SYNTH_FRAME_LABELS = ("still", "moving")
COLOURS = {"red": (225, 30, 30), "green": (30, 200, 40), "blue": (40, 70, 235), "yellow": (235, 220, 30)}
SHAPES = ("circle", "square", "triangle")
# Plain grey quadrants (top-left, top-right, bottom-left, bottom-right): the shade around the shape tells where
# it is even after global pooling of CNN features; the same for every video, so it carries no label by itself.
QUADRANT_GREYS = (16, 56, 96, 136)
# radius as a fraction of the frame size
_SIZES = {"small": 0.13, "big": 0.2}
_GROW_RANGE = (0.12, 0.24)
_TRIANGLE_SCALE = 1.3  # circumradius / radius, so a triangle has about the area of the circle

_PHRASES = {
    "moves_left": ["moves to the left", "moves from right to left", "slides to the left", "goes left"],
    "moves_right": ["moves to the right", "moves from left to right", "slides to the right", "goes right"],
    "moves_up": ["moves up", "moves from the bottom to the top", "slides upwards", "goes up"],
    "moves_down": ["moves down", "moves from the top to the bottom", "slides downwards", "goes down"],
    "grows": ["grows", "gets bigger", "becomes larger", "grows in size"],
    "shrinks": ["shrinks", "gets smaller", "becomes smaller", "shrinks in size"],
}
_TEMPLATES = ["a {size}{colour} {shape} {phrase}", "the {colour} {shape} {phrase}",
              "a {colour} {shape} {phrase}", "there is a {size}{colour} {shape} that {phrase}",
              "a {size}{shape} in {colour} {phrase}"]


def _captions(rng: np.random.Generator, action: str, size: str | None, colour: str, shape: str) -> list[str]:
    words = {"size": f"{size} " if size else "", "colour": colour, "shape": shape}
    phrases = _PHRASES[action]
    first = _TEMPLATES[0].format(phrase=phrases[0], **words)
    # distinct alternatives (without a size word some templates coincide)
    extra = sorted({t.format(phrase=p, **words) for t in _TEMPLATES for p in phrases} - {first})
    count = int(rng.integers(3, 6))  # 3-5 captions
    out = [first] + [extra[k] for k in rng.permutation(len(extra))[: count - 1]]
    return out


def _sdf(shape: str, cx, cy, r, xs, ys):
    """Signed distance (pixels, negative inside) of each pixel to the shape, for all frames at once.

    cx, cy, r: (T,) arrays; xs, ys: (H, W) pixel-centre grids. Returns (T, H, W).
    """
    dx = xs[None] - cx[:, None, None]  # (T, H, W)
    dy = ys[None] - cy[:, None, None]
    rr = r[:, None, None]
    if shape == "circle":
        return np.sqrt(dx * dx + dy * dy) - rr
    if shape == "square":  # same area as the circle: half side = r * sqrt(pi) / 2
        return np.maximum(np.abs(dx), np.abs(dy)) - rr * 0.886
    # equilateral triangle pointing up (image y grows downwards): max over the three edges' outward normals
    big = rr * _TRIANGLE_SCALE
    d = dy - big / 2  # bottom edge, normal (0, 1)
    for angle in (np.deg2rad(210.0), np.deg2rad(330.0)):
        d = np.maximum(d, dx * np.cos(angle) + dy * np.sin(angle) - big / 2)
    return d


def _extent(shape: str, r: float) -> float:
    return r * (_TRIANGLE_SCALE if shape == "triangle" else 1.0) + 1.0


def _plan_video(rng: np.random.Generator, action: str, *, size: int, min_frames: int, max_frames: int) -> dict:
    """Draw everything about one video: appearance, timeline, trajectory (positions in pixels)."""
    n = int(rng.integers(min_frames, max_frames + 1))
    colour = str(rng.choice(list(COLOURS)))
    shape = str(rng.choice(SHAPES))
    still_start = int(rng.integers(0, n // 4 + 1))
    still_end = int(rng.integers(0, n // 4 + 1))
    moving = n - still_start - still_end
    t = np.arange(n)
    progress = np.clip((t - still_start + 1) / moving, 0.0, 1.0)  # (T,) 0 while still, 1 after the action
    frame_labels = ["moving" if still_start <= i < still_start + moving else "still" for i in range(n)]
    S = float(size)
    if action in ("grows", "shrinks"):
        lo, hi = _GROW_RANGE[0] * S, _GROW_RANGE[1] * S
        r0, r1 = (lo, hi) if action == "grows" else (hi, lo)
        radius = r0 + (r1 - r0) * progress
        m = _extent(shape, hi)
        cx = np.full(n, rng.uniform(m, S - m))
        cy = np.full(n, rng.uniform(m, S - m))
        size_word = None
    else:
        size_word = str(rng.choice(list(_SIZES)))
        r = _SIZES[size_word] * S
        radius = np.full(n, r)
        m = _extent(shape, r)
        # from partly outside one edge to partly outside the other (random overhangs): the cut side of the
        # shape shows where it is, which survives global pooling of CNN features; one frame is still ambiguous
        low, high = rng.uniform(0.0, 0.5) * r, S - rng.uniform(0.0, 0.5) * r
        start, stop = (low, high) if action in ("moves_right", "moves_down") else (high, low)
        along = start + (stop - start) * progress
        other = np.full(n, rng.uniform(m, S - m))
        cx, cy = (along, other) if action in ("moves_left", "moves_right") else (other, along)
    return {"num_frames": n, "colour": colour, "shape": shape, "size": size_word, "still_start": still_start,
            "still_end": still_end, "frame_labels": frame_labels, "cx": cx, "cy": cy, "radius": radius}


def background(size: int) -> np.ndarray:
    """The background every video shares: (H, W, 3) uint8 grey quadrants."""
    half = size // 2
    img = np.empty((size, size, 3), np.uint8)
    img[:half, :half], img[:half, half:], img[half:, :half], img[half:, half:] = QUADRANT_GREYS
    return img


def _render(plan: dict, size: int) -> np.ndarray:
    """Anti-aliased frames (T, H, W, 3) uint8, so sub-pixel motion still changes the picture."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5  # (H, W) pixel centres
    sdf = _sdf(plan["shape"], plan["cx"], plan["cy"], plan["radius"], xs, ys)  # (T, H, W)
    alpha = np.clip(0.5 - sdf, 0.0, 1.0)[..., None]  # (T, H, W, 1)
    bg = background(size).astype(np.float64)  # (H, W, 3)
    fg = np.array(COLOURS[plan["colour"]], np.float64)
    frames = bg * (1.0 - alpha) + fg * alpha  # (T, H, W, 3)
    return np.round(frames).astype(np.uint8)


def _encode(path: Path, frames: np.ndarray, fps: int) -> None:
    """Write (T, H, W, 3) uint8 RGB frames as H.264 in MP4 (x264 ultrafast, one thread: byte-reproducible)."""
    tmp = path.with_suffix(".tmp.mp4")
    with av.open(str(tmp), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width = frames.shape[2]
        stream.height = frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, fps)
        stream.options = {"preset": "ultrafast", "crf": "12", "threads": "1"}
        for i, arr in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(arr, format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    os.replace(tmp, path)


def _stratified_splits(labels: list[str], rng: np.random.Generator, val: float, test: float) -> list[str]:
    splits = ["train"] * len(labels)
    for name in sorted(set(labels)):
        members = [i for i, lab in enumerate(labels) if lab == name]
        members = [members[k] for k in rng.permutation(len(members))]
        n_val, n_test = int(round(val * len(members))), int(round(test * len(members)))
        if len(members) >= 3:  # small sets still get one val and one test clip per class
            n_val, n_test = max(n_val, 1 if val > 0 else 0), max(n_test, 1 if test > 0 else 0)
        for i in members[:n_val]:
            splits[i] = "val"
        for i in members[n_val:n_val + n_test]:
            splits[i] = "test"
    return splits


def make_synthetic_dataset(
    out: str | os.PathLike,
    *,
    num_videos: int = 200,
    seed: int = 0,
    size: int = 64,
    min_frames: int = 24,
    max_frames: int = 40,
    fps: int = 12,
    classes: list[str] | tuple[str, ...] | None = None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    progress: bool = True,
) -> Path:
    """Write ``num_videos`` synthetic H.264 videos plus ``manifest.jsonl`` and ``labels.json`` under ``out``.

    Deterministic: the same arguments give a byte-identical manifest and identical decoded frames. Video ``i``
    depends only on ``(seed, i, classes)``, so a larger ``num_videos`` extends a smaller set (splits may differ).

    Args:
        out: output folder (created); videos go to ``out/videos/synth_NNNNN.mp4``.
        num_videos: how many videos; classes are balanced (each run of ``len(classes)`` videos holds each once).
        seed: the random seed.
        size: frame width = height in pixels (>= 32; even).
        min_frames, max_frames: each video has a random length in this range (inclusive).
        fps: frame rate written into the files.
        classes: a subset of :data:`SYNTH_CLASSES` (default: all six).
        val_fraction, test_fraction: per-class split fractions (stratified); the rest is "train".
        progress: show a tqdm bar.

    Returns:
        The path of ``manifest.jsonl``. Each line: ``{"id", "path" (relative to ``out``), "split", "label",
        "frame_labels" (one per frame: "still"/"moving"), "captions", "meta"}``; ``labels.json`` holds
        ``{"labels": [...], "frame_labels": ["still", "moving"]}``.

    Raises:
        DatasetError: a bad argument (names the argument and what is allowed).
    """
    classes = tuple(classes) if classes is not None else SYNTH_CLASSES
    unknown = [c for c in classes if c not in SYNTH_CLASSES]
    if unknown or not classes or len(set(classes)) != len(classes):
        raise DatasetError(f"make_synthetic_dataset: classes={list(classes)!r} is not allowed; "
                           f"choose distinct names from {list(SYNTH_CLASSES)}")
    if num_videos < 1:
        raise DatasetError(f"make_synthetic_dataset: num_videos must be >= 1, got {num_videos}")
    if size < 32 or size % 2:
        raise DatasetError(f"make_synthetic_dataset: size must be an even number >= 32 (H.264 4:2:0), got {size}")
    if not 2 <= min_frames <= max_frames:
        raise DatasetError(f"make_synthetic_dataset: need 2 <= min_frames <= max_frames, got {min_frames}, "
                           f"{max_frames}")
    if fps < 1:
        raise DatasetError(f"make_synthetic_dataset: fps must be >= 1, got {fps}")
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise DatasetError("make_synthetic_dataset: val_fraction and test_fraction must be in [0, 1) and sum "
                           f"below 1, got {val_fraction}, {test_fraction}")

    out = Path(out)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    k = len(classes)  # balanced: each block of k videos holds every class once, in a seeded order
    labels = [classes[int(np.random.default_rng([seed, 1, i // k]).permutation(k)[i % k])] for i in range(num_videos)]
    splits = _stratified_splits(labels, np.random.default_rng([seed, 2]), val_fraction, test_fraction)

    lines = []
    for i in tqdm(range(num_videos), desc="synth videos", disable=not progress, leave=False):
        rng = np.random.default_rng([seed, 3, i])
        plan = _plan_video(rng, labels[i], size=size, min_frames=min_frames, max_frames=max_frames)
        vid = f"synth_{i:05d}"
        rel = f"videos/{vid}.mp4"
        _encode(out / rel, _render(plan, size), fps)
        meta = {k: plan[k] for k in ("num_frames", "colour", "shape", "size", "still_start", "still_end")}
        meta["fps"] = fps
        record = {"id": vid, "path": rel, "split": splits[i], "label": labels[i],
                  "frame_labels": plan["frame_labels"],
                  "captions": _captions(rng, labels[i], plan["size"], plan["colour"], plan["shape"]),
                  "meta": meta}
        lines.append(json.dumps(record))

    manifest = out / "manifest.jsonl"
    tmp = manifest.with_suffix(".jsonl.tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, manifest)
    (out / "labels.json").write_text(
        json.dumps({"labels": list(classes), "frame_labels": list(SYNTH_FRAME_LABELS)}, indent=1) + "\n",
        encoding="utf-8")
    return manifest
