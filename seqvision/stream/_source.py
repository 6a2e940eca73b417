"""``FrameSource``: decoded frames of a file, a file still being written, a network stream or a capture device,
as they arrive, with bounded reconnects (exponential back-off) after stalls and disconnects."""

from __future__ import annotations

import difflib
import math
import os
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

import av

from ..errors import VideoDecodeError
from ..io._pyav_backend import choose_stream, close_container, open_container

__all__ = ["FrameSource", "SourceFrame", "SourceKind", "RateSampler"]

SourceKind = Literal["file", "growing", "url", "device", "pipe"]

#: URL schemes that are live by nature: the far end sends frames in real time and a reconnect gets new ones
LIVE_SCHEMES = frozenset({"udp", "rtp", "rtsp", "rtsps", "rtmp", "rtmps", "rtmpt", "rtmpe", "tcp", "srt", "rist",
                          "mmsh", "mmst", "zmq"})
#: other URL schemes FFmpeg reads, for "did you mean" when a scheme is not one of its protocols
COMMON_SCHEMES = frozenset({"http", "https", "file", "ftp", "hls", "sftp", "smb", "pipe"})
#: ffmpeg's default -dts_delta_threshold (s): a forward timestamp jump beyond it is a discontinuity
FORWARD_JUMP_S = 10.0
#: frames after a backward timestamp jump that may still return to the timeline it left (damaged timestamps,
#: not a reset; a zeroed MP4 gave two)
MAX_OUTLIERS = 4
#: demux restarts in a row without a decoded frame before a damaged stream counts as unreadable
MAX_SKIPS_IN_A_ROW = 200


@dataclass
class SourceFrame:
    """One decoded frame.

    Attributes:
        frame: the decoded ``av.VideoFrame`` (native size and pixel format).
        time: stream time in seconds since the first frame (continues across reconnects; never decreases; a
            timestamp reset or a jump of more than 10 s is re-based to one frame after the previous frame; a frame
            without a timestamp is placed one frame interval after the previous frame). Always finite.
        index: decoded frames before this one (across reconnects), from 0.
        decode_ms: wall time spent demuxing and decoding this frame (waiting for data included).
        wall: ``time.time()`` when it was decoded.
    """

    frame: av.VideoFrame
    time: float
    index: int
    decode_ms: float
    wall: float


class RateSampler:
    """Keep frames at ``fps`` by stream time: the grid is ``t0 + k / fps`` (``t0``: the first frame's time, s); a
    frame is kept when it is at or after the next grid time, and the next grid time is then the first one after
    that frame. After a timestamp gap (VFR, a stall) sampling resumes on the grid at the frame after the gap,
    without a burst of frames to catch up with the missed grid times.

    Args:
        fps: frames per second of stream time to keep (> 0).

    Raises:
        ValueError: ``fps`` is not > 0 and finite.

    Example:
        >>> keep = RateSampler(5.0)
        >>> [t for t in (0.0, 0.04, 0.2, 2.4, 2.48, 2.6) if keep(t)]
        [0.0, 0.2, 2.4, 2.6]
    """

    def __init__(self, fps: float):
        if not 0 < fps < math.inf:
            raise ValueError(f"fps must be > 0 and finite, got {fps}")
        self.step = 1.0 / fps  # s between grid times
        self.start: float | None = None  # grid origin: the first frame's time (s)
        self.next_time: float | None = None  # the next grid time a frame must reach to be kept (s)

    def __call__(self, t: float) -> bool:
        """Whether the frame at stream time ``t`` (s, non-decreasing) is kept."""
        if self.next_time is not None and t < self.next_time - 1e-6:
            return False
        if self.start is None:
            self.start = t
        slot = math.floor((t - self.start) / self.step + 1e-6)  # the grid time at or before t (1 µs tolerance)
        self.next_time = self.start + (slot + 1) * self.step
        return True


