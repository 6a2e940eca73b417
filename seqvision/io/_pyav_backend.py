"""PyAV backend: a presentation-order frame index and frame-exact sparse decoding, matching the FFmpeg CLI.

Index ``i`` is the ``i``-th frame that ``ffmpeg -i F -fps_mode passthrough -pix_fmt rgb24 -f rawvideo -``
outputs, with the CLI's default stream choice and autorotation. The index follows the demuxer's own view in
one of two modes:

- ``"pts"`` (MP4/MOV, Matroska/WebM, IVF, and streams that never reorder frames, when the first packet is a
  keyframe and every packet has its own pts): built on open by demuxing only. Packets the demuxer flags as
  discarded (MP4 edit lists: a stream-copy cut between keyframes) are left out, exactly as the decoder drops
  their frames. Reading seeks to the keyframe at or before the first wanted frame, decodes forward and keeps
  what is wanted; frames that are neither wanted nor referenced are skipped inside the decoder
  (``skip_frame="NONREF"``).
- ``"decode"`` (AVI/raw streams whose codec reorders frames (B-frames), MPEG-TS/PS (a cut recording starting
  mid-GOP, timestamps that wrap at 33 bits), files starting with a non-keyframe, packets without their own pts):
  the decoder's output order *is* the presentation order the CLI writes, so on open the whole stream is decoded
  once (no colour conversion) and frame ``i`` is the ``i``-th frame the decoder outputs; reading decodes
  forward from the start (one pass for sorted indices). Leading frames the decoder cannot decode (no keyframe
  yet) never enter the index. Timestamps are FFmpeg's ``best_effort_timestamp`` (reproduced from the frames'
  pts and packet dts with libavcodec's ``guess_correct_pts`` rule).

A damaged ``"pts"`` file (bytes overwritten inside the packets: a zero-filled hole of an interrupted download)
lists frames whose packets do not decode, and the CLI writes no frame for them. Such a file is indexed in
``"decode"`` mode, with a warning naming it, once the damage is seen: on open where it is cheap to see (H.264 /
HEVC packets whose NAL unit lengths do not add up to the packet, checked while demuxing), else at the first read
that meets a packet the decoder rejects or a listed frame that does not come out (:meth:`PyAVDecoder.decode`
rebuilds the index once, then finishes the read). Clean files never pay for a decode on open.

Stream choice is the CLI's (``fftools/ffmpeg_opt.c``, FFmpeg 5.1): the video stream with the largest frame area,
+5e6 for the ``default`` disposition, an attached picture (cover art) scoring 1 so it is never chosen over a
real video stream; ``stream=`` picks another. Autorotation is the CLI's too (``ffmpeg_filter.c``): the display
matrix (MP4 ``tkhd``, display-matrix side data) maps to ``transpose=clock|cclock|cclock_flip|clock_flip``,
``hflip``/``vflip``; it is applied to the RGB frame after conversion (the same pixels: for 4:2:0 input the
conversion replicates each chroma sample over its 2x2 block, so it commutes with the transpose).
"""

from __future__ import annotations

import bisect
import itertools
import math
import os
import re
import struct
import warnings
from dataclasses import dataclass, field
from fractions import Fraction

import av
import av.error
import numpy as np
from av.video.reformatter import VideoReformatter

from seqvision.errors import VideoDecodeError
from seqvision.io._convert import CliRGBConverter

__all__ = ["FrameIndex", "PyAVDecoder", "open_container", "build_index", "finish_orientation", "choose_stream",
           "orient",
           "display_transform", "PYAV_VERSION"]

PYAV_VERSION = tuple(int(p) for p in av.__version__.split(".")[:2] if p.isdigit())
# PyAV <= 18 decodes metadata with one codec per container and raises on bytes that are not UTF-8 unless told to
# ignore them; PyAV 19 removed the argument (metadata is always UTF-8 with surrogateescape, which never raises).
_OPEN_KWARGS = {"metadata_errors": "ignore"} if PYAV_VERSION < (19,) else {}
# VideoReformatter.reformat(threads=...) exists from PyAV 17 (sws_scale_frame); before, swscale is single-threaded.
_REFORMAT_KWARGS = {"threads": 1} if PYAV_VERSION >= (17,) else {}

# Containers that store a presentation timestamp per frame, so the demuxer's packet pts are the presentation
# order without decoding. Everything else is indexed by decoding unless its codec never reorders frames.
PTS_FORMATS = ("mov", "mp4", "matroska", "webm", "ivf")
PARSER_EXACT_CODECS = ("mpeg4", "mpeg1video", "mpeg2video")
URL_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")  # http://, rtsp://, udp://, file://, ...
PACKED_MARKER = re.compile(rb"DivX\d+(?:b|Build)\d+p")  # user data of a packed MPEG-4 bitstream
NVOP_MAX_BYTES = 8
# Raw elementary streams: no container index to seek with.
RAW_FORMATS = ("mpegvideo", "m4v", "h264", "hevc", "h261", "h263", "cavsvideo", "vc1", "rawvideo", "avs2", "avs3",
               "vvc", "obu")
# Containers whose timestamps the index must not trust even without B-frames: MPEG-TS/PS (33-bit wrap, a cut
# recording's leading packets, PES packets without pts) and raw elementary streams (no timestamps at all).
DECODE_FORMATS = ("mpegts", "mpeg", "mpegvideo", "m4v", "h264", "hevc", "h261", "h263", "cavsvideo", "vc1",
                  "mpegtsraw", "vob", "dvd", "svcd", "vcd", "rawvideo", "avs2", "avs3", "vvc", "obu")


