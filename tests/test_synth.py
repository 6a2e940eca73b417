"""The synthetic video generator: real H.264 files whose labels match what is drawn, measured on decoded frames."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import av
import numpy as np
import pytest

from seqvision.config import DataConfig
from seqvision.data import SYNTH_CLASSES, load_index, make_synthetic_dataset
from seqvision.data.synth import COLOURS, SHAPES, background
from seqvision.errors import DatasetError


def decode(path: Path) -> np.ndarray:
    """All frames (T, H, W, 3) uint8, decoded with PyAV directly (independent of seqvision.io)."""
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def rows_of(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]


def measure(frames: np.ndarray):
    """Per frame: foreground weight-centroid x, y and area (pixels), from the distance to the background."""
    dist = np.abs(frames.astype(np.float32) - background(frames.shape[1])).max(axis=3)  # (T, H, W)
    w = np.clip((dist - 15) / 60, 0, 1)
    area = w.sum(axis=(1, 2))  # (T,)
    ys, xs = np.mgrid[0:frames.shape[1], 0:frames.shape[2]]
    cx = (w * xs).sum(axis=(1, 2)) / area
    cy = (w * ys).sum(axis=(1, 2)) / area
    return cx, cy, area


def test_labels_match_what_is_drawn(synthetic_dataset):
    rows = rows_of(synthetic_dataset)
    assert len(rows) == 36 and {r["label"] for r in rows} == set(SYNTH_CLASSES)
    lengths = set()
    for row in rows:
        frames = decode(synthetic_dataset / row["path"])
        assert frames.shape[1:] == (32, 32, 3)
        n = len(frames)
        lengths.add(n)
        assert 12 <= n <= 20 and len(row["frame_labels"]) == n == row["meta"]["num_frames"]
        cx, cy, area = measure(frames)
        moving = np.array([lab == "moving" for lab in row["frame_labels"]])
        assert moving.sum() >= n // 2 and set(row["frame_labels"]) <= {"still", "moving"}
        first, last = np.flatnonzero(moving)[[0, -1]]
        before = max(first - 1, 0)
        delta = {"moves_right": cx[last] - cx[before], "moves_left": cx[before] - cx[last],
                 "moves_down": cy[last] - cy[before], "moves_up": cy[before] - cy[last],
                 "grows": area[last] - area[before], "shrinks": area[before] - area[last]}[row["label"]]
        expect = 0.25 * 32 if row["label"].startswith("moves") else 0.5 * area.min()
        assert delta > expect, (row["id"], row["label"], delta)
        # a frame is "moving" exactly when the picture changed since the frame before
        change = np.abs(np.diff(frames.astype(np.int16), axis=0)).max(axis=(1, 2, 3))  # (T-1,)
        still_steps = change[~moving[1:]]
        moving_steps = change[moving[1:]]
        assert (still_steps <= 12).all(), (row["id"], still_steps)
        assert (moving_steps > 12).all(), (row["id"], moving_steps)
        # the caption colour is the drawn colour
        fg = frames[-1][np.abs(frames[-1].astype(int) - background(32)).max(axis=2) > 80]
        drawn = min(COLOURS, key=lambda c: np.abs(fg.mean(axis=0) - COLOURS[c]).sum())
        assert drawn == row["meta"]["colour"]
        caps = row["captions"]
        assert 3 <= len(caps) <= 5 and len(set(caps)) == len(caps)
        assert all(drawn in c and row["meta"]["shape"] in c for c in caps)
        assert row["meta"]["shape"] in SHAPES
    assert len(lengths) > 3  # variable lengths, so padding matters


def test_splits_are_stratified_and_loadable(synthetic_dataset):
    rows = rows_of(synthetic_dataset)
    per_class = Counter((r["label"], r["split"]) for r in rows)
    for label in SYNTH_CLASSES:
        assert (per_class[(label, "train")], per_class[(label, "val")], per_class[(label, "test")]) == (4, 1, 1)
    labels = json.loads((synthetic_dataset / "labels.json").read_text())
    assert labels == {"labels": list(SYNTH_CLASSES), "frame_labels": ["still", "moving"]}
    index = load_index(DataConfig(format="synthetic", root=str(synthetic_dataset)))
    assert len(index.records) == 36 and not index.missing
    assert index.label_names == list(SYNTH_CLASSES) and index.frame_label_names == ["still", "moving"]
    rec = index.records[0]
    assert index.label_names[rec.label] == rows[0]["label"]
    assert [index.frame_label_names[i] for i in rec.frame_labels] == rows[0]["frame_labels"]


def test_deterministic_from_seed(tmp_path):
    kwargs = dict(num_videos=4, seed=5, size=32, min_frames=8, max_frames=12, progress=False)
    a = make_synthetic_dataset(tmp_path / "a", **kwargs)
    b = make_synthetic_dataset(tmp_path / "b", **kwargs)
    c = make_synthetic_dataset(tmp_path / "c", **{**kwargs, "seed": 6})
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()
    for row in rows_of(a.parent):
        assert np.array_equal(decode(a.parent / row["path"]), decode(b.parent / row["path"]))
    # video i depends only on (seed, i): a longer run extends a shorter one
    longer = make_synthetic_dataset(tmp_path / "d", **{**kwargs, "num_videos": 7})
    short_rows, long_rows = rows_of(a.parent), rows_of(longer.parent)
    assert [(r["label"], r["captions"]) for r in short_rows] == [(r["label"], r["captions"]) for r in long_rows[:4]]


@pytest.mark.parametrize("kwargs, words", [
    ({"classes": ["moves_left", "flies"]}, "classes="),
    ({"size": 33}, "size must be an even number"),
    ({"min_frames": 10, "max_frames": 5}, "min_frames <= max_frames"),
    ({"num_videos": 0}, "num_videos must be >= 1"),
])
def test_bad_arguments(tmp_path, kwargs, words):
    with pytest.raises(DatasetError, match=words):
        make_synthetic_dataset(tmp_path, progress=False, **kwargs)


def test_class_subset(tmp_path):
    m = make_synthetic_dataset(tmp_path, num_videos=4, classes=["moves_left", "moves_right"], size=32,
                               min_frames=6, max_frames=8, progress=False)
    rows = rows_of(m.parent)
    assert Counter(r["label"] for r in rows) == {"moves_left": 2, "moves_right": 2}
