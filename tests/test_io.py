"""seqvision.io.VideoReader: frame exactness over codecs and backends, options, bad input, resources.

Every test video is encoded once per module (real codecs via PyAV) and each frame shows its own index as bars,
so a decoder that returns a wrong frame is caught by reading the code back.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import warnings

import av
import numpy as np
import pytest
import torch

from seqvision.config import DataConfig
from seqvision.data import VideoDataset, VideoRecord
from seqvision.errors import ArgumentError, ConfigError
from seqvision.io import FrameBatch, VideoDecodeError, VideoMetadata, VideoReader
import assets

try:
    import decord  # noqa: F401

    BACKENDS = ["pyav", "decord"]
except Exception:  # pragma: no cover - decord missing on this platform
    BACKENDS = ["pyav"]

# name -> (file name, make_index_video options)
CASES = {
    "h264_bframes_longgop": ("h264.mp4", dict(num_frames=120, gop=60, bframes=3)),
    "mpeg4_avi": ("mpeg4.avi", dict(num_frames=60, codec="mpeg4", gop=24, bframes=2)),
    "vp9_webm": ("vp9.webm", dict(num_frames=48, codec="vp9", gop=24)),
    "hevc_mkv": ("hevc.mkv", dict(num_frames=48, codec="hevc", gop=24, bframes=3)),
    "mjpeg_avi": ("mjpeg.avi", dict(num_frames=30, codec="mjpeg")),
    "vfr_mkv": ("vfr.mkv", dict(num_frames=48, vfr=True, gop=16)),
    "vfr_mp4": ("vfr.mp4", dict(num_frames=48, vfr=True, gop=16)),
    "odd_97x61_yuv444p": ("odd.mp4", dict(num_frames=40, size=(61, 97), pix_fmt="yuv444p", gop=20)),
    "yuvj420p": ("yuvj.mp4", dict(num_frames=40, pix_fmt="yuvj420p", gop=20)),
    "h264_raw_no_timestamps": ("raw.h264", dict(num_frames=40, gop=20, bframes=2)),  # unseekable, no pts
}


def _codes(frames: torch.Tensor) -> list[int]:
    return [assets.read_index_code(f) for f in frames]


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("io_videos")
    out = {}
    for name, (file, opts) in CASES.items():
        if not assets.encoder_available(opts.get("codec", "h264")):
            continue
        out[name] = (assets.make_index_video(folder / file, **opts), opts)
    return out


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    return assets.make_bad_files(tmp_path_factory.mktemp("io_bad"))


def _open(path, backend, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # decord fallback notices
        return VideoReader(path, backend=backend, **kw)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", list(CASES))
def test_every_index_returns_its_frame(videos, case, backend):
    if case not in videos:
        pytest.skip(f"no encoder for {case} in this FFmpeg build")
    path, opts = videos[case]
    n = opts["num_frames"]
    rng = random.Random(case)
    with _open(path, backend) as vr:
        assert len(vr) == n
        requests = [
            list(range(n)),  # everything, in order
            sorted(rng.sample(range(n), 8)),  # sparse
            [rng.randrange(n) for _ in range(12)],  # unordered, duplicates likely
            [n - 1, 0, n // 2, n // 2, 1, n - 2],  # backwards jumps and a repeat
            list(range(n // 3, n // 3 + 10)),  # dense run in the middle
            [n - 1],
        ]
        for req in requests:
            frames = vr.get_frames(req)
            assert frames.shape == (len(req), 3, vr.height, vr.width) and frames.dtype == torch.uint8
            assert _codes(frames) == req, f"{case}/{vr.backend}: asked {req}"


@pytest.mark.parametrize("case", ["vfr_mkv", "vfr_mp4", "h264_bframes_longgop", "mpeg4_avi"])
def test_timestamps_match_the_encoded_ones(videos, case):
    path, opts = videos[case]
    want = assets.index_video_pts(opts["num_frames"], vfr=opts.get("vfr", False))
    with VideoReader(path) as vr:
        batch = vr.get_frame_batch([0, 5, 3, len(vr) - 1])
        got = (batch.pts_seconds - batch.pts_seconds[0]).tolist()  # avi starts at one frame, not zero
        assert batch.indices == [0, 5, 3, len(vr) - 1]
        assert np.allclose(got, [want[i] - want[0] for i in batch.indices], atol=1e-3)
        assert isinstance(batch, FrameBatch)
        if opts.get("vfr"):
            assert abs(vr.duration - want[-1]) < 0.2  # not num_frames / nominal fps
            assert vr.fps < 20  # the real average rate, below the nominal 25


@pytest.mark.parametrize("backend", BACKENDS)
def test_both_backends_return_the_same_pixels(videos, backend):
    path, opts = videos["h264_bframes_longgop"]
    idx = [100, 3, 59, 60, 61, 3]
    with VideoReader(path) as ref, _open(path, backend) as vr:
        a, b = ref.get_frames(idx).int(), vr.get_frames(idx).int()
        assert (a - b).abs().float().mean() < 2.0  # same frames, within colour-conversion rounding


def test_decord_falls_back_where_its_seeking_is_wrong(videos):
    if "decord" not in BACKENDS:
        pytest.skip("decord not installed")
    path, _ = videos["mpeg4_avi"]  # decord's random access returns neighbouring frames on MPEG-4 + B in AVI
    with pytest.warns(RuntimeWarning, match="pyav"):
        vr = VideoReader(path, backend="decord")
    assert vr.backend == "pyav"
    assert _codes(vr.get_frames([30, 5, 40])) == [30, 5, 40]
    vr.close()
    h264, _ = videos["h264_bframes_longgop"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with VideoReader(h264, backend="decord") as vr:
            assert vr.backend == "decord"


def test_decord_decode_failure_falls_back_to_pyav(videos, monkeypatch):
    """decord's threaded decoder rejects some damaged packets on some runs (a fuzzed MJPEG AVI: "Check failed:
    avcodec_send_packet" in a fuzz worker, fine in the next process); the read is then done by PyAV, with a
    warning, instead of failing the file. decord's failure is injected: it cannot be produced on demand."""
    if "decord" not in BACKENDS:
        pytest.skip("decord not installed")
    from seqvision.io._decord_backend import DecordDecoder

    path, _ = videos["h264_bframes_longgop"]
    with VideoReader(path, backend="decord") as vr:
        assert vr.backend == "decord"

        def fail(self, positions, *, size, out):
            raise VideoDecodeError(self.path, f"decord failed to decode frames {positions[:8]} (DECORDError: "
                                              "Check failed: avcodec_send_packet)")

        monkeypatch.setattr(DecordDecoder, "decode", fail)
        with pytest.warns(RuntimeWarning, match="decord failed .*using the pyav backend"):
            frames = vr.get_frames([70, 3, 119])
        assert vr.backend == "pyav"
        assert _codes(frames) == [70, 3, 119]
        assert _codes(vr.get_frames([5, 6])) == [5, 6]  # later reads stay on PyAV


