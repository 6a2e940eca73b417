"""`FrameSource`, the frame source of `seqvision stream` and `classify --window` (#15 new-user trial): finite URLs
end at their EOF (a file served over HTTP by Python's http.server, a file:// URL), timestamp resets re-based
(concatenated MPEG-TS), damaged MPEG-TS skipped packet by packet as the FFmpeg tools skip it (ffprobe's
-count_frames is the oracle), a live source's decoder flushed when it ends (B-frames over UDP, sent by the ffmpeg
CLI), pipes / FIFOs / directories / a --follow file not created yet, SIGTERM, and a captioner's last window.
Every video is made by the ffmpeg CLI; every server listens on 127.0.0.1; every test is bounded in time."""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest

from seqvision.cli import main
from seqvision.errors import VideoDecodeError
from seqvision.stream import FrameSource, OnlinePredictor, run_stream
from stream_checkpoints import free_port, json_lines_until_signal, tiny_checkpoints

ROOT = Path(__file__).resolve().parents[1]
FFMPEG = shutil.which("ffmpeg")
FFPROBE = shutil.which("ffprobe")
pytestmark = pytest.mark.skipif(FFMPEG is None or FFPROBE is None, reason="needs the ffmpeg and ffprobe CLIs")


def ffmpeg(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([FFMPEG, "-v", "error", "-nostdin", "-y", *args], check=True, timeout=60, **kw)


def lavfi_src(seconds: float, size: int = 32) -> list[str]:
    return ["-f", "lavfi", "-i", f"testsrc=size={size}x{size}:rate=25:duration={seconds}"]


def ffprobe_frames(path: Path) -> int:
    """Frames the FFmpeg tools decode from the first video stream (the oracle)."""
    out = subprocess.run([FFPROBE, "-v", "quiet", "-select_streams", "v:0", "-count_frames", "-show_entries",
                          "stream=nb_read_frames", "-of", "default=nw=1:nk=1", str(path)], capture_output=True,
                         text=True, timeout=60).stdout
    return int(out.split()[0])


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("source_videos")
    out = {"mp4": d / "bframes.mp4", "a": d / "a.ts", "b": d / "b.ts", "ts": d / "clean.ts"}
    ffmpeg(*lavfi_src(4), "-c:v", "libx264", "-bf", "3", "-g", "25", "-pix_fmt", "yuv420p", str(out["mp4"]))
    ffmpeg(*lavfi_src(1.6), "-c:v", "libx264", "-g", "25", "-pix_fmt", "yuv420p", "-f", "mpegts", str(out["a"]))
    ffmpeg(*lavfi_src(2.4), "-c:v", "libx264", "-g", "25", "-pix_fmt", "yuv420p", "-f", "mpegts", str(out["b"]))
    ffmpeg(*lavfi_src(4, 64), "-c:v", "libx264", "-g", "25", "-pix_fmt", "yuv420p", "-f", "mpegts", str(out["ts"]))
    out["concat"] = d / "concat.ts"  # `cat a.ts b.ts`: b's timestamps start again where a's started
    out["concat"].write_bytes(out["a"].read_bytes() + out["b"].read_bytes())
    out["audio"] = d / "audio.ts"  # MPEG-TS without a video stream (an MP2 sine)
    ffmpeg("-f", "lavfi", "-i", "sine=duration=2", "-c:a", "mp2", "-f", "mpegts", str(out["audio"]))
    return out


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    return tiny_checkpoints(tmp_path_factory.mktemp("source_ckpts"))


@pytest.fixture
def http_root(videos):
    """Python's http.server serving the videos' folder on 127.0.0.1 (Content-Length, no live feed)."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(Quiet, directory=str(videos["mp4"].parent)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def cli(capsys, *argv) -> tuple[int, list[dict], str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, [json.loads(x) for x in out.out.splitlines()], out.err


# ---------------------------------------------------------------------------------------------------------------
# 1. a finite URL ends at its EOF (it used to be reopened and replayed forever)


@pytest.mark.timeout(120)
def test_a_file_served_over_http_and_a_file_url_end_with_their_frames(ckpts, videos, http_root, capsys):
    n = ffprobe_frames(videos["mp4"])
    assert n == 100
    for url in (f"{http_root}/{videos['mp4'].name}", videos["mp4"].as_uri(), f"{http_root}/{videos['ts'].name}"):
        want = ffprobe_frames(videos["ts"]) if url.endswith(".ts") else n
        code, lines, err = cli(capsys, "stream", "--checkpoint", ckpts["frames"], url, "--timeout", "2")
        summary = lines[-1]["summary"]
        assert code == 0 and summary["end_reason"] == "eof", (url, summary, err)
        assert summary["decoded"] == summary["processed"] == len(lines) - 1 == want, (url, summary)
        assert summary["reconnects"] == 0 and summary["dropped"] == 0  # a served file is not a live feed
        assert [r["frame"] for r in lines[:-1]] == list(range(want))
        assert summary["error_type"] is None


@pytest.mark.timeout(60)
def test_a_file_served_over_http_without_video_is_refused_like_a_file(ckpts, videos, http_root, capsys):
    """A served file (Content-Length) with no video stream is classify's error, as the same file on disk: it
    used to count as a live source whose reconnects all failed, and ended as "eof", exit 0, with no frames."""
    url = f"{http_root}/{videos['audio'].name}"
    with pytest.raises(VideoDecodeError, match="has no video stream"):
        list(FrameSource(url, backoff=0.01))
    code, lines, err = cli(capsys, "stream", "--checkpoint", ckpts["frames"], url)
    assert code == 2 and lines == [] and "has no video stream" in err, err


# ---------------------------------------------------------------------------------------------------------------
# 2. a timestamp reset is re-based: stream time goes on


@pytest.mark.timeout(120)
def test_concatenated_mpegts_keeps_stream_time_going(ckpts, videos, capsys):
    src = FrameSource(videos["concat"])
    times = [f.time for f in src]
    assert len(times) == ffprobe_frames(videos["concat"]) == 100
    assert src.discontinuities == 1 and src.end_reason == "eof"
    np.testing.assert_allclose(np.diff(times), 0.04, atol=1e-6)  # one frame duration across the reset, too
    # --fps 10 keeps 10 frames per second of the whole 4 s (it kept 20 of 100 when time froze at the reset)
    pred = OnlinePredictor.from_checkpoint(ckpts["frames"])
    summary, results = run_stream(FrameSource(videos["concat"]), pred, fps=10)
    assert summary.decoded == 100 and summary.sampled == summary.processed == 40 and summary.discontinuities == 1
    assert 3.9 <= results[-1]["time"] <= 3.96 + 1e-6  # the first frame at or after 3.9 s
    # classify --window 1: four windows cover the file (it gave 2)
    code, lines, _ = cli(capsys, "classify", "--checkpoint", ckpts["classify"], videos["concat"], "--window", "1",
                         "--json", "--device", "cpu")
    assert code == 0 and [(w["start"], w["end"]) for w in lines] == [(k, k + 1) for k in range(4)]
    assert all(25 * k <= i < 25 * (k + 1) for k, w in enumerate(lines) for i in w["frames"])  # picked frames


def mpegts_with_pts(src: Path, dst: Path, frame: int, seconds: float) -> None:
    """Copy the MPEG-TS ``src`` with the PES timestamp (PTS) of video frame ``frame`` (decode order, video PID
    0x100 as the ffmpeg CLI writes it) set to ``seconds``: one damaged timestamp, the rest of the stream intact."""
    data = bytearray(src.read_bytes())
    seen = -1
    for off in range(0, len(data) - 187, 188):
        pid = ((data[off + 1] & 0x1F) << 8) | data[off + 2]
        if data[off] != 0x47 or pid != 0x100 or not data[off + 1] & 0x40:  # payload unit start of the video PID
            continue
        p = off + 4 + (1 + data[off + 4] if (data[off + 3] >> 4) & 3 == 3 else 0)  # past the adaptation field
        assert data[p:p + 3] == b"\x00\x00\x01", "not a PES header"
        seen += 1
        if seen == frame:
            q, v = p + 9, int(round(seconds * 90000))  # the PTS: 33 bits in 5 bytes with marker bits
            data[q:q + 5] = bytes([(data[q] & 0xF0) | ((v >> 29) & 0x0E) | 1, (v >> 22) & 0xFF,
                                   ((v >> 14) & 0xFE) | 1, (v >> 7) & 0xFF, ((v << 1) & 0xFE) | 1])
            dst.write_bytes(data)
            return
    raise ValueError(f"{src}: no video frame {frame}")


def test_one_damaged_timestamp_is_not_a_reset(tmp_path):
    """A single frame whose timestamp jumps back (a damaged packet; a new-user trial's zeroed MP4 and corrupt TS)
    is not a timestamp reset: the frames after it keep their own times, as the ffmpeg CLI gives them, instead of
    the whole rest of the stream moving ~1.3 s later. A real reset (concatenated TS) still re-bases (above)."""
    clean = tmp_path / "clean.ts"
    ffmpeg(*lavfi_src(4), "-c:v", "libx264", "-bf", "0", "-g", "25", "-pix_fmt", "yuv420p", str(clean))
    damaged = tmp_path / "outlier.ts"
    mpegts_with_pts(clean, damaged, 50, 0.9)
    shown = subprocess.run([FFPROBE, "-v", "error", "-select_streams", "v", "-show_entries", "frame=pts_time",
                            "-of", "csv=p=0", str(damaged)], capture_output=True, text=True, timeout=60).stdout.split()
    assert float(shown[50]) < float(shown[49]) - 1  # the oracle sees the outlier
    times = {}
    for name, path in (("clean", clean), ("damaged", damaged)):
        src = FrameSource(path)
        times[name] = [f.time for f in src]
        assert len(times[name]) == 100 and src.discontinuities == 0, (name, src.discontinuities)
    np.testing.assert_allclose(times["damaged"], times["clean"], atol=1e-6)  # the outlier: one frame later


@pytest.mark.parametrize("bad, resets", [
    ({50: 1.0, 51: 1.56}, 0),  # a new-user trial's zeroed MP4: 1.96, 1.00, 1.56, then 2.00 again
    ({50: 0.9, 51: 1.5, 52: 0.3, 53: 1.7}, 0),  # four damaged in a row
    ({k: k * 0.04 - 0.1 for k in range(50, 100)}, 1),  # a real restart 0.1 s back: crosses the old timeline
])
def test_a_short_run_of_damaged_timestamps_is_not_a_reset(tmp_path, bad, resets):
    """A few frames in a row whose timestamps jump back and about (a new-user trial's zeroed MP4: frames at
    1.00 and 1.56 after 1.96, then 2.00 again) re-based the rest of the stream 1.04 s late (its last frame at
    4.96 s in a 4 s file, and a 5th window). A run of up to 4 such frames that returns to the timeline it left
    is undone; a steady new timeline (a restart) still re-bases, even one that soon passes the old times."""
    clean = tmp_path / "clean.ts"
    ffmpeg(*lavfi_src(4), "-c:v", "libx264", "-bf", "0", "-g", "25", "-pix_fmt", "yuv420p", str(clean))
    damaged = tmp_path / "damaged.ts"
    damaged.write_bytes(clean.read_bytes())
    first = float(subprocess.run([FFPROBE, "-v", "error", "-select_streams", "v", "-show_entries", "frame=pts_time",
                                  "-of", "csv=p=0", str(clean)], capture_output=True, text=True,
                                 timeout=60).stdout.split()[0].strip(","))
    for frame, seconds in bad.items():
        mpegts_with_pts(damaged, damaged, frame, first + seconds)
    shown = [float(x.strip(",")) - first for x in subprocess.run(
        [FFPROBE, "-v", "error", "-select_streams", "v", "-show_entries", "frame=pts_time", "-of", "csv=p=0",
         str(damaged)], capture_output=True, text=True, timeout=60).stdout.split()]
    np.testing.assert_allclose([shown[k] for k in bad], list(bad.values()), atol=1e-4)  # the oracle sees them
    times = {}
    for name, path in (("clean", clean), ("damaged", damaged)):
        src = FrameSource(path)
        times[name] = [f.time for f in src]
        assert len(times[name]) == 100, name
    assert src.discontinuities == resets
    np.testing.assert_allclose(times["damaged"], times["clean"], atol=1e-6)  # each bad one: one frame later


def test_avi_with_bframes_gives_increasing_times(ckpts, tmp_path, capsys):
    """AVI stores no presentation timestamps (a frame count in decode order); with B-frames the times came out
    of order (0.0, 0.12, 0.16, 0.16, ...: a new-user trial) and classify --window 1 made windows of 15/15/13/14
    frames plus a 5th with the last frame only. The oracle: ffprobe's best_effort_timestamp_time (the decoder's
    pkt_dts; N/A for the frames flushed at the end, which come one frame later)."""
    avi = tmp_path / "bframes.avi"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25:duration=4", "-c:v", "libx264", "-bf", "3",
           "-pix_fmt", "yuv420p", str(avi))  # testsrc2's motion: x264 uses its B-frames (testsrc's 32x32 not)
    shown = [x.strip(",") for x in subprocess.run(
        [FFPROBE, "-v", "error", "-select_streams", "v", "-show_entries", "frame=best_effort_timestamp_time",
         "-of", "csv=p=0", str(avi)], capture_output=True, text=True, timeout=60).stdout.split()]
    known = [float(x) for x in shown if x != "N/A"]
    times = [f.time for f in FrameSource(avi)]
    assert len(times) == len(shown) == 100
    np.testing.assert_allclose(times[:len(known)], np.array(known) - known[0], atol=1e-6)
    np.testing.assert_allclose(times, np.arange(100) * 0.04, atol=1e-6)
    code, lines, _ = cli(capsys, "classify", "--checkpoint", ckpts["classify"], avi, "--window", "1", "--json",
                         "--device", "cpu")
    assert code == 0 and [(w["start"], w["end"]) for w in lines] == [(k, k + 1) for k in range(4)]
    assert all(25 * k <= i < 25 * (k + 1) for k, w in enumerate(lines) for i in w["frames"])


# ---------------------------------------------------------------------------------------------------------------
# 3. damaged MPEG-TS: bad packets are skipped as the FFmpeg tools skip them


@pytest.mark.timeout(120)
@pytest.mark.parametrize("start", [188 * 50, 188 * 100 + 5, 12721])
def test_damaged_mpegts_decodes_what_ffprobe_decodes(videos, tmp_path, start):
    """Every 7th byte of 3 kB inverted (the trial's corrupt.ts). The first two offsets make FFmpeg see a PID
    that was not in the header (a new stream: PyAV's demux raised IndexError there and the stream crashed)."""
    data = np.fromfile(videos["ts"], np.uint8)
    data[start:start + 3000:7] ^= 0xFF
    bad = tmp_path / "damaged.ts"
    data.tofile(bad)
    src = FrameSource(bad)
    got = [f.time for f in src]
    assert len(got) == ffprobe_frames(bad) > 0 and src.end_reason == "eof" and src.end_error is None
    assert got == sorted(got)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("keep", [0.3, 0.5, 0.8])
def test_a_truncated_mp4_gives_every_frame_ffprobe_decodes(tmp_path, keep):
    """A faststart MP4 with B-frames cut part way (the first ``keep`` of its bytes, mid-packet): the last packet
    is damaged, and the frames the decoder still holds when the file ends come out (a frame-threaded decoder
    lost 2 while drained: 18 / 36 / 73 of ffprobe's 20 / 38 / 75)."""
    full, cut = tmp_path / "full.mp4", tmp_path / "cut.mp4"
    ffmpeg(*lavfi_src(4, 320), "-c:v", "libx264", "-bf", "3", "-g", "25", "-pix_fmt", "yuv420p", "-movflags",
           "+faststart", str(full))
    data = full.read_bytes()
    cut.write_bytes(data[: int(len(data) * keep)])
    src = FrameSource(cut)
    n = sum(1 for _ in src)
    assert n == ffprobe_frames(cut) and 0 < n < ffprobe_frames(full) and src.end_reason == "eof"


def y4m_with_a_bad_frame_header(path: Path, *, frames: int = 100, bad: int = 40) -> Path:
    """A Y4M file whose frame ``bad`` lost its ``FRAME`` marker: FFmpeg's demuxer stops there with
    InvalidDataError (the FFmpeg CLI decodes the ``bad`` frames before it, and no more)."""
    clean = path.with_name("clean_" + path.name)
    ffmpeg(*lavfi_src(frames / 25), "-pix_fmt", "yuv420p", str(clean))
    data = bytearray(clean.read_bytes())
    at = [i for i in range(len(data)) if data[i:i + 6] == b"FRAME\n"][bad]
    data[at:at + 5] = b"XXXXX"
    path.write_bytes(bytes(data))
    return clean


@pytest.mark.timeout(90)
def test_end_error_says_a_file_stopped_part_way_and_is_none_at_its_end(ckpts, tmp_path, capsys):
    """``end_error`` is the exception behind ``end_reason``'s "eof after a decode error" (code tests it instead of
    parsing the message); a file read to its end leaves it None. `seqvision stream`'s summary names its class
    (``error_type``) and exits 1 on it, 0 without."""
    clean = y4m_with_a_bad_frame_header(bad := tmp_path / "bad.y4m")
    src = FrameSource(bad)
    assert sum(1 for _ in src) == ffprobe_frames(bad) == 40
    assert isinstance(src.end_error, av.error.InvalidDataError), (src.end_reason, src.end_error)
    assert src.end_reason.startswith("eof after a decode error (InvalidDataError")  # the JSON records' words
    src = FrameSource(clean)
    assert sum(1 for _ in src) == ffprobe_frames(clean) == 100
    assert src.end_error is None and src.end_reason == "eof"
    code, lines, err = cli(capsys, "stream", "--checkpoint", ckpts["frames"], bad)
    summary = lines[-1]["summary"]
    assert code == 1 and summary["error_type"] == "InvalidDataError" and summary["decoded"] == 40, (summary, err)
    assert summary["end_reason"].startswith("eof after a decode error (InvalidDataError")
    code, lines, err = cli(capsys, "stream", "--checkpoint", ckpts["frames"], clean)
    summary = lines[-1]["summary"]
    assert code == 0 and summary["error_type"] is None and summary["end_reason"] == "eof", (summary, err)


@pytest.mark.timeout(60)
def test_a_stream_that_never_decodes_is_still_an_error(videos, tmp_path):
    """The header (PAT, PMT) of a real TS followed by garbage: nothing decodes, and that is loud."""
    head = videos["ts"].read_bytes()[:188 * 2]
    rng = np.random.default_rng(0)
    bad = tmp_path / "garbage.ts"
    packets = rng.integers(0, 256, (400, 188), dtype=np.uint8)
    packets[:, 0] = 0x47  # sync bytes, video PID 0x100 with payload: every packet reaches the decoder
    packets[:, 1], packets[:, 2], packets[:, 3] = 0x41, 0x00, 0x10 + (np.arange(400) % 16)
    bad.write_bytes(head + packets.tobytes())
    with pytest.raises(VideoDecodeError) as err:
        list(FrameSource(bad))
    assert err.value.path == str(bad)


# ---------------------------------------------------------------------------------------------------------------
# 4. a live source that ends: the decoder's delayed frames (B-frames) still come out


def wait_udp_bound(port: int, timeout: float = 20.0) -> None:
    want = f"0100007F:{port:04X}"
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if any(r.split()[1] == want for r in Path("/proc/net/udp").read_text().splitlines()[1:]):
            return
        time.sleep(0.02)
    raise AssertionError(f"nothing bound udp 127.0.0.1:{port}")


@pytest.mark.timeout(90)
@pytest.mark.skipif(not Path("/proc/net/udp").exists(), reason="waits for the UDP socket in /proc/net/udp")
def test_udp_with_bframes_delivers_every_frame_sent(tmp_path):
    port = free_port(socket.SOCK_DGRAM)
    src = FrameSource(f"udp://127.0.0.1:{port}", timeout=1.5, reconnects=0)
    got: list = []
    reader = threading.Thread(target=lambda: got.extend(f.index for f in src), daemon=True)
    reader.start()
    wait_udp_bound(port)
    ffmpeg("-re", *lavfi_src(3), "-c:v", "libx264", "-preset", "fast", "-pix_fmt", "yuv420p", "-g", "25",
           "-f", "mpegts", f"udp://127.0.0.1:{port}?pkt_size=1316")  # libx264's default: 3 B-frames
    reader.join(timeout=30)
    assert not reader.is_alive()
    assert got == list(range(75)), (len(got), src.end_reason)
    assert src.end_reason.startswith("source lost: no data for 1.5 s"), src.end_reason  # not "ExitError: ..."
    assert isinstance(src.end_error, av.ExitError), src.end_error  # the read timeout that lost it


def strict_json(line: str):
    """``json.loads`` that refuses NaN / Infinity (not JSON; Python's json writes and reads them by default)."""
    def refuse(name):
        raise ValueError(f"not JSON: {name} in {line[:120]}")
    return json.loads(line, parse_constant=refuse)


@pytest.mark.timeout(120)
@pytest.mark.skipif(not Path("/proc/net/udp").exists(), reason="waits for the UDP socket in /proc/net/udp")
@pytest.mark.parametrize("extra", [[], ["--fps", "6"], ["--window", "2"]])
def test_frames_flushed_after_a_udp_timeout_have_times(ckpts, extra):
    """B-frames over UDP: the frames the decoder still holds when the read times out come out of a flush whose
    frames have a pts but no time base (PyAV's frame.time is NaN). They printed "time": NaN (not JSON), and with
    --fps or --window the run died (ValueError: cannot convert float NaN to integer) without its summary."""
    port = free_port(socket.SOCK_DGRAM)
    proc = subprocess.Popen([sys.executable, "-m", "seqvision", "stream", "--checkpoint", str(ckpts["classify"]),
                             f"udp://127.0.0.1:{port}", "--timeout", "2", "--reconnects", "0", *extra],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_udp_bound(port, timeout=60)
        ffmpeg("-re", *lavfi_src(2), "-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "25", "-bf", "2",
               "-f", "mpegts", f"udp://127.0.0.1:{port}?pkt_size=1316")
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    lines = [strict_json(x) for x in out.splitlines()]
    frames, summary = lines[:-1], lines[-1]["summary"]
    assert proc.returncode == 1 and summary["error_type"] == "ExitError", (proc.returncode, err[-2000:])
    assert summary["decoded"] == 50, summary  # the flushed frames too
    times = [r["time"] for r in frames]
    assert all(isinstance(t, float) and np.isfinite(t) for t in times), times
    assert all(b > a for a, b in zip(times, times[1:])), times
    if not extra:
        np.testing.assert_allclose(times, np.arange(50) * 0.04, atol=1e-6)


@pytest.mark.timeout(90)
@pytest.mark.skipif(not Path("/proc/net/udp").exists(), reason="waits for the UDP socket in /proc/net/udp")
def test_a_live_feed_without_video_is_a_lost_source(ckpts, capsys):
    """A UDP feed that carries only audio (the ffmpeg CLI sends an MP2 sine as MPEG-TS in real time): every
    open finds no video stream, and once the reconnects are spent the source is lost: "source lost: ...",
    ``end_error`` the VideoDecodeError, exit 1. Those failed opens were not recorded: the run ended as "eof",
    exit 0, as if the feed had been read to its end."""
    port = free_port(socket.SOCK_DGRAM)
    url = f"udp://127.0.0.1:{port}"
    sender = subprocess.Popen([FFMPEG, "-v", "error", "-nostdin", "-re", "-f", "lavfi", "-i", "sine=duration=60",
                               "-c:a", "mp2", "-f", "mpegts", f"{url}?pkt_size=1316"], stderr=subprocess.PIPE,
                              text=True)
    try:
        src = FrameSource(url, timeout=5, reconnects=2, backoff=0.05)
        assert list(src) == [] and src.reconnect_count == 2
        assert isinstance(src.end_error, VideoDecodeError) and "has no video stream" in src.end_error.reason
        assert src.end_reason.startswith("source lost: VideoDecodeError: ")
        assert "has no video stream" in src.end_reason
        code, lines, err = cli(capsys, "stream", "--checkpoint", ckpts["frames"], url, "--timeout", "5",
                               "--reconnects", "1", "--backoff", "0.05")
    finally:
        sender.kill()
        sender.communicate()
    summary = lines[-1]["summary"]
    assert code == 1 and summary["error_type"] == "VideoDecodeError", (summary, err)
    assert summary["end_reason"].startswith("source lost: VideoDecodeError: ") and summary["processed"] == 0
    assert summary["reconnects"] == 1 and len(lines) == 1


# ---------------------------------------------------------------------------------------------------------------
# 5. pipes, FIFOs, directories, a --follow file not created yet


@pytest.mark.timeout(90)
def test_a_fifo_and_standard_input(ckpts, videos, tmp_path):
    fifo = tmp_path / "feed"
    os.mkfifo(fifo)
    writer = subprocess.Popen([FFMPEG, "-v", "error", "-nostdin", "-y", "-i", str(videos["ts"]), "-c", "copy",
                               "-f", "mpegts", str(fifo)])
    try:
        src = FrameSource(fifo, timeout=10)
        assert src.kind == "pipe" and src.live
        n = sum(1 for _ in src)
    finally:
        writer.wait(timeout=30)
    assert n == 100 and src.end_reason == "eof"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("-", "pipe:0"):
        with open(videos["ts"], "rb") as stdin:
            proc = subprocess.run([sys.executable, "-m", "seqvision", "stream", "--checkpoint", str(ckpts["frames"]),
                                   name, "--queue", "1000"], stdin=stdin, capture_output=True, text=True, env=env,
                                  cwd=ROOT, timeout=120)
        summary = json.loads(proc.stdout.splitlines()[-1])["summary"]
        assert proc.returncode == 0 and summary["end_reason"] == "eof" and summary["decoded"] == 100, proc.stderr


@pytest.mark.timeout(60)
def test_standard_input_without_video_ends_at_once_like_a_file(ckpts, videos):
    """MPEG-TS with only audio on standard input: the first open finds no video stream, and a pipe cannot be
    reopened, so it is the file's error and exit 2 at once (it was reopened 3 times and ended "source lost:
    InvalidDataError", exit 0)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(videos["audio"], "rb") as stdin:
        proc = subprocess.run([sys.executable, "-m", "seqvision", "stream", "--checkpoint", str(ckpts["frames"]), "-"],
                              stdin=stdin, capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert proc.returncode == 2 and proc.stdout == "", proc.stdout
    assert "-: has no video stream (streams: audio mp2)" in proc.stderr and "InvalidData" not in proc.stderr


@pytest.mark.timeout(60)
def test_a_plain_mp4_on_standard_input_says_what_a_pipe_needs(ckpts, tmp_path):
    """`cat x.mp4 | seqvision stream -` with the MP4's index (moov) at its end, as the ffmpeg CLI writes it: it
    ended "source lost: InvalidDataError ... 'pipe:0'", exit 1. Now the --follow explanation, exit 2. (The
    mdat must outgrow FFmpeg's read buffer: a tiny MP4 is read whole and works.)"""
    mp4 = tmp_path / "plain.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25:duration=4", "-c:v", "libx264", "-pix_fmt", "yuv420p",
           str(mp4))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(mp4, "rb") as stdin:
        proc = subprocess.run([sys.executable, "-m", "seqvision", "stream", "--checkpoint", str(ckpts["frames"]), "-"],
                              stdin=stdin, capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert proc.returncode == 2 and proc.stdout == "", (proc.returncode, proc.stdout[-500:])
    assert "error:" in lines[-1] and "writes its index (moov) last" in lines[-1], proc.stderr


@pytest.mark.timeout(60)
@pytest.mark.parametrize("url, hint", [("rstp://127.0.0.1:8554/live", "did you mean rtsp://?"), ("foo://bar", "")])
def test_a_protocol_ffmpeg_does_not_have_is_a_bad_argument(ckpts, capsys, url, hint):
    """URL typos were reopened 3 times, then exit 1 with ProtocolNotFoundError: no reconnect can find a protocol
    FFmpeg lacks. Now one error line at once, exit 2, without reconnects or a summary."""
    start = time.monotonic()
    code, lines, err = cli(capsys, "stream", "--checkpoint", ckpts["classify"], url, "--backoff", "2")
    last = [x for x in err.splitlines() if x.strip()][-1]
    assert code == 2 and lines == [] and time.monotonic() - start < 2, (code, lines, err)  # backoff 2 s: none
    assert "error:" in last and "no protocol" in last and hint in last, err


def test_the_fps_note_comes_only_once_the_source_opened(ckpts, videos, capsys, tmp_path):
    """stream printed its --fps advice (the tiny checkpoints record no pace) before a "no such file" error; now a
    source that does not open gets the error alone, and one that opens the note once, before its first line."""
    code, lines, err = cli(capsys, "stream", "--checkpoint", ckpts["classify"], tmp_path / "missing.mp4")
    assert code == 2 and lines == [] and "note:" not in err and "no such file" in err, err
    code, lines, err = cli(capsys, "stream", "--checkpoint", ckpts["classify"], videos["ts"], "--max-frames", "3")
    assert code == 0 and len(lines) == 4 and err.count("does not record the pace") == 1, err


def test_a_directory_and_a_follow_file_that_appears_late(videos, tmp_path):
    with pytest.raises(VideoDecodeError, match="is a directory"):
        FrameSource(tmp_path)
    late = tmp_path / "late.ts"
    with pytest.raises(VideoDecodeError, match=r"waited 0.5 s for it to appear"):
        list(FrameSource(late, follow=True, timeout=0.5))
    timer = threading.Timer(0.5, lambda: shutil.copy(videos["ts"], late))
    timer.start()
    src = FrameSource(late, follow=True, timeout=10, idle_timeout=0.5)
    assert sum(1 for _ in src) == 100 and src.end_reason == "eof"
    timer.join()


def test_follow_on_a_plain_mp4_says_what_a_growing_file_needs(videos, tmp_path):
    partial = tmp_path / "recording.mp4"  # a plain MP4 cut before its index (moov) was written
    partial.write_bytes(videos["mp4"].read_bytes()[: videos["mp4"].stat().st_size // 2])
    with pytest.raises(VideoDecodeError, match=r"streamable format \(MPEG-TS, MKV, fragmented MP4\)"):
        list(FrameSource(partial, follow=True, idle_timeout=0.3))


# ---------------------------------------------------------------------------------------------------------------
# 6. SIGTERM, the captioner's last window


@pytest.mark.timeout(120)
def test_sigterm_ends_with_a_summary(ckpts, videos):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    feeder = subprocess.Popen([FFMPEG, "-v", "error", "-nostdin", "-re", *lavfi_src(60), "-c:v", "libx264", "-preset",
                               "ultrafast", "-pix_fmt", "yuv420p", "-f", "mpegts", "-"], stdout=subprocess.PIPE)
    proc = subprocess.Popen([sys.executable, "-m", "seqvision", "stream", "--checkpoint", str(ckpts["frames"]), "-"],
                            stdin=feeder.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=ROOT)
    feeder.stdout.close()
    try:
        lines, err = json_lines_until_signal(proc, 5, signal.SIGTERM)
    finally:
        for p in (proc, feeder):
            if p.poll() is None:
                p.kill()
                p.wait()
    assert proc.returncode == 0, err
    summary = lines[-1]["summary"]
    assert summary["end_reason"] == "interrupted" and summary["processed"] == len(lines) - 1 < 1500
    assert summary["error_type"] is None


def test_a_captioners_last_window_is_a_window_record(ckpts):
    pred = OnlinePredictor.from_checkpoint(ckpts["caption"], window_frames=4)
    summary, results = run_stream(FrameSource(ckpts["videos"][0]), pred)
    frames = [r for r in results if "frame" in r]
    assert len(frames) == summary.processed == summary.decoded
    tail = [r for r in results if "frame" not in r]
    if summary.decoded % 4:  # a partial last window
        assert len(tail) == 1 and tail[0]["final_window"] is True and "index" not in tail[0]
        assert tail[0]["window"][1] == tail[0]["time"] == frames[-1]["time"]
        assert tail[0]["window_frames"] == summary.decoded % 4
    assert len(summary.captions) == -(-summary.decoded // 4)


@pytest.mark.timeout(120)
def test_a_url_without_duration_or_size_that_starts_over_is_not_replayed(videos):
    """An HTTP server that sends an MPEG-TS file with no Content-Length (so it looks live: no duration, no
    size) and sends it again on every request: the stream reconnects once, sees the first timestamp again,
    and ends instead of replaying the file forever."""
    body = videos["ts"].read_bytes()
    requests: list[str] = []

    class NoLength(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "video/mp2t")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NoLength)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        src = FrameSource(f"http://127.0.0.1:{server.server_address[1]}/live.ts", timeout=2, reconnects=5,
                          backoff=0.05)
        indices = [f.index for f in src]
    finally:
        server.shutdown()
        server.server_close()
    assert src.live and indices == list(range(100)), len(indices)
    assert src.end_reason == "eof" and src.reconnect_count == 1 and len(requests) == 2


@pytest.mark.timeout(60)
def test_a_forward_jump_far_beyond_a_frame_is_rebased(videos, tmp_path):
    """b.ts written 60 s later on the clock (-output_ts_offset 60) after a.ts: a 60 s hole in the
    timestamps (more than ffmpeg's 10 s -dts_delta_threshold) is re-based like a reset."""
    far = tmp_path / "far.ts"
    ffmpeg("-i", str(videos["b"]), "-c", "copy", "-output_ts_offset", "60", "-f", "mpegts", str(far))
    joined = tmp_path / "joined.ts"
    joined.write_bytes(videos["a"].read_bytes() + far.read_bytes())
    src = FrameSource(joined)
    times = [f.time for f in src]
    assert len(times) == ffprobe_frames(joined) == 100 and src.discontinuities == 1
    np.testing.assert_allclose(np.diff(times), 0.04, atol=1e-6)
