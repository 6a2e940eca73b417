"""PyAV backend: a packet index built on open (demux only) and frame-exact sparse decoding.

Index ``i`` is the ``i``-th frame in presentation order: the packets' pts, sorted. Decoding a set of wanted
frames seeks to the keyframe at or before the first one, decodes forward and keeps only what is wanted,
re-seeking only when the next wanted frame lies beyond a keyframe that has not been reached yet. Frames that
are neither wanted nor referenced are skipped inside the decoder (``skip_frame="NONREF"``).
"""

from __future__ import annotations

import bisect
import os
import warnings
from dataclasses import dataclass
from fractions import Fraction

import av
import av.error
import numpy as np
from av.video.reformatter import VideoReformatter

from seqvision.errors import VideoDecodeError

__all__ = ["FrameIndex", "PyAVDecoder", "open_container", "build_index"]

@dataclass
class FrameIndex:
    """Presentation-order index of a video stream, built from its packets.

    Attributes:
        pts: stream-time pts of every frame, sorted (presentation order); ``None`` when the container gives
            no usable timestamps (then ``sequential`` is True and frames are counted from the start).
        time_base: the stream time base.
        key_positions: presentation positions of the keyframes (sorted).
        key_seek_ts: for each keyframe, the timestamp to seek to (its pts).
        sequential: decode from the start and count frames instead of matching timestamps.
        header_frames: the frame count the container header claims (0 = unknown).
        dropped_packets: packets left out of the index because they were cut off or unreadable.
        demux_error: the error that stopped demuxing early, if any.
        header_frame_estimate: the largest frame count a reader that trusts the header would size its tables
            for, over the file's video streams: the stream's frame count, else average rate x container
            duration (what decord reserves memory for before it reads a packet); 0 = none.
        size_from_decoding: the header's frame size was missing or implausible; ``width`` and ``height`` come
            from decoding the first frame.
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

    def pts_seconds(self, position: int) -> float:
        if self.pts is None:
            return position / self.fps if self.fps > 0 else 0.0
        return float(self.pts[position] * self.time_base)


def _describe(exc: BaseException) -> str:
    """A one-line cause from an FFmpeg / OS error (no traceback)."""
    text = getattr(exc, "strerror", None) or str(exc)
    return f"{type(exc).__name__}: {text}".strip()


def open_container(path: str, *, num_threads: int = 0):
    """Open ``path`` and return ``(container, video_stream)``; every failure is a ``VideoDecodeError``."""
    if not os.path.exists(path):
        raise VideoDecodeError(path, "file does not exist")
    if os.path.isdir(path):
        raise VideoDecodeError(path, "is a directory, not a video file")
    if os.path.getsize(path) == 0:
        raise VideoDecodeError(path, "file is empty (0 bytes)")
    try:
        container = av.open(path, mode="r", metadata_errors="ignore")
    except (av.error.FFmpegError, OSError, UnicodeDecodeError, ValueError) as exc:
        raise VideoDecodeError(path, f"not a video file FFmpeg can open ({_describe(exc)})") from None
    if not container.streams.video:
        kinds = ", ".join(f"{s.type} {getattr(s.codec_context, 'name', '?')}" for s in container.streams) or "none"
        container.close()
        raise VideoDecodeError(path, f"has no video stream (streams: {kinds})")
    stream = container.streams.video[0]
    if stream.codec_context is None or not stream.codec_context.name:
        container.close()
        raise VideoDecodeError(path, "video stream has no decoder in this FFmpeg build")
    stream.thread_type = "AUTO"  # frame + slice threading
    stream.thread_count = int(num_threads)
    return container, stream


def build_index(path: str, container, stream) -> FrameIndex:
    """Demux every packet of ``stream`` (no decoding) and build the presentation-order :class:`FrameIndex`."""
    entries: list[tuple[int | None, int | None, bool]] = []
    dropped = 0
    demux_error = None
    try:
        for packet in container.demux(stream):
            if packet.size == 0 and packet.pts is None and packet.dts is None:
                continue  # the flush packet at the end
            if packet.is_corrupt:
                dropped += 1  # e.g. the last packet of a cut-off file
                continue
            entries.append((packet.pts, packet.dts, bool(packet.is_keyframe)))
    except (av.error.FFmpegError, OSError) as exc:
        demux_error = _describe(exc)
    if not entries:
        cause = f" ({demux_error})" if demux_error else ""
        raise VideoDecodeError(path, f"video stream has no readable packets{cause}")

    tb = stream.time_base or Fraction(1, 1)
    cc = stream.codec_context
    pts_list = [e[0] if e[0] is not None else e[1] for e in entries]
    sequential = any(p is None for p in pts_list) or len(set(pts_list)) != len(pts_list)
    n = len(entries)
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if sequential:
        pts = None
        # Without timestamps the decode order is the only order we know; keyframes in decode order.
        key_positions = [i for i, e in enumerate(entries) if e[2]] or [0]
        key_seek = [None] * len(key_positions)
        fps = float(rate) if rate else 25.0
        duration = n / fps
    else:
        order = sorted(range(n), key=lambda i: pts_list[i])
        pts = [pts_list[i] for i in order]
        pos_of = {pts[j]: j for j in range(n)}
        # Seek by the keyframe's pts: containers index keyframes by dts (<= pts) or pts, and FFmpeg's mov
        # index is shifted by the edit list, so seeking to the dts can land one keyframe early.
        keys = sorted((pos_of[pts_list[i]], pts_list[i]) for i in range(n) if entries[i][2])
        if not keys or keys[0][0] != 0:
            keys.insert(0, (0, None))  # no keyframe flagged at the start: seek to the very beginning
        key_positions = [k[0] for k in keys]
        key_seek = [k[1] for k in keys]
        span = float((pts[-1] - pts[0]) * tb)
        if n > 1 and span > 0:
            fps = float(rate) if rate and abs(float(rate) * span / (n - 1) - 1) < 0.5 else (n - 1) / span
            duration = span + span / (n - 1)
        else:
            fps = float(rate) if rate else 25.0
            duration = n / fps
    header = int(stream.frames or 0)
    width, height = int(cc.width or 0), int(cc.height or 0)
    size_from_decoding = not _plausible_size(width, height)
    if size_from_decoding:
        # The header's frame size is missing or damaged: trust it only if decoding shows the real size.
        probed = _probe_frame_size(path, stream.index)
        if probed is None:
            raise VideoDecodeError(path, f"the video stream's frame size is {width}x{height} and no frame could "
                                         f"be decoded to find the real one")
        width, height = probed
    return FrameIndex(pts=pts, num_frames=n, time_base=tb, key_positions=key_positions, key_seek_ts=key_seek,
                      sequential=sequential, width=width, height=height, codec=cc.name,
                      fps=float(fps), duration=float(duration), header_frames=header, dropped_packets=dropped,
                      demux_error=demux_error, header_frame_estimate=_header_frame_estimate(container),
                      size_from_decoding=size_from_decoding)


MAX_SIDE = 32768  # FFmpeg's own image-size checks refuse larger frames
PROBE_PACKETS = 256  # packets decoded at most to find the frame size of a stream whose header lacks it


def _plausible_size(width: int, height: int) -> bool:
    return 1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE


def _probe_frame_size(path: str, stream_index: int) -> tuple[int, int] | None:
    """Decode from the start of a fresh open until a frame with a plausible size comes out: ``(W, H)`` or None."""
    try:
        container = av.open(path, mode="r", metadata_errors="ignore")
    except (av.error.FFmpegError, OSError, UnicodeDecodeError, ValueError):
        return None
    try:
        stream = container.streams[stream_index]
        stream.thread_count = 1
        seen = 0
        packets = container.demux(stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                packet = None  # flush the decoder
            except (av.error.FFmpegError, OSError):
                return None
            try:
                frames = stream.decode(packet)
            except (av.error.FFmpegError, OSError, ValueError):
                frames = []
            for frame in frames:
                if _plausible_size(int(frame.width), int(frame.height)):
                    return int(frame.width), int(frame.height)
            seen += 1
            if packet is None or seen >= PROBE_PACKETS:
                return None
    finally:
        try:
            container.close()
        except Exception:
            pass


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

    def __init__(self, path: str, container, stream, index: FrameIndex):
        self.path = path
        self._container = container
        self._stream = stream
        self._index = index
        self._pos_of = {p: i for i, p in enumerate(index.pts)} if index.pts is not None else None
        self._reformatter = VideoReformatter()
        self._gen = None  # live (position, frame) generator after the last seek
        self._last = -1  # presentation position of the last frame the generator produced
        self._want_pts: set[int] = set()
        self._skip_below = 0
        self._warned = False
        self.frames_decoded = 0  # frames the decoder produced (a cost measure for tests and benchmarks)
        self.seeks = 0

    # -- decoding --------------------------------------------------------------------------------------
    def _key_number(self, position: int) -> int:
        if self._index.sequential:
            return 0  # no timestamps: always count from the start
        return bisect.bisect_right(self._index.key_positions, position) - 1

    def _seek(self, key_number: int) -> None:
        index = self._index
        ts = index.key_seek_ts[key_number] if not index.sequential else None
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
        threads = self._stream.thread_count
        self._gen = None
        self._container.close()
        self._container, self._stream = open_container(self.path, num_threads=threads)  # at the start

    def _frames(self):
        """Yield ``(position, frame)`` in presentation order from the current container position."""
        stream = self._stream
        cc = stream.codec_context
        counter = -1
        pos_of = self._pos_of
        skipping = False
        try:
            for packet in self._container.demux(stream):
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

    def _warn(self, message: str) -> None:
        if not self._warned:
            warnings.warn(f"{self.path}: {message}", RuntimeWarning, stacklevel=5)
            self._warned = True

    def decode(self, positions: list[int], *, size: tuple[int, int] | None, out: np.ndarray) -> None:
        """Decode the sorted unique ``positions`` into ``out`` (``(len(positions), H, W, 3)`` uint8)."""
        index = self._index
        self._want_pts = set(index.pts[p] for p in positions) if index.pts is not None else set()
        self._skip_below = positions[-1]
        # At the native size convert to the indexed size too: a frame whose size differs from the stream's
        # (a damaged header, a mid-stream size change) is scaled instead of breaking the output's shape.
        width, height = (size[1], size[0]) if size is not None else (index.width, index.height)
        t = 0
        retreat = 0  # keyframes further back to seek after a seek landed past the target
        clean = False  # the current run started with a seek made for the current target
        while t < len(positions):
            target = positions[t]
            key = self._key_number(target)
            behind = target <= self._last
            past_key = not index.sequential and index.key_positions[key] > self._last + 1
            if self._gen is None or behind or past_key:
                self._seek(max(0, key - retreat))
                clean = True
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
                if not index.sequential and index.key_positions[key] > pos + 1:
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
        rgb = self._reformatter.reformat(frame, width=width, height=height, format="rgb24", threads=1)
        dest[...] = rgb.to_ndarray()

    def close(self) -> None:
        self._gen = None
        if self._container is not None:
            try:
                self._container.close()
            finally:
                self._container = None
