"""decord backend, made frame-exact by checking decord's own frame map against our packet index.

decord numbers frames in its own way and seeks by its keyframe list; on files where that disagrees with the
presentation order (MPEG-4 part 2 in AVI with B-frames, HEVC in Matroska, ...) its random access returns the
wrong frames. On open we compare decord's frame count, keyframe positions and frame timestamps with our
:class:`FrameIndex`; when they all agree, decord is used with ``get_batch`` in sorted order (which we verified
to be exact), otherwise the reader falls back to the PyAV backend with a warning.
"""

from __future__ import annotations

import av
import numpy as np

from seqvision.errors import VideoDecodeError
from seqvision.io._pyav_backend import _REFORMAT_KWARGS, FrameIndex

__all__ = ["DecordDecoder", "decord_available"]


_USED = False  # set once this process opens a file with decord


def decord_used() -> bool:
    """Whether this process has opened a file with decord. decord is not fork-safe: a process forked after it
    (a DataLoader worker, whatever it decodes with) can die with SIGSEGV, so such workers must be spawned."""
    return _USED


def decord_available() -> bool:
    try:
        import decord  # noqa: F401
    except Exception:
        return False
    return True


class DecordMismatch(Exception):
    """decord's frame map disagrees with the packet index: its random access would not be exact."""


# decord reserves its frame table for the header's frame count before reading a packet (about 32 bytes per frame);
# an absurd count (a damaged AVI strh, a huge duration) ends in std::bad_alloc, which aborts the process.
ESTIMATE_SLACK = 10_000


NOT_REPRODUCIBLE_CODECS = ("vp8", "vp9")


def _refuse_unsafe(index: FrameIndex) -> None:
    """Raise :class:`DecordMismatch` for files decord must not even open (it would abort or misread them)."""
    if index.sequential:
        raise DecordMismatch("the frames' order is the decoder's output order (no per-frame timestamps, B-frames, "
                             "MPEG-TS/PS or a start mid-GOP), which decord does not follow")
    if index.transform is not None:
        raise DecordMismatch(f"the display matrix rotates the video by {index.rotation} degrees; decord ignores it")
    if index.num_video_streams > 1:
        raise DecordMismatch("the file has several video streams (decord picks by its own rule)")
    if index.discarded_packets:
        raise DecordMismatch("an edit list hides frames that decord would return")
    if index.codec in NOT_REPRODUCIBLE_CODECS:
        # seen in the fuzz tests: on a VP9 stream with a damaged range, decord (which decodes in its own
        # thread) returns different frames from one run to the next; PyAV's are the same every time
        raise DecordMismatch(f"decord's {index.codec} decoding is not reproducible on damaged streams")
    if index.dropped_packets or index.demux_error:
        raise DecordMismatch("the file is cut off or has unreadable packets")
    if index.size_from_decoding:
        raise DecordMismatch("the container header has no usable frame size")
    if index.header_frames and index.header_frames != index.num_frames:
        raise DecordMismatch(f"the container header says {index.header_frames} frames, the packet index "
                             f"{index.num_frames}")
    if index.header_frame_estimate > 4 * index.num_frames + ESTIMATE_SLACK:
        raise DecordMismatch(f"the container header implies about {index.header_frame_estimate} frames, the packet "
                             f"index has {index.num_frames}")


# Pixel formats whose RGB conversion in decord (its FFmpeg 4 swscale, default flags) equals the CLI's, checked by
# the conformance tests: 8-bit 4:2:0 at even sizes (swscale's unscaled fast path) and 8-bit 4:4:4. Elsewhere
# (10-bit, odd-size 4:2:0, NV12, ...) decord was measured up to ~100 levels off; the PyAV backend is exact.
DECORD_EXACT_FORMATS = {"yuv420p": True, "yuvj420p": True, "yuv444p": False, "yuvj444p": False}  # -> needs even size


def _unlike_cli_conversion(pix_fmt: str, width: int, height: int) -> str | None:
    """Why decord's own RGB conversion differs from the CLI's for ``pix_fmt`` frames at ``width`` x ``height``,
    or None where it is known to be the same (see ``DECORD_EXACT_FORMATS``)."""
    even = DECORD_EXACT_FORMATS.get(pix_fmt)
    if even is None:
        return f"its {pix_fmt} to RGB conversion differs from the ffmpeg CLI's"
    if even and (width % 2 or height % 2):
        return f"its conversion of odd-size ({width}x{height}) {pix_fmt} frames differs from the ffmpeg CLI's"
    return None


