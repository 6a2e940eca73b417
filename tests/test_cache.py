"""Feature cache and extraction: real synthetic videos (H.264 via PyAV), real CNNs, real files on disk."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from assets import make_color_video
from seqvision.config import config_from_dict
from seqvision.data import VideoDataset, collate, load_index, make_synthetic_dataset
from seqvision.errors import CacheError
from seqvision.features import FeatureCache, FeatureDataset, FrameEncoder, cache_settings, extract_features
from seqvision.features._extract import _make_encoder, device_resize, feature_cache

ENCODER = "mobilenet_v3_small"  # small and fast at 32 px


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """8 synthetic videos plus one bad file (text named .mp4) listed in the manifest."""
    root = tmp_path_factory.mktemp("cache_data")
    manifest = make_synthetic_dataset(root, num_videos=8, seed=1, size=32, min_frames=10, max_frames=14,
                                      progress=False)
    lines = manifest.read_text().splitlines()
    bad = json.loads(lines[0])
    (root / "videos" / "bad.mp4").write_text("not a video\n" * 50)
    bad.update(id="bad_video", path="videos/bad.mp4", split="train")
    manifest.write_text("\n".join(lines + [json.dumps(bad)]) + "\n")
    return root


def _cfg(root: Path, tmp: Path, **data):
    d = {"format": "manifest", "root": str(root), "num_frames": 6, "size": 32, "num_workers": 0,
         "cache_dir": str(tmp / "cache")}
    d.update(data)
    return config_from_dict({"data": d, "encoder": {"name": ENCODER, "chunk_size": 16},
                             "train": {"device": "cpu"}, "out": str(tmp / "run"), "seed": 0})


def _good(cfg):
    return [r for r in load_index(cfg.data).records if r.id != "bad_video"]


def _bare_features(encoder_pt: Path, frames: torch.Tensor, mean, std) -> torch.Tensor:
    """torchvision's own mobilenet_v3_small with the extraction's weights: ``features`` then global average."""
    model = torchvision.models.get_model(ENCODER, weights=None).eval()
    state = torch.load(encoder_pt, map_location="cpu", weights_only=True)
    model.features.load_state_dict({k.removeprefix("trunk."): v for k, v in state.items()}, strict=True)
    x = (frames.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        return model.features(x).mean(dim=(2, 3))  # (T, D)


def test_extract_then_feature_dataset(dataset, tmp_path):
    cfg = _cfg(dataset, tmp_path, num_workers=1)  # decode in a DataLoader worker, like real runs
    summary = extract_features(cfg, progress=False)
    good = _good(cfg)
    assert (summary.done, summary.skipped, summary.failed) == (len(good), 0, 1)
    assert summary.errors.count == 1 and "bad.mp4" in next(iter(summary.errors.items))[0]
    assert summary.frames == 6 * len(good) and summary.frames_per_s > 0 and summary.dim == 576
    assert "1 failed" in str(summary)

    ds = FeatureDataset(cfg, "train")
    assert ds.dim == 576 and ds.label_names and ds.frame_label_names == ["still", "moving"]
    assert [p for p, _ in ds.skipped] == [str(dataset / "videos" / "bad.mp4")]
    sample = ds[0]
    assert sample["features"].dtype == torch.float32 and sample["features"].shape == (6, 576)
    rec = next(r for r in good if r.id == sample["id"])
    assert sample["label"] == rec.label and sample["captions"] == rec.captions

    # The cached features are the encoder on the decoded clip (the seeded random init, saved as encoder.pt).
    video_ds = VideoDataset.from_config(cfg.data, [rec], train=False)
    clip = video_ds[0]
    assert torch.equal(sample["frame_labels"], clip["frame_labels"]) and sample["length"] == clip["length"]
    enc = FrameEncoder(ENCODER, weights=str(Path(ds.cache.encoder_path)))
    expected = enc(clip["video"][None])[0]  # (T, D)
    torch.testing.assert_close(sample["features"], expected, rtol=2e-3, atol=2e-3 * float(expected.abs().max()))
    # ... and the bare torchvision model with the same weights on the same frames (the outside oracle).
    bare = _bare_features(Path(ds.cache.encoder_path), clip["video"], enc.mean, enc.std)
    torch.testing.assert_close(sample["features"], bare, rtol=2e-3, atol=2e-3 * float(bare.abs().max()))
    assert (tmp_path / "cache" / "encoder.pt").is_file()  # where seqvision.train looks for it

    batch = collate([ds[i] for i in range(len(ds))])
    assert batch["features"].shape == (len(ds), 6, 576) and batch["mask"].all()

    # Re-running skips everything and rewrites nothing.
    npys = sorted(ds.cache.entries_dir.glob("*.npy"))
    mtimes = [p.stat().st_mtime_ns for p in npys]
    again = extract_features(cfg, progress=False)
    assert (again.done, again.skipped) == (0, len(good))
    assert again.failed == 1  # the bad file is retried and fails again, never silently "cached"
    assert [p.stat().st_mtime_ns for p in npys] == mtimes


def _ffprobe_duration(path: Path) -> float:
    """The video stream's duration (s) as ffprobe reads it (the outside oracle)."""
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=duration",
                          "-of", "csv=p=0", str(path)], capture_output=True, text=True, check=True).stdout
    return float(out.split()[0].rstrip(","))


