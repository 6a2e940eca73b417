"""Network sources for `seqvision stream` (#15) beyond UDP and a growing file: HTTP, TCP, RTMP and RTSP on
127.0.0.1, with the ffmpeg CLI at the other end (real H.264 from its lavfi test source, sent in real time with
-re). Each run must get every frame the sender sent (50: 2 s at 25 fps; these transports are reliable), label
them, and end by itself with a summary once the sender is done (a live source that ends counts as lost after
its bounded reconnects).

- HTTP, TCP, RTMP: ffmpeg is the server (`-listen 1`), the stream connects to it as a client.
- RTSP: ffmpeg's RTSP output only publishes to a server (ANNOUNCE/RECORD) and no RTSP server is installed, so
  the stream is the server: FFmpeg's RTSP demuxer in listen mode (`--option rtsp_flags=listen`), which a camera
  or relay pushing to it would use, and the ffmpeg CLI publishes to it. Playing from a separate RTSP server
  (mediamtx, live555) is not tested here: none is installed.

Nothing connects to a listening port before the stream does (an HTTP server with `-listen 1` serves one
client): the tests wait for the port's LISTEN state in /proc/net/tcp instead.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from seqvision.cli import main
from seqvision.stream import FrameSource, OnlinePredictor, run_stream
from stream_checkpoints import free_port, tiny_checkpoints

FFMPEG = shutil.which("ffmpeg")
FRAMES = 50  # 2 s at 25 fps
SOURCE = ["-re", "-f", "lavfi", "-i", "testsrc=size=32x32:rate=25:duration=2", "-c:v", "libx264", "-preset",
          "ultrafast", "-tune", "zerolatency", "-g", "5", "-pix_fmt", "yuv420p"]
pytestmark = [pytest.mark.skipif(FFMPEG is None, reason="needs the ffmpeg CLI at the other end"),
              pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="waits for LISTEN in /proc/net/tcp")]


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    return tiny_checkpoints(tmp_path_factory.mktemp("network_ckpts"))


def wait_listening(port: int, proc: subprocess.Popen | None = None, timeout: float = 20.0) -> None:
    """Wait until a socket listens on 127.0.0.1:``port`` (state 0A in /proc/net/tcp), without connecting."""
    want = f"0100007F:{port:04X}"
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
        if any(r.split()[1] == want and r.split()[3] == "0A" for r in rows):
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"ffmpeg exited ({proc.returncode}) before listening: {proc.stderr.read()}")
        time.sleep(0.02)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def ffmpeg(*args: str) -> subprocess.Popen:
    return subprocess.Popen([FFMPEG, "-loglevel", "error", "-nostdin", *SOURCE, *args], stderr=subprocess.PIPE,
                            text=True)


def stop(proc: subprocess.Popen) -> str:
    try:
        _, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err


def check_run(summary, results, pred) -> None:
    """Every frame sent arrived and was labelled or (a live source the model cannot keep up with) counted as
    dropped; the run ended by itself with a summary."""
    assert summary.decoded == FRAMES, summary
    assert summary.processed + summary.dropped == summary.sampled == FRAMES, summary
    assert summary.processed >= 1 and len(results) == summary.processed
    assert all(r["label"] in pred.names for r in results)
    times = [r["time"] for r in results]
    assert times == sorted(times) and times[-1] <= 2.0
    assert summary.end_reason.startswith("source lost"), summary  # the sender finished: nothing to reconnect to
    assert summary.error_type is not None, summary  # what code tests instead of end_reason's words


SERVERS = {  # protocol: (ffmpeg output arguments, the URL the stream opens), {p} = the port
    "http": (["-f", "mpegts", "-listen", "1", "http://127.0.0.1:{p}/live.ts"], "http://127.0.0.1:{p}/live.ts"),
    "tcp": (["-f", "mpegts", "tcp://127.0.0.1:{p}?listen=1"], "tcp://127.0.0.1:{p}"),
    "rtmp": (["-f", "flv", "-listen", "1", "rtmp://127.0.0.1:{p}/live/x"], "rtmp://127.0.0.1:{p}/live/x"),
}


@pytest.mark.timeout(90)
@pytest.mark.parametrize("protocol", sorted(SERVERS))
def test_stream_from_an_ffmpeg_server(ckpts, protocol):
    out_args, url = SERVERS[protocol]
    port = free_port()
    server = ffmpeg(*[a.format(p=port) for a in out_args])
    try:
        wait_listening(port, server)
        pred = OnlinePredictor.from_checkpoint(ckpts["frames"])
        source = FrameSource(url.format(p=port), timeout=5.0, reconnects=1, backoff=0.1)
        summary, results = run_stream(source, pred)
    finally:
        err = stop(server)
    assert server.returncode == 0, err
    check_run(summary, results, pred)


@pytest.mark.timeout(90)
def test_rtsp_pushed_to_the_stream_in_listen_mode(ckpts):
    port = free_port()
    pred = OnlinePredictor.from_checkpoint(ckpts["frames"])
    source = FrameSource(f"rtsp://127.0.0.1:{port}/live", timeout=15.0, reconnects=0,
                         options={"rtsp_flags": "listen", "listen_timeout": "15"})
    ran: dict = {}
    reader = threading.Thread(target=lambda: ran.update(out=run_stream(source, pred)), daemon=True)
    reader.start()
    wait_listening(port)
    publisher = ffmpeg("-f", "rtsp", "-rtsp_transport", "tcp", f"rtsp://127.0.0.1:{port}/live")
    err = stop(publisher)
    reader.join(timeout=30)
    assert not reader.is_alive() and publisher.returncode == 0, err
    summary, results = ran["out"]
    check_run(summary, results, pred)


@pytest.mark.timeout(90)
def test_cli_stream_over_http_json_lines_summary_and_exit_code(ckpts, capsys):
    """`seqvision stream http://...`: a JSON line per frame, the summary line last; the server's end is a lost
    live source: exit 1 (README: exit codes)."""
    port = free_port()
    server = ffmpeg("-f", "mpegts", "-listen", "1", f"http://127.0.0.1:{port}/live.ts")
    try:
        wait_listening(port, server)
        code = main(["stream", "--checkpoint", str(ckpts["frames"]), f"http://127.0.0.1:{port}/live.ts",
                     "--timeout", "5", "--reconnects", "1", "--backoff", "0.1"])
    finally:
        stop(server)
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    summary = lines[-1]["summary"]
    assert code == 1 and summary["end_reason"].startswith("source lost") and summary["decoded"] == FRAMES
    assert isinstance(summary["error_type"], str), summary  # the exit code's reason, for code to test
    assert len(lines) - 1 == summary["processed"] >= 1 and {"frame", "time", "label", "probs"} <= set(lines[0])
