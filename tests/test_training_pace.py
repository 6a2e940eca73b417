"""The training pace (a new-user trial: `seqvision stream` fed a uniform-sampled classifier every frame, a pace
2-3x faster than it was trained at; demo test clips right 0.46 at their last frame, against 0.93 with `classify`).
Extraction keeps each clip's duration and frame rate in its cache record, training records the rate its clips'
frames were sampled at in the checkpoint, and the stream runs at that rate when not told `--fps`.

The oracle is outside seqvision: each training video's duration and frame rate as ffprobe reads them."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from seqvision.cli import main
from seqvision.config import load_config
from seqvision.data import load_index, make_synthetic_dataset
from seqvision.features import FeatureCache, FeatureDataset
from seqvision.stream import OnlinePredictor
from seqvision.train import Checkpoint, train

FFPROBE = shutil.which("ffprobe")
pytestmark = pytest.mark.skipif(FFPROBE is None, reason="needs ffprobe (the oracle)")

NUM_FRAMES = 4
VIDEO_FPS = 12


def _ffprobe(path: Path) -> tuple[float, float]:
    """(duration s, frame rate Hz) of the video stream, as ffprobe reads them."""
    out = subprocess.run([FFPROBE, "-v", "error", "-select_streams", "v:0", "-show_entries",
                          "stream=duration,r_frame_rate", "-of", "json", str(path)],
                         capture_output=True, text=True, check=True).stdout
    stream = json.loads(out)["streams"][0]
    return float(stream["duration"]), float(Fraction(stream["r_frame_rate"]))


def _frame_times(path: Path) -> list[float]:
    """Every frame's presentation time (s, from the first frame), as ffprobe reads them."""
    out = subprocess.run([FFPROBE, "-v", "error", "-select_streams", "v:0", "-show_entries", "frame=pts_time",
                          "-of", "csv=p=0", str(path)], capture_output=True, text=True, check=True).stdout
    times = sorted(float(x.split(",")[0]) for x in out.split())
    return [t - times[0] for t in times]


