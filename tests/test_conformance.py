"""Conformance with the FFmpeg command-line tool: index ``i`` of ``VideoReader`` is the ``i``-th frame of
``ffmpeg -i F -fps_mode passthrough -pix_fmt rgb24 -f rawvideo -`` (default stream choice, default autorotation).

Each kind in ``assets.CONFORMANCE_KINDS`` (the real-world containers of issue #12 plus kinds reported in the
decord, torchvision, torchcodec and other trackers) is built with the ffmpeg CLI and read with every backend;
``len``, frame size, fps, duration, timestamps and the frames at sparse, dense, unordered and repeated indices are
compared with ffmpeg's own decode. Frames are compared exactly: at the native size the reader converts as the
CLI's auto-inserted scaler does (``seqvision/io/_convert.py``; the kinds where that differs from PyAV's plain
``reformat`` are in ``test_conformance_pixels.py``; the autorotation transpose is applied after conversion, which
gives the same pixels because 4:2:0 chroma is replicated over 2x2 blocks). Without the ffmpeg CLI the suite is
skipped.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import warnings

import numpy as np
import pytest

import assets
from seqvision.io import VideoDecodeError, VideoReader

pytestmark = pytest.mark.skipif(shutil.which(assets.FFMPEG) is None or shutil.which(assets.FFPROBE) is None,
                                reason="the ffmpeg/ffprobe command-line tools are not installed (CI installs "
                                       "Debian's ffmpeg)")

try:
    import decord  # noqa: F401

    BACKENDS = ["pyav", "decord"]
except Exception:  # pragma: no cover - decord missing on this platform
    BACKENDS = ["pyav"]

KINDS = list(assets.CONFORMANCE_KINDS)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """kind name -> (path, FFmpegReference), or a skip reason when this ffmpeg cannot make the kind."""
    folder = tmp_path_factory.mktemp("conformance")
    encoders = assets.ffmpeg_encoders()
    out = {}
    for name, kind in assets.CONFORMANCE_KINDS.items():
        missing = [e for e in kind.encoders if e not in encoders]
        if missing:
            out[name] = f"the ffmpeg CLI has no {', '.join(missing)} encoder"
            continue
        path = assets.make_conformance_video(kind, folder)
        out[name] = (path, assets.ffmpeg_reference(path, input_options=kind.ffmpeg_input,
                                                   map_options=kind.ffmpeg_map))
    return out


def _open(path, backend, kind):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # decord fallback notices, header/count notices
        return VideoReader(path, backend=backend, dimension_order="NHWC", **dict(kind.reader))


def _requests(n: int, seed: str) -> list[list[int]]:
    rng = random.Random(seed)
    return [
        list(range(n)),  # dense, everything
        sorted(rng.sample(range(n), min(n, 5))),  # sparse
        [rng.randrange(n) for _ in range(8)],  # unordered, duplicates likely
        [n - 1, 0, n // 2, n // 2, 1],  # backwards jumps and a repeat
        list(range(n // 3, min(n, n // 3 + 6))),  # a dense run in the middle
    ]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", KINDS)
def test_matches_ffmpeg(built, name, backend):
    if isinstance(built[name], str):
        pytest.skip(built[name])
    kind = assets.CONFORMANCE_KINDS[name]
    path, ref = built[name]
    n, height, width = ref.frames.shape[:3]
    with _open(path, backend, kind) as vr:
        where = f"{name} ({kind.reference}) via {vr.backend}"
        assert (len(vr), vr.height, vr.width) == (n, height, width), where
        assert vr.metadata.stream == ref.stream_index, where
        assert vr.metadata.rotation == ref.rotation and (ref.rotation != 0) == bool(kind.rotation), where
        for req in _requests(n, name):
            got = vr.get_frames(req).numpy()
            assert got.shape == (len(req), height, width, 3), where
            wrong = [i for j, i in enumerate(req) if not np.array_equal(got[j], ref.frames[i])]
            assert not wrong, f"{where}: frames {wrong[:8]} differ from ffmpeg's"
        # random access from a fresh reader (the first read seeks instead of continuing)
        for i in (n - 1, n // 2):
            with _open(path, backend, kind) as fresh:
                assert np.array_equal(fresh.get_frames([i]).numpy()[0], ref.frames[i]), f"{where}: frame {i}"
        _check_time(vr, ref, where)


def _check_time(vr, ref, where):
    n = len(vr)
    pts = vr.get_frame_batch(list(range(n))).pts_seconds.numpy()
    assert np.all(np.diff(pts) > 0), f"{where}: timestamps must increase"
    if ref.avg_rate > 0:
        assert abs(vr.fps - ref.avg_rate) / ref.avg_rate < 1e-3, f"{where}: fps {vr.fps} vs ffprobe {ref.avg_rate}"
    times = ref.times
    if len(times) == n and all(t is not None for t in times) and all(b > a for a, b in zip(times, times[1:])):
        # ffprobe prints 6 decimals
        assert np.allclose(pts, times, atol=2e-6), f"{where}: pts {pts[:4]} vs ffprobe {times[:4]}"
        span = times[-1] - times[0]
        want = span + span / (n - 1) if n > 1 else 1 / vr.fps
        assert abs(vr.duration - want) < 1e-4, f"{where}: duration {vr.duration} vs {want}"
    else:  # ffprobe gives no complete timestamps (AVI flush frames, raw streams): a whole number of frames
        assert abs(vr.duration - n / vr.fps) < 1.01 / vr.fps, f"{where}: duration {vr.duration}, {n} frames"
        assert np.allclose(np.diff(pts), 1 / vr.fps, rtol=0.5), where


def test_cover_art_only_is_not_a_video(tmp_path):
    if "png" not in assets.ffmpeg_encoders():
        pytest.skip("the ffmpeg CLI has no png encoder")
    import subprocess

    png = tmp_path / "cover.png"
    subprocess.run([assets.FFMPEG, "-v", "error", "-f", "lavfi", "-i", "testsrc2=s=64x48:d=1", "-frames:v", "1",
                    str(png)], check=True)
    audio = assets.make_audio_file(tmp_path / "song.mka", seconds=0.5)
    song = tmp_path / "song_cover.mka"
    subprocess.run([assets.FFMPEG, "-v", "error", "-i", str(audio), "-attach", str(png), "-metadata:s:t",
                    "mimetype=image/png", "-c", "copy", str(song)], check=True)
    with pytest.raises(VideoDecodeError, match="attached picture") as err:
        VideoReader(song)
    assert str(song) in str(err.value)
    # how to read it anyway, in the two places a stream is chosen (the CLI has no --stream flag)
    assert "VideoReader(path, stream=" in str(err.value) and "data.stream: " in str(err.value)


# -- MPEG-TS segments joined byte for byte (`cat a.ts b.ts`, as HLS players and recorders join them) ----------------
def _ffmpeg_ts(out, source: str, *extra: str) -> bytes:
    subprocess.run([assets.FFMPEG, "-hide_banner", "-v", "error", "-y", "-f", "lavfi", "-i", source,
                    *_x264_args(), *extra, "-f", "mpegts", str(out)], check=True, capture_output=True)
    return out.read_bytes()


def _x264_args() -> list[str]:
    return ["-c:v", "libx264", "-preset", "veryfast", "-bf", "2", "-g", "10", "-pix_fmt", "yuv420p", "-threads", "1"]


def _ffprobe_count(path) -> int:
    out = subprocess.run([assets.FFPROBE, "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                          "stream=nb_read_frames", "-of", "csv=p=0", str(path)], capture_output=True, text=True,
                         check=True).stdout
    return int(out.split()[0])  # an MPEG-TS lists the stream under its program too


def _flagged_packets(path) -> int:
    """Video packets FFmpeg's demuxer flags corrupt (a broken continuity counter)."""
    import av

    with av.open(str(path)) as container:
        return sum(bool(p.is_corrupt) for p in container.demux(container.streams.video[0]) if p.size)


