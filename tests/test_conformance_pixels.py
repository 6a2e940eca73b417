"""Pixels equal to the FFmpeg CLI's for the kinds where the CLI's RGB conversion is not swscale's fast path.

``ffmpeg -i F -fps_mode passthrough -pix_fmt rgb24 -f rawvideo -`` converts in an auto-inserted scale filter:
bicubic, progressive, chroma at the centre of its luma block, and a mid-stream size change scaled to the first
frame's size. PyAV's plain ``reformat`` (bilinear, the frame's chroma siting, fields converted apart) differed from
it on 10-bit, odd-size 4:2:0, interlaced and size-changing streams (a new-user trial: max 37-255). Each kind here is
built with the CLI and compared byte for byte with its rawvideo decode; a kind whose encoder the CLI lacks skips.
Also a cut-off MPEG-TS whose last keyframe decodes only in part: a fresh reader's read of it equals the CLI's.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import warnings

import numpy as np
import pytest

import assets
from seqvision.io import VideoReader

pytestmark = pytest.mark.skipif(shutil.which(assets.FFMPEG) is None or shutil.which(assets.FFPROBE) is None,
                                reason="the ffmpeg/ffprobe command-line tools are not installed")

try:
    import decord  # noqa: F401

    BACKENDS = ["pyav", "decord"]
except Exception:  # pragma: no cover - decord missing on this platform
    BACKENDS = ["pyav"]


def _src(size: str = "128x96", seconds: float = 1.2) -> list[str]:
    return ["-f", "lavfi", "-i", f"testsrc2=s={size}:r=25:d={seconds}"]


def _odd(size: str) -> list[str]:  # testsrc2 rounds its size to even numbers: scale afterwards (as the trial did)
    return _src() + ["-vf", f"scale={size.replace('x', ':')}"]


_X264 = ["-c:v", "libx264", "-preset", "veryfast", "-g", "12", "-bf", "2"]
_ILACE = ["-flags", "+ildct+ilme"]
# name -> (file suffix, encoders the CLI needs, ffmpeg arguments before the output file)
KINDS = {
    "h264_10bit_mp4": (".mp4", ("libx264",), _src() + _X264 + ["-pix_fmt", "yuv420p10le"]),
    "hevc_10bit_mp4": (".mp4", ("libx265",), _src() + ["-c:v", "libx265", "-pix_fmt", "yuv420p10le",
                                                       "-x265-params", "log-level=error"]),
    "odd_420_ffv1_mkv": (".mkv", ("ffv1",), _odd("97x61") + ["-c:v", "ffv1", "-pix_fmt", "yuv420p"]),
    "odd_420_vp9_webm": (".webm", ("libvpx-vp9",), _odd("97x61") + ["-c:v", "libvpx-vp9", "-b:v", "200k",
                                                                    "-pix_fmt", "yuv420p"]),
    "odd_420_mjpeg_avi": (".avi", ("mjpeg",), _odd("97x61") + ["-c:v", "mjpeg", "-pix_fmt", "yuvj420p"]),
    "odd_422_h264_mkv": (".mkv", ("libx264",), _odd("98x61") + _X264 + ["-pix_fmt", "yuv422p"]),
    "interlaced_h264_mkv": (".mkv", ("libx264",), _src() + _X264 + _ILACE + ["-pix_fmt", "yuv420p",
                                                                             "-x264-params", "tff=1"]),
    "interlaced_h264_m2ts": (".m2ts", ("libx264",), _src() + _X264 + _ILACE + ["-pix_fmt", "yuv420p",
                                                                               "-x264-params", "tff=1"]),
    "interlaced_mpeg2_mts": (".mts", ("mpeg2video",), _src() + ["-c:v", "mpeg2video", *_ILACE, "-top", "1",
                                                                "-g", "12", "-f", "mpegts"]),
    # other pixel formats (before: 4:2:2 10-bit max 112, odd 4:1:1 max 37, NV12 max 32 levels off; the rest exact)
    "yuv422p10_h264_mkv": (".mkv", ("libx264",), _src() + _X264 + ["-pix_fmt", "yuv422p10le"]),
    "yuv444p12_hevc_mkv": (".mkv", ("libx265",), _src() + ["-c:v", "libx265", "-pix_fmt", "yuv444p12le",
                                                           "-x265-params", "log-level=error"]),
    "odd_411_ffv1_mkv": (".mkv", ("ffv1",), _odd("97x61") + ["-c:v", "ffv1", "-pix_fmt", "yuv411p"]),
    "nv12_rawvideo_avi": (".avi", ("rawvideo",), _src() + ["-c:v", "rawvideo", "-pix_fmt", "nv12"]),
    "gbrp10_ffv1_mkv": (".mkv", ("ffv1",), _src() + ["-c:v", "ffv1", "-pix_fmt", "gbrp10le"]),
    "odd_gray_ffv1_mkv": (".mkv", ("ffv1",), _odd("97x61") + ["-c:v", "ffv1", "-pix_fmt", "gray"]),
    "pal8_gif": (".gif", ("gif",), _src()),
    "rgb24_png_mov": (".mov", ("png",), _src() + ["-c:v", "png"]),
}


def _ffmpeg(*args) -> None:
    subprocess.run([assets.FFMPEG, "-hide_banner", "-v", "error", "-y", *map(str, args)], check=True,
                   capture_output=True)


def _requests(n: int, seed: str) -> list[list[int]]:
    rng = random.Random(seed)
    return [list(range(n)), sorted(rng.sample(range(n), min(n, 5))), [rng.randrange(n) for _ in range(6)],
            [n - 1, 0, n // 2, n // 2, 1]]


def _check(path, backend: str, where: str) -> None:
    ref = assets.ffmpeg_reference(path)
    n, height, width = ref.frames.shape[:3]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # decord fallback notices
        with VideoReader(path, backend=backend, dimension_order="NHWC") as vr:
            where = f"{where} via {vr.backend}"
            assert (len(vr), vr.height, vr.width) == (n, height, width), where
            for req in _requests(n, where):
                got = vr.get_frames(req).numpy()
                wrong = [i for j, i in enumerate(req) if not np.array_equal(got[j], ref.frames[i])]
                assert not wrong, f"{where}: frames {wrong[:8]} differ from ffmpeg's"
        for i in (n - 1, n // 2):
            with VideoReader(path, backend=backend, dimension_order="NHWC") as fresh:
                assert np.array_equal(fresh.get_frames([i]).numpy()[0], ref.frames[i]), f"{where}: frame {i}"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("pixels")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(KINDS))
def test_pixels_match_ffmpeg(folder, name, backend):
    suffix, encoders, args = KINDS[name]
    missing = [e for e in encoders if e not in assets.ffmpeg_encoders()]
    if missing:
        pytest.skip(f"the ffmpeg CLI has no {', '.join(missing)} encoder")
    path = folder / f"{name}{suffix}"
    if not path.exists():
        _ffmpeg(*args, path)
    _check(path, backend, name)


@pytest.fixture(scope="module")
def ts_files(folder):
    if "libx264" not in assets.ffmpeg_encoders():
        pytest.skip("the ffmpeg CLI has no libx264 encoder")
    small, big, full = folder / "small.ts", folder / "big.ts", folder / "full.ts"
    _ffmpeg(*_src("160x120", 1.2), *_X264, "-pix_fmt", "yuv420p", "-f", "mpegts", small)
    _ffmpeg(*_src("320x240", 1.2), *_X264, "-pix_fmt", "yuv420p", "-f", "mpegts", big)
    _ffmpeg(*_src("160x120", 3), *_X264[:-4], "-g", "25", "-bf", "2", "-pix_fmt", "yuv420p", "-f", "mpegts", full)
    joined = folder / "size_change.ts"  # 160x120, then 320x240: the CLI scales the second part down
    joined.write_bytes(small.read_bytes() + big.read_bytes())
    cut = folder / "cut.ts"  # ends inside the last keyframe's packet
    data = full.read_bytes()
    cut.write_bytes(data[:len(data) * 2 // 3])
    return joined, cut


@pytest.mark.parametrize("backend", BACKENDS)
def test_size_change_mid_ts_is_scaled_as_the_cli_scales_it(ts_files, backend):
    _check(ts_files[0], backend, "size change mid-TS")


def test_cut_off_keyframe_reads_as_the_cli_decodes_it(ts_files):
    """A fresh reader's read of a frame from the last, cut-off keyframe on decodes from the start (the decoder
    conceals the missing part from earlier frames), as sequential reading and the CLI do, instead of grey (before:
    max 130, mean 111 levels off). The concealed frame itself is exact on most runs, but FFmpeg 8's frame-threaded
    H.264 concealment is racy (measured: about 1 run in 12 off by under 2 levels on average with PyAV 18, 1 in 3
    off by ~16 with PyAV 19), so frames from the cut keyframe on are held to a mean under 30 (grey: 111); every
    frame before it is exact."""
    path = ts_files[1]
    ref = assets.ffmpeg_reference(path)
    n = ref.frames.shape[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with VideoReader(path, dimension_order="NHWC") as vr:
            assert len(vr) == n
            last_key = vr.index.key_positions[-1]
        for req in ([n - 1], [last_key], [last_key - 1, last_key], [n // 3, n - 1], list(range(n))):
            with VideoReader(path, dimension_order="NHWC") as fresh:
                got = fresh.get_frames(req).numpy()
            for j, i in enumerate(req):
                diff = np.abs(got[j].astype(int) - ref.frames[i])
                if i < last_key:
                    assert not diff.any(), f"{req}: frame {i} differs from ffmpeg's"
                else:
                    assert diff.mean() < 30, f"{req}: frame {i} is {diff.mean():.1f} levels off ffmpeg's on average"
