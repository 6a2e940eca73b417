"""Small real test videos, encoded with PyAV (real codecs) into temporary folders.

Functions
---------
- ``make_index_video(path, *, num_frames=48, size=(64, 96), codec="h264", fps=25, gop=..., bframes=...,
  pix_fmt=..., vfr=False, faststart=False, crf=...) -> Path``: every frame carries its own index as a visual
  code (10 black/white vertical bars in the top part of the frame, most significant bit on the left), with
  moving content below, so any decoder that returns the wrong frame is caught. The container is chosen from the
  suffix (``.mp4``, ``.avi``, ``.webm``, ``.mkv``, ``.mov``).
- ``read_index_code(frame) -> int``: reads the index back from an RGB frame (``(H, W, 3)`` uint8 numpy array or
  tensor; ``(3, H, W)`` is accepted too). Works after resizing to any size >= ~20 pixels wide.
- ``index_video_pts(num_frames, *, fps=25, vfr=False) -> list[float]``: the presentation times (seconds) that
  ``make_index_video`` gives its frames.
- ``make_color_video(path, *, num_frames=32, size=(64, 96), codec="h264", fps=25, seed=0) -> Path``: a moving
  coloured square on a gradient (simple natural-ish content for dataset/feature tests).
- ``make_audio_file(path, *, seconds=1.0) -> Path``: an audio-only file (AAC in MP4 / MP2 elsewhere).
- ``make_bad_files(folder) -> dict[str, Path]``: ``missing`` (does not exist), ``empty`` (0 bytes), ``text``
  (a text file named ``.mp4``), ``audio_only``, ``truncated`` (an index video whose header promises
  ``BAD_NUM_FRAMES`` frames but whose data is cut after about 60% of them), ``corrupt`` (an index video with
  garbage written over part of its packet data, header intact).

Codec names are FFmpeg encoder aliases: ``"h264"`` (libx264), ``"hevc"`` (libx265), ``"vp9"`` (libvpx-vp9),
``"mpeg4"`` (MPEG-4 part 2, the Xvid/DivX format of UCF101/HMDB51), ``"mjpeg"``, or any encoder name PyAV knows.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

__all__ = [
    "CODE_BITS",
    "BAD_NUM_FRAMES",
    "make_index_video",
    "read_index_code",
    "index_video_pts",
    "make_color_video",
    "make_two_stream_video",
    "make_audio_file",
    "make_bad_files",
    "encoder_available",
    "CONFORMANCE_KINDS",
    "ConformanceKind",
    "make_conformance_video",
    "ffmpeg_reference",
    "ffmpeg_encoders",
    "FFmpegReference",
]

CODE_BITS = 10  # indices 0..1023
CODE_FRACTION = 0.6  # top 60% of the frame holds the bars
BAD_NUM_FRAMES = 100  # frames promised by the truncated file's header

_ENCODERS = {"h264": "libx264", "hevc": "libx265", "h265": "libx265", "vp9": "libvpx-vp9", "vp8": "libvpx"}
_DEFAULT_PIX_FMT = {"mjpeg": "yuvj420p"}


def encoder_available(codec: str) -> bool:
    """True when PyAV's FFmpeg has an encoder for ``codec`` (alias or encoder name)."""
    try:
        av.codec.Codec(_ENCODERS.get(codec, codec), "w")
        return True
    except Exception:
        return False