class DecordDecoder:
    """Decodes wanted positions with ``decord.VideoReader.get_batch`` (sorted, unique)."""

    def __init__(self, path: str, index: FrameIndex, *, size: tuple[int, int] | None, num_threads: int = 0,
                 pix_fmt: str | None = None):
        self.path = path
        self._vr = None
        _refuse_unsafe(index)
        unlike = _unlike_cli_conversion(pix_fmt, index.coded_width, index.coded_height) if pix_fmt else None
        if unlike:
            raise DecordMismatch(unlike)
        native = (index.height, index.width)
        self._resize_here = None  # (H, W) when decord's own resize is broken for this size
        try:
            self._vr = self._open(path, size, num_threads)
            self._check(index)
            # decord's converter returns 4-channel / padded rows for some widths (e.g. 16 and 48 pixels, at the
            # native size or as a resize target), which makes get_batch fail or give garbage: probe one frame.
            if not self._probe(size or native):
                if size is None:
                    raise DecordMismatch(f"decord returns frames of the wrong size for {index.width}x{index.height}")
                # resize in swscale ourselves when only decord's scaler misbehaves
                self._vr = self._open(path, None, num_threads)
                if not self._probe(native):
                    raise DecordMismatch(f"decord returns frames of the wrong size for {index.width}x"
                                         f"{index.height}")
                self._resize_here = size
                from av.video.reformatter import VideoReformatter

                self._reformatter = VideoReformatter()
        except DecordMismatch:
            self.close()
            raise
        except Exception as exc:  # decord raises DECORDError / RuntimeError with FFmpeg text
            self.close()
            raise DecordMismatch(f"decord cannot open it ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})")
        self._native = native

    def _probe(self, hw: tuple[int, int]) -> bool:
        try:
            return tuple(self._vr.get_batch([0]).shape) == (1, hw[0], hw[1], 3)
        except Exception:
            return False

    @staticmethod
    def _open(path, size, num_threads):
        import decord

        global _USED
        _USED = True
        height, width = size if size is not None else (-1, -1)
        return decord.VideoReader(path, ctx=decord.cpu(0), width=width, height=height, num_threads=int(num_threads))

    def _check(self, index: FrameIndex) -> None:
        vr = self._vr
        n = len(vr)
        if n != index.num_frames:
            raise DecordMismatch(f"decord counts {n} frames, the packet index {index.num_frames}")
        keys = [int(k) for k in vr.get_key_indices()]
        if keys != [k for k in index.key_positions]:
            raise DecordMismatch("decord's keyframe positions differ from the presentation-order index")
        stamps = np.asarray(vr.get_frame_timestamp(range(n)))[:, 0].astype(np.float64)  # (N,) start times
        ours = np.array([index.pts_seconds(i) for i in range(n)], dtype=np.float64)
        tolerance = 0.25 / index.fps if index.fps > 0 else 1e-3
        if not np.all(np.abs(stamps - ours) <= tolerance):
            raise DecordMismatch("decord's frame timestamps differ from the presentation-order index")

    def decode(self, positions: list[int], *, size: tuple[int, int] | None, out: np.ndarray) -> None:
        """Decode the sorted unique ``positions`` into ``out`` (``(len(positions), H, W, 3)`` uint8)."""
        try:
            batch = self._vr.get_batch(list(positions)).asnumpy()  # (T, H, W, 3)
        except Exception as exc:
            raise VideoDecodeError(self.path, f"decord failed to decode frames {positions[:8]}"
                                              f"{'...' if len(positions) > 8 else ''} "
                                              f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
        expect = (len(positions),) + (self._native if self._resize_here is not None else out.shape[1:3]) + (3,)
        if tuple(batch.shape) != expect:
            raise VideoDecodeError(self.path, f"decord returned frames of shape {tuple(batch.shape)}, expected "
                                              f"{expect}")
        if self._resize_here is None:
            out[...] = batch
            return
        height, width = self._resize_here
        for j in range(batch.shape[0]):
            frame = av.VideoFrame.from_ndarray(batch[j], format="rgb24")
            out[j] = self._reformatter.reformat(frame, width=width, height=height, format="rgb24",
                                                **_REFORMAT_KWARGS).to_ndarray()

    def close(self) -> None:
        self._vr = None
