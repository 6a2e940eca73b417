"""``VideoReader``: frame-exact random access to a video file."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from typing import Literal

import numpy as np
import torch
from einops import rearrange

from seqvision.errors import ArgumentError, VideoDecodeError
from seqvision.io._pyav_backend import FrameIndex, PyAVDecoder, build_index, finish_orientation, open_container
from seqvision.io._types import FrameBatch, VideoMetadata

__all__ = ["VideoReader", "DEFAULT_MAX_BYTES", "check_reader_options"]

DEFAULT_MAX_BYTES = 4 * 2**30  # 4 GiB of decoded frames per call


class VideoReader:
    """Frame-exact random access to the frames of a video, in presentation order.

    On open the reader demuxes the whole video stream (no decoding) and builds an index of every frame's
    presentation time and of the keyframes, so ``len(reader)`` and the index -> time map are exact even when
    the container's header is missing or wrong (WebM, variable frame rate, cut-off files). Reading a set of
    frames seeks to the keyframe before the first wanted frame, decodes forward, and converts (and resizes,
    in swscale) only the frames that are kept.

    Args:
        path: the video file.
        backend: ``"pyav"`` (default) or ``"decord"``. decord is used only where its frame map is verified to
            match the index; otherwise the reader warns and uses PyAV (``reader.backend`` says which is used).
        size: ``None`` (native size), an int (see ``resize``) or ``(H, W)``.
        resize: with an int ``size``: ``"square"`` gives ``size x size``, ``"short_side"`` scales the short
            side to ``size`` keeping the aspect ratio.
        num_threads: decoder threads; 0 = FFmpeg's automatic choice.
        dimension_order: ``"NCHW"`` -> frames ``(T, 3, H, W)`` (a view in channels_last memory: no copy);
            ``"NHWC"`` -> ``(T, H, W, 3)``.
        max_bytes: refuse one call that would return more than this many bytes of frames (``None`` = no
            limit); use a sampler, a smaller ``size`` or :meth:`iter_frames` instead.
        stream: which stream of the container to decode, by its container index (``ffmpeg -map 0:<stream>``);
            ``None`` = the one the FFmpeg CLI picks (largest frame area, ``default`` disposition first, never an
            attached cover picture).
        autorotate: apply the display matrix (portrait phone videos: MP4 ``tkhd`` / display-matrix side data)
            as the FFmpeg CLI does by default, so 90/270-degree videos come out ``W x H`` swapped; ``False``
            keeps the coded orientation (``ffmpeg -noautorotate``). The angle is ``metadata.rotation``.

    Index ``i`` is the ``i``-th frame ``ffmpeg -i F -fps_mode passthrough -pix_fmt rgb24 -f rawvideo -``
    writes (see :mod:`seqvision.io._pyav_backend` for how: a demux-only index where the container has per-frame
    timestamps, the decoder's own output order elsewhere).

    Raises:
        VideoDecodeError: the file is missing (a URL: the message points to ``seqvision stream``), empty, not a
            video, has no video stream or no readable frames.
        ArgumentError: a bad option, named by ``argument`` (see :func:`check_reader_options`); below the config
            layer, so not spelled with ``data.*`` keys (``VideoDataset.from_config`` maps them).

    Example:
        >>> with VideoReader("clip.mp4", size=112) as vr:
        ...     clip = vr.get_frames([0, 10, 20])   # uint8 (3, 3, 112, 112)
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        backend: Literal["pyav", "decord"] = "pyav",
        size: int | tuple[int, int] | None = None,
        resize: Literal["square", "short_side"] = "square",
        num_threads: int = 0,
        dimension_order: Literal["NCHW", "NHWC"] = "NCHW",
        max_bytes: int | None = DEFAULT_MAX_BYTES,
        stream: int | None = None,
        autorotate: bool = True,
    ):
        self._decoder = None
        self._container = None
        self.path = os.fspath(path)
        check_reader_options(backend=backend, size=size, resize=resize, num_threads=num_threads,
                             dimension_order=dimension_order, max_bytes=max_bytes, stream=stream, autorotate=autorotate)
        self.dimension_order = dimension_order
        self.max_bytes = max_bytes

        self._container, chosen = open_container(self.path, num_threads=num_threads, stream=stream)
        chosen_index, path_ = chosen.index, self.path

        def reopen():  # holds no reference to self: __del__ must still close the file
            return open_container(path_, num_threads=num_threads, stream=chosen_index)

        self._reopen = reopen

        stream = chosen
        try:
            self._index = build_index(self.path, self._container, stream, autorotate=autorotate, reopen=reopen)
        except BaseException:
            self.close()
            raise
        index = self._index
        self._size_request = (size, resize)
        self._size = _output_size(size, resize, index.height, index.width)  # checks the options now
        if index.orientation_pending:
            # PyAV < 19 gives the display matrix only on decoded frames: the first read's first frame tells it
            # (or the first use of a size before that, or decord's check below, which decode one frame)
            self._decoder = PyAVDecoder(self.path, self._container, stream, index, reopen=reopen)
            self._container = None
            if backend == "decord" or not (size is None or isinstance(size, (tuple, list)) or resize == "square"):
                self._orient(self._decoder.prime())
        else:
            self._orient(None)
        if index.demux_error or index.dropped_packets or index.damaged_packets:
            damaged = (f"; {index.damaged_packets} damaged packets, so frames are counted as the decoder outputs "
                       f"them, as the ffmpeg CLI does" if index.damaged_packets else "")
            warnings.warn(f"{self.path}: the file is cut off or damaged; the index holds the "
                          f"{index.num_frames} frames that could be read"
                          f"{' (' + index.demux_error + ')' if index.demux_error else ''}{damaged}", RuntimeWarning,
                          stacklevel=2)
        elif (index.mode == "pts" and index.header_frames
              and index.header_frames != index.num_frames + index.discarded_packets):
            warnings.warn(f"{self.path}: the container header says {index.header_frames} frames but "
                          f"{index.num_frames} were found; using {index.num_frames}", RuntimeWarning, stacklevel=2)

        self.backend = "pyav"
        pyav_decoder, self._decoder = self._decoder, None
        if backend == "decord":
            from seqvision.io._decord_backend import DecordDecoder, DecordMismatch, decord_available

            if not decord_available():
                warnings.warn(f"{self.path}: decord is not installed; using the pyav backend", RuntimeWarning,
                              stacklevel=2)
            else:
                try:
                    self._decoder = DecordDecoder(self.path, index, size=self._size, num_threads=num_threads,
                                                  pix_fmt=stream.codec_context.pix_fmt)
                    self.backend = "decord"
                except DecordMismatch as why:
                    warnings.warn(f"{self.path}: decord would not return exact frames here ({why}); using the "
                                  f"pyav backend", RuntimeWarning, stacklevel=2)
        if self._decoder is None:
            if pyav_decoder is None:
                pyav_decoder = PyAVDecoder(self.path, self._container, stream, index, reopen=reopen)  # owns it now
                self._container = None
            self._decoder = pyav_decoder
        else:
            if pyav_decoder is not None:
                pyav_decoder.close()
            if self._container is not None:
                self._container.close()
                self._container = None

    def _fall_back_to_pyav(self, exc: VideoDecodeError) -> None:
        """decord failed to decode (a damaged packet its threaded decoder rejects, not every run): decode this file
        with PyAV from now on, as the reader does for files decord is not verified on, with a warning."""
        warnings.warn(f"{self.path}: decord failed ({exc.reason[:160]}); using the pyav backend", RuntimeWarning,
                      stacklevel=3)
        self._decoder.close()
        container, stream = self._reopen()
        self._decoder = PyAVDecoder(self.path, container, stream, self._index, reopen=self._reopen)
        self.backend = "pyav"

    def _orient(self, frame) -> None:
        """Finish the index's orientation (from ``frame``'s display matrix) and the output size that depends on it."""
        finish_orientation(self._index, frame)
        size, resize = self._size_request
        self._size = _output_size(size, resize, self._index.height, self._index.width)

    def _oriented(self) -> FrameIndex:
        if self._index.orientation_pending:
            if self._decoder is None or not hasattr(self._decoder, "prime"):
                self._orient(None)
            else:
                self._orient(self._decoder.prime())
        return self._index

    # -- metadata ----------------------------------------------------------------------------------------
    @property
    def metadata(self) -> VideoMetadata:
        """The video's :class:`VideoMetadata` (measured from its packets)."""
        i = self._oriented()
        return VideoMetadata(path=self.path, num_frames=i.num_frames, fps=i.fps, duration=i.duration,
                             width=i.width, height=i.height, codec=i.codec, rotation=i.rotation,
                             stream=i.stream_index)

    def __len__(self) -> int:
        return self._index.num_frames

    @property
    def fps(self) -> float:
        return self._index.fps

    @property
    def duration(self) -> float:
        return self._index.duration

    @property
    def width(self) -> int:
        """Native frame width (before resize, after autorotation)."""
        return self._oriented().width

    @property
    def height(self) -> int:
        """Native frame height (before resize, after autorotation)."""
        return self._oriented().height

    @property
    def output_size(self) -> tuple[int, int]:
        """``(H, W)`` of the frames this reader returns."""
        index = self._oriented()
        return self._size or (index.height, index.width)

    @property
    def index(self) -> FrameIndex:
        """The packet index (presentation-order pts and keyframes)."""
        return self._oriented()

    @property
    def stats(self) -> dict[str, int]:
        """Decoding cost so far: ``frames_decoded`` and ``seeks`` (pyav backend; zeros for decord)."""
        d = self._decoder
        return {"frames_decoded": getattr(d, "frames_decoded", 0), "seeks": getattr(d, "seeks", 0)}

    def pts_seconds(self, indices: Sequence[int]) -> list[float]:
        """Presentation time in seconds of each frame index."""
        idx = self._check_indices(indices)
        return [self._index.pts_seconds(i) for i in idx]

    # -- decoding ----------------------------------------------------------------------------------------
    def _check_indices(self, indices) -> list[int]:
        if isinstance(indices, torch.Tensor):
            indices = indices.tolist()
        elif isinstance(indices, np.ndarray):
            indices = indices.tolist()
        elif isinstance(indices, (int, np.integer)):
            raise TypeError("indices must be a sequence of ints, e.g. [i]")
        out = []
        for i in indices:
            if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
                raise ArgumentError("indices", f"frame indices must be ints, got {i!r} ({type(i).__name__})")
            out.append(int(i))
        n = self._index.num_frames
        for i in out:
            if not 0 <= i < n:
                raise VideoDecodeError(self.path, f"frame index {i} is out of range: the video has {n} frames "
                                                  f"(0..{n - 1})")
        return out

    def _check_memory(self, count: int) -> None:
        # the byte count does not depend on a pending 90/270 degree rotation (it only swaps H and W), so this
        # check never decodes a frame to learn the orientation
        h, w = self._size or (self._index.height, self._index.width)
        need = count * h * w * 3
        if self.max_bytes is not None and need > self.max_bytes:
            raise VideoDecodeError(self.path, f"{count} frames of {h}x{w} need {need / 2**30:.2f} GiB, more than "
                                              f"max_bytes={self.max_bytes / 2**30:.2f} GiB; sample fewer frames "
                                              f"(seqvision.io.sample_indices), resize at decode time (size=...), "
                                              f"or stream them with iter_frames(chunk_size=...)")

    def get_frame_batch(self, indices: Sequence[int]) -> FrameBatch:
        """Decode frames by index, with their timestamps.

        Args:
            indices: frame indices in ``[0, len(self))``, any order, duplicates allowed.
        Returns:
            :class:`FrameBatch` with ``data`` uint8 RGB ``(T, 3, H, W)`` (or ``(T, H, W, 3)`` for NHWC).
        Raises:
            VideoDecodeError: an index is out of range or a frame cannot be decoded (the message names it), or
                the result would exceed ``max_bytes``.
            ArgumentError: ``indices`` holds something other than ints (``1.5``, ``True``; argument ``"indices"``).
        """
        if self._decoder is None:
            raise VideoDecodeError(self.path, "the reader is closed")
        idx = self._check_indices(indices)
        self._check_memory(len(idx))
        if self._index.orientation_pending and idx:
            self._orient(self._decoder.peek(sorted(set(idx))))  # the frame stays with the decoder for this read
        h, w = self.output_size
        unique = sorted(set(idx))
        buf = np.empty((len(unique), h, w, 3), dtype=np.uint8)  # (U, H, W, 3)
        if unique:
            try:
                self._decoder.decode(unique, size=self._size, out=buf)
            except VideoDecodeError as exc:
                if self.backend != "decord":
                    raise
                self._fall_back_to_pyav(exc)
                self._decoder.decode(unique, size=self._size, out=buf)
            except (RuntimeError, ValueError, OSError, MemoryError) as exc:
                raise VideoDecodeError(self.path, f"decoding failed ({type(exc).__name__}: {exc})") from None
        if idx == unique:
            frames = torch.from_numpy(buf)
        else:
            where = {p: j for j, p in enumerate(unique)}
            frames = torch.from_numpy(buf[[where[i] for i in idx]])  # (T, H, W, 3)
        if self.dimension_order == "NCHW":
            # a view, not a copy: (T, C, H, W) in channels_last memory, the layout the CNN encoders run in
            frames = rearrange(frames, "t h w c -> t c h w")
        pts = torch.tensor([self._index.pts_seconds(i) for i in idx], dtype=torch.float64)
        return FrameBatch(data=frames, indices=idx, pts_seconds=pts)

    def get_frames(self, indices: Sequence[int]) -> torch.Tensor:
        """Decode frames by index: uint8 RGB ``(T, 3, H, W)`` (``(T, H, W, 3)`` for NHWC).

        Any order and duplicates are allowed; see :meth:`get_frame_batch`.
        """
        return self.get_frame_batch(indices).data

    def iter_frames(self, indices: Sequence[int] | None = None, *, chunk_size: int = 64) -> Iterator[FrameBatch]:
        """Stream frames in chunks of at most ``chunk_size`` (``indices=None``: every frame).

        The decoder keeps its position between chunks, so streaming a whole video decodes it once.
        """
        if chunk_size < 1:
            raise ArgumentError("chunk_size", f"must be >= 1, got {chunk_size!r}")
        idx = list(range(len(self))) if indices is None else self._check_indices(indices)
        for start in range(0, len(idx), chunk_size):
            yield self.get_frame_batch(idx[start : start + chunk_size])

    # -- lifetime ----------------------------------------------------------------------------------------
    def close(self) -> None:
        """Release the decoder and the file handle (safe to call twice)."""
        decoder, self._decoder = getattr(self, "_decoder", None), None
        container, self._container = getattr(self, "_container", None), None
        if decoder is not None:
            decoder.close()
        if container is not None:
            try:
                container.close()
            except Exception:
                pass

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        i = getattr(self, "_index", None)
        if i is None:
            return f"VideoReader({self.path!r})"
        return (f"VideoReader({self.path!r}, backend={self.backend!r}, frames={i.num_frames}, "
                f"{i.width}x{i.height} {i.codec} @ {i.fps:.3g} fps, output={self._size or (i.height, i.width)})")