@dataclass
class FrameIndex:
    """Presentation-order index of a video stream.

    Attributes:
        pts: (``mode == "pts"``) stream-time pts of every frame, sorted (presentation order); ``None`` in
            ``"decode"`` mode, where frames are counted in the decoder's output order from the start.
        num_frames: frames the reader can return (``len(reader)``): ffmpeg's output frame count.
        time_base: the stream time base.
        key_positions: presentation positions of the keyframes (sorted); ``[0]`` in decode mode.
        key_seek_ts: for each keyframe, the timestamp to seek to (its pts). Decode mode: None past the first
            keyframe marks one a read must decode up to from the start (it decodes only in part).
        sequential: decode from the start and count frames instead of matching timestamps (decode mode).
        width, height: size of the frames returned at the native size, after autorotation (what ffmpeg writes).
        codec: FFmpeg codec name.
        fps: frame rate (frames per second): the stream's nominal rate where it agrees with the timestamps,
            else the measured average.
        duration: seconds from the first frame's start to the last frame's end.
        header_frames: the frame count the container header claims (0 = unknown).
        dropped_packets: packets cut off or unreadable (flagged corrupt by the demuxer), not counting
            ``segment_joins``.
        demux_error: the error that stopped demuxing early, if any.
        header_frame_estimate: the largest frame count a reader that trusts the header would size its tables
            for, over the file's video streams: the stream's frame count, else average rate x container
            duration (what decord reserves memory for before it reads a packet); 0 = none.
        size_from_decoding: the header's frame size was missing or implausible; the size comes from decoding.
        mode: ``"pts"`` (demux-only index, seekable) or ``"decode"`` (decoder output order, see the module doc).
        stream_index: index of the decoded stream in the container (``ffmpeg -map 0:<stream_index>``).
        num_video_streams: video streams in the container (attached pictures included).
        coded_width, coded_height: the decoder's frame size before autorotation.
        rotation: clockwise degrees the display matrix asks for (0, 90, 180, 270; other angles are reported but
            not applied), as the FFmpeg CLI computes it.
        transform: the transpose/flip the CLI applies (``"clock"``, ``"cclock"``, ``"cclock_flip"``,
            ``"clock_flip"``, ``"hflip"``, ``"vflip"``, ``"hflip+vflip"``) or ``None``; ``None`` too when
            autorotation is off.
        discarded_packets: packets the demuxer flags as discarded (hidden by an MP4 edit list).
        frame_times: (decode mode) presentation time in seconds of each frame.
        damaged_packets: packets listed with a timestamp that are damaged inside (H.264/HEVC NAL unit lengths
            that do not add up), seen on open; the index was then built in decode mode.
        rebuilt_from: ``len()`` of the demux-only index this decode-mode index replaced when a read found
            packets that do not decode (0 = not rebuilt).
        segment_joins: (decode mode) places where a second MPEG-TS segment was joined on byte for byte
            (``cat a.ts b.ts``): the demuxer flags a packet there, but every frame decodes (see ``_scan``). Not
            damage; timestamps may restart there, and ``frame_times`` then run on at the frame rate.
    """

    pts: list[int] | None
    num_frames: int
    time_base: Fraction
    key_positions: list[int]
    key_seek_ts: list[int | None]
    sequential: bool
    width: int
    height: int
    codec: str
    fps: float
    duration: float
    header_frames: int
    dropped_packets: int
    demux_error: str | None
    header_frame_estimate: int = 0
    size_from_decoding: bool = False
    mode: str = "pts"
    stream_index: int = 0
    num_video_streams: int = 1
    coded_width: int = 0
    coded_height: int = 0
    rotation: int = 0
    transform: str | None = None
    discarded_packets: int = 0
    frame_times: list[float] | None = field(default=None, repr=False)
    orientation_pending: bool = False  # rotation not known until the first frame is decoded (finish_orientation)
    autorotate: bool = True
    damaged_packets: int = 0
    rebuilt_from: int = 0
    segment_joins: int = 0

    def pts_seconds(self, position: int) -> float:
        if self.frame_times is not None:
            return self.frame_times[position]
        if self.pts is None:
            return position / self.fps if self.fps > 0 else 0.0
        return float(self.pts[position] * self.time_base)


def _describe(exc: BaseException) -> str:
    """A one-line cause from an FFmpeg / OS error (no traceback)."""
    text = getattr(exc, "strerror", None) or str(exc)
    return f"{type(exc).__name__}: {text}".strip()


AV_DISPOSITION_DEFAULT = 0x1
AV_DISPOSITION_ATTACHED_PIC = 0x400


def _disposition(stream) -> int:
    """``AVStream.disposition`` bits: PyAV >= 14.1 exposes them (an ``enum.Flag`` before 15, an ``IntFlag`` after)."""
    value = getattr(stream, "disposition", 0)
    value = getattr(value, "value", value)
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def choose_stream(path: str, container, stream: int | None = None):
    """The video stream the FFmpeg CLI decodes by default, or stream number ``stream`` of the container.

    Default choice (``fftools/ffmpeg_opt.c`` of FFmpeg 5.1): the largest ``width * height``, +5,000,000 for the
    ``default`` disposition, an attached picture (cover art) scores 1; ties go to the first stream. A file whose
    only video stream is an attached picture has no video.

    Raises:
        VideoDecodeError: no video stream, only a cover image, or ``stream`` is not a video stream of the file.
    """
    videos = list(container.streams.video)
    if stream is not None:
        streams = list(container.streams)
        if not isinstance(stream, int) or not 0 <= stream < len(streams) or streams[stream].type != "video":
            listing = ", ".join(f"{s.index}: {s.type}" for s in streams)
            raise VideoDecodeError(path, f"stream={stream!r} is not a video stream of this file (streams: "
                                         f"{listing})")
        return streams[stream]
    if not videos:
        kinds = ", ".join(f"{s.type} {getattr(s.codec_context, 'name', '?')}" for s in container.streams) or "none"
        raise VideoDecodeError(path, f"has no video stream (streams: {kinds})")
    best, best_score = None, 0
    for s in videos:
        cc = s.codec_context
        flags = _disposition(s)
        score = (int(getattr(cc, "width", 0) or 0) * int(getattr(cc, "height", 0) or 0)
                 + 5_000_000 * bool(flags & AV_DISPOSITION_DEFAULT))
        if flags & AV_DISPOSITION_ATTACHED_PIC:
            score = 1
        if score > best_score:
            best, best_score = s, score
    best = best if best is not None else videos[0]
    if _disposition(best) & AV_DISPOSITION_ATTACHED_PIC:
        raise VideoDecodeError(path, "its only video stream is an attached picture (cover art), not a video; "
                                     f"to read the image anyway, open it with VideoReader(path, "
                                     f"stream={best.index}) (config: data.stream: {best.index})")
    return best


def open_container(path: str, *, num_threads: int = 0, stream: int | None = None):
    """Open ``path`` and return ``(container, video_stream)``; every failure is a ``VideoDecodeError``."""
    if not os.path.exists(path):
        if URL_PATTERN.match(path):
            raise VideoDecodeError(path, "is a URL; VideoReader reads local files (it indexes the whole file on "
                                         "open): read network and live streams with `seqvision stream URL`, or "
                                         "download the file first")
        raise VideoDecodeError(path, "file does not exist")
    if os.path.isdir(path):
        raise VideoDecodeError(path, "is a directory, not a video file")
    if os.path.getsize(path) == 0:
        raise VideoDecodeError(path, "file is empty (0 bytes)")
    try:
        container = av.open(path, mode="r", **_OPEN_KWARGS)
    except (av.error.FFmpegError, OSError, UnicodeDecodeError, ValueError) as exc:
        raise VideoDecodeError(path, f"not a video file FFmpeg can open ({_describe(exc)})") from None
    try:
        chosen = choose_stream(path, container, stream)
    except BaseException:
        container.close()
        raise
    if chosen.codec_context is None or not chosen.codec_context.name:
        container.close()
        raise VideoDecodeError(path, "video stream has no decoder in this FFmpeg build")
    chosen.thread_type = "AUTO"  # frame + slice threading
    chosen.thread_count = int(num_threads)
    return container, chosen