@pytest.mark.skipif(shutil.which("ffprobe") is None, reason="needs ffprobe (the oracle)")
def test_records_keep_the_clips_duration_and_frame_rate(dataset, tmp_path):
    """Each record keeps its source clip's duration and frame rate (the training pace comes from them), read in
    the decode workers from the reader that decodes the clip: the whole video, or a record's start..end."""
    rows = [json.loads(x) for x in (dataset / "manifest.jsonl").read_text().splitlines()][:3]
    rows[1].update(id="windowed", start=0.25, end=0.75)
    (tmp_path / "clips.jsonl").write_text("".join(json.dumps({**r, "path": str(dataset / r["path"])}) + "\n"
                                                  for r in rows))
    cfg = _cfg(dataset, tmp_path, num_workers=1, annotations=str(tmp_path / "clips.jsonl"))
    extract_features(cfg, progress=False)
    cache = FeatureCache.from_config(cfg)
    records = load_index(cfg.data).records
    assert len(records) == 3
    for rec in records:
        entry = cache.entry(rec)
        assert entry.video_fps == pytest.approx(12.0)
        if rec.id == "windowed":  # the frames that start..end covers: 0.5 s, to a frame at either end
            assert abs(entry.clip_seconds - 0.5) <= 1 / 12 + 1e-9
        else:
            assert entry.clip_seconds == pytest.approx(_ffprobe_duration(Path(rec.path)), abs=1e-5)
        assert entry.sampled_rate == pytest.approx(entry.length / entry.clip_seconds)


def _key(cfg):
    return FeatureCache.from_config(cfg).fingerprint