class _TailFile:
    """A read-only file object over a file that is still being written: at the end it waits for more bytes,
    and reports the end only after ``idle_timeout`` seconds without growth (or when ``stop`` is set)."""

    def __init__(self, path: str, *, idle_timeout: float, stop: threading.Event, poll: float = 0.05):
        self._f = open(path, "rb")  # noqa: SIM115 (closed by close())
        self.idle_timeout, self.stop, self.poll = idle_timeout, stop, poll

    def read(self, n: int = -1) -> bytes:
        waited = 0.0
        while True:
            data = self._f.read(n)
            if data or self.stop.is_set() or waited >= self.idle_timeout:
                return data
            time.sleep(self.poll)
            waited += self.poll

    def close(self) -> None:
        self._f.close()


def _slice_threads(stream) -> None:
    """Decode ``stream`` (not opened yet) with slice threads only. A frame-threaded decoder reports a damaged
    packet's error a few frames later; when that happens while it is drained at the end (a file cut off
    mid-packet), PyAV (<= 18 has no receive-only call) stops draining and the frames it still held are lost:
    trunc.mp4 gave 44 frames instead of the ffmpeg CLI's 46. Slice threads also add no frames of latency."""
    stream.thread_type = "SLICE"


def _steady(raws: list[float], step: float) -> bool:
    """Whether timestamps ``raws`` (s, two or more) advance about one frame ``step`` each: a new timeline, not
    damaged timestamps."""
    return len(raws) >= 2 and all(0.5 * step <= b - a <= 1.5 * step for a, b in zip(raws, raws[1:]))


def _frame_time(frame: av.VideoFrame, stream, *, dts: bool = False) -> float | None:
    """The frame's timestamp in seconds, or None when it has none. Frames the decoder hands back when it is
    flushed after a read error (``decode(None)``) carry a pts but no time base, so PyAV's ``frame.time`` is NaN:
    the stream's time base is used for them. ``dts``: AVI stores no presentation timestamps, only a frame count
    in decode order, which PyAV hands on as the pts of the packet that went in (out of order with B-frames:
    0.04, 0.16, 0.12, ...); the decoder's ``pkt_dts`` of each output frame counts in output order, as ffprobe's
    best_effort_timestamp does."""
    if dts:
        return float(frame.dts * stream.time_base) if frame.dts is not None and stream.time_base else None
    t = frame.time
    if t is not None and math.isfinite(t):
        return t
    if frame.pts is not None and stream.time_base:
        t = float(frame.pts * stream.time_base)
        return t if math.isfinite(t) else None
    return None


def _is_pipe(source: str) -> bool:
    if source in ("-", "/dev/stdin") or source.startswith("pipe:"):
        return True
    try:
        return stat.S_ISFIFO(os.stat(source).st_mode)
    except OSError:
        return False


def _kind(source: str, follow: bool) -> SourceKind:
    if _is_pipe(source):
        return "pipe"
    if "://" in source:
        return "url"
    if source.startswith("/dev/video"):
        return "device"
    return "growing" if follow else "file"