def close_container(container, stream=None) -> None:
    """Close ``container``, first parking the frame-threaded decoder of ``stream`` with the GIL released.

    Closing frees the codec context with the GIL held, and freeing waits for the frame threads still decoding
    queued packets. If a Python log callback is installed (``av.logging.set_level(<int>)``, which
    ``import torchvision`` does on torchvision <= 0.19 via ``torchvision.io.video``), PyAV 14's callback takes the
    GIL for every FFmpeg message, DEBUG included, so a frame thread logging mid-packet waits for the GIL forever
    while the closing thread waits for it: a futex deadlock that no Python timeout can interrupt (seen with
    PyAV 14.1.0 on a raw H.264 stream that reopens to seek and in forked DataLoader workers; see PyAV-Org/PyAV#1849).
    ``CodecContext.flush_buffers`` waits for those threads with the GIL released, so the free that follows has
    nothing to wait for. The decoder is being discarded, so dropping its buffered frames loses nothing.
    """
    try:
        if stream is not None and stream.codec_context is not None:
            stream.codec_context.flush_buffers()
    finally:
        container.close()


# -- display matrix / autorotation -------------------------------------------------------------------------
def _c_round(x: float) -> float:
    return math.copysign(math.floor(abs(x) + 0.5), x)  # C's round(): half away from zero


def display_transform(matrix) -> tuple[int, str | None]:
    """``(rotation, transform)`` the FFmpeg CLI derives from a 3x3 display matrix (9 int32, 16.16 fixed point).

    ``rotation`` is ``get_rotation()`` of ``fftools/cmdutils.c`` (clockwise degrees in ``[0, 360)``), the
    transform the filter ``ffmpeg_filter.c`` inserts for it: ``transpose=clock`` for 90 (``cclock_flip`` when
    the matrix also flips), ``hflip``/``vflip`` for 180, ``transpose=cclock`` for 270 (``clock_flip``).
    ``(0, None)`` for no matrix; other angles give ``(angle, None)`` (the CLI's ``rotate`` filter is not
    reproduced).
    """
    if matrix is None:
        return 0, None
    m = [float(v) / 65536.0 for v in matrix]
    scale0, scale1 = math.hypot(m[0], m[3]), math.hypot(m[1], m[4])
    if scale0 == 0.0 or scale1 == 0.0:
        return 0, None
    ccw = -math.degrees(math.atan2(m[1] / scale1, m[0] / scale0))  # av_display_rotation_get
    theta = -_c_round(ccw)
    theta -= 360 * math.floor(theta / 360 + 0.9 / 360)
    if abs(theta - 90) < 1.0:
        return 90, ("cclock_flip" if matrix[3] > 0 else "clock")
    if abs(theta - 180) < 1.0:
        flips = (["hflip"] if matrix[0] < 0 else []) + (["vflip"] if matrix[4] < 0 else [])
        return 180, "+".join(flips) or None
    if abs(theta - 270) < 1.0:
        return 270, ("clock_flip" if matrix[3] < 0 else "cclock")
    if abs(theta) > 1.0:
        return int(round(theta)), None
    return 0, None


TRANSPOSING = ("clock", "cclock", "cclock_flip", "clock_flip")


def orient(rgb: np.ndarray, transform: str | None) -> np.ndarray:
    """Apply an FFmpeg ``transpose``/``hflip``/``vflip`` to an ``(H, W, C)`` array (a view, no copy)."""
    if transform is None:
        return rgb
    if transform == "clock":
        return np.rot90(rgb, k=-1)
    if transform == "cclock":
        return np.rot90(rgb, k=1)
    if transform == "cclock_flip":
        return rgb.transpose(1, 0, 2)
    if transform == "clock_flip":
        return np.rot90(rgb, k=-1)[::-1]
    out = rgb
    if "hflip" in transform:
        out = out[:, ::-1]
    if "vflip" in transform:
        out = out[::-1]
    return out


def _display_matrix(frame) -> list[int] | None:
    """The DISPLAYMATRIX side data of a decoded frame (libavcodec copies the stream's onto every frame)."""
    side = frame.side_data
    try:
        count = len(side)
    except TypeError:
        return None
    for i in range(count):
        sd = side[i]
        kind = getattr(sd, "type", None)
        name = getattr(kind, "name", None) or str(kind)
        if name.upper().endswith("DISPLAYMATRIX"):
            raw = bytes(sd)
            if len(raw) >= 36:
                return [int(v) for v in np.frombuffer(raw[:36], dtype=np.int32)]
    return None


_UNKNOWN = object()


def _coded_display_matrix(cc):
    """The stream's display matrix from ``CodecContext.coded_side_data`` (PyAV >= 19): a list of 9 ints, ``None``
    when the stream has none, or ``_UNKNOWN`` when this PyAV cannot tell without decoding a frame."""
    side = getattr(cc, "coded_side_data", None)
    if not isinstance(side, dict):
        return _UNKNOWN
    for key, raw in side.items():
        if str(key).lower().replace(" ", "_") in ("display_matrix", "displaymatrix") and len(raw) >= 36:
            return [int(v) for v in np.frombuffer(bytes(raw)[:36], dtype=np.int32)]
    return None


# -- decoding from the start (decode mode, the frame-size probe) -----------------------------------------------
def _is_flush(packet) -> bool:
    return packet.size == 0 and packet.pts is None and packet.dts is None


def _is_empty(packet) -> bool:
    """A zero-size packet that carries a timestamp: no picture (Ogg Theora's dropped frame, a repeat of the one
    before). The ffmpeg CLI skips such packets (nothing is output for them); sent to a decoder, an empty packet
    means "drain", after which it refuses every further packet."""
    return packet.size == 0 and not _is_flush(packet)


def decode_from_start(container, stream, on_error=None):
    """Yield every frame the decoder outputs, in output order, feeding every packet of ``stream`` from the
    container's current position and flushing at the end: what the FFmpeg CLI decodes (corrupt packets are
    fed too; a packet the decoder rejects is skipped; a demux error ends the stream)."""
    packets = container.demux(stream)
    flushed = False
    while not flushed:
        try:
            packet = next(packets)
        except StopIteration:
            packet = None
        except (av.error.FFmpegError, OSError) as exc:
            if on_error is not None:
                on_error("demux", exc)
            packet = None
        if packet is not None and _is_empty(packet):
            continue
        if packet is None or _is_flush(packet):
            flushed = True
            packet = None
        try:
            frames = stream.decode(packet)
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            if on_error is not None:
                on_error("decode", exc)
            continue
        yield from frames


