"""`classify --window` and `stream` on the command line (#15 follow-ups): a file whose decoding fails part way is
never reported as a complete run (oracle: the frames the FFmpeg CLI decodes from the same corrupt file), bad
options are one `error:` line with exit 2 before anything runs, inputs that fail for different reasons are bad
files (exit 1), and a captioner's window timeline draws its captions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import av
import pytest

from seqvision.cli import main
from seqvision.errors import VideoDecodeError
from seqvision.stream._window import collect_windows
from seqvision.train import load_model
from stream_checkpoints import tiny_checkpoints

ROOT = Path(__file__).resolve().parents[1]
FFMPEG = "/usr/bin/ffmpeg"
SECONDS, FPS = 12, 25


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("window_cli")
    ck = tiny_checkpoints(root / "ckpts")
    clean = root / "clean.mp4"
    subprocess.run([FFMPEG, "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc=size=64x48:rate={FPS}:"
                    f"duration={SECONDS}", "-c:v", "libx264", "-g", str(FPS), "-pix_fmt", "yuv420p", str(clean)],
                   check=True, timeout=60)
    data = bytearray(clean.read_bytes())  # 2 KB XOR'd at 30% of the file: packets the decoder rejects
    at = int(len(data) * 0.3)
    data[at:at + 2048] = bytes(b ^ 0xFF for b in data[at:at + 2048])
    corrupt = root / "corrupt.mp4"
    corrupt.write_bytes(bytes(data))
    # 30 s with its last 70% damaged: hundreds of packets in a row no decoder gets through
    longer = root / "longer.mp4"
    subprocess.run([FFMPEG, "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc=size=64x48:rate={FPS}:duration=30",
                    "-c:v", "libx264", "-g", str(FPS), "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(longer)],
                   check=True, timeout=60)
    data = bytearray(longer.read_bytes())
    at, end = int(len(data) * 0.25), int(len(data) * 0.95)
    data[at:end] = bytes(b ^ 0xFF for b in data[at:end])
    (root / "damaged.mp4").write_bytes(bytes(data))
    # the oracle: the time of the last frame the FFmpeg CLI decodes from the corrupt file (it skips bad packets)
    out = subprocess.run([FFMPEG, "-v", "info", "-i", str(corrupt), "-vf", "showinfo", "-f", "null", "-"],
                         capture_output=True, text=True, timeout=60)
    times = [float(x.split("pts_time:")[1].split()[0]) for x in out.stderr.splitlines() if "pts_time:" in x]
    assert len(times) > 0.8 * SECONDS * FPS, "the FFmpeg CLI decodes most of the file"
    return ck, clean, corrupt, max(times)


def run_cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "seqvision", *argv], capture_output=True, text=True, cwd=ROOT,
                          timeout=280, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_a_decode_error_part_way_is_reported_never_silent(setup):
    ck, _, corrupt, last_ffmpeg = setup
    labels = collect_windows(load_model(ck["classify"], with_encoder=True), corrupt, window=2.0)
    if labels.error is None:  # the frame source went past the bad packets, as the FFmpeg CLI does
        assert labels.until_s >= last_ffmpeg - 0.5 and labels.windows[-1]["start"] >= last_ffmpeg - 2.0
    else:  # it stopped: the result says where and why
        assert labels.until_s < last_ffmpeg - 1.0 and "decode error" in labels.error
        assert labels.windows[-1]["start"] <= labels.until_s

    out = run_cli("classify", "--checkpoint", str(ck["classify"]), str(corrupt), "--window", "2", "--json")
    rows = [json.loads(x) for x in out.stdout.splitlines()]
    windows = [r for r in rows if "start" in r]
    errors = [r for r in rows if "error" in r]
    if labels.error is None:
        assert out.returncode == 0 and not errors, out.stderr
        assert windows[-1]["start"] >= last_ffmpeg - 2.0
    else:
        assert out.returncode == 1, out.stderr
        assert len(errors) == 1 and errors[0]["path"] == str(corrupt)
        assert errors[0]["error_type"] == "VideoDecodeError" and "decode error" in errors[0]["error"]
        assert errors[0]["windows_done"] == len(windows) and errors[0]["until_s"] == pytest.approx(labels.until_s)
        text = run_cli("classify", "--checkpoint", str(ck["classify"]), str(corrupt), "--window", "2")
        assert text.returncode == 1 and f"{corrupt}: FAILED: decoding stopped at" in text.stdout
        assert "1 of 1 inputs failed" in text.stderr


def test_a_file_damaged_beyond_repair_part_way_fails_with_its_windows_so_far(setup):
    ck, _, corrupt, _ = setup
    damaged = corrupt.with_name("damaged.mp4")
    labels = collect_windows(load_model(ck["classify"], with_encoder=True), damaged, window=2.0)
    assert labels.error and "decode error" in labels.error and 1.0 < labels.until_s < 0.5 * 30
    assert isinstance(labels.end_error, VideoDecodeError)  # the source gave up: too many bad packets in a row
    out = run_cli("classify", "--checkpoint", str(ck["classify"]), str(damaged), "--window", "2", "--json")
    assert out.returncode == 1, out.stderr
    rows = [json.loads(x) for x in out.stdout.splitlines()]
    windows, errors = [r for r in rows if "start" in r], [r for r in rows if "error" in r]
    assert [w["start"] for w in windows] == [w["start"] for w in labels.windows] and len(windows) >= 1
    assert len(errors) == 1 and errors[0]["windows_done"] == len(windows)
    assert errors[0]["until_s"] == pytest.approx(labels.until_s) and errors[0]["error_type"] == "VideoDecodeError"
    text = run_cli("classify", "--checkpoint", str(ck["classify"]), str(damaged), "--window", "2")
    assert text.returncode == 1 and f"{damaged}: FAILED: decoding stopped at" in text.stdout
    assert "1 of 1 inputs failed" in text.stderr


def test_a_clean_file_reads_to_its_end(setup):
    ck, clean, _, _ = setup
    labels = collect_windows(load_model(ck["classify"], with_encoder=True), clean, window=5.0)
    assert labels.error is None and labels.end_error is None and labels.end_reason == "eof"
    assert labels.until_s == pytest.approx(SECONDS - 1 / FPS, abs=1e-3)
    # the tail window [10, 15) of a 12 s video ends with the video (last frame + one frame), not past it
    assert [(w["start"], w["end"]) for w in labels.windows] == [(0.0, 5.0), (5.0, 10.0), (10.0, 12.0)]
    assert all(10.0 <= i / FPS < 12.0 for i in labels.windows[-1]["frames"])


def test_a_demuxer_error_part_way_fails_the_file(setup, tmp_path, capsys):
    """The frame source ends early on the demuxer's error (a Y4M frame without its FRAME marker: the FFmpeg CLI
    stops there too) and says so in ``end_error``, not only in words: the windows so far, then the failure."""
    ck, _, _, _ = setup
    clean = tmp_path / "clean.y4m"
    subprocess.run([FFMPEG, "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc=size=64x48:rate={FPS}:duration=4",
                    "-pix_fmt", "yuv420p", str(clean)], check=True, timeout=60)
    data = bytearray(clean.read_bytes())
    at = [i for i in range(len(data)) if data[i:i + 6] == b"FRAME\n"][2 * FPS]  # frame 50, at 2 s
    data[at:at + 5] = b"XXXXX"
    bad = tmp_path / "bad.y4m"
    bad.write_bytes(bytes(data))
    labels = collect_windows(load_model(ck["classify"], with_encoder=True), bad, window=1.0)
    assert isinstance(labels.end_error, av.error.InvalidDataError), (labels.end_reason, labels.end_error)
    assert labels.error == labels.end_reason and labels.error.startswith("eof after a decode error")
    assert labels.until_s == pytest.approx(2 - 1 / FPS, abs=1e-3) and len(labels.windows) == 2
    code = main(["classify", "--checkpoint", str(ck["classify"]), str(bad), "--window", "1", "--json"])
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert code == 1 and [r["start"] for r in rows[:-1]] == [0.0, 1.0]
    assert rows[-1]["path"] == str(bad) and rows[-1]["windows_done"] == 2 and "decode error" in rows[-1]["error"]


def _exit(argv: list[str], capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse's own errors
        code = stop.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("option", [["--micro-batch", "0"], ["--timeout", "0"], ["--reconnects", "-1"],
                                    ["--format", "nosuchfmt"], ["--fps", "0"], ["--fps", "-1"], ["--queue", "0"],
                                    ["--top-k", "-1"], ["--max-frames", "0"], ["--timeline", "/proc/x.png"],
                                    ["--timeline", "x.foo"], ["--backoff", "-1"], ["--window", "0"]])
def test_bad_stream_options_are_one_error_line_before_the_run(setup, option, capsys, tmp_path):
    ck, clean, _, _ = setup
    code, err = _exit(["stream", "--checkpoint", str(ck["classify"]), str(clean), *option], capsys)
    lines = [x for x in err.splitlines() if x.strip()]
    assert code == 2 and "error:" in lines[-1] and option[0] in lines[-1], err
    assert "Traceback" not in err


@pytest.mark.parametrize("option", [["--stride", "1"], ["--timeline", "t.png"], ["--window", "0"],
                                    ["--window", "-2"], ["--window", "2", "--stride", "0"],
                                    ["--window", "2", "--timeline", "/proc/x.png"],
                                    ["--window", "2", "--timeline", "t.foo"]])
def test_bad_classify_window_options_are_one_error_line(setup, option, capsys):
    ck, clean, _, _ = setup
    code, err = _exit(["classify", "--checkpoint", str(ck["classify"]), str(clean), *option], capsys)
    assert code == 2 and "error:" in err and "Traceback" not in err, err


@pytest.mark.parametrize("argv", [
    ["classify", "--window", "inf"], ["classify", "--window", "nan"], ["classify", "--window", "1e-9"],
    ["classify", "--window", "1", "--stride", "inf"], ["classify", "--window", "1", "--stride", "0.0001"],
    ["classify", "--window", "1", "--stride", "0.01"],  # shorter than a frame (25 fps): more windows than frames
    ["stream", "--fps", "inf"], ["stream", "--fps", "nan"], ["stream", "--window", "inf"],
    ["stream", "--window", "1e-9"], ["stream", "--timeout", "inf"]])
@pytest.mark.timeout(60)
def test_non_finite_and_too_short_values_are_usage_errors(setup, argv, capsys):
    """A new-user trial: classify --window 1e-9 ran ~9 minutes (4e9 empty windows a second), --window inf was a
    ValueError traceback (fps must be > 0), stream --fps inf a ZeroDivisionError traceback. Now one error line
    naming the option, exit 2."""
    ck, clean, _, _ = setup
    code, err = _exit([argv[0], "--checkpoint", str(ck["classify"]), str(clean), *argv[1:]], capsys)
    lines = [x for x in err.splitlines() if x.strip()]
    assert code == 2 and "Traceback" not in err and lines and "error:" in lines[-1], err
    assert ("--stride" if "--stride" in argv else argv[1]) in lines[-1], err


def test_inputs_failing_for_different_reasons_are_bad_files(setup, tmp_path):
    ck, _, _, _ = setup
    empty, text = tmp_path / "empty.mp4", tmp_path / "text.mp4"
    empty.write_bytes(b"")
    text.write_text("not a video\n" * 50)
    for extra in ([], ["--window", "2"]):
        out = run_cli("classify", "--checkpoint", str(ck["classify"]), str(empty), str(text), "--json", *extra)
        assert out.returncode == 1, out.stderr
        assert "systemic" not in out.stderr.lower()
        rows = [json.loads(x) for x in out.stdout.splitlines()]
        errors = rows[0]["errors"] if not extra else rows
        assert sorted(e["path"] for e in errors) == sorted([str(empty), str(text)])
        assert len({e["error"] for e in errors}) == 2


def test_captioner_window_timeline_draws_the_captions(setup, tmp_path):
    ck, clean, _, _ = setup
    png = tmp_path / "cap.png"
    out = run_cli("classify", "--checkpoint", str(ck["caption"]), str(clean), "--window", "4", "--json",
                  "--timeline", str(png))
    assert out.returncode == 0, out.stderr
    rows = [json.loads(x) for x in out.stdout.splitlines()]
    assert len(rows) == 3 and all(isinstance(r["caption"], str) for r in rows)
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_idle_timeout_without_follow_is_an_error_not_ignored(setup, capsys):
    """--idle-timeout only acts on a file read with --follow (FrameSource's growing-file reader); a new-user
    trial passed it alone and it was accepted and ignored. Now one error line naming it, exit 2, nothing run."""
    ck, clean, _, _ = setup
    code, err = _exit(["stream", "--checkpoint", str(ck["classify"]), str(clean), "--idle-timeout", "2"], capsys)
    lines = [x for x in err.splitlines() if x.strip()]
    assert code == 2 and "Traceback" not in err, err
    assert lines[-1].startswith("seqvision stream: error: --idle-timeout: only applies with --follow"), err


def test_idle_timeout_with_follow_ends_a_finished_file(setup, tmp_path):
    """With --follow the option still works: a finished 1 s MPEG-TS (25 frames) is read to its end and the run
    ends once the file has not grown for --idle-timeout seconds."""
    ck, _, _, _ = setup
    ts = tmp_path / "done.ts"
    subprocess.run([FFMPEG, "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc=size=64x48:rate={FPS}:duration=1",
                    "-c:v", "libx264", "-g", str(FPS), "-pix_fmt", "yuv420p", "-f", "mpegts", str(ts)],
                   check=True, timeout=60)
    out = run_cli("stream", "--checkpoint", str(ck["frames"]), str(ts), "--follow", "--idle-timeout", "0.5")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.splitlines()[-1])["summary"]
    assert summary["processed"] == FPS and summary["end_reason"] == "eof", summary


@pytest.mark.parametrize("option, words", [
    ("bogus=1", "'bogus' is not an input option of any FFmpeg format"),
    ("rtsp_tranport=tcp", "(did you mean 'rtsp_transport'?)"),
    ("stimeout=5000000", "'stimeout' is not an input option"),  # RTSP's, removed in FFmpeg 5: now ignored
    ("movflags=faststart", "'movflags' is not an input option"),  # a muxer's (output) option
])
def test_an_option_ffmpeg_does_not_know_is_an_error(setup, option, words, capsys):
    """FFmpeg leaves unknown --option keys unused and PyAV drops the dictionary that says so: a new-user trial's
    typo was accepted and ignored. Now one error line naming the key (and the closest real one), exit 2."""
    ck, clean, _, _ = setup
    code, err = _exit(["stream", "--checkpoint", str(ck["classify"]), str(clean), "--option", option], capsys)
    lines = [x for x in err.splitlines() if x.strip()]
    assert code == 2 and "Traceback" not in err, err
    assert lines[-1].startswith("seqvision stream: error: --option: ") and words in lines[-1], err


def test_real_input_options_still_run(setup):
    """No false alarm: a generic option (probesize), a protocol's (rw_timeout), RTSP's, V4L2's (video_size,
    framerate, input_format, standard) and UDP's (buffer_size) pass the check; the file streams."""
    ck, clean, _, _ = setup
    opts = ["probesize=5000000", "rw_timeout=5000000", "rtsp_transport=tcp", "video_size=64x48", "framerate=25",
            "input_format=h264", "standard=PAL", "buffer_size=65536"]
    out = run_cli("stream", "--checkpoint", str(ck["frames"]), str(clean), "--max-frames", "3",
                  *[x for o in opts for x in ("--option", o)])
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1])["summary"]["processed"] == 3


