"""Online inference (#15): stepping a checkpoint frame by frame equals the offline model; live sources on
127.0.0.1 (MPEG-TS over UDP written by PyAV, a file that grows while read by the ffmpeg CLI), a stall, a
disconnect, Ctrl-C. Checkpoints come from real (tiny) training runs on the synthetic dataset."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from seqvision.cli import main
from seqvision.io import VideoReader, sample_indices
from seqvision.models import ClipClassifier, FrameLabeler, SequenceEncoder
from seqvision.stream import FrameSource, NotStreamableError, OnlinePredictor, plot_timeline, run_stream
from seqvision.stream._source import RateSampler
from seqvision.train import load_model
from stream_checkpoints import free_port, json_lines_until_signal, offline_features, tiny_checkpoints

ROOT = Path(__file__).resolve().parents[1]
FFMPEG = shutil.which("ffmpeg")


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    return tiny_checkpoints(tmp_path_factory.mktemp("stream_ckpts"))


def udp_sender(url: str, *, bursts: list[int], pause: float, fps: int = 25, size: int = 32, start_delay: float = 0.8,
               stop: threading.Event | None = None):
    """Send H.264 in MPEG-TS over UDP with PyAV at ``fps`` in real time: ``bursts[i]`` frames, then ``pause``
    seconds of silence (a stall), ...; closing the output at the end (or when ``stop`` is set) is the
    disconnect."""
    time.sleep(start_delay)
    with av.open(url, "w", format="mpegts") as out:
        st = out.add_stream("libx264", rate=fps, options={"preset": "ultrafast", "tune": "zerolatency", "g": "5"})
        st.width = st.height = size
        st.pix_fmt = "yuv420p"
        st.time_base = Fraction(1, fps)
        n = 0
        for b, count in enumerate(bursts):
            if b:
                time.sleep(pause)
            for _ in range(count):
                if stop is not None and stop.is_set():
                    break
                img = np.full((size, size, 3), (n * 9) % 256, dtype=np.uint8)
                frame = av.VideoFrame.from_ndarray(img, format="rgb24")
                frame.pts = n
                for pkt in st.encode(frame):
                    out.mux(pkt)
                n += 1
                time.sleep(1.0 / fps)
        for pkt in st.encode():
            out.mux(pkt)


# ---------------------------------------------------------------------------------------------------------------
# exactness


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn", "mingru", "minlstm"])
@pytest.mark.parametrize("head", ["last", "mean", "max", "attention"])
def test_step_equals_forward_for_every_cell_and_head(cell, head):
    """The models' online form: step t of a 3-layer encoder (with input norm and projection) and of each pooling
    head equals forward on frames 0..t; the frame labeller's steps equal forward's per-frame logits."""
    torch.manual_seed(0)
    enc = SequenceEncoder(8, cell=cell, hidden=6, layers=3, input_norm=True, input_proj=5)
    model = ClipClassifier(enc, num_classes=3, head=head).eval()
    x = torch.randn(2, 9, 8)  # (B, T, D)
    state = None
    for t in range(9):
        logits, state = model.step(x[:, t], state)
        torch.testing.assert_close(logits, model(x[:, :t + 1]).logits, atol=1e-6, rtol=0)
    frames = FrameLabeler(enc, num_classes=4).eval()
    state, steps = None, []
    for t in range(9):
        logits, state = frames.step(x[:, t], state)
        steps.append(logits)
    torch.testing.assert_close(torch.stack(steps, 1), frames(x).logits, atol=1e-6, rtol=0)


def test_bench_stream_smoke(tmp_path):
    """`seqvision bench stream` in its smallest mode (numbers are reported, not tested)."""
    spec = importlib.util.spec_from_file_location("bench_stream", ROOT / "benchmarks" / "stream.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--smoke", "--out", str(tmp_path)])
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["file"]["frames"] == 12 and {"decode", "cnn", "rnn"} <= set(data["file"]["latency_ms"])


@pytest.mark.parametrize("task", ["frames", "classify"])
def test_streaming_a_file_equals_the_offline_model(ckpts, task):
    """Each frame's output from the stream (FrameSource -> run_stream, micro-batches of 3) equals the offline
    model on the same frames: frame labels at t, and the clip label of frames 0..t."""
    pred = OnlinePredictor.from_checkpoint(ckpts[task], top_k=0)
    video = ckpts["videos"][0]
    summary, results = run_stream(FrameSource(video), pred, micro_batch=3)
    feats = offline_features(pred, video)
    T = feats.shape[1]
    assert summary.end_reason == "eof" and summary.processed == T == len(results) and summary.dropped == 0
    assert summary.error_type is None  # a clean end
    got = torch.tensor([[r["probs"][n] for n in pred.names] for r in results])  # (T, K)
    if task == "frames":
        want = pred.model.predict(feats)["probs"][0]  # (T, K)
    else:
        want = torch.cat([pred.model.predict(feats[:, :t + 1])["probs"] for t in range(T)])  # (T, K)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert [r["frame"] for r in results] == list(range(T))
    assert {"decode", "queue", "cnn", "rnn", "total"} <= set(results[0]["latency_ms"])


def test_fps_keeps_frames_by_stream_time(ckpts):
    """--fps 6 on a 12 fps video keeps every other frame (by presentation time), and the model then sees exactly
    those frames: its outputs equal the offline model on the same subsequence."""
    pred = OnlinePredictor.from_checkpoint(ckpts["frames"], top_k=0)
    video = ckpts["videos"][0]
    summary, results = run_stream(FrameSource(video), pred, fps=6.0)
    feats = offline_features(pred, video)
    kept = [r["frame"] for r in results]
    assert kept == list(range(0, feats.shape[1], 2)) and summary.sampled == len(kept) < summary.decoded
    want = pred.model.predict(feats[:, kept])["probs"][0]
    got = torch.tensor([[r["probs"][n] for n in pred.names] for r in results])
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def make_vfr_video(path: Path) -> list[float]:
    """The ffmpeg CLI writes a VFR MP4: 30 frames every 0.04 s (0 .. 1.16 s), then 20 frames every 0.08 s from
    2.4 s (a 1.24 s gap). Returns the frames' times (s)."""
    subprocess.run([FFMPEG, "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i", "testsrc=size=32x32:rate=25:d=2",
                    "-vf", "setpts='if(lt(N,30),N*0.04,2.4+(N-30)*0.08)/TB'", "-fps_mode", "passthrough",
                    "-video_track_timescale", "1000", "-c:v", "libx264", "-bf", "0", "-pix_fmt", "yuv420p",
                    str(path)], check=True, timeout=60)
    with av.open(str(path)) as c:
        times = [float(f.time) for f in c.decode(video=0)]
    assert len(times) == 50 and abs(times[30] - 2.4) < 1e-3 and abs(times[31] - times[30] - 0.08) < 1e-3
    return times