def test_cache_key_changes_when_it_must(dataset, tmp_path):
    base = _cfg(dataset, tmp_path)
    k0 = _key(base)
    changes = {
        "data.num_frames": {"num_frames": 8}, "data.sampler": {"sampler": "dense"}, "data.stride": {"stride": 2},
        "data.max_frames": {"max_frames": 4}, "data.short_policy": {"short_policy": "truncate"},
        "data.size": {"size": 48}, "data.resize": {"resize": "short_side"}, "data.crop": {"crop": 24},
        "data.backend": {"backend": "decord"},
    }
    keys = {k0}
    for what, change in changes.items():
        cfg = dataclasses.replace(base, data=dataclasses.replace(base.data, **change))
        assert _key(cfg) not in keys, what
        keys.add(_key(cfg))
    fps_cfg = dataclasses.replace(base, data=dataclasses.replace(base.data, sampler="fps", fps=2.0))
    fps_cfg2 = dataclasses.replace(base, data=dataclasses.replace(base.data, sampler="fps", fps=4.0))
    assert len({_key(fps_cfg), _key(fps_cfg2)} | keys) == len(keys) + 2
    for change in ({"name": "resnet18"}, {"pooling": "max"}, {"pooling": "grid", "grid": 2}):
        cfg = dataclasses.replace(base, encoder=dataclasses.replace(base.encoder, **change))
        assert _key(cfg) not in keys, change
        keys.add(_key(cfg))
    grid3 = dataclasses.replace(base, encoder=dataclasses.replace(base.encoder, pooling="grid", grid=3))
    assert _key(grid3) not in keys
    assert _key(dataclasses.replace(base, seed=1)) != k0  # random init is drawn from the seed
    assert FeatureCache.from_config(base, precision="bf16").fingerprint != k0
    assert FeatureCache.from_config(base, dtype="float32").fingerprint != k0

    # A local weights file is identified by path, size and mtime.
    wfile = tmp_path / "w.pth"
    torch.save({"a": torch.zeros(1)}, wfile)
    wcfg = dataclasses.replace(base, encoder=dataclasses.replace(base.encoder, weights=str(wfile)))
    kw = _key(wcfg)
    assert kw != k0 and cache_settings(wcfg)["weights"]["size"] == wfile.stat().st_size
    os.utime(wfile, ns=(wfile.stat().st_atime_ns, wfile.stat().st_mtime_ns + 10**9))
    assert _key(wcfg) != kw

    # Settings that do not change the features hit the same cache.
    same = [dataclasses.replace(base, train=dataclasses.replace(base.train, epochs=99, lr=0.5)),
            dataclasses.replace(base, model=dataclasses.replace(base.model, hidden=7, cell="gru")),
            dataclasses.replace(base, data=dataclasses.replace(base.data, num_workers=3, train_sampler="random_segment",
                                                               flip=True, split="val")),
            dataclasses.replace(base, encoder=dataclasses.replace(base.encoder, chunk_size=3, trainable=True)),
            dataclasses.replace(base, out=str(tmp_path / "elsewhere"))]
    assert all(_key(c) == k0 for c in same)
    # Pretrained weights do not depend on the seed.
    lite = dataclasses.replace(base, encoder=dataclasses.replace(base.encoder, name="efficientnet_lite0",
                                                                 weights="DEFAULT"))
    assert _key(lite) == _key(dataclasses.replace(lite, seed=5))