@dataclass
class _Scan:
    times: list[int | None]
    labels: list[int | None]  # frame.pts as the decoder returns it: the pts of the packet that carried the picture
    keys: list[bool]  # frame.key_frame
    key_dts: dict  # pts -> dts of every keyframe packet (decode mode seeks by dts: never past the keyframe)
    matrix: list[int] | None
    size: tuple[int, int] | None
    packets: int
    corrupt: int  # packets flagged corrupt by the demuxer, less the segment joins
    demux_error: str | None
    joins: int = 0  # corrupt flags explained as a joined segment's start (see _scan)
    # per frame: a read must not start from it even if it is a keyframe (see _decode_index). A keyframe that
    # decodes only in part (a cut-off file's last one) is concealed from the frames before it; frame.is_corrupt
    # says so only on some runs under frame threads, so the frame of the stream's last packet counts too.
    no_start: list[bool] = field(default_factory=list)


def _scan(container, stream) -> _Scan:
    """Decode the whole stream once (no colour conversion): what decode mode indexes.

    A segment join is not damage: MPEG-TS segments joined byte for byte (``cat a.ts b.ts``, as HLS recorders
    do) break the continuity counter where the second starts, and the demuxer flags the first segment's last,
    complete, packet corrupt (the packet before it, in fact: the parser hands on a PES's flags with the frame
    it completes, one behind). Such a flag counts as a join, not in ``corrupt``, when one of the next two
    packets is a keyframe whose dts restarts the timeline (goes back, or on by more than
    ``JOIN_GAP_SECONDS``) and no decoded frame of the stream is corrupt. A TS packet lost inside a recording
    breaks the counter too, but the timestamps run on (even when the decoder does not notice the loss).
    """
    tb_pts: list[int | None] = []
    labels: list[int | None] = []
    keys: list[bool] = []
    key_dts: dict = {}
    matrix, size = None, None
    state = {"packets": 0, "corrupt": 0, "demux_error": None, "corrupt_frames": 0}
    no_start: list[bool] = []
    last_packet_pts: list = [None]
    flagged: list[list] = []  # per corrupt packet: [packets seen after it, a segment starts in the next two]
    gap = JOIN_GAP_SECONDS / stream.time_base if stream.time_base else None  # in stream time base units
    packet_dts: list = [None]  # the last packet's dts
    # libavcodec's guess_correct_pts (best_effort_timestamp): pts unless they went backwards more often than dts
    faulty_pts = faulty_dts = 0
    last_pts = last_dts = -(2**63)

    def on_error(where, exc):
        if where == "demux":
            state["demux_error"] = _describe(exc)

    packets = container.demux(stream)

    def counted():
        for packet in packets:
            if packet.size:
                state["packets"] += 1
                dts, before = packet.dts, packet_dts[0]
                restarts = (packet.is_keyframe and dts is not None and before is not None and gap is not None
                            and not 0 < dts - before <= gap)
                for entry in flagged[-2:]:
                    if entry[0] < 2:
                        entry[0] += 1
                        entry[1] = entry[1] or restarts
                packet_dts[0] = dts if dts is not None else before
                if packet.is_corrupt:
                    state["corrupt"] += 1
                    flagged.append([0, False])
                if packet.is_keyframe and packet.pts is not None and packet.dts is not None:
                    key_dts.setdefault(packet.pts, packet.dts)
                last_packet_pts[0] = packet.pts
            yield packet

    class _Wrap:  # decode_from_start takes a container; give it the counting packet source
        def demux(self, _stream):
            return counted()

    for frame in decode_from_start(_Wrap(), stream, on_error):
        state["corrupt_frames"] += bool(frame.is_corrupt)
        no_start.append(bool(frame.is_corrupt))
        pts, dts = frame.pts, frame.dts
        if dts is not None:
            faulty_dts += dts <= last_dts
            last_dts = dts
        elif pts is not None:
            last_dts = pts
        if pts is not None:
            faulty_pts += pts <= last_pts
            last_pts = pts
        elif dts is not None:
            last_pts = dts
        best = pts if (faulty_pts <= faulty_dts or dts is None) and pts is not None else dts
        tb_pts.append(best)
        labels.append(pts)
        keys.append(bool(frame.key_frame))
        if size is None:
            size = (int(frame.width), int(frame.height))
            matrix = _display_matrix(frame)
    joins = sum(starts for _, starts in flagged) if not state["corrupt_frames"] else 0
    return _Scan(tb_pts, labels, keys, key_dts, matrix, size, state["packets"], state["corrupt"] - joins,
                 state["demux_error"], joins,
                 [bad or (label is not None and label == last_packet_pts[0]) for bad, label in zip(no_start, labels)])


def _first_frame(container, stream):
    """Seek to the start and decode until the first frame comes out (None if none within PROBE_PACKETS)."""
    try:
        container.seek(0, backward=True, any_frame=False, stream=stream)
    except (av.error.FFmpegError, OSError):
        return None
    seen = 0
    try:
        for packet in container.demux(stream):
            try:
                frames = stream.decode(None if _is_flush(packet) else packet)
            except (av.error.FFmpegError, OSError, ValueError):
                frames = []
            for frame in frames:
                if _plausible_size(int(frame.width), int(frame.height)):
                    return frame
            seen += 1
            if seen >= PROBE_PACKETS:
                return None
    except (av.error.FFmpegError, OSError):
        return None
    return None


_LENGTH_PREFIX = {n: struct.Struct(f">{c}").unpack_from for n, c in ((1, "B"), (2, "H"), (4, "I"))}


def nal_length_size(cc) -> int:
    """Bytes of the length prefix of each NAL unit in an H.264 (``avcC``) / HEVC (``hvcC``) packet as MP4 and
    Matroska store them; 0 for other codecs and for Annex B streams (start codes, no length prefixes)."""
    extra = bytes(getattr(cc, "extradata", None) or b"")
    if cc.name == "h264" and len(extra) >= 7 and extra[0] == 1:
        return (extra[4] & 3) + 1
    if cc.name == "hevc" and len(extra) >= 23 and extra[0] == 1:
        return (extra[21] & 3) + 1
    return 0


def nal_units_intact(packet, length_size: int) -> bool:
    """Whether the length-prefixed NAL units of ``packet`` tile it exactly, each non-empty with its forbidden
    bit clear. A run of overwritten bytes that reaches a length prefix breaks this; libavcodec then cannot split
    the packet and drops (part of) its picture. A few integer reads per packet, no copy."""
    data = memoryview(packet)
    size, offset = len(data), 0
    unpack = _LENGTH_PREFIX.get(length_size)
    while offset < size:
        start = offset + length_size
        if start >= size:
            return False
        length = unpack(data, offset)[0] if unpack else int.from_bytes(data[offset:start], "big")
        if length == 0 or start + length > size or data[start] & 0x80:
            return False
        offset = start + length
    return True