def grid_frames(times: list[float], fps: float) -> list[int]:
    """Oracle of fixed-rate sampling: for each grid time ``times[0] + k / fps``, the first frame at or after it."""
    kept, k = [], 0
    while times[0] + k / fps <= times[-1] + 1e-6:
        kept.append(next(i for i, t in enumerate(times) if t >= times[0] + k / fps - 1e-6))
        k += 1
    return sorted(set(kept))


@pytest.mark.skipif(FFMPEG is None, reason="needs the ffmpeg CLI")
def test_fps_after_a_timestamp_gap_resumes_on_the_grid_without_a_burst(ckpts, tmp_path):
    """--fps 5 on a VFR file with a 1.24 s gap: after the gap a frame is kept per 0.2 s grid time (the first frame
    at or after it), not every frame until a target that advanced one step per kept frame catches up."""
    times = make_vfr_video(tmp_path / "vfr.mp4")
    pred = OnlinePredictor.from_checkpoint(ckpts["frames"], top_k=0)
    summary, results = run_stream(FrameSource(tmp_path / "vfr.mp4"), pred, fps=5.0)
    kept = [r["frame"] for r in results]
    assert kept == grid_frames(times, 5.0)
    after = [i for i in kept if i >= 30]
    assert after[:3] == [30, 33, 35] and len(after) == 8  # grid 2.4 .. 3.8 s (last frame 3.92 s): 5 fps, not ~14
    assert summary.sampled == len(kept) and summary.decoded == 50


