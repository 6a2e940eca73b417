"""A damaged MP4 (a run of bytes inside the mdat overwritten with zeros, as in an interrupted download) lists a
timestamp for every frame, but the packets hit by the zeros do not decode and the ffmpeg CLI writes no frame for
them. The reader must then give what the CLI gives (same count, same frames) with a RuntimeWarning naming the
file, instead of indexing frames that never come out (a new-user trial: ``len`` 100, "frame 34 could not be
decoded", and ``seqvision classify`` skipped the file).

Two ways the damage is found, both checked against the CLI's rawvideo decode of the damaged file:
- H.264 in MP4: on open, the NAL unit lengths of the damaged packets do not add up (no decoding of clean files);
- MPEG-4 part 2 in MP4 (no NAL lengths to check): at the first read that meets a frame that does not come out.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest

import assets
from seqvision.config import Config
from seqvision.data import VideoDataset, VideoRecord
from seqvision.io import VideoDecodeError, VideoReader

pytestmark = pytest.mark.skipif(shutil.which(assets.FFMPEG) is None or shutil.which(assets.FFPROBE) is None,
                                reason="the ffmpeg/ffprobe command-line tools are not installed")

FRAMES = 100  # frames of the clean file; the damaged one lists as many packets


def _make(folder: Path, name: str, codec: list[str]) -> tuple[Path, Path]:
    """``(clean, damaged)``: 100 frames at 160x120 made by the ffmpeg CLI, then 4000 bytes at 40% zeroed."""
    clean, damaged = folder / f"{name}_clean.mp4", folder / f"{name}_zeroed.mp4"
    subprocess.run([assets.FFMPEG, "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25",
                    "-frames:v", str(FRAMES), *codec, "-g", "25", "-bf", "2", str(clean)], check=True)
    data = bytearray(clean.read_bytes())
    start = int(len(data) * 0.4)
    data[start:start + 4000] = bytes(4000)
    damaged.write_bytes(bytes(data))
    return clean, damaged


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("damaged")
    encoders = assets.ffmpeg_encoders()
    out = {}
    for name, encoder in (("h264", "libx264"), ("mpeg4", "mpeg4")):
        if encoder not in encoders:
            out[name] = f"the ffmpeg CLI has no {encoder} encoder"
            continue
        clean, damaged = _make(folder, name, ["-c:v", encoder])
        out[name] = (clean, damaged, assets.ffmpeg_reference(damaged).frames)  # (N, H, W, 3) uint8
    return out


def _get(files, name):
    if isinstance(files[name], str):
        pytest.skip(files[name])
    clean, damaged, ref = files[name]
    assert 0 < len(ref) < FRAMES, f"the zeroed bytes left {len(ref)} of {FRAMES} frames to the CLI: not damaged"
    return clean, damaged, ref


def _check_frames(vr: VideoReader, ref: np.ndarray) -> None:
    n = len(ref)
    assert len(vr) == n == vr.metadata.num_frames
    assert np.array_equal(vr.get_frames(list(range(n))).numpy(), ref)  # (N, H, W, 3)
    for request in ([n - 1, 0, n // 2, n // 2, 1], [n // 3, n // 3 + 1, n - 2], [n // 2]):  # sparse, unordered
        assert np.array_equal(vr.get_frames(request).numpy(), ref[request])
    times = vr.pts_seconds(list(range(n)))
    assert all(b > a for a, b in zip(times, times[1:]))


def test_damaged_h264_mp4_is_indexed_as_the_ffmpeg_cli_decodes_it(files):
    _, damaged, ref = _get(files, "h264")
    with pytest.warns(RuntimeWarning, match=damaged.name):
        vr = VideoReader(damaged, dimension_order="NHWC")
    with vr, warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "skipped a packet the decoder rejected", as the CLI
        assert len(vr) == len(ref)  # before any read: 78 with FFmpeg 5.1, not the 100 packets listed
        _check_frames(vr, ref)


def test_damage_found_by_a_read_rebuilds_the_index_once(files):
    _, damaged, ref = _get(files, "mpeg4")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        vr = VideoReader(damaged, dimension_order="NHWC")
    with vr:
        with pytest.warns(RuntimeWarning, match=f"{damaged.name}: packets of this file do not decode"):
            try:
                vr.get_frames(list(range(len(vr))))  # asks for frames of the packet index that never come out
            except VideoDecodeError as exc:
                assert "could not be decoded" in str(exc)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            _check_frames(vr, ref)


@pytest.mark.parametrize("name", ["h264", "mpeg4"])
def test_clean_mp4_keeps_the_demux_only_index(files, name):
    if isinstance(files[name], str):
        pytest.skip(files[name])
    clean = files[name][0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean file opens without a warning
        with VideoReader(clean) as vr:
            assert (len(vr), vr.index.mode, vr.stats["frames_decoded"]) == (FRAMES, "pts", 0)  # nothing decoded
            assert vr.get_frames([FRAMES - 1]).shape == (1, 3, 120, 160)


def test_dataset_returns_the_damaged_clip_as_classify_loads_it(files):
    """``seqvision classify`` loads videos with ``VideoDataset.from_config(data, train=False)``, skip on error."""
    _, damaged, ref = _get(files, "h264")
    data = dataclasses.replace(Config().data, size=32, on_error="skip")
    record = VideoRecord(id=damaged.stem, path=str(damaged), split="predict", label=None, captions=[],
                         frame_labels=None, start=None, end=None)
    ds = VideoDataset.from_config(data, [record], train=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        sample = ds[0]
    assert "error" not in sample, sample.get("error")
    assert sample["video"].shape == (data.num_frames, 3, 32, 32)
    assert max(sample["frame_indices"]) < len(ref)