def test_metadata(videos):
    path, opts = videos["odd_97x61_yuv444p"]
    with VideoReader(path) as vr:
        md = vr.metadata
        assert isinstance(md, VideoMetadata)
        assert (md.num_frames, md.width, md.height, md.codec) == (40, 97, 61, "h264")
        assert (vr.width, vr.height, len(vr)) == (97, 61, 40)
        assert abs(md.fps - 25) < 1e-6 and abs(md.duration - 40 / 25) < 1e-3
        assert md.path == str(path)


@pytest.mark.parametrize("backend", BACKENDS)
def test_resize_and_layout(videos, backend):
    path, _ = videos["h264_bframes_longgop"]  # 64x96 (H x W)
    with _open(path, backend, size=48) as vr:
        f = vr.get_frames([7, 70])
        assert f.shape == (2, 3, 48, 48) and _codes(f) == [7, 70]
    with _open(path, backend, size=32, resize="short_side") as vr:
        assert vr.get_frames([1]).shape == (1, 3, 32, 48)
    with _open(path, backend, size=(40, 50), dimension_order="NHWC") as vr:
        f = vr.get_frames([9, 9])
        assert f.shape == (2, 40, 50, 3) and _codes(f) == [9, 9]
        assert f.is_contiguous()


def test_sparse_access_decodes_only_from_the_nearest_keyframe(tmp_path):
    path = assets.make_index_video(tmp_path / "long.mp4", num_frames=240, gop=24, bframes=2)
    with VideoReader(path) as vr:
        assert _codes(vr.get_frames([200])) == [200]
        assert vr.stats["frames_decoded"] <= 48, vr.stats  # the GOP of frame 200, not 200 frames
        before = vr.stats["frames_decoded"]
        assert _codes(vr.get_frames([20, 130, 230])) == [20, 130, 230]
        assert vr.stats["frames_decoded"] - before <= 3 * 48
    with VideoReader(path) as vr:  # walking forward through one GOP keeps decoding, no re-seek
        for i in range(96, 110, 2):
            assert _codes(vr.get_frames([i])) == [i]
        assert vr.stats["seeks"] == 1