def _scan_fresh(container, stream, reopen) -> _Scan:
    """:func:`_scan` a fresh container from ``reopen()`` (a decoder that has seen nothing), closing it after."""
    scan_container, scan_stream = reopen() if reopen is not None else (container, stream)
    try:
        return _scan(scan_container, scan_stream)
    finally:
        if scan_container is not container:
            close_container(scan_container, scan_stream)


def _format_names(container) -> set[str]:
    return set((getattr(container.format, "name", "") or "").split(","))


def _rate_candidates(stream) -> list[float]:
    out = []
    for rate in (getattr(stream.codec_context, "framerate", None), stream.average_rate, stream.guessed_rate,
                 stream.base_rate):
        try:
            value = float(rate) if rate else 0.0
        except (TypeError, ZeroDivisionError, OverflowError):
            value = 0.0
        if 0 < value < 10_000:
            out.append(value)
    return out


def _choose_fps(candidates: list[float], measured: float | None) -> float:
    """The first nominal rate within 10% of the measured one, else the measured one (else the first nominal)."""
    if measured and measured > 0:
        for value in candidates:
            if abs(value / measured - 1) < 0.1:
                return value
        return measured
    return candidates[0] if candidates else 25.0


def build_index(path: str, container, stream, *, autorotate: bool = True, reopen=None) -> FrameIndex:
    """Build the :class:`FrameIndex` of ``stream`` (see the module doc for the two modes).

    ``reopen()`` must return a fresh ``(container, stream)`` of the same file (decode mode needs a decoder that
    has seen nothing yet); the containers it returns are closed here.
    """
    tb = stream.time_base or Fraction(1, 1)
    tb = Fraction(tb.numerator, tb.denominator)
    cc = stream.codec_context
    formats = _format_names(container)
    reorders = bool(getattr(cc, "has_b_frames", 0))
    # Without per-frame timestamps in the container (AVI), libavformat rebuilds pts from the parser's picture
    # types: exact for MPEG-1/2/4 part 2 (B-frames are never references), not for H.264/HEVC (B-pyramids).
    # An MPEG-4 "packed bitstream" (Xvid/DivX B-frames: a P+B packet, then a placeholder N-VOP) breaks it.
    check_packed = not formats & set(PTS_FORMATS) and reorders and cc.name in PARSER_EXACT_CODECS
    decode_mode = bool(formats & set(DECODE_FORMATS)) or (not formats & set(PTS_FORMATS) and reorders
                                                          and not check_packed)
    packed = False
    header = int(stream.frames or 0)
    estimate = _header_frame_estimate(container)
    num_video = len(container.streams.video)
    entries: list[tuple[int | None, int | None, bool]] = []
    dropped = discarded = damaged = 0
    demux_error = None
    demuxed = not decode_mode
    file_size = os.path.getsize(path)
    length_size = nal_length_size(cc)
    if demuxed:
        first_is_key = None
        try:
            for packet in container.demux(stream):
                if packet.size == 0:  # the end-of-stream flush, or an empty packet (no picture: _is_empty)
                    continue
                if first_is_key is None:
                    first_is_key = bool(packet.is_keyframe)
                    if check_packed and PACKED_MARKER.search(bytes(packet)):
                        packed = True
                if check_packed and packet.size <= NVOP_MAX_BYTES:
                    packed = True  # a not-coded VOP placeholder: the decoder outputs no frame for it
                pos = packet.pos
                if packet.is_corrupt or (pos is not None and pos >= 0 and pos + packet.size > file_size):
                    # e.g. the last packet of a cut-off file (FFmpeg < 8 does not flag one that ends past EOF)
                    dropped += 1
                    continue
                if getattr(packet, "is_discard", False):
                    discarded += 1  # hidden by an edit list: the decoder drops its frame
                    continue
                if length_size and not nal_units_intact(packet, length_size):
                    damaged += 1  # the decoder may output no frame for it: only decoding can tell
                entries.append((packet.pts, packet.dts, bool(packet.is_keyframe)))
        except (av.error.FFmpegError, OSError) as exc:
            demux_error = _describe(exc)
        if entries and (packed or not first_is_key or damaged or any(e[0] is None for e in entries)
                        or len(set(e[0] for e in entries)) != len(entries)):
            # leading non-keyframes, damaged packets, missing or repeated pts: only decoding can tell
            decode_mode = True
    if decode_mode:
        # Scan a fresh container: the reader's own container keeps a decoder that has seen nothing. (Skipping
        # the IDCT / loop filter in the scan would be faster, but exercises FFmpeg paths that damaged files make
        # risky; the scan decodes normally.)
        scan = _scan_fresh(container, stream, reopen)
        index = _decode_index(path, container, stream, scan, tb, autorotate, header, estimate, num_video)
        index.damaged_packets = damaged
        return index

    if not entries:
        cause = f" ({demux_error})" if demux_error else ""
        raise VideoDecodeError(path, f"video stream has no readable packets{cause}")
    n = len(entries)
    pts_list = [e[0] for e in entries]
    order = sorted(range(n), key=lambda i: pts_list[i])
    pts = [pts_list[i] for i in order]
    pos_of = {pts[j]: j for j in range(n)}
    # Seek by the keyframe's pts: containers index keyframes by dts (<= pts) or pts, and FFmpeg's mov
    # index is shifted by the edit list, so seeking to the dts can land one keyframe early.
    keys = sorted((pos_of[pts_list[i]], pts_list[i]) for i in range(n) if entries[i][2])
    if not keys or keys[0][0] != 0 or discarded:
        if keys and keys[0][0] == 0:
            keys = keys[1:]
        keys.insert(0, (0, None))  # the first frames need the very beginning (an edit list hides its start)
    key_positions = [k[0] for k in keys]
    key_seek = [k[1] for k in keys]
    span = float((pts[-1] - pts[0]) * tb)
    candidates = _rate_candidates(stream)
    if n > 1 and span > 0:
        measured = (n - 1) / span
        nominal = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(nominal) if nominal and abs(float(nominal) / measured - 1) < 0.5 else measured
        duration = span + span / (n - 1)
    else:
        fps = candidates[0] if candidates else 25.0
        duration = n / fps
    coded_w, coded_h = int(cc.width or 0), int(cc.height or 0)
    size_from_decoding = not _plausible_size(coded_w, coded_h)
    # The display matrix is read from the first decoded frame. With a usable header size that frame comes from
    # the reader's own first decode (PyAVDecoder.prime: no extra seek or decode); only a damaged header is
    # probed here.
    first = _first_frame(container, stream) if size_from_decoding else None
    coded_side = _coded_display_matrix(cc)  # PyAV >= 19 reads it without decoding
    pending = not size_from_decoding and coded_side is _UNKNOWN
    if not size_from_decoding:
        matrix = None if coded_side is _UNKNOWN else coded_side
    elif first is not None:
        if size_from_decoding:
            coded_w, coded_h = int(first.width), int(first.height)
        matrix = _display_matrix(first)
    else:
        matrix = None
        if size_from_decoding:
            raise VideoDecodeError(path, f"the video stream's frame size is {coded_w}x{coded_h} and no frame "
                                         f"could be decoded to find the real one")
    rotation, transform = display_transform(matrix)
    transform = transform if autorotate else None
    width, height = (coded_h, coded_w) if transform in TRANSPOSING else (coded_w, coded_h)
    return FrameIndex(pts=pts, num_frames=n, time_base=tb, key_positions=key_positions, key_seek_ts=key_seek,
                      sequential=False, width=width, height=height, codec=cc.name, fps=float(fps),
                      duration=float(duration), header_frames=header, dropped_packets=dropped,
                      demux_error=demux_error, header_frame_estimate=estimate,
                      size_from_decoding=size_from_decoding, mode="pts", stream_index=stream.index,
                      num_video_streams=num_video, coded_width=coded_w, coded_height=coded_h, rotation=rotation,
                      transform=transform, discarded_packets=discarded,
                      orientation_pending=pending, autorotate=autorotate)