def _config(root: Path, out: str, cache: str = "cache"):
    return load_config(overrides=[
        "data.format=synthetic", f"data.root={root / 'synth'}", f"data.num_frames={NUM_FRAMES}", "data.size=32",
        "data.num_workers=0", "encoder.name=resnet18", "encoder.weights=none", f"data.cache_dir={root / cache}",
        "model.task=classify", "model.head=mean", "model.hidden=8", "train.epochs=1", "train.batch_size=8",
        "train.device=cpu", "train.progress=false", f"out={root / out}"])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A real tiny run on clips of 10-40 frames at 12 fps: the paces differ by clip (1.2 to 4.8 Hz)."""
    root = tmp_path_factory.mktemp("pace")
    make_synthetic_dataset(root / "synth", num_videos=16, size=32, min_frames=10, max_frames=40, fps=VIDEO_FPS,
                           progress=False)
    cfg = _config(root, "classify")
    ckpt = Path(train(cfg, progress=False).best_checkpoint)
    return root, cfg, ckpt


def test_cache_records_and_checkpoint_pace_match_ffprobe(run):
    root, cfg, ckpt = run
    train_records = load_index(cfg.data, seed=cfg.seed).split(cfg.data.split)
    probed = {str(r.path): _ffprobe(Path(r.path)) for r in train_records}
    # the cache record of each training clip: its duration and frame rate
    ds = FeatureDataset(cfg, cfg.data.split)
    assert len(ds) == len(train_records)
    for rec, entry in zip(ds.records, ds.entries):
        duration, rate = probed[str(rec.path)]
        assert entry.video_fps == pytest.approx(rate, rel=1e-6)
        assert entry.clip_seconds == pytest.approx(duration, abs=1e-5)
    # the checkpoint's pace: frames sampled / clip duration over the training clips (every clip has >= 4 frames)
    rates = np.array([NUM_FRAMES / duration for duration, _ in probed.values()])
    pace = Checkpoint.load(ckpt).pace
    assert pace is not None and pace["clips"] == pace["of"] == len(train_records)
    assert pace["fps"] == pytest.approx(float(np.median(rates)), rel=1e-5)
    assert pace["min"] == pytest.approx(float(rates.min()), rel=1e-5)
    assert pace["max"] == pytest.approx(float(rates.max()), rel=1e-5)
    assert (pace["q1"], pace["q3"]) == pytest.approx(tuple(np.quantile(rates, [0.25, 0.75])), rel=1e-5)
    assert pace["num_frames"] == NUM_FRAMES and pace["sampler"] == "uniform"
    assert rates.min() < pace["fps"] < rates.max()  # clips of different lengths: a real median
    assert OnlinePredictor.from_checkpoint(ckpt).training_fps == pytest.approx(pace["fps"])


def _stream(capsys, *args) -> tuple[list[dict], dict, str]:
    code = main(["stream", *map(str, args)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    lines = [json.loads(x) for x in captured.out.splitlines() if x.strip()]
    return lines[:-1], lines[-1]["summary"], captured.err


def test_stream_runs_at_the_training_pace(run, capsys):
    root, cfg, ckpt = run
    rate = Checkpoint.load(ckpt).pace["fps"]
    video = max((root / "synth").rglob("*.mp4"), key=lambda p: _ffprobe(p)[0])  # the longest: most kept frames
    times = _frame_times(video)
    frames, summary, err = _stream(capsys, "--checkpoint", ckpt, video)
    assert f"sampling at {rate:.1f} fps, the pace the model was trained at" in err
    assert "--fps to change" in err and "note:" not in err
    # kept: the first frame at or after each time k / rate (a grid 1/rate apart from the first frame)
    expected = sorted({next(t for t in times if t >= k / rate - 1e-6) for k in range(int(times[-1] * rate) + 1)})
    assert [f["time"] for f in frames] == pytest.approx(expected, abs=1e-6)
    assert len(expected) < len(times)  # fewer than every frame: the pace is below the video's 12 fps
    assert summary["decoded"] == len(times) and summary["sampled"] == summary["processed"] == len(expected)
    # an explicit --fps wins: here the video's own rate, every frame
    frames, summary, err = _stream(capsys, "--checkpoint", ckpt, video, "--fps", VIDEO_FPS)
    assert [f["time"] for f in frames] == pytest.approx(times, abs=1e-6)
    assert "sampling at" not in err and "note:" not in err


def test_cache_without_durations_records_no_pace(run, capsys):
    """A cache written before records kept the clips' durations: nothing is recorded, and the stream gives the
    model every frame with the note that says so."""
    root, _, _ = run
    cfg = _config(root, "old_cache", cache="old_cache")
    train(cfg, progress=False)  # fills the cache
    cache = FeatureCache.from_config(cfg)
    for path in cache.entries_dir.glob("*.json"):  # the records as the earlier seqvision wrote them
        meta = json.loads(path.read_text())
        assert meta.pop("clip_seconds") and meta.pop("video_fps")
        path.write_text(json.dumps(meta))
    cfg = dataclasses.replace(cfg, out=str(root / "old_cache_run"))
    ckpt = Path(train(cfg, progress=False).best_checkpoint)
    assert Checkpoint.load(ckpt).pace is None
    video = sorted((root / "synth").rglob("*.mp4"))[0]
    frames, summary, err = _stream(capsys, "--checkpoint", ckpt, video)
    assert "note:" in err and "does not record the pace" in err and "sampling at" not in err
    assert summary["sampled"] == summary["decoded"] == len(_frame_times(video))


def test_classify_window_notes_a_window_off_the_training_pace(run, capsys):
    """`classify --window S` feeds each window's data.num_frames frames (num_frames / S per second): a window far
    from the training pace gets a note naming the window that matches; one at the pace gets none."""
    _, _, ckpt = run
    pace = Checkpoint.load(ckpt).pace
    video = sorted((ckpt.parents[1] / "synth").rglob("*.mp4"))[0]
    assert main(["classify", "--checkpoint", str(ckpt), str(video), "--window", "0.25", "--json"]) == 0
    err = capsys.readouterr().err
    assert "note: --window 0.25 gives the model 4 frames per 0.25 s (16.0 fps)" in err
    assert f"--window {NUM_FRAMES / pace['fps']:.3g} matches its pace" in err
    matching = f"{NUM_FRAMES / pace['fps']:.3f}"
    assert main(["classify", "--checkpoint", str(ckpt), str(video), "--window", matching, "--json"]) == 0
    assert "note:" not in capsys.readouterr().err
