"""Long untrimmed videos labelled window by window (#15): `label_windows` decodes front to back once, holds
only the open windows' features, and labels each window as the offline model labels those frames (oracle: the
frame-exact VideoReader and the model's own `predict`)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from assets import make_index_video, read_index_code
from seqvision.io import VideoReader, sample_indices
from seqvision.stream._window import collect_windows, label_windows
from seqvision.train import load_model
from stream_checkpoints import tiny_checkpoints

ROOT = Path(__file__).resolve().parents[1]
FPS = 25


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("window")
    ck = tiny_checkpoints(root / "ckpts")
    # a 'long' video made of known 1-second segments: every frame carries its index as a visual code
    video = make_index_video(root / "long.mp4", num_frames=3 * FPS, size=(32, 48), fps=FPS)
    return ck, video


def features_of(loaded, video, indices):
    with VideoReader(video, size=loaded.config.data.size) as vr:
        frames = vr.get_frames(indices).data  # (n, 3, H, W)
    with torch.inference_mode():
        return loaded.encoder(frames[None]).float()  # (1, n, D)


def test_classify_windows_equal_the_offline_model_on_each_window(setup):
    ck, video = setup
    loaded = load_model(ck["classify"])
    fps = 5.0
    labels = collect_windows(loaded, video, window=1.0, stride=0.5, fps=fps, top_k=0)
    assert [w["start"] for w in labels.windows] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
    with VideoReader(video) as vr:
        codes = [read_index_code(f) for f in vr.get_frames(list(range(len(vr))), ).data.permute(0, 2, 3, 1)]
    assert codes == list(range(3 * FPS))  # the decoder's index is the frame's own index
    for w in labels.windows:
        # frames inside the window, one every 1/fps s
        assert all(w["start"] <= i / FPS < w["end"] for i in w["frames"])
        assert w["frames"] == [i for i in range(3 * FPS) if i % 5 == 0 and w["start"] <= i / FPS < w["end"]]
        feats = features_of(loaded, video, w["frames"])
        pick = sample_indices(len(w["frames"]), sampler="uniform", num_frames=loaded.config.data.num_frames)
        want = loaded.model.predict(feats[:, pick.indices], torch.tensor([pick.length]))["probs"][0]
        got = torch.tensor([w["probs"][n] for n in loaded.label_names])
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    # memory: the features of the open windows only (~2 windows of 5 frames), not the video's 15 kept frames
    assert labels.max_buffered <= 2 * 5 + 8


def test_frames_task_gives_a_per_frame_timeline(setup):
    ck, video = setup
    loaded = load_model(ck["frames"])
    labels = collect_windows(loaded, video, window=1.0, stride=1.0, fps=10.0)
    frames = [r["frame"] for r in labels.timeline]
    assert frames == sorted(set(frames)) and len(frames) == 30  # 3 s at 10 fps, each frame once
    for w in labels.windows:  # non-overlapping: the timeline is the windows' labels
        feats = features_of(loaded, video, w["frames"])
        preds = loaded.model.predict(feats)["preds"][0].tolist()
        assert w["frame_labels"] == [loaded.frame_label_names[p] for p in preds]
    by_frame = {r["frame"]: r["label"] for r in labels.timeline}
    assert [by_frame[i] for w in labels.windows for i in w["frames"]] == [x for w in labels.windows
                                                                          for x in w["frame_labels"]]


def test_windows_are_yielded_while_decoding(setup):
    ck, video = setup
    gen = label_windows(load_model(ck["classify"]), video, window=1.0)
    first = next(gen)  # the first window, before the rest of the video is read
    assert first["start"] == 0.0 and first["end"] == 1.0
    gen.close()


@pytest.mark.timeout(300)
def test_cli_classify_window_json_and_timeline(setup, tmp_path):
    ck, video = setup
    png = tmp_path / "t.png"
    out = subprocess.run([sys.executable, "-m", "seqvision", "classify", "--checkpoint", str(ck["frames"]),
                          str(video), "--window", "1", "--json", "--timeline", str(png)],
                         capture_output=True, text=True, cwd=ROOT, timeout=280)
    assert out.returncode == 0, out.stderr
    rows = [json.loads(x) for x in out.stdout.splitlines()]
    assert [r["start"] for r in rows] == [0.0, 1.0, 2.0] and all("frame_labels" in r for r in rows)
    assert png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs the ffmpeg CLI")
def test_window_sampler_resumes_on_the_grid_after_a_timestamp_gap(setup, tmp_path):
    """The window sampler keeps one frame per 1/fps grid time after a gap (a VFR file made by the ffmpeg CLI:
    frames every 0.04 s to 1.16 s, then every 0.08 s from 2.4 s), not a catch-up burst of every frame."""
    ck, _ = setup
    video = tmp_path / "vfr.mp4"
    subprocess.run([shutil.which("ffmpeg"), "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i",
                    "testsrc=size=32x32:rate=25:d=2", "-vf", "setpts='if(lt(N,30),N*0.04,2.4+(N-30)*0.08)/TB'",
                    "-fps_mode", "passthrough", "-video_track_timescale", "1000", "-c:v", "libx264", "-bf", "0",
                    "-pix_fmt", "yuv420p", str(video)], check=True, timeout=60)
    labels = collect_windows(load_model(ck["frames"]), video, window=1.0, stride=1.0, fps=5.0)
    kept = [r["frame"] for r in labels.timeline]
    # grid 0, 0.2, .., 1.0; then 2.4 (frame 30), 2.6 -> 2.64 (33), 2.8 (35), 3.0 -> 3.04 (38), ...
    assert kept[:6] == [0, 5, 10, 15, 20, 25] and kept[6:10] == [30, 33, 35, 38]
    assert len(kept) == 6 + 8  # 5 fps on both sides of the gap: grid 0 .. 1.0 and 2.4 .. 3.8 (last frame 3.92 s)
