"""Conformance with the FFmpeg command-line tool: index ``i`` of ``VideoReader`` is the ``i``-th frame of
``ffmpeg -i F -fps_mode passthrough -pix_fmt rgb24 -f rawvideo -`` (default stream choice, default autorotation).

Each kind in ``assets.CONFORMANCE_KINDS`` (the real-world containers of issue #12 plus kinds reported in the
decord, torchvision, torchcodec and other trackers) is built with the ffmpeg CLI and read with every backend;
``len``, frame size, fps, duration, timestamps and the frames at sparse, dense, unordered and repeated indices are
compared with ffmpeg's own decode. Frames are compared exactly: PyAV's swscale rgb24 conversion at the native
size is the CLI's (checked bit for bit; the autorotation transpose is applied after conversion, which gives the
same pixels because 4:2:0 chroma is replicated over 2x2 blocks). Without the ffmpeg CLI the suite is skipped.
"""

from __future__ import annotations

import random
import shutil
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