def test_joined_mpegts_segments_read_without_a_damage_warning(tmp_path):
    """b's timestamps start again where a's did and the continuity counters break at the join, which FFmpeg's
    demuxer flags as a corrupt packet; yet every frame of both decodes (ffprobe -count_frames) and the reader
    returns them all, in order, as the CLI writes them: a reset at a segment boundary is no damage, no warning."""
    a = _ffmpeg_ts(tmp_path / "a.ts", "testsrc=size=160x120:rate=25:duration=2")
    b = _ffmpeg_ts(tmp_path / "b.ts", "smptebars=size=160x120:rate=25:duration=2")
    c = _ffmpeg_ts(tmp_path / "c.ts", "testsrc2=size=160x120:rate=25:duration=1.2", "-output_ts_offset", "40")
    for name, parts, frames in (("ab.ts", (a, b), 100), ("abc.ts", (a, b, c), 130)):
        joined = tmp_path / name
        joined.write_bytes(b"".join(parts))
        assert _ffprobe_count(joined) == frames  # the CLI decodes every frame of every segment
        flagged = _flagged_packets(joined)  # a join whose counters happen to run on (1 in 16) is not flagged
        assert 1 <= flagged <= len(parts) - 1
        ref = assets.ffmpeg_reference(joined)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # any RuntimeWarning fails the test
            with VideoReader(joined, dimension_order="NHWC") as vr:
                assert len(vr) == frames
                assert (vr.index.segment_joins, vr.index.dropped_packets) == (flagged, 0)
                batch = vr.get_frame_batch(list(range(frames)))
        np.testing.assert_array_equal(batch.data.numpy(), ref.frames)
        assert np.all(np.diff(batch.pts_seconds.numpy()) > 0)  # one increasing timeline across the joins


def test_lost_mpegts_packet_before_a_keyframe_still_warns(tmp_path):
    """A 188-byte TS packet lost at the end of the frame before a keyframe breaks the continuity counter next to a
    keyframe as a join does (the decoder does not notice the loss here), but the timestamps run on: damage."""
    data = _ffmpeg_ts(tmp_path / "noisy.ts", "testsrc=size=320x240:rate=25:duration=2", "-vf", "noise=alls=30:allf=t")
    packets = [data[i:i + 188] for i in range(0, len(data), 188)]
    video = [i for i, p in enumerate(packets) if ((p[1] & 0x1F) << 8 | p[2]) == 0x100]
    starts = [i for i in video if packets[i][1] & 0x40]  # payload_unit_start: a PES (one frame) begins
    keys = [i for i in starts if (packets[i][3] >> 4) & 2 and packets[i][4] and packets[i][5] & 0x40]
    lost = max(i for i in video if i < keys[1])  # the last TS packet of the frame before the second keyframe
    assert lost not in starts  # that frame spans several TS packets: losing this one truncates it
    damaged = tmp_path / "lost.ts"
    damaged.write_bytes(b"".join(packets[:lost] + packets[lost + 1:]))
    with pytest.warns(RuntimeWarning, match="cut off or damaged"):
        vr = VideoReader(damaged)
    with vr:
        assert vr.index.segment_joins == 0 and vr.index.dropped_packets >= 1
        assert len(vr) == _ffprobe_count(damaged)