@pytest.mark.parametrize("value", [math.inf, math.nan, 0.0, -1.0])
def test_non_finite_rates_and_windows_are_refused_up_front(ckpts, value):
    """RateSampler(inf) had a step of 0 s (ZeroDivisionError at the first frame: stream --fps inf in a new-user
    trial) and a window of inf s put every frame in window 0; both are ValueErrors naming the value now."""
    with pytest.raises(ValueError, match="fps must be > 0 and finite"):
        RateSampler(value)
    with pytest.raises(ValueError, match="window must be > 0 seconds and finite"):
        OnlinePredictor.from_checkpoint(ckpts["classify"], window=value)


def test_step_accepts_arrays_and_reset_starts_a_new_clip(ckpts):
    pred = OnlinePredictor.from_checkpoint(ckpts["classify"], top_k=0)
    with VideoReader(ckpts["videos"][1], size=32, dimension_order="NHWC") as vr:
        frames = vr.get_frames(list(range(4))).data.numpy()  # (4, 32, 32, 3): already the training size
    first = [pred.step(f)["probs"] for f in frames]
    pred.reset()
    again = [pred.step(torch.from_numpy(f).permute(2, 0, 1))["probs"] for f in frames]  # (3, H, W) works too
    assert first == again and pred.index == 4


def test_window_restarts_the_running_clip_label(ckpts):
    pred = OnlinePredictor.from_checkpoint(ckpts["classify"], top_k=0, window_frames=4)
    video = ckpts["videos"][2]
    _, results = run_stream(FrameSource(video), pred)
    feats = offline_features(pred, video)
    r = results[5]  # second window, its second frame
    assert r["window"] == 1 and r["frames_in_clip"] == 2
    want = pred.model.predict(feats[:, 4:6])["probs"][0]
    torch.testing.assert_close(torch.tensor([r["probs"][n] for n in pred.names]), want, atol=1e-5, rtol=0)


