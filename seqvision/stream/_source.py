"""``FrameSource``: decoded frames of a file, a file still being written, a network stream or a capture device,
as they arrive, with bounded reconnects (exponential back-off) after stalls and disconnects."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

import av

from ..errors import VideoDecodeError
from ..io._pyav_backend import choose_stream, close_container, open_container

__all__ = ["FrameSource", "SourceFrame", "SourceKind"]

SourceKind = Literal["file", "growing", "url", "device"]


@dataclass
class SourceFrame:
    """One decoded frame.

    Attributes:
        frame: the decoded ``av.VideoFrame`` (native size and pixel format).
        time: stream time in seconds since the first frame (continues across reconnects; never decreases).
        index: decoded frames before this one (across reconnects), from 0.
        decode_ms: wall time spent demuxing and decoding this frame (waiting for data included).
        wall: ``time.time()`` when it was decoded.
    """

    frame: av.VideoFrame
    time: float
    index: int
    decode_ms: float
    wall: float


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


def _kind(source: str, follow: bool) -> SourceKind:
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
            (``rtsp://``, ``rtmp://``, ``udp://``, ``srt://``, ``http(s)://``, ...) or a V4L2 device
            (``/dev/video0``).
        follow: treat a file as still being written: at its end wait for more data, and end after
            ``idle_timeout`` seconds without growth. The format must be readable front to back (MPEG-TS, MKV,
            fragmented MP4; a plain MP4 writes its index at the end).
        timeout: seconds to wait for data on a URL or device before treating the stream as stalled.
        reconnects: reopen a stalled or disconnected URL / device at most this many times in a row (the
            count resets whenever a frame arrives); waits ``backoff * 2**k`` seconds before attempt k.
        input_format: FFmpeg input format (e.g. ``"mpegts"``, ``"v4l2"``; default: probed, v4l2 for devices).
        options: FFmpeg options for the input (e.g. ``{"rtsp_transport": "tcp"}``, ``{"video_size":
            "640x480", "framerate": "25"}`` for v4l2).

    Attributes (after iterating): ``reconnect_count``, ``end_reason`` (``"eof"``, ``"stopped"`` or
    ``"source lost: ..."``), ``kind``, ``live`` (URL or device: frames keep arriving in real time), ``stop``
    (a ``threading.Event``: set it from another thread to end the iteration; a source is iterated once).

    Files are opened as :class:`seqvision.io.VideoReader` opens them (``seqvision.io``'s ``open_container``:
    the same typed errors, e.g. "file is empty (0 bytes)", and the video stream the FFmpeg CLI picks); frames
    keep their display matrix (phone videos), which :class:`~seqvision.stream.OnlinePredictor` applies.

    Raises:
        VideoDecodeError: a file is missing, empty, not a video FFmpeg can open or has no video stream (the
            messages of ``seqvision classify``; URLs and devices: after the reconnects are spent, iteration ends
            with ``end_reason`` "source lost" instead).

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
        self.live = self.kind in ("url", "device")
        self.reconnect_count = 0
        self.end_reason = ""
        self.rate: float | None = None  # the stream's average frame rate, once open
        if self.timeout <= 0 or self.reconnects < 0 or self.backoff < 0:
            raise ValueError(f"need timeout > 0, reconnects >= 0, backoff >= 0; got {self.timeout}, "
                             f"{self.reconnects}, {self.backoff}")
        if self.kind in ("file", "growing") and not os.path.isfile(self.source):
            raise VideoDecodeError(self.source, "no such file (a live source needs a URL such as udp://... or a "
                                                "/dev/video* device)")

    def _open(self):
        """``(container, video stream, tail file or None)``."""
        opts = dict(self.options)
        if self.kind == "file" and self.input_format is None and not opts:
            return (*open_container(self.source), None)  # classify's checks and messages, its stream choice
        if self.kind == "growing":
            tail = _TailFile(self.source, idle_timeout=self.idle_timeout, stop=self.stop)
            container = av.open(tail, format=self.input_format, options=opts)
        elif self.kind == "file":
            container = av.open(self.source, format=self.input_format, options=opts)
            tail = None
        else:
            fmt = self.input_format or ("v4l2" if self.kind == "device" else None)
            container = av.open(self.source, format=fmt, options=opts, timeout=(self.timeout, self.timeout))
            tail = None
        try:
            return container, choose_stream(self.source, container), tail
        except BaseException:
            container.close()
            if tail is not None:
                tail.close()
            raise

    def _describe(self, exc: BaseException) -> str:
        return f"{type(exc).__name__}: {exc}"[:200]

    def __iter__(self) -> Iterator[SourceFrame]:
        index, offset, last_time, failures = 0, 0.0, None, 0
        while not self.stop.is_set():
            if failures:
                if not self.live or failures > self.reconnects:
                    return
                time.sleep(self.backoff * 2 ** (failures - 1))
                self.reconnect_count += 1
            try:
                container, stream, tail = self._open()
            except (av.FFmpegError, OSError, VideoDecodeError) as exc:
                if not self.live:
                    if isinstance(exc, VideoDecodeError):
                        raise
                    raise VideoDecodeError(self.source, f"not a video file FFmpeg can open "
                                                        f"({self._describe(exc)})") from None
                failures += 1
                self.end_reason = f"source lost: {self._describe(exc)}"
                continue
            base = None
            try:
                self.rate = float(stream.average_rate) if stream.average_rate else self.rate
                frames = container.decode(stream)
                while not self.stop.is_set():
                    t0 = time.perf_counter()
                    try:
                        frame = next(frames)
                    except StopIteration:
                        break
                    decode_ms = (time.perf_counter() - t0) * 1e3
                    failures = 0
                    t = frame.time
                    if t is None:
                        t = index / (self.rate or 25.0)
                    base = t if base is None else base
                    # never backwards: an RTSP stream's second frame was seen 2 ms before its first (RTP timestamps)
                    last_time = max(offset + (t - base), last_time if last_time is not None else 0.0)
                    yield SourceFrame(frame=frame, time=last_time, index=index, decode_ms=decode_ms,
                                      wall=time.time())
                    index += 1
                if self.stop.is_set():
                    self.end_reason = "stopped"
                    return
                if not self.live:
                    self.end_reason = "eof"
                    return
                failures += 1  # a live stream that ends was cut: reconnect
                self.end_reason = "source lost: the stream ended"
            except (av.FFmpegError, OSError) as exc:
                if not self.live:
                    self.end_reason = f"eof after a decode error ({self._describe(exc)})"
                    return
                failures += 1
                self.end_reason = f"source lost: {self._describe(exc)}"
            finally:
                close_container(container, stream)
                if tail is not None:
                    tail.close()
                if base is not None:  # the next connection continues the stream's clock
                    offset = last_time + 1.0 / (self.rate or 25.0)
        self.end_reason = self.end_reason if self.end_reason.startswith("source lost") else "stopped"