def check_reader_options(*, backend: str = "pyav", size=None, resize: str = "square", num_threads: int = 0,
                         dimension_order: str = "NCHW", max_bytes: int | None = DEFAULT_MAX_BYTES,
                         stream: int | None = None, autorotate: bool = True) -> None:
    """Check :class:`VideoReader`'s options without opening a file (the reader calls it first; a dataset can call
    it up front, so a bad option fails at construction rather than at the first item).

    Raises:
        ArgumentError: a bad option, named by ``argument`` (``"backend"``, ``"size"``, ``"resize"``,
            ``"num_threads"``, ``"dimension_order"``, ``"max_bytes"``, ``"stream"``, ``"autorotate"``).
    """
    if backend not in ("pyav", "decord"):
        raise ArgumentError("backend", f"got {backend!r}; allowed: 'pyav', 'decord'")
    if resize not in ("square", "short_side"):
        raise ArgumentError("resize", f"got {resize!r}; allowed: 'square', 'short_side'")
    if dimension_order not in ("NCHW", "NHWC"):
        raise ArgumentError("dimension_order", f"got {dimension_order!r}; allowed: 'NCHW', 'NHWC'")
    if not isinstance(num_threads, int) or num_threads < 0:
        raise ArgumentError("num_threads", f"must be an int >= 0, got {num_threads!r}")
    if max_bytes is not None and max_bytes <= 0:
        raise ArgumentError("max_bytes", f"must be > 0 or None, got {max_bytes!r}")
    if stream is not None and (isinstance(stream, bool) or not isinstance(stream, int) or stream < 0):
        raise ArgumentError("stream", f"must be None or a stream index >= 0, got {stream!r}")
    if not isinstance(autorotate, bool):
        raise ArgumentError("autorotate", f"must be true or false, got {autorotate!r}")
    _output_size(size, resize, 2, 2)  # the size's form and range (the video's own H, W do not matter here)


def _output_size(size, resize: str, height: int, width: int) -> tuple[int, int] | None:
    """The ``(H, W)`` to resize to, or None for the native size."""
    if size is None:
        return None
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        s = int(size)
        if s < 1:
            raise ArgumentError("size", f"must be >= 1, got {s}")
        if resize == "square":
            return (s, s)
        if height <= width:
            return (s, max(1, round(width * s / height)))
        return (max(1, round(height * s / width)), s)
    if isinstance(size, (tuple, list)) and len(size) == 2 and all(isinstance(v, (int, np.integer)) for v in size):
        h, w = int(size[0]), int(size[1])
        if h < 1 or w < 1:
            raise ArgumentError("size", f"(H, W) must be >= 1, got {tuple(size)}")
        return (h, w)
    raise ArgumentError("size", f"must be None, an int or (H, W), got {size!r}")
