"""Reliability: folders with bad videos, untrusted / corrupt checkpoints, configs and cache files, memory bounds.

Real files throughout (videos encoded with PyAV, checkpoints written by ``save_checkpoint``, cache entries by
``FeatureCache``); the multi-process kill/resume tests are in ``tests/test_resume_kill.py`` and the decoder
fuzzing in ``tests/test_fuzz.py``.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import assets
from seqvision.config import DataConfig, check_paths, config_from_dict, config_to_dict, load_config
from seqvision.data import ErrorReport, VideoDataset, VideoRecord, collate, load_index, worker_context
from seqvision.errors import CacheError, CheckpointError, ConfigError, VideoDecodeError
from seqvision.io import VideoReader, sample_indices

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "synthetic_classify.yaml"


# ---------------------------------------------------------------------------------------------------------------
# A folder of videos with bad files in it


def test_folder_dataset_reports_exactly_the_bad_files(tmp_path):
    root = tmp_path / "videos"
    good, bad = [], []
    for c, cls in enumerate(["jump", "run"]):
        for i, (codec, suffix) in enumerate([("h264", ".mp4"), ("mpeg4", ".avi"), ("vp9", ".webm")]):
            good.append(assets.make_color_video(root / cls / f"good{i}{suffix}", num_frames=12, size=(32, 32),
                                                codec=codec, seed=10 * c + i))
    (root / "jump" / "empty.mp4").write_bytes(b"")
    (root / "jump" / "notes.avi").write_text("not a video\n" * 30)
    assets.make_audio_file(root / "run" / "sound.mp4")
    header_only = good[0].read_bytes()[:200]  # an mp4 cut inside its header: nothing to demux
    (root / "run" / "cut.mkv").write_bytes(header_only)
    (root / "run" / "random.webm").write_bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    bad = [root / "jump" / "empty.mp4", root / "jump" / "notes.avi", root / "run" / "sound.mp4",
           root / "run" / "cut.mkv", root / "run" / "random.webm"]
    (root / "run" / "readme.txt").write_text("not listed: not a video extension")

    index = load_index(DataConfig(format="folder", root=str(root), val_fraction=0.0, test_fraction=0.0))
    assert index.label_names == ["jump", "run"]
    assert sorted(r.path for r in index.records) == sorted(str(p) for p in good + bad)
    ds = VideoDataset(index.records, num_frames=6, size=32, on_error="skip", seed=None)
    loader = DataLoader(ds, batch_size=3, num_workers=2, collate_fn=collate, timeout=120,
                        multiprocessing_context=worker_context(ds, 2))  # as the product's loaders do
    report = ErrorReport()
    decoded = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for epoch in range(2):  # a second epoch reports the same files again, counted once
            ds.set_epoch(epoch)
            for batch in loader:
                report.add(batch)
                if not batch["empty"]:
                    assert batch["video"].shape[1:] == (6, 3, 32, 32)
                    decoded += batch["path"]
    assert sorted(p for p, _ in report.items) == sorted(str(p) for p in bad)
    assert report.count == len(bad) and report.occurrences == 2 * len(bad)
    assert sorted(decoded) == sorted(str(p) for p in good for _ in range(2))  # every good file, each epoch
    reasons = dict(report.items)
    assert "empty" in reasons[str(root / "jump" / "empty.mp4")]
    assert "no video stream" in reasons[str(root / "run" / "sound.mp4")]
    written = json.loads(report.write(tmp_path / "errors.json").read_text())
    assert written["count"] == len(bad) and {i["path"] for i in written["items"]} == {str(p) for p in bad}


def test_decord_native_size_of_a_narrow_video(tmp_path):
    """An undamaged 48-pixel-wide video at its native size: decord's get_batch fails on it (its frames come back
    with 4 channels / padded rows), so the reader must notice and use PyAV, not raise on a good file."""
    pytest.importorskip("decord")
    path = assets.make_index_video(tmp_path / "narrow.mp4", num_frames=12, size=(32, 48))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with VideoReader(path, backend="decord") as vr:
            frames = vr.get_frames([0, 5, 11])
    assert frames.shape == (3, 3, 32, 48)
    assert [assets.read_index_code(f) for f in frames] == [0, 5, 11]


def test_decord_backend_survives_an_avi_header_promising_billions_of_frames(tmp_path):
    """An MPEG-4 AVI whose stream header (strh dwLength) claims ~3.9e9 frames, found by benchmarks/fuzz.py:
    decord.VideoReader sizes its frame tables from that count and dies in std::bad_alloc (SIGABRT, which kills a
    DataLoader worker or the training process). The reader must not hand such a file to decord; run in a
    subprocess so that the abort is observed instead of killing pytest."""
    pytest.importorskip("decord")
    good = assets.make_index_video(tmp_path / "good.avi", num_frames=24, size=(32, 64), codec="mpeg4", gop=8)
    data = bytearray(good.read_bytes())
    strh = data.find(b"strh")
    assert strh > 0
    data[strh + 8 + 32:strh + 8 + 36] = (3_892_314_136).to_bytes(4, "little")  # AVISTREAMHEADER.dwLength
    bad = tmp_path / "billions.avi"
    bad.write_bytes(bytes(data))
    code = textwrap.dedent(f"""
        import warnings
        warnings.simplefilter("ignore")
        from seqvision.io import VideoReader
        from seqvision.errors import VideoDecodeError
        try:
            with VideoReader({str(bad)!r}, backend="decord") as vr:
                print("frames", len(vr), tuple(vr.get_frames([0, 23]).shape), vr.backend)
        except VideoDecodeError as exc:
            print("VideoDecodeError", exc)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, f"the reader process died (rc {proc.returncode}): {proc.stderr[-500:]}"
    assert proc.stdout.startswith(("frames 24 (2, 3, 32, 64)", "VideoDecodeError")), proc.stdout