@dataclass
class FrameSource:
    """Iterate the decoded frames of ``source`` as they arrive.

    Args:
        source: a video file, a file still being written (with ``follow``), a URL FFmpeg opens
            (``rtsp://``, ``rtmp://``, ``udp://``, ``srt://``, ``http(s)://``, ``file://``, ...), a V4L2 device
            (``/dev/video0``), or a pipe: ``-`` / ``pipe:`` / ``pipe:0`` (standard input), ``/dev/stdin`` or a
            FIFO (read once, front to back: a streamable format such as MPEG-TS).
        follow: treat a file as still being written: at its end wait for more data, and end after
            ``idle_timeout`` seconds without growth; a file not created yet is waited for ``timeout`` s. The
            format must be readable front to back (MPEG-TS, MKV, fragmented MP4; a plain MP4 writes its index at
            the end).
        timeout: seconds to wait for data on a URL or device before treating the stream as stalled.
        reconnects: reopen a stalled or disconnected URL / device at most this many times in a row (the
            count resets whenever a frame arrives); waits ``backoff * 2**k`` seconds before attempt k.
        input_format: FFmpeg input format (e.g. ``"mpegts"``, ``"v4l2"``; default: probed, v4l2 for devices).
        options: FFmpeg options for the input (e.g. ``{"rtsp_transport": "tcp"}``, ``{"video_size":
            "640x480", "framerate": "25"}`` for v4l2).

    Attributes (after iterating): ``reconnect_count``, ``end_reason``, ``end_error``, ``kind``, ``live`` (frames
    keep arriving in real time: a live protocol such as udp / rtp / rtsp / rtmp / tcp / srt, a device, a pipe, or a
    URL whose resource has neither a duration nor a size; a file served over http(s) or ``file://`` is not live
    and ends at its EOF), ``skipped_packets``, ``discontinuities``, ``stop`` (a ``threading.Event``: set it from
    another thread to end the iteration; a source is iterated once).

    How iteration ended is set in two attributes, always together:

    - ``end_reason`` (``str``): in words, for people and JSON records: ``"eof"``, ``"stopped"``, ``"eof after a
      decode error (...)"`` (a file or non-live URL that failed part way) or ``"source lost: ..."`` (a live
      source after its reconnects were spent, or one lost when ``stop`` was set while reconnecting).
    - ``end_error`` (``BaseException | None``): the error that ended the source early, for code to test instead of
      parsing ``end_reason``: the ``av.FFmpegError`` / ``OSError`` behind "eof after a decode error" or "source
      lost", or a :class:`~seqvision.errors.VideoDecodeError` for "source lost: the stream ended" (a live stream
      that ended on its own) and for a live URL or device that opens without a video stream ("source lost:
      VideoDecodeError: ... has no video stream ...", e.g. a feed that now carries only audio). After the
      reconnects are spent it is the last attempt's error, the one ``end_reason`` names. ``None`` whenever
      ``end_reason`` is ``"eof"`` or ``"stopped"``: a clean end, including a live source lost once that
      reconnected and then ended cleanly. Errors raised out of the iteration (see Raises) are not recorded here.

    Ends: a file, a non-live URL and a pipe end at their EOF (``"eof"``). A live URL or device that ends, stalls
    (``timeout`` s without data) or fails is reopened (after its decoder is flushed, so frames it holds back
    for B-frame reordering still come out), ``reconnects`` times in a row at most without a new frame; a URL of
    a non-live protocol that starts over at the first timestamp it started at is a file served again and
    ends instead of being replayed. Damaged packets are skipped as the FFmpeg tools skip them (``ffprobe
    -count_frames`` decodes the same frames), packets of a stream that appears mid-stream too.

    Files are opened as :class:`seqvision.io.VideoReader` opens them (``seqvision.io``'s ``open_container``:
    the same typed errors, e.g. "file is empty (0 bytes)", and the video stream the FFmpeg CLI picks); frames
    keep their display matrix (phone videos), which :class:`~seqvision.stream.OnlinePredictor` applies.

    Raises:
        VideoDecodeError: a file is missing, a directory, empty, not a video FFmpeg can open or has no video
            stream (the messages of ``seqvision classify``; a non-live URL or a pipe without a video stream too,
            or a pipe that cannot be opened or whose start cannot be read, such as a plain MP4 with its index
            last: a pipe is read once and never reopened); a URL whose scheme is no protocol of this FFmpeg
            (``rstp://``: at once, never reconnected); a
            ``follow`` file that does not appear within ``timeout`` s or whose start cannot be read (the message
            says a growing file must be streamable); a file of which no packet decodes (more than 200 in a row,
            or none at all). Live sources: after the reconnects are spent, iteration ends with ``end_reason``
            "source lost: ..." instead.

    Example:
        >>> for f in FrameSource("udp://127.0.0.1:5000", timeout=2):
        ...     print(f.index, f.time, f.frame.width)
    """

    source: str
    follow: bool = False
    timeout: float = 5.0
    reconnects: int = 3
    backoff: float = 0.5
    idle_timeout: float = 5.0
    input_format: str | None = None
    options: dict[str, str] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self):
        self.source = os.fspath(self.source)
        self.kind: SourceKind = _kind(self.source, self.follow)
        # live: frames arrive in real time (drop when behind, reconnect when lost). A URL is settled once open:
        # a live scheme (udp, rtsp, ...), or a resource with neither a duration nor a size, is live; a file
        # served over http(s) or file:// is not (it ends at its EOF)
        self.live = self.kind in ("url", "device", "pipe")
        self.reconnect_count = 0
        self.skipped_packets = 0  # damaged packets (or packets of a stream that appeared later) skipped
        self.discontinuities = 0  # timestamp resets / jumps re-based so stream time goes on
        self.end_reason = ""  # why iteration ended, in words (see the class docstring)
        self.end_error: BaseException | None = None  # the error that ended it early; None: a clean end
        self.rate: float | None = None  # the stream's average frame rate, once open
        if self.timeout <= 0 or self.reconnects < 0 or self.backoff < 0:
            raise ValueError(f"need timeout > 0, reconnects >= 0, backoff >= 0; got {self.timeout}, "
                             f"{self.reconnects}, {self.backoff}")
        if self.kind in ("file", "growing") and os.path.isdir(self.source):
            raise VideoDecodeError(self.source, "is a directory, not a video file")
        if self.kind == "file" and not os.path.isfile(self.source):
            raise VideoDecodeError(self.source, "no such file (a live source needs a URL such as udp://..., a "
                                                "/dev/video* device, or - / pipe: for standard input)")

    def _end(self, reason: str, error: BaseException | None = None) -> None:
        """Record why iteration ends: ``end_reason`` (words) and ``end_error`` (``None`` for a clean end)."""
        self.end_reason, self.end_error = reason, error

    def _scheme(self) -> str:
        return self.source.split("://", 1)[0].lower() if self.kind == "url" else ""

    def _wait_for_file(self) -> None:
        """``--follow`` on a file not created yet: wait up to ``timeout`` s for it to appear."""
        end = time.monotonic() + self.timeout
        while not os.path.exists(self.source):
            if self.stop.is_set() or time.monotonic() >= end:
                raise VideoDecodeError(self.source, f"no such file (waited {self.timeout:g} s for it to appear)")
            time.sleep(0.05)
        if os.path.isdir(self.source):
            raise VideoDecodeError(self.source, "is a directory, not a video file")

    def _open(self):
        """``(container, video stream, tail file or None)``."""
        opts = dict(self.options)
        if self.kind == "file" and self.input_format is None and not opts:
            container, stream = open_container(self.source)  # classify's checks and messages, its stream choice
            _slice_threads(stream)
            return container, stream, None
        tail = None
        if self.kind == "growing":
            self._wait_for_file()
            tail = _TailFile(self.source, idle_timeout=self.idle_timeout, stop=self.stop)
            try:
                container = av.open(tail, format=self.input_format, options=opts)
            except BaseException:
                tail.close()
                raise
        elif self.kind == "file":
            container = av.open(self.source, format=self.input_format, options=opts)
        elif self.kind == "pipe":
            path = "pipe:0" if self.source in ("-", "pipe:") else self.source
            container = av.open(path, format=self.input_format, options=opts, timeout=(self.timeout, self.timeout))
        else:
            fmt = self.input_format or ("v4l2" if self.kind == "device" else None)
            container = av.open(self.source, format=fmt, options=opts, timeout=(self.timeout, self.timeout))
        try:
            if self.kind == "url":
                # a file served over http(s) / file:// has a size (Content-Length) or a duration; a live feed
                # neither. Settled before the stream is chosen: such a file without video is an error (as on
                # disk), not a live source to reconnect to
                size = container.size if isinstance(container.size, int) else 0
                self.live = self._scheme() in LIVE_SCHEMES or (container.duration is None and size <= 0)
            stream = choose_stream(self.source, container)
        except BaseException:
            container.close()
            if tail is not None:
                tail.close()
            raise
        _slice_threads(stream)
        return container, stream, tail

    def _no_protocol(self) -> str:
        scheme = self._scheme()
        known = sorted(LIVE_SCHEMES | COMMON_SCHEMES)
        swapped = [k for k in known if sorted(k) == sorted(scheme)]  # rstp: rtsp before difflib's closer rtp
        close = swapped or difflib.get_close_matches(scheme, known, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]}://?)" if close else ""
        return (f"FFmpeg has no protocol {scheme!r}{hint}; `ffmpeg -protocols` lists the input protocols of "
                f"this build")

    def _describe(self, exc: BaseException) -> str:
        if isinstance(exc, av.ExitError):  # FFmpeg's interrupt callback: the read timeout fired
            return f"no data for {self.timeout:g} s (the stream ended, stalled or was cut)"
        return f"{type(exc).__name__}: {exc}"[:200]

    def _open_error(self, exc: BaseException) -> str:
        why = self._describe(exc)
        if self.kind == "growing":
            return (f"cannot read the start of the growing file ({why}); a file still being written must be a "
                    f"streamable format (MPEG-TS, MKV, fragmented MP4): a plain MP4 writes its index (moov) last")
        if self.kind == "pipe":
            return (f"cannot read the start of the pipe ({why}); a pipe is read once, front to back, so it must "
                    f"carry a streamable format (MPEG-TS, MKV, fragmented MP4): a plain MP4 writes its index "
                    f"(moov) last (send `ffmpeg -i in.mp4 -c copy -f mpegts -`, or write it with -movflags "
                    f"+faststart)")
        return f"not a video file FFmpeg can open ({why})"

    def _frames(self, container, stream) -> Iterator[tuple[av.VideoFrame, float]]:
        """``(frame, decode ms)`` of one connection, as the ffmpeg CLI decodes: a packet the decoder rejects is
        skipped (counted in ``skipped_packets``), a packet of a stream that appeared after the header (a new PID
        in MPEG-TS: PyAV's demuxer stops there with an IndexError) too, and the decoder is flushed (its delayed
        frames, e.g. B-frame reordering, come out) at the end, also when reading fails (the error is re-raised
        after the flush)."""
        packets = container.demux(stream)
        in_a_row = 0  # skips since the last frame
        t0 = time.perf_counter()
        while not self.stop.is_set():
            try:
                packet = next(packets)
            except StopIteration:
                return  # demux ends with empty packets, whose decode flushed the decoder
            except IndexError:  # PyAV's demux of a packet whose stream it does not know: restart after it
                packets = container.demux(stream)
                frames, in_a_row = [], in_a_row + 1
                self.skipped_packets += 1
            except (av.FFmpegError, OSError):
                try:
                    for frame in stream.codec_context.decode(None):  # the frames the decoder still holds
                        yield frame, (time.perf_counter() - t0) * 1e3
                        t0 = time.perf_counter()
                except (av.FFmpegError, ValueError):
                    pass
                raise
            else:
                try:
                    frames = packet.decode()
                except av.ExitError:
                    raise
                except (av.FFmpegError, ValueError):  # a damaged packet: skip it, as the ffmpeg CLI does
                    frames, in_a_row = [], in_a_row + 1
                    self.skipped_packets += 1
            if in_a_row > MAX_SKIPS_IN_A_ROW and not frames:
                raise VideoDecodeError(self.source, f"{in_a_row} packets in a row could not be decoded "
                                                    f"(a damaged stream or an unsupported codec)")
            for frame in frames:
                in_a_row = 0
                yield frame, (time.perf_counter() - t0) * 1e3
                t0 = time.perf_counter()

    def __iter__(self) -> Iterator[SourceFrame]:
        index = 0
        failures = 0  # connections in a row that ended without a new frame
        last_time: float | None = None  # stream time of the last frame yielded
        first_raw: list[float] = []  # each connection's first timestamp (a replayed file starts again)
        while not self.stop.is_set():
            if failures:
                if not self.live or failures > self.reconnects:
                    return
                time.sleep(self.backoff * 2 ** (failures - 1))
                if self.stop.is_set():
                    break
                self.reconnect_count += 1
            try:
                container, stream, tail = self._open()
            except VideoDecodeError as exc:  # open, but no video stream (a live feed that now carries only audio)
                if not self.live or self.kind == "pipe":  # a pipe cannot be reopened: what it carries is final
                    raise
                failures += 1
                self._end(f"source lost: {self._describe(exc)}", exc)
                continue
            except av.ProtocolNotFoundError:  # a typo (rstp://, foo://): no reconnect will find it
                raise VideoDecodeError(self.source, self._no_protocol()) from None
            except (av.FFmpegError, OSError) as exc:
                if not self.live or self.kind == "pipe":  # a reopened pipe would read on from where this one failed
                    raise VideoDecodeError(self.source, self._open_error(exc)) from None
                failures += 1
                self._end(f"source lost: {self._describe(exc)}", exc)
                continue
            got = 0
            prev_raw: float | None = None  # the previous frame's own timestamp on this connection
            base_raw = base_time = 0.0  # stream time = base_time + (raw - base_raw) until a discontinuity
            # the timeline a backward jump left: (base_raw, base_time, prev_raw, discontinuities) before it, and
            # the raw timestamps since it; a frame back on that timeline within MAX_OUTLIERS frames undoes the jump
            left: tuple[float, float, float, int] | None = None
            away: list[float] = []
            try:
                self.rate = float(stream.average_rate) if stream.average_rate else self.rate
                step = 1.0 / (self.rate or 25.0)  # one frame's duration (s)
                use_dts = "avi" in container.format.name.split(",")  # AVI stores no pts (see _frame_time)
                for frame, decode_ms in self._frames(container, stream):
                    raw = _frame_time(frame, stream, dts=use_dts)
                    if raw is None:  # no timestamp: one frame after the previous one
                        raw = (prev_raw + step) if prev_raw is not None else 0.0
                    if prev_raw is None:  # a connection's first frame
                        if (self.kind == "url" and self._scheme() not in LIVE_SCHEMES and first_raw
                                and abs(raw - first_raw[-1]) < step / 2):
                            # a URL without a duration that starts over: a file served again, not new frames
                            self._end("eof")
                            return
                        first_raw.append(raw)
                        base_raw = raw
                        base_time = 0.0 if last_time is None else last_time + step
                    elif left is not None and 0 < raw - left[2] <= FORWARD_JUMP_S and not _steady(away, step):
                        # back on the timeline the jump left: the frames since had damaged timestamps (a zeroed
                        # MP4 gave 1.96, 1.00, 1.56, 2.00), not a reset; they keep the times they were given
                        base_raw, base_time, _, self.discontinuities = left
                        left, away = None, []
                    elif raw - prev_raw < -step or raw - prev_raw > FORWARD_JUMP_S:
                        # a timestamp reset (concatenated MPEG-TS, an encoder restart) or a jump far ahead:
                        # re-base so stream time goes on one frame later (ffmpeg's discontinuity handling)
                        if raw < prev_raw and left is None:
                            left, away = (base_raw, base_time, prev_raw, self.discontinuities), []
                        elif raw > prev_raw:
                            left, away = None, []
                        self.discontinuities += 1
                        base_raw, base_time = raw, last_time + step
                    if left is not None:
                        away.append(raw)
                        if len(away) > MAX_OUTLIERS:  # too long to be damaged timestamps: the reset stands
                            left, away = None, []
                    # frames after a backward jump that may be undone: one frame apart until it is settled
                    now = last_time + step if left is not None else base_time + (raw - base_raw)
                    # never backwards: an RTSP stream's second frame was seen 2 ms before its first (RTP timestamps)
                    last_time = now if last_time is None else max(now, last_time)
                    prev_raw = raw
                    got += 1
                    yield SourceFrame(frame=frame, time=last_time, index=index, decode_ms=decode_ms,
                                      wall=time.time())
                    index += 1
                if self.stop.is_set():
                    self._end("stopped")
                    return
                if not self.live or self.kind == "pipe":  # a pipe cannot be reopened: its end is the end
                    if index == 0 and self.skipped_packets:
                        raise VideoDecodeError(self.source, f"no frame could be decoded ({self.skipped_packets} "
                                                            f"damaged packets skipped)")
                    self._end("eof")
                    return
                # a live stream that ends was cut: reconnect
                self._end("source lost: the stream ended", VideoDecodeError(self.source, "the live stream ended"))
            except (av.FFmpegError, OSError) as exc:
                if self.kind == "pipe" and index == 0 and not isinstance(exc, av.ExitError):
                    # what the pipe carries cannot be read at all (a plain MP4's index comes last): a bad input
                    raise VideoDecodeError(self.source, self._open_error(exc)) from None
                if not self.live:
                    self._end(f"eof after a decode error ({self._describe(exc)})", exc)
                    return
                self._end(f"source lost: {self._describe(exc)}", exc)
                if self.kind == "pipe":
                    return
            finally:
                close_container(container, stream)
                if tail is not None:
                    tail.close()
            failures = 1 if got else failures + 1  # connection ends since the last new frame
        if self.end_error is None:  # stopped, not while a lost source was being reconnected
            self._end("stopped")