def test_entry_key_follows_the_video_file(dataset, tmp_path):
    cfg = _cfg(dataset, tmp_path)
    cache = FeatureCache.from_config(cfg)
    rec = _good(cfg)[0]
    copy = tmp_path / "copy.mp4"
    shutil.copy(rec.path, copy)
    k = cache.key(rec)
    assert cache.key(dataclasses.replace(rec, path=str(copy))) != k  # another file
    assert cache.key(dataclasses.replace(rec, start=0.5)) != k  # another segment
    assert cache.key(rec) == k
    extract_features(cfg, progress=False)
    assert cache.is_done(rec)
    st = Path(rec.path).stat()
    try:  # the video changed on disk (mtime): its features are stale and must not be reused
        os.utime(rec.path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        assert cache.key(rec) != k and not cache.is_done(rec)
        with pytest.raises(CacheError, match="seqvision extract"):
            FeatureDataset(cfg, rec.split)
    finally:
        os.utime(rec.path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_killed_extraction_resumes(dataset, tmp_path, monkeypatch):
    cfg = _cfg(dataset, tmp_path)
    good = _good(cfg)
    real_forward = FrameEncoder.forward
    calls = {"n": 0}

    def dies_on_second_batch(self, video):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("simulated kill")
        return real_forward(self, video)

    monkeypatch.setattr(FrameEncoder, "forward", dies_on_second_batch)
    with pytest.raises(KeyboardInterrupt):
        extract_features(cfg, progress=False, batch_size=2)
    monkeypatch.setattr(FrameEncoder, "forward", real_forward)

    cache = FeatureCache.from_config(cfg)
    done = [r for r in good if cache.is_done(r)]
    assert 1 <= len(done) <= 2
    assert not list(cache.entries_dir.glob("*.tmp"))  # nothing half-written
    with pytest.raises(CacheError, match="no cached features"):
        FeatureDataset(cfg, "train")

    summary = extract_features(cfg, progress=False, batch_size=2)
    assert summary.skipped == len(done) and summary.done == len(good) - len(done)
    assert all(cache.is_done(r) for r in good)
    for split in {r.split for r in good}:
        ds = FeatureDataset(cfg, split)
        for i in range(len(ds)):
            assert torch.isfinite(ds[i]["features"]).all()


def test_corrupt_entries_are_detected(dataset, tmp_path):
    cfg = _cfg(dataset, tmp_path)
    extract_features(cfg, progress=False)
    ds = FeatureDataset(cfg, "train")
    entry = ds.entries[0]
    npy = ds.cache.array_path(entry.key)

    data = bytearray(npy.read_bytes())
    data[-4:] = bytes(b ^ 0xFF for b in data[-4:])  # same size, different numbers
    npy.write_bytes(bytes(data))
    with pytest.raises(CacheError, match=f"{npy.name}.*checksum.*re-run"):
        FeatureDataset(cfg, "train")[0]

    npy.write_bytes(bytes(data[:-100]))  # truncated
    with pytest.raises(CacheError, match=f"{npy.name}.*size"):
        FeatureDataset(cfg, "train")[0]
    assert not ds.cache.is_done(ds.records[0])

    summary = extract_features(cfg, progress=False)  # extraction repairs it
    assert summary.done == 1
    fixed = FeatureDataset(cfg, "train")
    assert torch.isfinite(fixed[0]["features"]).all()

    ds.cache.record_path(entry.key).write_text("{not json")  # a broken record reads as missing
    with pytest.raises(CacheError, match=Path(ds.records[0].path).name):
        FeatureDataset(cfg, "train")


def test_sharded_extraction_shares_one_cache(dataset, tmp_path):
    cfg = _cfg(dataset, tmp_path)
    good = _good(cfg)
    s0 = extract_features(cfg, progress=False, rank=0, world_size=2)
    s1 = extract_features(cfg, progress=False, rank=1, world_size=2)
    assert s0.done + s1.done == len(good) and s0.failed + s1.failed == 1
    assert abs((s0.done + s0.failed) - (s1.done + s1.failed)) <= 1
    cache = FeatureCache.from_config(cfg)
    assert all(cache.is_done(r) for r in good)
    assert len(list(cache.entries_dir.glob("*.npy"))) == len(good)
    with pytest.raises(ValueError, match="rank"):
        extract_features(cfg, progress=False, rank=2, world_size=2)


def test_grid_features_and_float32_cache(dataset, tmp_path):
    cfg = _cfg(dataset, tmp_path)
    cfg = dataclasses.replace(cfg, encoder=dataclasses.replace(cfg.encoder, pooling="grid", grid=2))
    summary = extract_features(cfg, splits=["train"], progress=False, dtype="float32")
    assert summary.dim == 576 * 4
    cache = FeatureCache.from_config(cfg, dtype="float32")
    arr = np.load(next(cache.entries_dir.glob("*.npy")), mmap_mode="r")
    assert arr.dtype == np.float32 and arr.shape == (6, 576 * 4)


@pytest.fixture(scope="module")
def mixed_sizes(tmp_path_factory) -> Path:
    """Videos of different sizes and aspect ratios and lengths, in one manifest."""
    root = tmp_path_factory.mktemp("mixed")
    rows = []
    for i, (size, frames) in enumerate([((48, 64), 9), ((48, 64), 14), ((64, 48), 12), ((40, 40), 5), ((48, 64), 7)]):
        make_color_video(root / f"v{i}.mp4", size=size, num_frames=frames, seed=i)
        rows.append({"id": f"v{i}", "path": f"v{i}.mp4", "split": "train", "label": "a" if i % 2 else "b"})
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def _native_clip(rec, cfg) -> tuple[torch.Tensor, dict]:
    """The clip extraction decodes for ``rec`` at the video's native size, and the decoder-resized sample."""
    native = VideoDataset.from_config(dataclasses.replace(cfg.data, size=0), [rec], train=False)
    native.size, native.transform = None, None
    return native[0]["video"], VideoDataset.from_config(cfg.data, [rec], train=False)[0]


@pytest.mark.parametrize("resize, crop", [("square", 0), ("short_side", 0), ("short_side", 24)])
def test_resize_on_device_path_on_cpu(mixed_sizes, tmp_path, resize, crop):
    """encoder.resize_on=device forced on CPU: native frames out of the workers, resized where the CNN runs;
    clips of different sizes and lengths (truncate: no padding) in the same chunk."""
    dec = _cfg(mixed_sizes, tmp_path, num_frames=10, short_policy="truncate", resize=resize, crop=crop,
               num_workers=1)
    devc = dataclasses.replace(dec, encoder=dataclasses.replace(dec.encoder, resize_on="device"))
    s_dec = extract_features(dec, progress=False, device="cpu")
    s_dev = extract_features(devc, progress=False, device="cpu")
    assert (s_dec.resize_on, s_dev.resize_on) == ("decoder", "device")
    assert s_dev.done == s_dec.done == 5 and s_dev.failed == 0
    assert s_dev.frames == s_dec.frames == 9 + 10 + 10 + 5 + 7  # truncated clips: their own frames, no padding
    assert s_dev.cache_dir != s_dec.cache_dir  # other resampling, other cache key
    ds_dec, ds_dev = FeatureDataset(dec, "train"), FeatureDataset(devc, "train")
    enc = FrameEncoder(ENCODER, weights=str(Path(ds_dev.cache.encoder_path)))
    for i in range(len(ds_dev)):
        a, b = ds_dev[i], ds_dec[i]
        assert a["id"] == b["id"] and a["features"].shape == b["features"].shape == (a["length"], 576)
        rec = ds_dev.records[i]
        native, sample = _native_clip(rec, dec)
        # Exactly the CNN on the device-resized frames (float16 storage) ...
        expected = enc(device_resize(native, size=32, resize=resize, crop=crop))  # (T, D)
        torch.testing.assert_close(a["features"], expected, rtol=2e-3, atol=2e-3 * float(expected.abs().max()))
        # ... exactly the CNN on the decoder's frames on the decoder path ...
        expected = enc(sample["video"])
        torch.testing.assert_close(b["features"], expected, rtol=2e-3, atol=2e-3 * float(expected.abs().max()))
        # ... and the two paths see the same picture up to resampling differences.
        cos = torch.nn.functional.cosine_similarity(a["features"], b["features"], dim=-1)
        assert cos.min() > 0.95, (rec.id, cos)


def test_encoder_compile_compiles_in_place(dataset, tmp_path):
    """encoder.compile: the trunk is compiled in place (lazily, on the first forward), so the saved encoder keeps
    its keys. Not run here: inductor takes ~8 minutes for mobilenet_v3_small on the shared 2-core CPU (measured
    once by hand: features equal to 3e-7)."""
    cfg = _cfg(dataset, tmp_path)
    cfg = dataclasses.replace(cfg, encoder=dataclasses.replace(cfg.encoder, compile=True))
    cpu = torch.device("cpu")
    enc = _make_encoder(cfg, feature_cache(cfg, cpu), cpu, chunk_size=16)
    assert enc.trunk._compiled_call_impl is not None
    assert set(enc.state_dict()) == set(FrameEncoder(ENCODER).state_dict())
    assert enc.chunk_size == 16
