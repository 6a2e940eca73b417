"""VideoDataset, transforms, collate and ErrorReport over real encoded videos."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

import assets
from seqvision.config import DataConfig
from seqvision.data import (ErrorReport, Normalize, VideoDataset, VideoRecord, build_transform, collate,
                            load_index, worker_context)
from seqvision.io import VideoReader
from seqvision.io._decord_backend import decord_available
from seqvision.errors import ArgumentError, ConfigError, VideoDecodeError


@pytest.fixture(scope="module")
def folder_with_bad_file(tmp_path_factory) -> Path:
    """Folder per class: 5 real videos (h264 mp4, MPEG-4 avi) and one text file named .mp4."""
    root = tmp_path_factory.mktemp("clips")
    assets.make_color_video(root / "left" / "a.mp4", num_frames=20, size=(48, 64), seed=1)
    assets.make_color_video(root / "left" / "b.avi", num_frames=14, size=(48, 64), codec="mpeg4", seed=2)
    assets.make_color_video(root / "left" / "c.mp4", num_frames=9, size=(48, 64), seed=3)
    assets.make_color_video(root / "right" / "d.mp4", num_frames=30, size=(48, 64), seed=4)
    assets.make_color_video(root / "right" / "e.mkv", num_frames=16, size=(48, 64), seed=5)
    (root / "right" / "broken.mp4").write_text("not a video\n" * 10)
    return root


@pytest.mark.skipif(not decord_available(), reason="decord is not installed")
def test_decord_workers_survive_a_parent_that_used_decord(tmp_path):
    """decord is not fork-safe: workers forked after the parent decoded with it died with SIGSEGV (3 of 3 runs).
    The loaders take worker_context(), which spawns workers that decode with decord, and every worker once this
    process has used decord (a forked pyav worker died too: the newest-environment CI run)."""
    path = assets.make_color_video(tmp_path / "a.mp4", num_frames=12, size=(48, 64), seed=7)
    with VideoReader(path, backend="decord") as vr:
        assert vr.backend == "decord" and vr.get_frames([0, 5]).shape == (2, 3, 48, 64)
    records = [VideoRecord(id=str(i), path=str(path), split="train", label=0, captions=[], frame_labels=None,
                           start=None, end=None) for i in range(4)]
    ds = VideoDataset(records, num_frames=4, size=32, backend="decord")
    assert worker_context(ds, 2) == "spawn" and worker_context(ds, 0) is None
    pyav_ds = VideoDataset(records, num_frames=4, size=32, backend="pyav")
    assert worker_context(pyav_ds, 2) == "spawn"  # this process has used decord: no forked worker is safe now
    loader = DataLoader(ds, batch_size=2, num_workers=2, collate_fn=collate,
                        multiprocessing_context=worker_context(ds, 2))
    batches = list(loader)
    assert [b["video"].shape for b in batches] == [(2, 4, 3, 32, 32)] * 2 and not any(b["errors"] for b in batches)
    pyav_loader = DataLoader(pyav_ds, batch_size=2, num_workers=2, collate_fn=collate,
                             multiprocessing_context=worker_context(pyav_ds, 2))
    assert [b["video"].shape for b in pyav_loader] == [(2, 4, 3, 32, 32)] * 2


def test_dataloader_with_workers_reports_exactly_the_bad_file(folder_with_bad_file):
    index = load_index(DataConfig(format="folder", root=str(folder_with_bad_file), val_fraction=0, test_fraction=0))
    assert len(index.records) == 6
    ds = VideoDataset(index.records, num_frames=8, size=32, sampler="random_segment", seed=0)
    loader = DataLoader(ds, batch_size=2, num_workers=2, collate_fn=collate,
                        multiprocessing_context=worker_context(ds, 2))  # as the product's loaders do
    report = ErrorReport()
    loaded = []
    for batch in loader:
        report.add(batch)
        b = len(batch["id"])
        assert batch["video"].shape == (b, 8, 3, 32, 32) and batch["video"].dtype == torch.uint8
        assert batch["label"].tolist() == [index.label_names.index(i.split("/")[0]) for i in batch["id"]]
        loaded += batch["id"]
    assert sorted(loaded) == ["left/a", "left/b", "left/c", "right/d", "right/e"]
    assert report.count == 1 and Path(report.items[0][0]).name == "broken.mp4"
    assert "1 video skipped: broken.mp4" in report.summary()


def test_on_error_raise_names_the_file(folder_with_bad_file, tmp_path):
    bad = VideoRecord(id="broken", path=str(folder_with_bad_file / "right" / "broken.mp4"))
    ds = VideoDataset([bad], num_frames=4, size=32, on_error="raise")
    with pytest.raises(VideoDecodeError, match="broken.mp4"):
        ds[0]
    skipped = VideoDataset([bad], num_frames=4, size=32)[0]
    assert skipped["error"][0].endswith("broken.mp4") and skipped["error"][1]
    batch = collate([skipped])  # an all-failed batch: B = 0 tensors, flagged
    assert batch["empty"] and batch["video"].shape[0] == 0 and batch["lengths"].shape == (0,)
    report = ErrorReport()
    report.add(batch)
    report.add(batch["errors"])  # the same file again (next epoch) counts once
    out = report.write(tmp_path / "errors.json")
    data = json.loads(out.read_text())
    assert data["count"] == 1 and data["occurrences"] == 2 and data["items"][0]["path"].endswith("broken.mp4")
    # the config boundary names the key; the dataset below it names its own argument (issue #13)
    with pytest.raises(ConfigError, match="data.on_error"):
        VideoDataset.from_config(DataConfig(on_error="ignore"), [bad], train=False)
    with pytest.raises(ArgumentError, match="^on_error: "):
        VideoDataset([bad], on_error="ignore")
    with pytest.raises(ConfigError, match="data.sampler"):
        VideoDataset.from_config(DataConfig(sampler="middle"), [bad], train=False)
    with pytest.raises(ArgumentError, match="^sampler: "):
        VideoDataset([bad], sampler="middle")


def test_frames_are_the_sampled_ones(tmp_path):
    path = assets.make_index_video(tmp_path / "idx.mp4", num_frames=40, size=(48, 64))
    ds = VideoDataset([VideoRecord(id="idx", path=str(path))], num_frames=5, size=None, sampler="dense", stride=3,
                      seed=None)
    sample = ds[0]
    assert sample["frame_indices"] == [13, 16, 19, 22, 25]  # centred window (40 - 13) // 2 when not seeded
    assert [assets.read_index_code(f) for f in sample["video"]] == sample["frame_indices"]
    windowed = VideoRecord(id="w", path=str(path), start=0.4, end=0.8)  # 25 fps: frames 10..19
    got = VideoDataset([windowed], num_frames=5, size=32, sampler="uniform")[0]
    assert got["frame_indices"] == [11, 13, 15, 17, 19]
    assert [assets.read_index_code(f) for f in got["video"]] == got["frame_indices"]


def test_frame_labels_padding_and_mask(synthetic_dataset):
    index = load_index(DataConfig(format="synthetic", root=str(synthetic_dataset)))
    records = index.split("train")[:4]
    # "all" frames up to 24, repeat: every video (12-20 frames) is shorter, so the tail repeats
    ds = VideoDataset(records, sampler="all", num_frames=24, size=32, short_policy="repeat")
    for i, rec in enumerate(records):
        s = ds[i]
        n = len(rec.frame_labels)
        assert s["length"] == n and s["video"].shape == (24, 3, 32, 32)
        assert s["frame_labels"][:n].tolist() == rec.frame_labels
        assert (s["frame_labels"][n:] == -100).all()
        assert torch.equal(s["video"][n:], s["video"][n - 1:n].expand(24 - n, -1, -1, -1))
    # truncate: variable T, collate pads to the longest
    ds = VideoDataset(records, sampler="all", num_frames=24, size=32, short_policy="truncate")
    batch = collate([ds[i] for i in range(len(records))])
    lengths = [len(r.frame_labels) for r in records]
    assert batch["lengths"].tolist() == lengths and batch["video"].shape[1] == max(lengths)
    assert batch["mask"].sum(1).tolist() == lengths and batch["mask"].dtype == torch.bool
    for b, n in enumerate(lengths):
        assert batch["frame_labels"][b, :n].tolist() == records[b].frame_labels
        assert (batch["frame_labels"][b, n:] == -100).all() and (batch["video"][b, n:] == 0).all()
        assert batch["video"][b, :n].float().mean() > 0
    assert batch["label"].tolist() == [r.label for r in records]
    assert batch["captions"] == [r.captions for r in records]


def test_collate_feature_samples_and_failures():
    samples = [{"features": torch.ones(3, 4), "length": 3, "label": 1, "id": "a", "path": "a.mp4"},
               {"error": ("bad.mp4", "no video stream"), "path": "bad.mp4", "id": "bad"},
               {"features": torch.full((5, 4), 2.0), "length": 5, "label": None, "id": "b", "path": "b.mp4",
                "frame_labels": torch.tensor([0, 1, 1, 0, 1])}]
    batch = collate(samples)
    assert batch["features"].shape == (2, 5, 4) and batch["features"][0, 3:].abs().sum() == 0
    assert batch["mask"].tolist() == [[True] * 3 + [False] * 2, [True] * 5]
    assert batch["label"].tolist() == [1, -100]
    assert batch["frame_labels"].tolist() == [[-100] * 5, [0, 1, 1, 0, 1]]
    assert batch["errors"] == [("bad.mp4", "no video stream")] and batch["id"] == ["a", "b"]
    assert not batch["empty"]
    empty = collate([{"error": ("x.npy", "missing"), "path": "x.npy", "id": "x", "kind": "features"}])
    assert empty["empty"] and empty["features"].shape == (0, 0, 0)


def test_random_sampling_is_seeded_by_seed_epoch_index(folder_with_bad_file):
    rec = VideoRecord(id="d", path=str(folder_with_bad_file / "right" / "d.mp4"))
    ds = VideoDataset([rec, rec], num_frames=6, size=32, sampler="random_segment", seed=3)
    first = ds[0]["frame_indices"]
    assert ds[0]["frame_indices"] == first  # same (seed, epoch, index)
    draws = {tuple(ds[1]["frame_indices"])}
    for epoch in range(1, 4):
        ds.set_epoch(epoch)
        draws.add(tuple(ds[0]["frame_indices"]))
    assert len(draws) > 1
    ds.set_epoch(0)
    assert ds[0]["frame_indices"] == first
    cfg = DataConfig(sampler="uniform", train_sampler="random_segment", num_frames=6, size=32)
    assert VideoDataset.from_config(cfg, [rec], train=True).sampler == "random_segment"
    evaluation = VideoDataset.from_config(cfg, [rec], train=False)
    assert evaluation.sampler == "uniform" and evaluation[0]["frame_indices"] == [2, 7, 12, 17, 22, 27]


def test_transforms_crop_flip_whole_clip(folder_with_bad_file):
    rec = VideoRecord(id="a", path=str(folder_with_bad_file / "left" / "a.mp4"))
    plain = VideoDataset([rec], num_frames=6, size=40)[0]["video"]
    cfg = DataConfig(size=40, crop=32, flip=True)
    ds = VideoDataset([rec], num_frames=6, size=40, transform=build_transform(cfg, train=True), seed=0)
    flips = set()
    for epoch in range(6):
        ds.set_epoch(epoch)
        out = ds[0]["video"]
        assert out.shape == (6, 3, 32, 32) and type(out) is torch.Tensor and out.dtype == torch.uint8
        # one crop window and one flip decision for the whole clip
        found = [(y, x, f) for y in range(9) for x in range(9) for f in (False, True)
                 if torch.equal(out, (plain.flip(-1) if f else plain)[..., y:y + 32, x:x + 32])]
        assert found, "every frame must get the same crop and flip"
        flips.add(found[0][2])
    assert flips == {False, True}
    ds.set_epoch(2)
    assert torch.equal(ds[0]["video"], ds[0]["video"])  # reproducible
    centre = build_transform(cfg, train=False)
    out = VideoDataset([rec], num_frames=6, size=40, transform=centre)[0]["video"]
    assert torch.equal(out, plain[..., 4:36, 4:36])
    assert build_transform(DataConfig(), train=True) is None
    norm = Normalize()(plain)
    assert norm.dtype == torch.float32 and torch.allclose(
        norm[:, 0], (plain[:, 0].float() / 255 - 0.485) / 0.229)


def test_unexpected_exceptions_are_reported_not_raised(folder_with_bad_file, synthetic_dataset):
    rec = VideoRecord(id="a", path=str(folder_with_bad_file / "left" / "a.mp4"))
    from torchvision.transforms import v2

    ds = VideoDataset([rec], num_frames=4, size=32, transform=v2.RandomCrop(64))  # larger than the frame
    sample = ds[0]
    assert sample["error"][0] == rec.path and sample["error"][1].startswith("ValueError")
    with pytest.raises(VideoDecodeError, match=r"a\.mp4: ValueError"):
        VideoDataset([rec], num_frames=4, size=32, transform=v2.RandomCrop(64), on_error="raise")[0]
    # frame labels that do not fit the video are a data error, reported for that file
    index = load_index(DataConfig(format="synthetic", root=str(synthetic_dataset)))
    wrong = index.records[0]
    wrong = VideoRecord(id=wrong.id, path=wrong.path, label=wrong.label, frame_labels=wrong.frame_labels[:5])
    err = VideoDataset([wrong], num_frames=4, size=32)[0]["error"]
    assert err[0] == wrong.path and "5 frame labels" in err[1]