def _draw_index_frame(index: int, height: int, width: int) -> np.ndarray:
    """RGB (H, W, 3) uint8: the code bars on top, a moving gradient and square below."""
    img = np.zeros((height, width, 3), dtype=np.uint8)
    code_h = max(1, int(round(height * CODE_FRACTION)))
    xs = np.arange(width)
    bar = np.minimum((xs * CODE_BITS) // width, CODE_BITS - 1)  # bar number of each column
    bits = (index >> (CODE_BITS - 1 - bar)) & 1  # MSB on the left
    img[:code_h] = np.where(bits[None, :, None] == 1, 235, 20).astype(np.uint8)
    # Lower part: moving content, so that motion prediction and B-frames are really used.
    low_h = height - code_h
    if low_h > 0:
        yy, xx = np.mgrid[0:low_h, 0:width]
        img[code_h:, :, 0] = ((xx * 4 + index * 7) % 256).astype(np.uint8)
        img[code_h:, :, 1] = ((yy * 6 + index * 3) % 256).astype(np.uint8)
        img[code_h:, :, 2] = 128
        side = max(2, min(low_h, width) // 2)
        x0 = (index * 3) % max(1, width - side)
        y0 = code_h + (index % max(1, low_h - side + 1))
        img[y0 : y0 + side, x0 : x0 + side] = (255, 255, 0)
    return img


def read_index_code(frame) -> int:
    """Read the index that :func:`make_index_video` drew into ``frame``.

    Args:
        frame: RGB uint8 frame, ``(H, W, 3)`` or ``(3, H, W)``; numpy array or torch tensor; any size.
    Returns:
        The frame index (0..1023).
    """
    arr = frame.numpy() if hasattr(frame, "numpy") else np.asarray(frame)
    if arr.ndim != 3:
        raise ValueError(f"expected one frame (H, W, 3) or (3, H, W), got shape {arr.shape}")
    if arr.shape[0] == 3 and arr.shape[-1] != 3:
        arr = np.transpose(arr, (1, 2, 0))  # (3, H, W) -> (H, W, 3)
    height, width = arr.shape[:2]
    code_h = int(height * CODE_FRACTION)
    luma = arr[: max(1, int(code_h * 0.8))].astype(np.float32).mean(axis=2)  # stay clear of the bottom edge
    value = 0
    for b in range(CODE_BITS):
        lo = (b * width) / CODE_BITS
        hi = ((b + 1) * width) / CODE_BITS
        margin = (hi - lo) * 0.3  # sample the bar centre, away from compression ringing at its edges
        a, z = int(np.ceil(lo + margin)), int(np.floor(hi - margin))
        z = max(z, a + 1)
        value = (value << 1) | int(luma[:, a:z].mean() > 128)
    return value


def index_video_pts(num_frames: int, *, fps: float = 25, vfr: bool = False) -> list[float]:
    """Presentation times in seconds of the frames of :func:`make_index_video` (millisecond time base)."""
    if not vfr:
        return [round(i * 1000 / fps) / 1000 for i in range(num_frames)]
    # Variable frame rate: the gap between frames cycles through 1x, 2x and 3x the nominal frame duration.
    out, t = [], 0
    for i in range(num_frames):
        out.append(t / 1000)
        t += int(round(1000 / fps)) * (1 + i % 3)
    return out


HEVC_MIN_WIDTH = 64  # libx265's CTU: narrower frames corrupt the heap (glibc abort), e.g. 32x48


def _check_encoder_size(codec: str, height: int, width: int) -> None:
    """Refuse sizes that make an encoder crash the process, before anything is written."""
    if _ENCODERS.get(codec, codec) == "libx265" and width < HEVC_MIN_WIDTH:
        raise ValueError(f"hevc (libx265) needs frames at least {HEVC_MIN_WIDTH} pixels wide, got size "
                         f"(H, W)=({height}, {width}): narrower frames corrupt libx265's heap and abort the process")


def _open_stream(container, codec: str, fps: float, width: int, height: int, pix_fmt: str | None,
                 gop: int, bframes: int, crf: int | None, vfr: bool):
    name = _ENCODERS.get(codec, codec)
    options: dict[str, str] = {}
    if name == "libx264":
        options = {"preset": "veryfast", "crf": str(18 if crf is None else crf), "sc_threshold": "0",
                   "bf": str(bframes), "keyint_min": str(gop), "g": str(gop)}
    elif name == "libx265":
        options = {"preset": "ultrafast", "crf": str(20 if crf is None else crf),
                   "x265-params": f"keyint={gop}:min-keyint={gop}:bframes={bframes}:scenecut=0:log-level=error"}
    elif name in ("libvpx-vp9", "libvpx"):
        options = {"crf": str(20 if crf is None else crf), "b": "0", "deadline": "realtime", "cpu-used": "8",
                   "g": str(gop)}
    elif name == "mpeg4":
        options = {"qscale": "3", "g": str(gop), "bf": str(bframes)}
    elif name == "mjpeg":
        options = {"qscale": "3"}
    rate = Fraction(fps).limit_denominator(1001)
    stream = container.add_stream(name, rate=rate, options=options)
    stream.width = width
    stream.height = height
    if pix_fmt is None and (width % 2 or height % 2) and name in ("libx264", "libx265"):
        pix_fmt = "yuv444p"  # these encoders need even sizes for 4:2:0
    stream.pix_fmt = pix_fmt or _DEFAULT_PIX_FMT.get(codec, "yuv420p")
    if name == "mpeg4":
        stream.codec_context.gop_size = gop
        stream.codec_context.max_b_frames = bframes
        stream.codec_context.qscale = 3  # noqa: not all PyAV versions honour the option string
    if vfr:
        stream.codec_context.time_base = Fraction(1, 1000)
        stream.time_base = Fraction(1, 1000)
    if name == "mpeg4" or name == "mjpeg":
        stream.codec_context.bit_rate = 4_000_000
    return stream


def make_index_video(
    path,
    *,
    num_frames: int = 48,
    size: tuple[int, int] = (64, 96),
    codec: str = "h264",
    fps: float = 25,
    gop: int = 24,
    bframes: int = 2,
    pix_fmt: str | None = None,
    vfr: bool = False,
    faststart: bool = False,
    crf: int | None = None,
    display_rotation: int | None = None,
) -> Path:
    """Encode a video whose frame ``i`` shows the code of ``i`` (read it back with :func:`read_index_code`).

    Args:
        path: output file; the suffix picks the container (.mp4, .avi, .webm, .mkv, .mov).
        num_frames: number of frames (at most 1024).
        size: ``(H, W)``; odd sizes give yuv444p for h264/hevc (their 4:2:0 needs even sizes). hevc needs
            ``W >= 64`` (``ValueError`` otherwise: libx265 aborts the process on narrower frames).
        codec: ``"h264"``, ``"hevc"``, ``"vp9"``, ``"mpeg4"``, ``"mjpeg"`` or an FFmpeg encoder name.
        fps: nominal frame rate.
        gop: keyframe interval (frames).
        bframes: maximum consecutive B-frames (where the codec has them).
        pix_fmt: encoder pixel format, e.g. ``"yuv444p"`` or ``"yuvj420p"``; default the codec's usual one.
        vfr: variable frame rate, frame gaps per :func:`index_video_pts`.
        faststart: for .mp4/.mov put the index (moov) before the data.
        crf: quality for h264/hevc/vp9 (lower = better); default a high quality.
        display_rotation: write a display matrix rotating by this many degrees counter-clockwise (as
            ``VideoFrame.rotation`` reads it back); needs PyAV's ``VideoStream.set_display_rotation`` (``ValueError``
            without it).
    Returns:
        ``Path(path)``.
    """
    if num_frames > 2**CODE_BITS:
        raise ValueError(f"num_frames must be <= {2 ** CODE_BITS}, got {num_frames}")
    height, width = size
    _check_encoder_size(codec, height, width)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"movflags": "faststart"} if faststart and path.suffix in (".mp4", ".mov") else {}
    pts = index_video_pts(num_frames, fps=fps, vfr=vfr)
    with av.open(str(path), mode="w", options=options) as container:
        stream = _open_stream(container, codec, fps, width, height, pix_fmt, gop, bframes, crf, vfr)
        if display_rotation is not None:
            if not hasattr(stream, "set_display_rotation"):
                raise ValueError(f"PyAV {av.__version__} cannot write a display matrix")
            stream.set_display_rotation(display_rotation)
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(_draw_index_frame(i, height, width), format="rgb24")
            if vfr:
                frame.pts = int(round(pts[i] * 1000))
                frame.time_base = Fraction(1, 1000)
            else:
                frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def make_two_stream_video(path, *, num_frames: int = 30, preview_frames: int = 6) -> Path:
    """A Matroska file with two video streams: a small 5 fps preview (32x48, stream 0) listed before the programme
    (an index video, 64x96 at 25 fps, stream 1). Frame ``i`` of either stream shows the code of ``i``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        preview = _open_stream(container, "h264", 5, 48, 32, None, 5, 0, None, False)
        main = _open_stream(container, "h264", 25, 96, 64, None, 24, 2, None, False)
        frames = [(i / 5, preview, i, 32, 48) for i in range(preview_frames)]
        frames += [(i / 25, main, i, 64, 96) for i in range(num_frames)]
        for _, stream, i, height, width in sorted(frames, key=lambda f: (f[0], f[1] is main)):
            frame = av.VideoFrame.from_ndarray(_draw_index_frame(i, height, width), format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for stream in (preview, main):
            for packet in stream.encode():
                container.mux(packet)
    return path


def make_color_video(
    path,
    *,
    num_frames: int = 32,
    size: tuple[int, int] = (64, 96),
    codec: str = "h264",
    fps: float = 25,
    gop: int = 12,
    bframes: int = 2,
    seed: int = 0,
) -> Path:
    """Encode a moving coloured square on a gradient (colour and direction from ``seed``).

    Returns:
        ``Path(path)``.
    """
    height, width = size
    _check_encoder_size(codec, height, width)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    color = rng.integers(40, 256, size=3).astype(np.uint8)
    dx, dy = rng.choice([-2, -1, 1, 2], size=2)
    side = max(4, min(height, width) // 3)
    yy, xx = np.mgrid[0:height, 0:width]
    with av.open(str(path), mode="w") as container:
        stream = _open_stream(container, codec, fps, width, height, None, gop, bframes, None, False)
        for i in range(num_frames):
            img = np.zeros((height, width, 3), dtype=np.uint8)
            img[..., 0] = (xx * 255 // max(1, width - 1)).astype(np.uint8)
            img[..., 1] = (yy * 255 // max(1, height - 1)).astype(np.uint8)
            img[..., 2] = (seed * 37) % 256
            x0 = int((width // 2 + dx * i) % max(1, width - side))
            y0 = int((height // 2 + dy * i) % max(1, height - side))
            img[y0 : y0 + side, x0 : x0 + side] = color
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def make_audio_file(path, *, seconds: float = 1.0) -> Path:
    """Encode an audio-only file (a sine tone): AAC for .mp4/.m4a, MP2 otherwise."""
    path = Path(path)
    rate = 44100 if path.suffix not in (".mp4", ".m4a") else 48000
    codec = "aac" if path.suffix in (".mp4", ".m4a") else "mp2"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.layout = "mono"
        frame_size = stream.codec_context.frame_size or 1152
        total = int(seconds * rate)
        t = np.arange(total) / rate
        tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        fmt = stream.codec_context.format.name
        for start in range(0, total - frame_size + 1, frame_size):
            chunk = tone[start : start + frame_size]
            if fmt == "s16":
                chunk = (chunk * 32767).astype(np.int16)
            frame = av.AudioFrame.from_ndarray(chunk[None, :], format=fmt, layout="mono")
            frame.sample_rate = rate
            frame.pts = start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def make_bad_files(folder) -> dict[str, Path]:
    """Write one file per kind of bad input into ``folder``.

    Returns:
        ``{"missing", "empty", "text", "audio_only", "truncated", "corrupt"}`` -> path. ``missing`` does not exist.
        ``truncated`` is an H.264 mp4 (index up front) whose header lists ``BAD_NUM_FRAMES`` frames but whose
        data stops after about 60% of them; ``corrupt`` keeps its header but has garbage over a middle part of
        its frame data.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    out["missing"] = folder / "does_not_exist.mp4"
    out["empty"] = folder / "empty.mp4"
    out["empty"].write_bytes(b"")
    out["text"] = folder / "text.mp4"
    out["text"].write_text("this is not a video, just some text pretending to be one\n" * 20)
    out["audio_only"] = make_audio_file(folder / "audio_only.mp4")

    full = make_index_video(folder / "full_for_truncation.mp4", num_frames=BAD_NUM_FRAMES, gop=10, bframes=0,
                            faststart=True)
    data = full.read_bytes()
    mdat = data.find(b"mdat")
    cut = mdat + int((len(data) - mdat) * 0.6)
    out["truncated"] = folder / "truncated.mp4"
    out["truncated"].write_bytes(data[:cut])
    full.unlink()

    good = make_index_video(folder / "good_for_corruption.mp4", num_frames=48, gop=12, bframes=2, faststart=True)
    data = bytearray(good.read_bytes())
    mdat = data.find(b"mdat")
    body = len(data) - mdat
    rng = np.random.default_rng(0)
    start, stop = mdat + int(body * 0.4), mdat + int(body * 0.55)
    data[start:stop] = rng.integers(0, 256, size=stop - start, dtype=np.uint8).tobytes()
    out["corrupt"] = folder / "corrupt.mp4"
    out["corrupt"].write_bytes(bytes(data))
    good.unlink()
    return {k: Path(os.fspath(v)) for k, v in out.items()}


# -- conformance kinds: real-world container/codec situations, built with the FFmpeg command-line tool ---------
FFMPEG = "ffmpeg"
FFPROBE = "ffprobe"
_SIZE = "128x96"  # small frames keep the whole conformance suite fast; 4:2:0 needs even sizes


def _src(rate: float = 25, seconds: float = 2, size: str = _SIZE) -> list[str]:
    return ["-f", "lavfi", "-i", f"testsrc2=s={size}:r={rate}:d={seconds}"]


def _x264(bf: int = 3, g: int = 30, extra: tuple = ()) -> list[str]:
    return ["-c:v", "libx264", "-preset", "veryfast", "-bf", str(bf), "-g", str(g), "-pix_fmt", "yuv420p", *extra]


@dataclass(frozen=True)
class ConformanceKind:
    """One kind of file: how the FFmpeg CLI makes it and where the kind comes from.

    ``steps`` are ffmpeg argument lists run in order inside the output folder (``{out}`` is the file to make,
    ``{tmp}`` a scratch file); ``tail_packets`` drops that many leading 188-byte TS packets afterwards (a cut
    recording). ``reader`` holds extra ``VideoReader`` options and ``ffmpeg_input`` / ``ffmpeg_map`` the matching
    CLI options for the reference decode. ``encoders`` must all exist in the CLI for the kind to be built.
    """

    name: str
    suffix: str
    steps: tuple
    reference: str  # the issue / report this kind comes from
    encoders: tuple = ("libx264",)
    tail_packets: int = 0
    reader: tuple = ()  # (key, value) pairs passed to VideoReader
    ffmpeg_input: tuple = ()  # options before -i (e.g. -noautorotate)
    ffmpeg_map: tuple = ()  # options after -i (e.g. -map 0:0)
    rotation: int = 0  # the display rotation the file carries


def _k(name, suffix, steps, reference, **kw) -> ConformanceKind:
    return ConformanceKind(name=name, suffix=suffix, steps=tuple(tuple(s) for s in steps), reference=reference, **kw)


CONFORMANCE_KINDS: dict[str, ConformanceKind] = {k.name: k for k in [
    # today's kinds
    _k("h264_bframes_mp4", ".mp4", [_src(25, 3) + _x264(3, 30) + ["{out}"]], "seqvision README (baseline)"),
    _k("mjpeg_avi", ".avi", [_src(25, 1) + ["-c:v", "mjpeg", "-q:v", "3", "{out}"]], "seqvision README (baseline)",
       encoders=("mjpeg",)),
    _k("vp9_webm", ".webm", [_src(25, 2) + ["-c:v", "libvpx-vp9", "-g", "24", "-b:v", "300k", "{out}"]],
       "seqvision README (baseline)", encoders=("libvpx-vp9",)),
    _k("h264_raw_annexb", ".h264", [_src(25, 2) + _x264(2, 20) + ["-f", "h264", "{out}"]],
       "seqvision README (raw stream, no timestamps)"),
    _k("yuv444p_odd_mkv", ".mkv", [_src(25, 1, "97x61") + ["-c:v", "libx264", "-pix_fmt", "yuv444p", "-bf", "2",
                                                           "{out}"]], "seqvision README (odd size, 4:4:4)"),
    # issue #12's table
    _k("h264_bframes_avi", ".avi", [_src(30, 3) + _x264(3, 30) + ["{out}"]], "issue #12: H.264 B-frames in AVI"),
    _k("xvid_bframes_avi", ".avi", [_src(25, 3) + ["-c:v", "libxvid", "-q:v", "4", "-bf", "2", "-g", "25",
                                                   "{out}"]],
       "issue #12: Xvid (packed B-frames, N-VOPs) in AVI, as UCF101/HMDB51 (decord #195)", encoders=("libxvid",)),
    _k("mpeg4_bframes_avi", ".avi", [_src(25, 3) + ["-c:v", "mpeg4", "-q:v", "4", "-bf", "2", "-g", "25", "-vtag",
                                                    "xvid", "{out}"]],
       "issue #12: MPEG-4 part 2 B-frames in AVI (FFmpeg's encoder, not packed)", encoders=("mpeg4",)),
    _k("mp4_editlist_cut", ".mp4", [_src(25, 4) + _x264(3, 250) + ["{tmp}.mp4"],
                                    ["-ss", "1.3", "-i", "{tmp}.mp4", "-c", "copy", "{out}"]],
       "issue #12: stream-copy cut at a non-keyframe (MP4 edit list)"),
    _k("rotate_90_mp4", ".mp4", [_src(25, 2) + _x264(2, 25) + ["{tmp}.mp4"],
                                 ["-i", "{tmp}.mp4", "-c", "copy", "-metadata:s:v:0", "rotate=90", "{out}"]],
       "issue #12: portrait phone video (display matrix)", rotation=90),
    _k("rotate_180_mov", ".mov", [_src(25, 2) + _x264(2, 25) + ["{tmp}.mov"],
                                  ["-i", "{tmp}.mov", "-c", "copy", "-metadata:s:v:0", "rotate=180", "{out}"]],
       "issue #12; torchvision #3201 (BDD100k .mov upside down)", rotation=180),
    _k("rotate_270_mp4", ".mp4", [_src(25, 2) + _x264(2, 25) + ["{tmp}.mp4"],
                                  ["-i", "{tmp}.mp4", "-c", "copy", "-metadata:s:v:0", "rotate=270", "{out}"]],
       "issue #12; torchcodec #1084 (iPhone -90)", rotation=270),
    _k("rotate_90_coded_orientation", ".mp4", [_src(25, 1) + _x264(2, 25) + ["{tmp}.mp4"],
                                               ["-i", "{tmp}.mp4", "-c", "copy", "-metadata:s:v:0", "rotate=90",
                                                "{out}"]],
       "issue #12: option to keep the coded orientation (ffmpeg -noautorotate)", rotation=90,
       reader=(("autorotate", False),), ffmpeg_input=("-noautorotate",)),
    _k("ts_mid_gop", ".ts", [_src(30, 4) + _x264(3, 60) + ["-f", "mpegts", "{out}"]],
       "issue #12: MPEG-TS cut mid-GOP (a cut recording)", tail_packets=200),
    _k("ts_33bit_wrap", ".ts", [_src(25, 3) + _x264(2, 25) + ["-output_ts_offset", "95442.5", "-f", "mpegts",
                                                              "{out}"]],
       "issue #12: 33-bit PTS wrap inside the file"),
    _k("ts_large_offset", ".ts", [_src(25, 2) + _x264(2, 25) + ["-output_ts_offset", "50000", "-f", "mpegts",
                                                                "{out}"]],
       "issue #12: timestamps far from 0"),
    _k("mpeg1_ps", ".mpg", [_src(25, 2) + ["-c:v", "mpeg1video", "-bf", "2", "-g", "12", "-f", "mpeg", "{out}"]],
       "issue #12: MPEG-1 program stream opening I B B", encoders=("mpeg1video",)),
    _k("mpeg2_vob", ".vob", [_src(25, 2) + ["-c:v", "mpeg2video", "-bf", "2", "-g", "12", "-f", "vob", "{out}"]],
       "issue #12: MPEG-2 program stream (DVD)", encoders=("mpeg2video",)),
    _k("m1v_raw_24fps", ".m1v", [_src(24, 2) + ["-c:v", "mpeg1video", "-bf", "2", "-g", "12", "-f", "mpeg1video",
                                                "{out}"]],
       "issue #12: raw MPEG-1 elementary stream at 24 fps", encoders=("mpeg1video",)),
    _k("m2v_raw", ".m2v", [_src(24, 2) + ["-c:v", "mpeg2video", "-bf", "2", "-g", "12", "-f", "mpeg2video",
                                          "{out}"]],
       "issue #12: raw MPEG-2 elementary stream", encoders=("mpeg2video",)),
    _k("mkv_thumbnail_first", ".mkv", [_src(5, 2, "64x48") + _x264(0, 5) + ["{tmp}.mp4"],
                                       _src(25, 2) + _x264(2, 25) + ["{tmp}2.mp4"],
                                       ["-i", "{tmp}.mp4", "-i", "{tmp}2.mp4", "-map", "0:v", "-map", "1:v", "-c",
                                        "copy", "{out}"]],
       "issue #12: a preview track listed before the programme"),
    _k("mkv_thumbnail_stream0", ".mkv", [_src(5, 2, "64x48") + _x264(0, 5) + ["{tmp}.mp4"],
                                         _src(25, 2) + _x264(2, 25) + ["{tmp}2.mp4"],
                                         ["-i", "{tmp}.mp4", "-i", "{tmp}2.mp4", "-map", "0:v", "-map", "1:v", "-c",
                                          "copy", "{out}"]],
       "issue #12: stream= chooses another stream", reader=(("stream", 0),), ffmpeg_map=("-map", "0:0")),
    _k("mkv_cover_art", ".mkv", [_src(25, 1, "320x240") + ["-frames:v", "1", "{tmp}.png"],
                                 _src(25, 2) + _x264(2, 25) + ["{tmp}.mp4"],
                                 ["-i", "{tmp}.mp4", "-attach", "{tmp}.png", "-metadata:s:t", "mimetype=image/png",
                                  "-c", "copy", "{out}"]],
       "issue #12: attached cover image larger than the video", encoders=("libx264", "png")),
    # more kinds from the peers' trackers
    _k("hevc_mp4_gop2", ".mp4", [_src(10, 2) + ["-c:v", "libx265", "-g", "2", "-x265-params", "log-level=none",
                                                "-tag:v", "hvc1", "{out}"]],
       "torchcodec #179: HEVC seeks landed past the target", encoders=("libx265",)),
    _k("ts_gop13", ".ts", [_src(25, 4) + _x264(2, 13) + ["-f", "mpegts", "{out}"]],
       "VideoIO.jl #427: MPEG-TS seek a GOP late"),
    _k("vp8_webm", ".webm", [_src(25, 2) + ["-c:v", "libvpx", "-g", "12", "-b:v", "300k", "{out}"]],
       "decord #91: VP8 WebM returned frames from the start", encoders=("libvpx",)),
    _k("h264_open_gop_mkv", ".mkv", [_src(25, 3) + _x264(3, 20, ("-x264-params", "open-gop=1")) + ["{out}"]],
       "FFMS2 #437 / open-GOP H.264 (leading B-frames reference the previous GOP)"),
]}


def ffmpeg_encoders() -> set[str]:
    """Encoder names of the ffmpeg CLI on PATH (empty when it is missing)."""
    if shutil.which(FFMPEG) is None:
        return set()
    out = subprocess.run([FFMPEG, "-hide_banner", "-encoders"], capture_output=True, text=True).stdout
    return {line.split()[1] for line in out.splitlines() if len(line.split()) > 1 and line.startswith(" V")}


def make_conformance_video(kind: ConformanceKind, folder) -> Path:
    """Build ``kind`` with the ffmpeg CLI in ``folder``; returns the file (cached by name)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{kind.name}{kind.suffix}"
    if out.exists():
        return out
    tmp = folder / f"{kind.name}_tmp"
    for step in kind.steps:
        args = [a.replace("{out}", str(out)).replace("{tmp}", str(tmp)) for a in step]
        subprocess.run([FFMPEG, "-hide_banner", "-v", "error", "-y", *args], check=True, capture_output=True)
    if kind.tail_packets:
        data = out.read_bytes()
        out.write_bytes(data[188 * kind.tail_packets:])
    return out


@dataclass
class FFmpegReference:
    """What the FFmpeg CLI decodes: ``frames`` uint8 ``(N, H, W, 3)``, the input stream it chose, its timestamps
    (``best_effort_timestamp_time`` from ffprobe, ``None`` where ffprobe has none) and its average rate."""

    frames: np.ndarray
    stream_index: int
    times: list
    avg_rate: float
    rotation: int  # clockwise degrees the CLI rotates by: -(ffprobe's display-matrix rotation) mod 360


def ffmpeg_reference(path, *, input_options=(), map_options=()) -> FFmpegReference:
    """Decode ``path`` with ``ffmpeg -i F -fps_mode passthrough -pix_fmt rgb24 -f rawvideo -``."""
    import json
    import re
    proc = subprocess.run([FFMPEG, "-hide_banner", "-v", "info", *input_options, "-i", str(path), *map_options,
                           "-fps_mode", "passthrough", "-pix_fmt", "rgb24", "-f", "rawvideo", "-"],
                          capture_output=True, check=True)
    err = proc.stderr.decode("utf-8", "replace")
    size = re.search(r"Output #0.*?Video: rawvideo.*?, (\d+)x(\d+)", err, re.S)
    mapped = re.search(r"Stream #0:(\d+) -> #0:0", err)
    width, height = int(size.group(1)), int(size.group(2))
    frames = np.frombuffer(proc.stdout, dtype=np.uint8).reshape(-1, height, width, 3)
    index = int(mapped.group(1))
    probe = json.loads(subprocess.run(
        [FFPROBE, "-v", "error", "-select_streams", str(index), "-show_entries",
         "frame=best_effort_timestamp_time:stream=avg_frame_rate,r_frame_rate", "-of", "json", str(path)],
        capture_output=True, check=True).stdout)
    times = []
    for f in probe.get("frames", []):
        value = f.get("best_effort_timestamp_time")
        times.append(float(value) if value not in (None, "N/A") else None)
    streams = json.loads(subprocess.run([FFPROBE, "-v", "error", "-select_streams", str(index), "-show_streams",
                                         "-of", "json", str(path)], capture_output=True, check=True).stdout)
    rotation = 0
    for side in ((streams.get("streams") or [{}])[0].get("side_data_list") or []):
        if "rotation" in side:
            rotation = int(round(-float(side["rotation"]))) % 360
    stream = (probe.get("streams") or [{}])[0]
    rate = 0.0
    for key in ("avg_frame_rate", "r_frame_rate"):
        num, _, den = str(stream.get(key, "0/0")).partition("/")
        if den and float(den) != 0 and float(num) != 0:
            rate = float(num) / float(den)
            break
    return FFmpegReference(frames=frames, stream_index=index, times=times, avg_rate=rate, rotation=rotation)
