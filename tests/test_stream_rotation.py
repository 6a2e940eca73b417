"""Rotated phone videos in the online paths (#15): `seqvision stream` and `classify --window` apply the display
matrix as `seqvision classify` (VideoReader) and the FFmpeg CLI do. The rotated files are written by the ffmpeg
CLI (`-c copy -metadata:s:v:0 rotate=N`: the display matrix side data an MP4 from a phone carries); oracles: the
CLI's own autorotated decode (pixels) and the offline path through VideoReader (model outputs)."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from seqvision.io import VideoReader, sample_indices
from seqvision.stream import FrameSource, OnlinePredictor, run_stream
from seqvision.stream._online import FramePreparer
from seqvision.stream._window import collect_windows
from seqvision.train import load_model
from stream_checkpoints import offline_features, tiny_checkpoints

FFMPEG = shutil.which("ffmpeg")
pytestmark = pytest.mark.skipif(FFMPEG is None, reason="needs the ffmpeg CLI to write rotated files")


def _ffmpeg(*args: str) -> None:
    subprocess.run([FFMPEG, "-loglevel", "error", "-y", *args], check=True, timeout=60)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """A 48x32 (W x H) H.264 clip with asymmetric content, and stream copies carrying rotations 90/180/270."""
    root = tmp_path_factory.mktemp("rotation")
    plain = root / "plain.mp4"
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=48x32:rate=12:duration=1", "-c:v", "libx264", "-pix_fmt", "yuv420p",
            "-g", "6", str(plain))
    out = {0: plain}
    for angle in (90, 180, 270):
        out[angle] = root / f"rot{angle}.mp4"
        _ffmpeg("-i", str(plain), "-c", "copy", "-metadata:s:v:0", f"rotate={angle}", str(out[angle]))
    return out


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    return tiny_checkpoints(tmp_path_factory.mktemp("rotation_ckpts"))


def ffmpeg_frames(path: Path) -> np.ndarray:
    """The FFmpeg CLI's own decode, autorotated: ``(T, H, W, 3)`` uint8."""
    probe = subprocess.run([FFMPEG, "-loglevel", "error", "-i", str(path), "-frames:v", "1", "-f", "image2pipe",
                            "-pix_fmt", "rgb24", "-vcodec", "ppm", "-"], capture_output=True, check=True).stdout
    w, h = (int(v) for v in probe.split(b"\n")[1].split())
    raw = subprocess.run([FFMPEG, "-loglevel", "error", "-i", str(path), "-fps_mode", "passthrough", "-pix_fmt",
                          "rgb24", "-f", "rawvideo", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3)


@pytest.mark.parametrize("angle", [90, 180, 270])
def test_stream_frames_equal_the_ffmpeg_cli_autorotated_decode(videos, ckpts, angle):
    """At the native size (short side 32 = no scaling) the frames FrameSource + FramePreparer give are the CLI's
    autorotated frames, bit for bit; the plain file's frames are not (they are sideways / upside down)."""
    loaded = load_model(ckpts["frames"], with_encoder=True)
    cfg = dataclasses.replace(loaded.config, data=dataclasses.replace(loaded.config.data, size=32,
                                                                      resize="short_side", crop=0))
    prepare = FramePreparer(cfg)
    got = np.stack([prepare(sf.frame).permute(1, 2, 0).numpy() for sf in FrameSource(videos[angle])])
    want = ffmpeg_frames(videos[angle])
    assert want.shape == ((12, 48, 32, 3) if angle in (90, 270) else (12, 32, 48, 3))
    np.testing.assert_array_equal(got, want)
    plain = np.stack([prepare(sf.frame).permute(1, 2, 0).numpy() for sf in FrameSource(videos[0])])
    assert plain.shape != want.shape or np.abs(plain.astype(int) - want).mean() > 20


@pytest.mark.parametrize("angle", [90, 270])
def test_streaming_a_rotated_file_equals_classify_and_differs_from_sideways_frames(videos, ckpts, angle):
    """The frame model streamed over a rotated file gives the offline path's outputs (VideoReader autorotates:
    what `seqvision classify` reads) to 1e-5, and not the outputs on the same frames left sideways."""
    pred = OnlinePredictor.from_checkpoint(ckpts["frames"], top_k=0)
    _, results = run_stream(FrameSource(videos[angle]), pred, micro_batch=4)
    got = torch.tensor([[r["probs"][n] for n in pred.names] for r in results])  # (T, K)
    feats = offline_features(pred, videos[angle])
    torch.testing.assert_close(got, pred.model.predict(feats)["probs"][0], atol=1e-5, rtol=0)
    with VideoReader(videos[angle], size=pred.cfg.data.size, autorotate=False) as vr:
        sideways = vr.get_frames(list(range(len(vr)))).data  # (T, 3, H, W): the coded orientation
    with torch.inference_mode():
        unrotated = pred.model.predict(pred.encoder(sideways[None]).float())["probs"][0]
    assert (got - unrotated).abs().max() > 1e-3


def test_window_labels_of_a_rotated_file_equal_the_offline_model(videos, ckpts):
    """`classify --window` decodes through the stream path: each window of a rotated file equals the model on
    VideoReader's autorotated frames of that window."""
    loaded = load_model(ckpts["classify"], with_encoder=True)
    labels = collect_windows(loaded, videos[90], window=0.5, fps=12.0, top_k=0)
    assert len(labels.windows) == 2
    for w in labels.windows:
        with VideoReader(videos[90], size=loaded.config.data.size) as vr:
            frames = vr.get_frames(w["frames"]).data  # (n, 3, H, W)
        with torch.inference_mode():
            feats = loaded.encoder(frames[None]).float()
        pick = sample_indices(len(w["frames"]), sampler="uniform", num_frames=loaded.config.data.num_frames)
        want = loaded.model.predict(feats[:, pick.indices], torch.tensor([pick.length]))["probs"][0]
        got = torch.tensor([w["probs"][n] for n in loaded.label_names])
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_arrays_and_autorotate_false_keep_the_coded_orientation(videos, ckpts):
    """Arrays are taken as upright; ``data.autorotate: false`` keeps the coded orientation, as VideoReader does."""
    loaded = load_model(ckpts["frames"], with_encoder=True)
    cfg = dataclasses.replace(loaded.config, data=dataclasses.replace(loaded.config.data, size=32,
                                                                      resize="short_side", autorotate=False))
    frame = next(iter(FrameSource(videos[90]))).frame
    with VideoReader(videos[90], autorotate=False, dimension_order="NHWC") as vr:
        want = vr.get_frames([0]).data[0]  # (32, 48, 3)
    got = FramePreparer(cfg)(frame)
    assert got.shape == (3, 32, 48)
    torch.testing.assert_close(got.permute(1, 2, 0), want, atol=0, rtol=0)
    arr = frame.to_ndarray(format="rgb24")
    assert FramePreparer(cfg)(arr).shape == (3, 32, 48)