def test_timeline_png_for_several_videos_writes_one_png_per_video_beside_it(setup, tmp_path):
    """`--timeline x.png` with several videos made a folder named x.png (a new-user trial). Now x_<video
    name>.png beside it, one per video, a repeated name numbered; an extensionless path is still a folder."""
    ck, _, _, _ = setup
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    first, second = ck["videos"][:2]
    for folder in (a, b):  # the same name twice
        (folder / "clip.mp4").write_bytes(first.read_bytes())
    videos = [str(a / "clip.mp4"), str(b / "clip.mp4"), str(second)]
    out = run_cli("classify", "--checkpoint", str(ck["classify"]), *videos, "--window", "0.5",
                  "--timeline", str(tmp_path / "x.png"))
    assert out.returncode == 0, out.stderr
    want = [tmp_path / "x_clip.png", tmp_path / "x_clip_2.png", tmp_path / f"x_{second.stem}.png"]
    assert not (tmp_path / "x.png").exists()
    assert sorted(tmp_path.glob("*.png")) == sorted(want)
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in want)
    assert [x for x in out.stderr.splitlines() if x.startswith("timeline: ")] == [f"timeline: {p}" for p in want]

    out = run_cli("classify", "--checkpoint", str(ck["classify"]), *videos[1:], "--window", "0.5",
                  "--timeline", str(tmp_path / "plots"))
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == sorted(["clip_timeline.png",
                                                                             f"{second.stem}_timeline.png"])


def test_a_stride_too_short_for_one_of_several_videos_fails_that_video(setup, tmp_path):
    """A stride shorter than a video's frame interval is a usage error for one video (exit 2, above); among
    several it fails that video in the results and the others are labelled (it stopped the whole run after the
    earlier videos had printed: a new-user trial's follow-up)."""
    ck, clean, _, _ = setup
    slow = tmp_path / "slow.mp4"  # 5 fps: a 0.1 s stride is shorter than its 0.2 s frame interval
    subprocess.run([FFMPEG, "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=5:duration=4",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", str(slow)], check=True, timeout=60)
    out = run_cli("classify", "--checkpoint", str(ck["classify"]), str(clean), str(slow), "--window", "1",
                  "--stride", "0.1", "--json")
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    rows = [json.loads(x) for x in out.stdout.splitlines()]
    assert any(r["path"] == str(clean) and "label" in r for r in rows)
    failed = [r for r in rows if "error" in r]
    assert [r["path"] for r in failed] == [str(slow)] and failed[0]["error_type"] == "ArgumentError"
    assert "frame interval" in failed[0]["error"]