# ---------------------------------------------------------------------------------------------------------------
# Untrusted and broken checkpoints


class _Evil:
    """Unpickling this runs ``touch <marker>``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _real_checkpoint(path: Path, out: Path) -> Path:
    """A checkpoint as the trainer writes it: a real model, optimizer and scheduler state after one step."""
    from seqvision.models import build_model
    from seqvision.train import capture_rng_state, save_checkpoint

    cfg = config_from_dict({"model": {"hidden": 8}, "train": {"device": "cpu"}, "out": str(out)})
    torch.manual_seed(0)
    model = build_model(cfg.model, input_dim=6, num_classes=3)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    batch = {"label": torch.tensor([0, 2])}
    model.loss(torch.randn(2, 5, 6), torch.tensor([5, 3]), batch).backward()
    opt.step(), sched.step()
    state = {"config": config_to_dict(cfg), "model_state": model.state_dict(), "encoder_state": None, "input_dim": 6,
             "task": "classify", "label_names": ["a", "b", "c"], "frame_label_names": [], "vocab": None,
             "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "scaler": None, "epoch": 1,
             "global_step": 1, "rng": capture_rng_state(), "rng_ranks": None, "world_size": 1,
             "metrics": [{"epoch": 1, "train_loss": 1.0}], "metric": "train_loss", "best_metric": 1.0,
             "best_epoch": 1}
    return save_checkpoint(state, path)


def _evil_checkpoint(path: Path, good: Path, marker: Path) -> Path:
    """A complete, otherwise valid checkpoint with a payload hidden deep inside its optimizer state."""
    state = torch.load(good, weights_only=True)
    state["optimizer"]["param_groups"][0]["hook"] = _Evil(marker)
    torch.save(state, path)
    return path


def test_pickled_payload_is_refused_by_every_entry_point(tmp_path, capsys):
    from seqvision.cli import main
    from seqvision.train import evaluate, load_checkpoint, load_model

    marker = tmp_path / "pwned"
    good = _real_checkpoint(tmp_path / "good.pt", tmp_path / "run")
    assert load_model(good, with_encoder=False).model is not None
    evil = _evil_checkpoint(tmp_path / "evil.pt", good, marker)
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps(_Evil(marker)))  # a bare pickle, not even a zip

    video = assets.make_color_video(tmp_path / "v.mp4", num_frames=8, size=(32, 32))
    for path in (evil, raw):
        for call in (lambda: load_checkpoint(path), lambda: load_model(path, with_encoder=False),
                     lambda: evaluate(path, split="test", progress=False)):
            with pytest.raises(CheckpointError) as info:
                call()
            assert str(path) in str(info.value)
            assert "pickled" in str(info.value) or "not a plain-data" in str(info.value) or "corrupt" in str(info.value)
        for argv in (["eval", "--checkpoint", str(path)], ["classify", "--checkpoint", str(path), str(video)],
                     ["inspect", "--checkpoint", str(path), str(video), "--out", str(tmp_path / "inspect")]):
            assert main(argv) == 2, argv
            err = capsys.readouterr().err
            assert str(path) in err and "error" in err, argv
        assert not marker.exists(), "the payload ran"


def test_resume_from_a_foreign_or_evil_last_pt_is_a_clear_error(tmp_path):
    """``--resume`` with a last.pt that is evil, truncated, or from another model: a CheckpointError naming the
    file, before any training; never a raw RuntimeError / KeyError from load_state_dict."""
    from seqvision.models import build_model
    from seqvision.train import Trainer

    marker = tmp_path / "pwned"
    good = _real_checkpoint(tmp_path / "good.pt", tmp_path / "x")
    data = [{"features": torch.randn(5, 6), "length": 5, "label": i % 3, "captions": [], "path": f"{i}.mp4",
             "id": str(i)} for i in range(8)]
    variants = {
        "evil": lambda p: _evil_checkpoint(p, good, marker),
        "truncated": lambda p: p.write_bytes(good.read_bytes()[: good.stat().st_size // 2]),
        "other_model": lambda p: p.write_bytes(good.read_bytes()),  # hidden 8, the run below has hidden 12
    }
    for name, make in variants.items():
        out = tmp_path / name
        out.mkdir()
        make(out / "last.pt")
        before = (out / "last.pt").read_bytes()
        cfg = config_from_dict({"model": {"hidden": 12}, "out": str(out),
                                "train": {"epochs": 2, "batch_size": 4, "progress": False, "device": "cpu"}})
        model = build_model(cfg.model, input_dim=6, num_classes=3)
        trainer = Trainer(cfg, model=model, train_data=data, label_names=["a", "b", "c"], input_dim=6,
                          collate_fn=collate, progress=False)
        with pytest.raises(CheckpointError) as info:
            trainer.fit(resume=True)
        assert str(out / "last.pt") in str(info.value), name
        assert (out / "last.pt").read_bytes() == before, f"{name}: the checkpoint was overwritten"
    assert not marker.exists()


def test_damaged_checkpoints_load_or_fail_cleanly(tmp_path):
    """Seeded truncations, byte flips and zeroed ranges of a real checkpoint: ``load_model`` either works or
    raises CheckpointError naming the file; no other exception escapes."""
    from seqvision.train import load_model

    good = _real_checkpoint(tmp_path / "good.pt", tmp_path / "run")
    data = good.read_bytes()
    rng = np.random.default_rng(0)
    outcomes = {"ok": 0, "error": 0}
    for i in range(60):
        buf = bytearray(data)
        kind = ("truncate", "flip", "zero")[i % 3]
        if kind == "truncate":
            buf = buf[: int(rng.integers(0, len(buf)))]
        elif kind == "flip":
            for w in rng.integers(0, len(buf), int(rng.integers(1, 9))):
                buf[w] ^= int(rng.integers(1, 256))
        else:
            start, length = int(rng.integers(0, len(buf) - 256)), int(rng.integers(1, 256))
            buf[start:start + length] = bytes(length)
        path = tmp_path / f"damaged_{i:02d}_{kind}.pt"
        path.write_bytes(bytes(buf))
        try:
            load_model(path, with_encoder=False)
            outcomes["ok"] += 1
        except CheckpointError as exc:
            assert str(path) in str(exc), exc
            outcomes["error"] += 1
    assert outcomes["error"] >= 20  # every truncation fails; flips in tensor bytes may load


# ---------------------------------------------------------------------------------------------------------------
# Corrupt and wrong configs


BAD_OVERRIDES = [
    (["model.cel=gru"], "model.cel"),
    (["train.epochs=abc"], "train.epochs"),
    (["train.epochs=0"], "train.epochs"),
    (["data.size=[1, 2]"], "data.size"),
    (["data.sampler=randomm"], "data.sampler"),
    (["train.lr=-1"], "train.lr"),
    (["seed=1.5"], "seed"),
    (["train.device=tpu"], "train.device"),
    (["data.on_error=ignore"], "data.on_error"),
    (["model.hidden_sizes=[4, -1]"], "model.hidden_sizes"),
    (["model.cell.x=1"], "model.cell.x"),
    (["encoder=3"], "encoder"),
    (["train.epochs"], "train.epochs"),
    (["data.format=ucf101", "data.root="], "data.root"),
    (["data.format=folder", "data.root=/does/not/exist/videos"], "data.root"),
    (["data.format=ucf101", "data.root=.", "data.annotations=/does/not/exist/splits"], "data.annotations"),
]


@pytest.mark.parametrize("overrides,key", BAD_OVERRIDES, ids=[k for _, k in BAD_OVERRIDES])
def test_bad_config_is_a_config_error_before_any_work(tmp_path, capsys, overrides, key):
    from seqvision.cli import main

    out = tmp_path / "run"
    sets = [f"out={out}"] + overrides
    with pytest.raises(ConfigError) as info:
        check_paths(load_config(CONFIG, overrides=sets))
    assert info.value.key == key
    for command in ("train", "extract"):
        argv = [command, "--config", str(CONFIG)] + [a for s in sets for a in ("--set", s)]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert f"'{key}'" in err and "error" in err
        assert not out.exists(), f"{command} created the run directory before failing"


def test_every_config_key_rejects_a_wrong_type():
    """Each leaf key of every section, set to a mapping: a ConfigError naming exactly that key."""
    import dataclasses

    from seqvision.config import Config

    keys = []
    for f in dataclasses.fields(Config):
        if dataclasses.is_dataclass(f.default_factory if f.default_factory is not dataclasses.MISSING else None):
            keys += [f"{f.name}.{g.name}" for g in dataclasses.fields(f.default_factory)]
        else:
            keys.append(f.name)
    assert len(keys) > 60
    for key in keys:
        with pytest.raises(ConfigError) as info:
            load_config(overrides=[f"{key}={{wrong: 1}}"])
        assert info.value.key == key, (key, str(info.value))


def test_garbage_config_files_name_the_file(tmp_path):
    rng = np.random.default_rng(0)
    files = {
        "binary.yaml": rng.integers(0, 256, 400, dtype=np.uint8).tobytes(),
        "tabs.yaml": b"data:\n\tformat: folder\n",
        "unclosed.yaml": b"data: {format: folder, root: [\n",
        "list.yaml": b"- data\n- model\n",
        "scalar.yaml": b"just a string\n",
        "section_is_list.yaml": b"data: [1, 2, 3]\n",
        "wrong_types.yaml": b"train:\n  epochs: many\n",
        "anchors.yaml": b"a: &x [*x]\n",
        "latin1.yaml": "data:\n  root: caf\xe9\n".encode("latin-1"),
    }
    for i in range(12):  # random printable garbage
        files[f"noise{i}.yaml"] = bytes(rng.choice(list(b"{}[]:-&*!|>'\"%@` \n\tabc123"), 120).tolist())
    for name, payload in files.items():
        path = tmp_path / name
        path.write_bytes(payload)
        try:
            load_config(path)
        except ConfigError as exc:
            assert exc.source == str(path) and str(path) in str(exc), (name, str(exc))
        else:
            assert name.startswith("noise"), f"{name} loaded"  # random noise may happen to be valid YAML


def test_corrupt_config_file_via_cli_subprocess(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: {format: folder\nmodel: [\n")
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "seqvision", "train", "--config", str(bad), "--set", f"out={out}"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 2, proc.stderr
    assert str(bad) in proc.stderr and "not valid YAML" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()


# ---------------------------------------------------------------------------------------------------------------
# Corrupt feature-cache entries and records


@pytest.fixture()
def cache_with_entries(tmp_path):
    from seqvision.features import FeatureCache

    videos = [assets.make_color_video(tmp_path / f"v{i}.mp4", num_frames=6, size=(32, 32), seed=i) for i in range(3)]
    records = [VideoRecord(id=f"v{i}", path=str(p), split="train", label=i % 2) for i, p in enumerate(videos)]
    cache = FeatureCache(tmp_path / "cache", {"version": 1, "encoder": "test", "size": 32})
    cache.prepare()
    rng = np.random.default_rng(0)
    for rec in records:
        cache.write(rec, rng.standard_normal((6, 16)).astype(np.float16), length=6, indices=list(range(6)))
    return cache, records


def _dataset(cache, records):
    from seqvision.features import FeatureCache, FeatureDataset

    fresh = FeatureCache(cache.root, cache.settings)  # a new process: nothing verified yet
    return FeatureDataset(fresh, records, label_names=["a", "b"])


def test_corrupt_cache_arrays_are_cache_errors(cache_with_entries, tmp_path):
    cache, records = cache_with_entries
    ds = _dataset(cache, records)
    assert [tuple(ds[i]["features"].shape) for i in range(3)] == [(6, 16)] * 3
    marker = tmp_path / "pwned"
    key = cache.key(records[0])
    npy = cache.array_path(key)
    good_bytes = npy.read_bytes()

    evil = np.empty(1, dtype=object)
    evil[0] = _Evil(marker)
    payloads = {
        "pickled_object_array": None,
        "garbage_header_same_size": b"\x00" * 16 + good_bytes[16:],
        "float32_same_size": None,
    }
    for name in payloads:
        if name == "pickled_object_array":
            np.save(npy, evil, allow_pickle=True)
            rec = json.loads(cache.record_path(key).read_text())
            rec["nbytes"] = npy.stat().st_size  # a consistent-looking record: only the array is hostile
            cache.record_path(key).write_text(json.dumps(rec))
        elif name == "float32_same_size":
            arr = np.zeros((6, 8), dtype=np.float32)  # same byte count, other shape and dtype
            np.save(npy, arr)
            rec = json.loads(cache.record_path(key).read_text())
            rec["nbytes"] = npy.stat().st_size
            cache.record_path(key).write_text(json.dumps(rec))
        else:
            npy.write_bytes(payloads[name])
        with pytest.raises(CacheError) as info:
            _dataset(cache, records)[0]
        assert npy.name in str(info.value) and records[0].path in str(info.value), (name, str(info.value))
    assert not marker.exists()


@pytest.mark.parametrize("field,value", [("shape", [6]), ("shape", "abc"), ("shape", None), ("length", "x"),
                                         ("nbytes", None), ("dtype", 7), ("key", None)])
def test_cache_records_with_wrong_types_are_cache_errors(cache_with_entries, field, value):
    """A record (the entry's JSON index) with a field of the wrong type: reading the split raises CacheError
    naming the video, the entry or the cache folder (as a missing or corrupt entry), never a raw IndexError /
    TypeError."""
    cache, records = cache_with_entries
    key = cache.key(records[1])
    rec = json.loads(cache.record_path(key).read_text())
    rec[field] = value
    cache.record_path(key).write_text(json.dumps(rec))
    with pytest.raises(CacheError) as info:
        ds = _dataset(cache, records)
        for i in range(len(ds)):
            ds[i]
    msg = str(info.value)
    assert records[1].path in msg or key in msg or str(cache.dir) in msg, msg


def test_evil_encoder_weights_in_the_cache_are_refused(tmp_path):
    from seqvision.train._data import load_encoder_state

    marker = tmp_path / "pwned"
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    torch.save({"conv.weight": torch.zeros(1), "x": _Evil(marker)}, cache_dir / "encoder.pt")
    cfg = config_from_dict({"data": {"cache_dir": str(cache_dir)}, "encoder": {"weights": "none"}})
    with pytest.raises(CacheError, match="encoder.pt"):
        load_encoder_state(cfg)
    pth = tmp_path / "weights.pth"
    torch.save({"conv.weight": torch.zeros(1), "x": _Evil(marker)}, pth)
    from seqvision.features import build_encoder

    with pytest.raises(ConfigError) as info:
        build_encoder(config_from_dict({"encoder": {"weights": str(pth)}}).encoder)
    assert info.value.key == "encoder.weights" and str(pth) in str(info.value)
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------------------------
# Resource limits


def _rss_probe(code: str, tmp_path: Path) -> dict:
    """Run ``code`` in a fresh interpreter; it sets ``result`` (a dict). Returns it with ``base_kb`` (RSS after
    the imports) and ``peak_kb`` (peak RSS while ``code`` ran).

    Importing torch briefly peaks well above the RSS it settles at, which would hide the growth we measure, so
    the kernel's high-water mark is reset after the imports (``/proc/self/clear_refs``) and the peak read back
    from ``VmHWM``; where that is not available, ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` is used.
    """
    script = tmp_path / "probe.py"
    script.write_text(textwrap.dedent("""
        import json, re, resource, sys, warnings
        import torch
        from seqvision.io import VideoReader, sample_indices
        from seqvision.errors import VideoDecodeError
        warnings.simplefilter("ignore")

        def status(key):
            try:
                with open("/proc/self/status") as f:
                    return int(re.search(key + r":\\s+(\\d+)", f.read()).group(1))
            except (OSError, AttributeError):
                return None

        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset the peak-RSS high-water mark
            base = status("VmRSS")
        except OSError:
            base = None
        if base is None or status("VmHWM") is None:
            base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        result = {}
    """) + textwrap.dedent(code) + textwrap.dedent("""
        result["base_kb"] = base
        result["peak_kb"] = status("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps(result))
    """))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _encode_long_video(path: Path, num_frames: int, size: int, *, unique: int = 300) -> Path:
    """An H.264 mp4 of ``num_frames`` frames at ``size`` x ``size``: ``unique`` frames are encoded (one GOP) and
    their packets muxed again with shifted timestamps until ``num_frames`` (quick even for thousands of frames)."""
    import av

    part = path.with_name(path.stem + "_part.mp4")
    with av.open(str(part), "w") as container:
        stream = container.add_stream("libx264", rate=25, options={"preset": "ultrafast", "g": str(unique), "bf": "0"})
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        yy, xx = np.mgrid[0:size, 0:size]
        for i in range(unique):
            img = np.zeros((size, size, 3), dtype=np.uint8)
            img[..., 0] = (xx * 4 + i) % 256
            img[..., 1] = (yy * 4 + 2 * i) % 256
            img[..., 2] = i % 256
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with av.open(str(part)) as src, av.open(str(path), "w") as dst:
        istream = src.streams.video[0]
        ostream = dst.add_stream_from_template(istream)
        packets = [p for p in src.demux(istream) if p.size]
        step = packets[1].pts - packets[0].pts
        for rep in range(num_frames // unique):
            for p in packets:
                copy = av.Packet(bytes(p))
                copy.pts, copy.dts = p.pts + rep * unique * step, p.dts + rep * unique * step
                copy.is_keyframe, copy.time_base, copy.stream = p.is_keyframe, p.time_base, ostream
                dst.mux(copy)
    part.unlink()
    return path


LONG_FRAMES, LONG_SIZE = 3000, 128  # 3000 x 128 x 128 x 3 = 147 MB of decoded frames


def test_long_video_all_frames_streams_or_refuses(tmp_path):
    path = _encode_long_video(tmp_path / "long.mp4", LONG_FRAMES, LONG_SIZE)
    total_bytes = LONG_FRAMES * LONG_SIZE * LONG_SIZE * 3
    everything = sample_indices(LONG_FRAMES, sampler="all", max_frames=LONG_FRAMES)
    assert everything.indices == list(range(LONG_FRAMES))
    cap = 16 * 2**20  # a 16 MiB cap, far below the 147 MB all frames need
    with VideoReader(path, max_bytes=cap) as vr:
        assert len(vr) == LONG_FRAMES
        with pytest.raises(VideoDecodeError) as info:
            vr.get_frames(everything.indices)
        msg = str(info.value)
        assert str(path) in msg and "max_bytes" in msg and "iter_frames" in msg
        assert vr.stats["frames_decoded"] == 0  # refused before decoding anything

    chunk = 32
    # Stated bound for streaming: a fixed 48 MB (decoder, allocator arenas, torch's first ops) plus 10 chunks of
    # output (10 x 1.5 MB) -- about 64 MB, well under the 147 MB that all frames at once take (~300 MB peak).
    bound_mb = 48 + 10 * chunk * LONG_SIZE * LONG_SIZE * 3 / 2**20
    assert bound_mb < total_bytes / 2**20 / 2
    probe = _rss_probe(f"""
        seen, first, last = 0, None, None
        with VideoReader({str(path)!r}, max_bytes={cap}) as vr:
            for batch in vr.iter_frames(chunk_size={chunk}):
                assert batch.data.shape[1:] == (3, {LONG_SIZE}, {LONG_SIZE}) and batch.data.shape[0] <= {chunk}
                first = batch.indices[0] if first is None else first
                last = batch.indices[-1]
                seen += batch.data.shape[0]
            result.update(seen=seen, first=first, last=last, stats=vr.stats)
    """, tmp_path)
    assert probe["seen"] == LONG_FRAMES and (probe["first"], probe["last"]) == (0, LONG_FRAMES - 1)
    assert probe["stats"]["frames_decoded"] <= LONG_FRAMES + 16  # decoded once, not once per chunk
    growth_mb = (probe["peak_kb"] - probe["base_kb"]) / 1024
    assert growth_mb < bound_mb, f"streaming {LONG_FRAMES} frames grew RSS by {growth_mb:.1f} MB (bound {bound_mb:.0f})"


def test_1080p_resized_on_decode_stays_within_memory_bound(tmp_path):
    path = assets.make_color_video(tmp_path / "big.mp4", num_frames=8, size=(1080, 1920))
    frames, out = 8, 112
    # Stated bound: the output (8 x 112 x 112 x 3 = 0.3 MB) plus a fixed 100 MB allowance for the H.264 decoder
    # with 2 threads (reference frames and frames in flight at 1920x1080, ~3 MB per YUV frame) and the scaler.
    # Measured ~45 MB; the same 8 frames at their native size peak at ~145 MB (50 MB of RGB output alone).
    # Decoder threads are fixed at 2 so that the bound does not depend on the machine's core count.
    bound_mb = frames * out * out * 3 / 2**20 + 100
    probe = _rss_probe(f"""
        with VideoReader({str(path)!r}, size={out}, num_threads=2) as vr:
            clip = vr.get_frames(sample_indices(len(vr), num_frames={frames}).indices)
            result.update(shape=list(clip.shape), width=vr.width, height=vr.height)
    """, tmp_path)
    assert probe["shape"] == [frames, 3, out, out] and (probe["width"], probe["height"]) == (1920, 1080)
    growth_mb = (probe["peak_kb"] - probe["base_kb"]) / 1024
    assert growth_mb < bound_mb, f"1080p -> 112 decode grew RSS by {growth_mb:.1f} MB (bound {bound_mb:.0f} MB)"