def finish_orientation(index: FrameIndex, frame) -> None:
    """Set the rotation of a pts-mode index from its first decoded frame (``None``: no rotation known)."""
    if not index.orientation_pending:
        return
    index.orientation_pending = False
    rotation, transform = display_transform(_display_matrix(frame) if frame is not None else None)
    index.rotation = rotation
    index.transform = transform if index.autorotate else None
    if index.transform in TRANSPOSING:
        index.width, index.height = index.coded_height, index.coded_width


def _decode_index(path, container, stream, scan: _Scan, tb: Fraction, autorotate: bool, header: int,
                  estimate: int, num_video: int) -> FrameIndex:
    n = len(scan.times)
    if n == 0:
        cause = f" ({scan.demux_error})" if scan.demux_error else ""
        what = "no frame could be decoded" if scan.packets else "video stream has no readable packets"
        raise VideoDecodeError(path, f"{what}{cause}")
    cc = stream.codec_context
    coded_w, coded_h = int(cc.width or 0), int(cc.height or 0)
    size_from_decoding = not _plausible_size(coded_w, coded_h) or (scan.size is not None
                                                                 and scan.size != (coded_w, coded_h))
    if size_from_decoding and scan.size is not None:
        coded_w, coded_h = scan.size
    if not _plausible_size(coded_w, coded_h):
        raise VideoDecodeError(path, f"the video stream's frame size is {coded_w}x{coded_h}")
    times = scan.times
    seconds = None
    raw = bool(_format_names(container) & set(RAW_FORMATS))  # no timestamps stored: the parser's are guesses
    if raw:
        times = [None] * n
    elif all(t is not None for t in times) and all(b > a for a, b in zip(times, times[1:])):
        seconds = [float(t * tb) for t in times]
    candidates = _rate_candidates(stream)
    measured = (n - 1) / (seconds[-1] - seconds[0]) if seconds is not None and n > 1 else None
    fps = _choose_fps(candidates, measured)
    if seconds is None:
        start = next((float(t * tb) for t in times if t is not None), 0.0)
        seconds = [start + i / fps for i in range(n)]
        duration = n / fps
    else:
        span = seconds[-1] - seconds[0]
        duration = span + span / (n - 1) if n > 1 and span > 0 else n / fps
    rotation, transform = display_transform(scan.matrix)
    transform = transform if autorotate else None
    width, height = (coded_h, coded_w) if transform in TRANSPOSING else (coded_w, coded_h)
    # Frames are labelled by the pts the decoder hands back (their packet's). Where every label is unique, a
    # read can seek to a keyframe and recognise frames by label (and skip unwanted non-reference frames),
    # as in pts mode; the decoder checks each read and falls back to counting from the start if a wanted
    # label does not come out. Unseekable raw streams always count from the start.
    labels = scan.labels
    seekable = (not raw and None not in labels
                and len(set(labels)) == n)
    if seekable:
        key_positions = [0] + [i for i in range(1, n) if scan.keys[i]]
        # A keyframe that decodes only in part (the last one of a cut-off file) is concealed from the frames
        # decoded before it: a read from it alone gives grey, a read from the keyframe before it differs from
        # the CLI by a few levels (frame threads). Its seek point is None: decode from the start, as the CLI.
        no_start = scan.no_start or [False] * n
        key_seek = [None] + [None if no_start[i] else min(labels[i], scan.key_dts.get(labels[i], labels[i]))
                             for i in key_positions[1:]]
    else:
        key_positions, key_seek = [0], [None]
    return FrameIndex(pts=list(labels) if seekable else None, num_frames=n, time_base=tb,
                      key_positions=key_positions, key_seek_ts=key_seek, sequential=not seekable, width=width, height=height, codec=cc.name, fps=float(fps),
                      duration=float(duration), header_frames=header, dropped_packets=scan.corrupt,
                      demux_error=scan.demux_error, header_frame_estimate=estimate,
                      size_from_decoding=size_from_decoding, mode="decode", stream_index=stream.index,
                      num_video_streams=num_video, coded_width=coded_w, coded_height=coded_h, rotation=rotation,
                      transform=transform, discarded_packets=0, frame_times=seconds,
                      segment_joins=scan.joins)


MAX_SIDE = 32768  # FFmpeg's own image-size checks refuse larger frames
PROBE_PACKETS = 256  # packets decoded at most to find the first frame of a stream
JOIN_GAP_SECONDS = 1.0  # a keyframe's dts this far past the previous packet's starts a new segment (see _scan)


def _plausible_size(width: int, height: int) -> bool:
    return 1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE


def _header_frame_estimate(container) -> int:
    """The frame count decord's ``VideoReader`` reserves its tables for (see :attr:`FrameIndex.header_frame_estimate`)."""
    best = 0
    for s in container.streams.video:
        count = int(s.frames or 0)
        if count < 1:
            rate = s.average_rate
            duration = container.duration  # AV_TIME_BASE (microsecond) units
            if rate and duration and duration > 0:
                try:
                    estimate = float(rate) * float(duration) / 1e6
                except (OverflowError, ZeroDivisionError, ValueError):
                    estimate = float("inf")
                count = int(min(estimate, 2.0**62)) if estimate == estimate else 0
        best = max(best, count)
    return best