def test_memory_guard_and_streaming(videos):
    path, opts = videos["h264_bframes_longgop"]
    n = opts["num_frames"]
    with VideoReader(path, max_bytes=10 * 64 * 96 * 3) as vr:
        with pytest.raises(VideoDecodeError, match="max_bytes") as err:
            vr.get_frames(range(n))
        assert str(path) in str(err.value) and "iter_frames" in str(err.value)
        assert vr.get_frames(range(10)).shape[0] == 10  # at the limit is fine
        seeks = vr.stats["seeks"]
        chunks = list(vr.iter_frames(chunk_size=7))
        assert [len(c) for c in chunks] == [7] * (n // 7) + ([n % 7] if n % 7 else [])
        assert _codes(torch.cat([c.data for c in chunks])) == list(range(n))
        assert vr.stats["seeks"] == seeks + 1  # one pass over the file
    with VideoReader(path, max_bytes=None) as vr:
        assert vr.get_frames(range(n)).shape[0] == n


def test_bad_options_and_indices(videos):
    path, _ = videos["vp9_webm"]
    for kw in (dict(backend="ffmpeg"), dict(resize="crop"), dict(dimension_order="CHW"), dict(size=(0, 4)),
               dict(size="big"), dict(size=0), dict(num_threads=-1), dict(max_bytes=0), dict(autorotate="yes")):
        (argument,) = kw
        with pytest.raises(ArgumentError) as err:  # io names its own argument, not a config key (issue #13)
            VideoReader(path, **kw)
        assert err.value.argument == argument and str(err.value).startswith(f"{argument}: ")
        assert not isinstance(err.value, ConfigError)
    # the same bad values through the config boundary name the data.* key (before any video is opened)
    for fields in (dict(backend="ffmpeg"), dict(resize="crop"), dict(size=-4), dict(autorotate="yes"),
                   dict(stream=1.5)):
        (key,) = fields
        with pytest.raises(ConfigError) as err:
            VideoDataset.from_config(DataConfig(**fields), [VideoRecord(id="v", path=str(path))], train=False)
        assert err.value.key == f"data.{key}"
    with VideoReader(path) as vr:
        with pytest.raises(VideoDecodeError, match="48"):
            vr.get_frames([3, 48])
        with pytest.raises(VideoDecodeError, match="-1"):
            vr.get_frames([-1])
        assert vr.get_frames([]).shape == (0, 3, 64, 96)


def _open_fds_to(path) -> int:
    fd_dir = "/proc/self/fd"
    if not os.path.isdir(fd_dir):
        pytest.skip("needs /proc")
    count = 0
    for fd in os.listdir(fd_dir):
        try:
            count += os.readlink(os.path.join(fd_dir, fd)) == str(path)
        except OSError:
            pass
    return count


@pytest.mark.parametrize("backend", BACKENDS)
def test_file_handles_are_released(videos, backend):
    path, _ = videos["h264_bframes_longgop"]
    vr = _open(path, backend)
    vr.get_frames([1, 50])
    assert _open_fds_to(path) >= 1
    vr.close()
    vr.close()  # twice is fine
    assert _open_fds_to(path) == 0
    with pytest.raises(VideoDecodeError, match="closed"):
        vr.get_frames([0])
    with _open(path, backend) as vr:
        vr.get_frames([2])
    assert _open_fds_to(path) == 0
    vr = _open(path, backend)
    del vr  # __del__ closes
    assert _open_fds_to(path) == 0


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind,cause", [("missing", "does not exist"), ("empty", "empty"),
                                        ("text", "not a video"), ("audio_only", "no video stream")])