def test_window_in_seconds_cuts_by_stream_time_as_classify_window_does(ckpts, capsys):
    """`window` is seconds of stream time (as `classify --window`): window k holds the frames with
    k * 0.25 <= time < (k + 1) * 0.25; the running label restarts there and equals the model on the window's
    frames so far. `seqvision stream --window 0.25` gives the same lines; `--window-frames` counts frames."""
    pred = OnlinePredictor.from_checkpoint(ckpts["classify"], top_k=0, window=0.25)
    video = ckpts["videos"][2]
    _, results = run_stream(FrameSource(video), pred)
    feats = offline_features(pred, video)
    with VideoReader(video) as vr:
        times = vr.pts_seconds(list(range(len(vr))))
    assert [r["time"] for r in results] == pytest.approx([t - times[0] for t in times], abs=1e-6)
    for i, r in enumerate(results):
        k = int(r["time"] // 0.25 + 1e-9)
        first = min(j for j, q in enumerate(results) if int(q["time"] // 0.25 + 1e-9) == k)
        assert r["window"] == k and r["frames_in_clip"] == i - first + 1
        want = pred.model.predict(feats[:, first:i + 1])["probs"][0]
        torch.testing.assert_close(torch.tensor([r["probs"][n] for n in pred.names]), want, atol=1e-5, rtol=0)
    assert len({r["window"] for r in results}) >= 3
    with pytest.raises(ValueError, match="time_s"):
        pred.step(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="not both"):
        OnlinePredictor.from_checkpoint(ckpts["classify"], window=1.0, window_frames=4)
    code = main(["stream", "--checkpoint", str(ckpts["classify"]), str(video), "--window", "0.25", "--top-k", "0"])
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()][:-1]
    assert code == 0 and [x["window"] for x in lines] == [r["window"] for r in results]
    code = main(["stream", "--checkpoint", str(ckpts["classify"]), str(video), "--window-frames", "4"])
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()][:-1]
    assert code == 0 and [x["window"] for x in lines] == [i // 4 for i in range(len(lines))]


def test_caption_per_window_of_seconds(ckpts):
    """A captioner with ``window=0.5`` s captions the frames of [0, 0.5), [0.5, 1.0), ... (the last one at the
    end of the stream), each as the model captions those frames."""
    pred = OnlinePredictor.from_checkpoint(ckpts["caption"], window=0.5)
    video = ckpts["videos"][3]
    summary, results = run_stream(FrameSource(video), pred)
    feats = offline_features(pred, video)
    times = [r["time"] for r in results if r.get("frame") is not None]
    groups = sorted({int(t // 0.5 + 1e-9) for t in times})
    assert len(summary.captions) == len(groups) >= 2
    for k, cap in zip(groups, summary.captions):
        idx = [i for i, t in enumerate(times) if int(t // 0.5 + 1e-9) == k]
        assert cap["window"] == [times[idx[0]], times[idx[-1]]]
        window = feats[:, idx[0]:idx[-1] + 1]
        pick = sample_indices(window.shape[1], sampler="uniform", num_frames=pred.cfg.data.num_frames)
        want = pred.model.predict(window[:, pick.indices], torch.tensor([pick.length]),
                                  beam_size=pred.cfg.eval.beam_size)["texts"][0]
        assert cap["caption"] == want


def test_caption_per_window_equals_captioning_that_window(ckpts):
    pred = OnlinePredictor.from_checkpoint(ckpts["caption"], window_frames=5)
    video = ckpts["videos"][3]
    summary, results = run_stream(FrameSource(video), pred)
    feats = offline_features(pred, video)
    T = feats.shape[1]
    assert len(summary.captions) == -(-T // 5)  # full windows, then the partial last one
    for k, cap in enumerate(summary.captions):
        window = feats[:, 5 * k:5 * (k + 1)]
        pick = sample_indices(window.shape[1], sampler="uniform", num_frames=pred.cfg.data.num_frames)
        want = pred.model.predict(window[:, pick.indices], torch.tensor([pick.length]),
                                  beam_size=pred.cfg.eval.beam_size)["texts"][0]
        assert cap["caption"] == want


def test_models_that_need_the_whole_clip_are_refused_with_the_fix(ckpts):
    loaded = load_model(ckpts["classify"])
    enc = SequenceEncoder(loaded.input_dim, cell="gru", hidden=8, bidirectional=True)
    bidir = dataclasses.replace(loaded, model=ClipClassifier(enc, num_classes=len(loaded.label_names)).eval())
    with pytest.raises(NotStreamableError, match=r"bidirectional: false"):
        OnlinePredictor(bidir)
    with pytest.raises(ValueError, match="bidirectional"):
        enc.step(torch.zeros(1, loaded.input_dim))


def test_timeline_png(ckpts, tmp_path):
    pred = OnlinePredictor.from_checkpoint(ckpts["frames"])
    _, results = run_stream(FrameSource(ckpts["videos"][0]), pred)
    png = plot_timeline(results, tmp_path / "t.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------------------------------------------
# live sources on 127.0.0.1


@pytest.mark.timeout(120)
def test_udp_stream_survives_a_stall_and_ends_after_the_disconnect(ckpts):
    """25 fps MPEG-TS over UDP: 30 frames, 2.5 s of silence (timeout 1 s: a stall, reconnect), 30 more frames,
    then the sender closes (a disconnect): the run reconnects, keeps labelling, and ends by itself after its
    bounded reconnects with a summary."""
    port = free_port(socket.SOCK_DGRAM)
    url = f"udp://127.0.0.1:{port}"
    sender = threading.Thread(target=udp_sender, args=(f"{url}?pkt_size=1316",),
                              kwargs={"bursts": [30, 30], "pause": 2.5}, daemon=True)
    pred = OnlinePredictor.from_checkpoint(ckpts["frames"])
    source = FrameSource(url, timeout=1.0, reconnects=2, backoff=0.1)
    sender.start()
    summary, results = run_stream(source, pred)
    sender.join(timeout=10)
    assert summary.end_reason.startswith("source lost"), summary
    assert summary.error_type == type(source.end_error).__name__ == "ExitError", summary  # the read timeout
    assert summary.reconnects >= 3  # after the stall, and the 2 bounded attempts after the disconnect
    times = [r["time"] for r in results]
    gaps = np.diff(times)
    assert summary.processed >= 40 and times == sorted(times)
    # frames both before and after the stall (the stream clock continues across the reconnect)
    assert any(r["frame"] < 25 for r in results) and results[-1]["frame"] >= 40, [r["frame"] for r in results]
    assert all(r["label"] in pred.names for r in results) and float(gaps.min()) > 0


@pytest.mark.timeout(120)
@pytest.mark.skipif(FFMPEG is None, reason="needs the ffmpeg CLI")
def test_a_file_that_grows_while_read(ckpts, tmp_path):
    """ffmpeg writes MPEG-TS in real time (-re); the stream follows the file and labels frames as they are
    written, and ends after the writer stops (idle timeout); every frame of the finished file is labelled."""
    path = tmp_path / "growing.ts"
    writer = subprocess.Popen([FFMPEG, "-loglevel", "error", "-re", "-f", "lavfi", "-i",
                               "testsrc=size=32x32:rate=25:duration=2", "-c:v", "libx264", "-g", "5",
                               "-preset", "ultrafast", "-f", "mpegts", "-flush_packets", "1", str(path)])
    try:
        while not path.exists() or path.stat().st_size < 2048:
            time.sleep(0.05)
        pred = OnlinePredictor.from_checkpoint(ckpts["frames"])
        seen_while_writing = []
        summary, results = run_stream(FrameSource(path, follow=True, idle_timeout=1.5), pred,
                                      on_result=lambda r: seen_while_writing.append(writer.poll() is None))
    finally:
        writer.wait(timeout=30)
    with VideoReader(path) as vr:
        total = len(vr)
    assert summary.end_reason == "eof" and summary.processed == total == 50
    assert seen_while_writing[0], "the first label came only after the writer had finished"


@pytest.mark.timeout(120)
@pytest.mark.skipif(not Path("/proc/net/udp").exists(), reason="waits for the UDP socket in /proc/net/udp")
def test_ctrl_c_on_a_silent_live_source_does_not_wait_out_the_timeout(ckpts):
    """Ctrl-C while a live source sends nothing: the decode thread is blocked in a read for up to --timeout (60 s
    here); the stream ends at once with its summary (a new-user trial waited 28 s after Ctrl-C at --timeout 30)."""
    port = free_port(socket.SOCK_DGRAM)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "seqvision", "stream", "--checkpoint", str(ckpts["frames"]),
                             f"udp://127.0.0.1:{port}", "--timeout", "60"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        want, end = f"0100007F:{port:04X}", time.monotonic() + 60  # the model is loaded and the socket bound
        while time.monotonic() < end and not any(
                row.split()[1] == want for row in Path("/proc/net/udp").read_text().splitlines()[1:]):
            time.sleep(0.05)
        assert time.monotonic() < end, "stream never bound its UDP port"
        time.sleep(2.0)  # inside the blocking read
        proc.send_signal(signal.SIGINT)
        sent = time.monotonic()
        out, err = proc.communicate(timeout=40)  # well before the 60 s read timeout
        waited = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    summary = json.loads(out.strip().splitlines()[-1])["summary"]
    assert summary["end_reason"] == "interrupted" and summary["error_type"] is None
    assert waited < 30, f"{waited:.1f} s after Ctrl-C with --timeout 60"


@pytest.mark.timeout(180)
def test_cli_stream_json_lines_and_clean_ctrl_c(ckpts, tmp_path):
    """`seqvision stream` on a UDP stream prints one JSON line per frame; SIGINT ends it with a summary line,
    exit code 0 and the timeline PNG."""
    port = free_port(socket.SOCK_DGRAM)
    url = f"udp://127.0.0.1:{port}"
    png = tmp_path / "timeline.png"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "seqvision", "stream", "--checkpoint", str(ckpts["frames"]), url,
                             "--timeout", "30", "--timeline", str(png)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    stop = threading.Event()
    sender = threading.Thread(target=udp_sender, args=(f"{url}?pkt_size=1316",),
                              kwargs={"bursts": [2000], "pause": 0, "start_delay": 0.5, "stop": stop}, daemon=True)
    sender.start()
    try:
        lines, err = json_lines_until_signal(proc, 10, signal.SIGINT)
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert {"wall", "time", "frame", "label", "probs", "latency_ms"} <= set(lines[0])
    summary = lines[-1]["summary"]
    assert summary["end_reason"] == "interrupted" and summary["processed"] == len(lines) - 1
    assert summary["error_type"] is None  # Ctrl-C is a clean end, even of a live source
    assert png.is_file()