class PyAVDecoder:
    """Decodes wanted frame positions from one open container, keeping decoder state between calls."""

    def __init__(self, path: str, container, stream, index: FrameIndex, *, reopen=None):
        self.path = path
        # a fresh (container, stream) of the same file at its start; decode mode restarts with a new decoder
        self._reopen_fn = reopen or (lambda: open_container(path, num_threads=stream.thread_count,
                                                            stream=stream.index))
        self._container = container
        self._stream = stream
        self._index = index
        self._pos_of = {p: i for i, p in enumerate(index.pts)} if index.pts is not None else None
        self._sequential = index.sequential  # decode mode may fall back to counting from the start
        self._labels: dict[int, int] = {}  # after a rebuild (see decode): frame pts -> position in the new index
        self._start_pos = 0  # position of the keyframe the live generator started from
        self._reformatter = VideoReformatter()  # resized reads (size=...): swscale's bilinear, as before
        self._cli_rgb = CliRGBConverter()  # native-size reads: the CLI's conversion, byte for byte
        self._native = True  # the current read returns frames at the indexed size (size=None)
        self._gen = None  # live (position, frame) generator after the last seek
        self._peeked_key = None  # the live generator comes straight from peek()'s seek to this keyframe
        self._last = -1  # presentation position of the last frame the generator produced
        self._want_pts: set[int] = set()
        self._skip_below = 0
        self._warned = False
        self._rejected = False  # the decoder rejected a packet during the current read (pts mode)
        self.frames_decoded = 0  # frames the decoder produced (a cost measure for tests and benchmarks)
        self.seeks = 0

    # -- decoding --------------------------------------------------------------------------------------
    def _key_number(self, position: int) -> int:
        if self._sequential:
            return 0  # no timestamps: always count from the start
        return bisect.bisect_right(self._index.key_positions, position) - 1

    def _from_start_needed(self, key_number: int) -> bool:
        """A decode-mode keyframe that must be reached from the start (see ``FrameIndex.key_seek_ts``) while the
        live generator started from a later keyframe than the first."""
        index = self._index
        return (index.mode == "decode" and key_number > 0 and index.key_seek_ts[key_number] is None
                and self._start_pos not in (0, index.key_positions[key_number]))

    def _seek(self, key_number: int) -> None:
        index = self._index
        self._peeked_key = None
        self._start_pos = index.key_positions[key_number] if not self._sequential else 0
        if index.mode == "decode" and (self._sequential or key_number == 0 or index.key_seek_ts[key_number] is None):
            # Decode mode counts the decoder's output from the very start, so it needs the state the index was
            # built with: a decoder that has seen nothing (a flushed one still knows e.g. earlier H.264 PPS).
            self._reopen()
            self._gen = self._frames()
            self._last = -1
            self.seeks += 1
            return
        ts = index.key_seek_ts[key_number]
        try:
            if ts is None or index.key_positions[key_number] == 0:
                self._container.seek(0, backward=True, any_frame=False, stream=self._stream)
            else:
                self._container.seek(ts, backward=True, any_frame=False, stream=self._stream)
        except (av.error.FFmpegError, OSError):
            # Some inputs cannot seek (raw elementary streams): start again from a fresh open.
            self._reopen()
        self._gen = self._frames()
        self._last = -1
        self.seeks += 1

    def _reopen(self) -> None:
        self._gen = None
        close_container(self._container, self._stream)
        self._container = None
        self._container, self._stream = self._reopen_fn()  # at the start

    def _frames(self):
        """Yield ``(position, frame)`` in presentation order from the current container position."""
        stream = self._stream
        cc = stream.codec_context
        counter = -1
        pos_of = self._pos_of
        skipping = False
        if pos_of is None or (self._index.mode == "decode" and self._start_pos == 0):
            # decode mode from the start: the i-th frame out of a fresh decoder is frame i
            for frame in decode_from_start(self._container, stream, self._on_error):
                self.frames_decoded += 1
                counter += 1
                yield counter, frame
            return
        if self._index.mode == "decode":
            # After a seek, labels come from a demuxer that restarted mid-stream: accept them only while they
            # run on exactly as the scan saw them from the keyframe sought (no skipping), else fall back.
            expected = self._start_pos
            for frame in decode_from_start(self._container, stream, self._on_error):
                self.frames_decoded += 1
                pos = pos_of.get(frame.pts) if frame.pts is not None else None
                if expected == self._start_pos and (pos is None or pos < expected):
                    continue  # leading pictures of an open GOP that need the frames before the keyframe
                if pos != expected or (expected == self._start_pos and not frame.key_frame):
                    raise VideoDecodeError(self.path, f"after a seek the decoder gave frame {pos} where the scan "
                                                      f"saw frame {expected}")
                expected += 1
                yield pos, frame
            return
        try:
            for packet in self._container.demux(stream):
                if _is_empty(packet):
                    continue  # no picture; sent, it would drain the decoder
                if packet.is_corrupt and self._index.dropped_packets:
                    # left out of the index (a cut-off packet); feeding it only makes the decoder error out, and
                    # FFmpeg 7's frame threads then lose the frame before it
                    continue
                # A non-reference frame nobody asked for is never needed: let the decoder drop it. Only before
                # the last wanted frame of this call, so that a later call can continue from where this one ends.
                skip = (pos_of is not None and packet.pts is not None and packet.pts not in self._want_pts
                        and pos_of.get(packet.pts, self._skip_below) < self._skip_below)
                if skip != skipping:
                    cc.skip_frame = "NONREF" if skip else "DEFAULT"
                    skipping = skip
                try:
                    frames = stream.decode(packet)
                except (av.error.FFmpegError, OSError) as exc:
                    self._rejected = True
                    self._warn(f"skipped a packet the decoder rejected ({_describe(exc)})")
                    continue
                self.frames_decoded += len(frames)
                for frame in frames:
                    if pos_of is not None:
                        pos = pos_of.get(frame.pts) if frame.pts is not None else None
                        if pos is None:
                            continue
                    else:
                        counter += 1
                        pos = counter
                    yield pos, frame
        finally:
            if skipping:
                cc.skip_frame = "DEFAULT"

    def peek(self, positions: list[int]):
        """Seek to the keyframe a read of the sorted ``positions`` starts from and return its first frame (or
        None), keeping it for that read: the display matrix (on every frame) is then known at no extra decoding
        cost. Unwanted non-reference frames are skipped from the start, as in the read itself."""
        if self._pos_of is not None:
            self._want_pts = set(self._index.pts[p] for p in positions)
            self._skip_below = positions[-1]
        key = max(0, self._key_number(positions[0]))
        self._seek(key)
        try:
            pos, frame = next(self._gen)
        except (StopIteration, av.error.FFmpegError, OSError, ValueError, VideoDecodeError):
            self._gen = None
            return None
        self._gen = itertools.chain([(pos, frame)], self._gen)
        self._peeked_key = key
        return frame

    def prime(self):
        """:meth:`peek` at the start, not counted in ``frames_decoded``/``seeks`` (an open's cost, not a read's)."""
        counters = (self.frames_decoded, self.seeks)
        try:
            return self.peek([0])
        finally:
            self.frames_decoded, self.seeks = counters

    def _on_error(self, where: str, exc: BaseException) -> None:
        if where == "decode":
            self._warn(f"skipped a packet the decoder rejected ({_describe(exc)})")

    def _warn(self, message: str) -> None:
        if not self._warned:
            warnings.warn(f"{self.path}: {message}", RuntimeWarning, stacklevel=5)
            self._warned = True

    def decode(self, positions: list[int], *, size: tuple[int, int] | None, out: np.ndarray) -> None:
        """Decode the sorted unique ``positions`` into ``out`` (``(len(positions), H, W, 3)`` uint8).

        In pts mode a read that meets a packet the decoder rejects, or a listed frame that does not come out,
        rebuilds the index once in decode mode (in place: ``len()`` becomes the CLI's count) with a
        RuntimeWarning. The read then returns the frames with the timestamps asked for, from the new index.

        Raises:
            VideoDecodeError: a wanted frame cannot be decoded (after a rebuild: its packet is damaged).
        """
        self._native = size is None
        if self._index.mode == "pts":
            self._rejected = False
            try:
                self._decode(positions, out)
            except VideoDecodeError as exc:
                wanted = [self._index.pts[p] for p in positions]
                if not self._rebuild(exc.reason):
                    raise
                self._decode_rebuilt(positions, wanted, size, out)
                return
            if self._rejected:
                self._rebuild("the decoder rejected a packet")  # this read's frames were found by timestamp
            return
        if self._sequential:
            return self._decode(positions, out)
        try:
            return self._decode(positions, out)
        except VideoDecodeError:
            # A label did not come back where the scan saw it (a demuxer that times packets differently after a
            # seek): count from the start from now on, which is what the index was built from.
            self._sequential, self._pos_of = True, None
            self._want_pts, self._gen, self._last = set(), None, -1
            return self._decode(positions, out)

    def _rebuild(self, why: str) -> bool:
        """Replace the pts-mode index (in place) by the decode-mode index of a full decode, warning once.
        False (nothing changed) when decoding the file gives no frame at all."""
        old = self._index
        self._gen, self._peeked_key, self._last = None, None, -1
        scan = _scan_fresh(self._container, self._stream, self._reopen_fn)
        try:
            new = _decode_index(self.path, self._container, self._stream, scan, old.time_base, old.autorotate,
                                old.header_frames, old.header_frame_estimate, old.num_video_streams)
        except VideoDecodeError:
            return False
        new.rebuilt_from = old.num_frames
        new.dropped_packets, new.discarded_packets = old.dropped_packets, old.discarded_packets
        vars(old).update(vars(new))  # the reader holds this object: len() and timestamps follow
        self._labels = {label: i for i, label in reversed(list(enumerate(scan.labels))) if label is not None}
        self._pos_of = {p: i for i, p in enumerate(old.pts)} if old.pts is not None else None
        self._sequential = old.sequential
        self._want_pts = set()
        warnings.warn(f"{self.path}: packets of this file do not decode ({why}); it is now indexed as the "
                      f"decoder outputs its frames, as the ffmpeg CLI does: {old.num_frames} frames, not the "
                      f"{old.rebuilt_from} its packets list", RuntimeWarning, stacklevel=4)
        return True

    def _decode_rebuilt(self, positions: list[int], wanted: list[int], size, out: np.ndarray) -> None:
        """Finish a read that started on the replaced pts index: the frames with the timestamps ``wanted``."""
        mapped = []
        for position, pts in zip(positions, wanted):
            new = self._labels.get(pts)
            if new is None:
                raise VideoDecodeError(self.path, f"frame {position} could not be decoded (its packet is damaged; "
                                                  f"the reader now indexes the {self._index.num_frames} frames "
                                                  f"that decode)")
            mapped.append(new)
        if mapped != sorted(set(mapped)):
            raise VideoDecodeError(self.path, f"frames {positions} could not be decoded in order after the index "
                                              f"was rebuilt (the file is damaged)")
        self.decode(mapped, size=size, out=out)

    def _decode(self, positions: list[int], out: np.ndarray) -> None:
        index = self._index
        self._want_pts = set(index.pts[p] for p in positions) if self._pos_of is not None else set()
        self._skip_below = positions[-1]
        # At the native size convert to the indexed size too: a frame whose size differs from the stream's
        # (a damaged header, a mid-stream size change) is scaled instead of breaking the output's shape.
        height, width = out.shape[1:3]
        if index.transform in TRANSPOSING:
            width, height = height, width  # convert at the coded orientation, then transpose
        t = 0
        retreat = 0  # keyframes further back to seek after a seek landed past the target
        clean = False  # the current run started with a seek made for the current target
        while t < len(positions):
            target = positions[t]
            key = self._key_number(target)
            behind = target <= self._last
            past_key = not self._sequential and (index.key_positions[key] > self._last + 1
                                                 or self._from_start_needed(key))
            if self._peeked_key is not None and self._gen is not None and self._peeked_key == max(0, key - retreat):
                clean = True  # peek() made the seek this read needs
            elif self._gen is None or behind or past_key:
                self._seek(max(0, key - retreat))
                clean = True
            self._peeked_key = None
            fresh = self._last < 0
            for pos, frame in self._gen:
                self._last = pos
                if pos < target:
                    fresh = False
                    continue
                if pos > target:
                    if not clean:
                        self._gen = None  # frames sent before this call may have been dropped: start over
                    elif fresh and key - retreat > 0:
                        retreat += 1  # the seek landed after the target: try an earlier keyframe
                        self._gen = None
                    else:
                        raise VideoDecodeError(self.path, f"frame {target} could not be decoded (the decoder "
                                                          f"went from before it to frame {pos})")
                    break
                self._convert(frame, width, height, out[t])
                t += 1
                retreat, fresh = 0, False
                if t == len(positions):
                    return
                target = positions[t]
                key = self._key_number(target)
                if not self._sequential and (index.key_positions[key] > pos + 1 or self._from_start_needed(key)):
                    break  # the next wanted frame is past a keyframe we have not reached: seek there
            else:
                self._gen = None  # end of stream
                if clean and fresh and key - retreat > 0:
                    retreat += 1
                    continue
                if not clean:
                    continue
                raise VideoDecodeError(self.path, f"frame {target} could not be decoded (the stream ended after "
                                                  f"frame {self._last} of {index.num_frames})")
            clean = False

    def _convert(self, frame, width, height, dest: np.ndarray) -> None:
        rgb = None
        if self._native:
            try:
                rgb = self._cli_rgb.convert(frame, width, height)
            except (av.error.FFmpegError, ValueError):
                pass  # a frame the filter graph refuses (none seen): swscale directly rather than no frame
        if rgb is None:
            rgb = self._reformatter.reformat(frame, width=width, height=height, format="rgb24",
                                             **_REFORMAT_KWARGS).to_ndarray()
        dest[...] = orient(rgb, self._index.transform)

    def close(self) -> None:
        self._gen = None
        if self._container is not None:
            try:
                close_container(self._container, self._stream)
            finally:
                self._container = None