def test_unreadable_files_raise_naming_file_and_cause(bad_files, kind, cause, backend):
    path = bad_files[kind]
    with pytest.raises(VideoDecodeError, match=cause) as err:
        VideoReader(path, backend=backend)
    assert err.value.path == str(path) and str(path) in str(err.value)
    assert "Traceback" not in str(err.value)


@pytest.mark.parametrize("backend", BACKENDS)
def test_truncated_file_gives_the_frames_that_are_there(bad_files, backend):
    path = bad_files["truncated"]
    with pytest.warns(RuntimeWarning, match="cut off"):
        vr = VideoReader(path, backend=backend)
    with av.open(str(path)) as c:
        assert c.streams.video[0].frames == assets.BAD_NUM_FRAMES  # the header still promises them all
    n = len(vr)
    assert 40 <= n < assets.BAD_NUM_FRAMES
    assert _codes(vr.get_frames(range(n))) == list(range(n))
    with pytest.raises(VideoDecodeError, match=f"frame index {n} is out of range") as err:
        vr.get_frames([n])
    assert str(path) in str(err.value)
    vr.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_corrupt_packets_warn_and_index_the_frames_that_decode(bad_files, backend):
    # The packets are all there (48 timestamps) but some hold garbage: the index holds the frames the decoder
    # outputs, as the ffmpeg CLI writes them (tests/test_damaged_index.py compares with the CLI itself).
    path = bad_files["corrupt"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        vr = VideoReader(path, backend=backend)
        assert any(str(path) in str(w.message) and "damaged" in str(w.message) for w in caught)
        n = len(vr)
        assert 30 <= n < 48 and vr.backend == "pyav"
        assert _codes(vr.get_frames(range(10))) == list(range(10))  # before the damage: exact
        assert len(vr.get_frames(range(n))) == n  # every indexed frame decodes
        assert _codes(vr.get_frames([n - 1, 2])) == [47, 2]  # the last GOP is intact
        with pytest.raises(VideoDecodeError, match=f"frame index {n} is out of range"):
            vr.get_frames([n])
        vr.close()
    assert any("rejected" in str(w.message) for w in caught)


# -- issue #12: decoder-order index, stream choice, display rotation (the ffmpeg-CLI comparisons are in
# tests/test_conformance.py; these need no CLI) ---------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_h264_bframes_in_avi_follow_the_decoder(tmp_path, backend):
    path = assets.make_index_video(tmp_path / "b.avi", num_frames=60, gop=12, bframes=3)
    with _open(path, backend) as vr:
        assert vr.backend == "pyav" and vr.index.mode == "decode" and len(vr) == 60
        assert len(vr.index.key_positions) > 1  # seekable: frames are recognised by the decoder's labels
        assert _codes(vr.get_frames([3, 1, 59, 30, 30, 0])) == [3, 1, 59, 30, 30, 0]
        assert _codes(vr.get_frames(range(60))) == list(range(60))
    for i in (1, 3, 37, 59):  # a fresh reader's first read seeks
        with _open(path, backend) as vr:
            assert _codes(vr.get_frames([i])) == [i]
    with _open(path, backend) as vr:  # a uniform 16-frame clip (the issue: it raised)
        clip = list(range(1, 60, 4))
        assert _codes(vr.get_frames(clip)) == clip


def test_stream_choice_and_stream_option(tmp_path):
    path = assets.make_two_stream_video(tmp_path / "two.mkv", num_frames=30, preview_frames=6)
    with VideoReader(path) as vr:  # the ffmpeg CLI's choice: the largest frame area, not the first stream
        assert (len(vr), vr.width, vr.height, vr.metadata.stream) == (30, 96, 64, 1)
        assert _codes(vr.get_frames([29, 7])) == [29, 7]
    with VideoReader(path, stream=0) as vr:
        assert (len(vr), vr.width, vr.height, vr.metadata.stream) == (6, 48, 32, 0)
        assert abs(vr.fps - 5) < 1e-6
    with pytest.raises(VideoDecodeError, match="stream=2"):
        VideoReader(path, stream=2)
    with pytest.raises(ArgumentError, match="^stream: "):
        VideoReader(path, stream=-1)


@pytest.mark.parametrize("degrees", [90, 180, -90])
def test_display_rotation_is_applied_like_ffmpeg(tmp_path, degrees):
    try:
        path = assets.make_index_video(tmp_path / f"r{degrees}.mp4", num_frames=12, gop=6,
                                       display_rotation=degrees)
    except ValueError as exc:
        pytest.skip(str(exc))
    with VideoReader(path, dimension_order="NHWC", autorotate=False) as coded, \
            VideoReader(path, dimension_order="NHWC") as shown:
        assert coded.metadata.rotation == shown.metadata.rotation == (-degrees) % 360  # clockwise, as ffmpeg
        assert (coded.height, coded.width) == (64, 96)
        want_hw = (96, 64) if degrees % 180 else (64, 96)
        assert (shown.height, shown.width) == want_hw
        a, b = coded.get_frames([0, 5, 11]).numpy(), shown.get_frames([0, 5, 11]).numpy()
        assert _codes(torch.from_numpy(a)) == [0, 5, 11]
        # a counter-clockwise display rotation of `degrees` is np.rot90 by degrees / 90 quarter turns
        assert np.array_equal(b, np.rot90(a, k=(degrees // 90) % 4, axes=(1, 2)))
        assert shown.get_frames([5]).shape == (1, *want_hw, 3)
    with VideoReader(path, size=32, resize="short_side") as vr:  # resize applies to the displayed frame
        assert vr.get_frames([1]).shape[2:] == ((48, 32) if degrees % 180 else (32, 48))


def test_indices_that_are_not_ints_are_refused(tmp_path):
    path = assets.make_index_video(tmp_path / "ints.mp4", num_frames=4)
    with VideoReader(path) as vr:
        for bad in ([1.5], [0, 2.0], np.array([0.5]), torch.tensor([1.0]), [True]):
            with pytest.raises(ArgumentError, match="indices: frame indices must be ints") as err:
                vr.get_frames(bad)
            assert err.value.argument == "indices"
        assert vr.get_frames(np.array([3, 0], dtype=np.int64)).shape[0] == 2  # integer arrays stay fine
        assert vr.get_frames(torch.tensor([1])).shape[0] == 1


@pytest.mark.parametrize("url", ["http://example.com/clip.mp4", "rtsp://camera.local/stream"])
def test_a_url_is_pointed_to_seqvision_stream(url):
    with pytest.raises(VideoDecodeError, match="is a URL.*seqvision stream") as err:
        VideoReader(url)
    assert "does not exist" not in str(err.value)


@pytest.mark.skipif(shutil.which(assets.FFMPEG) is None, reason="the ffmpeg command-line tool is not installed")
def test_empty_packets_are_no_frames_as_the_cli_skips_them(tmp_path):
    """Ogg Theora marks a dropped frame (a repeat of the one before) with a zero-size packet that has a
    timestamp. The reader listed 10 frames where the ffmpeg CLI decodes 8, and sending the empty packet drained
    the decoder so the next read failed ("frame 5 could not be decoded"; a new-user trial's short .ogv)."""
    if "libtheora" not in assets.ffmpeg_encoders():
        pytest.skip("the ffmpeg CLI has no libtheora encoder")
    path = tmp_path / "short.ogv"
    subprocess.run([assets.FFMPEG, "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-t",
                    "0.4", "-c:v", "libtheora", str(path)], check=True)
    with av.open(str(path)) as c:
        empty = sum(1 for p in c.demux(c.streams.video[0]) if p.size == 0 and p.pts is not None)
    assert empty > 0, "the encoder wrote no empty packet: this file does not exercise the case"
    ref = assets.ffmpeg_reference(path).frames  # (N, H, W, 3) uint8
    with VideoReader(path, dimension_order="NHWC") as vr:
        assert len(vr) == len(ref)
        assert np.array_equal(vr.get_frames(list(range(len(ref)))).numpy(), ref)
        last = len(ref) - 1
        assert np.array_equal(vr.get_frames([last, 2]).numpy(), ref[[last, 2]])
