"""Typed results of the io package: metadata, decoded frames, sampled indices."""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["VideoMetadata", "FrameBatch", "SampledIndices", "VIDEO_EXTENSIONS"]

# File name endings taken for videos when a folder is scanned (dataset folders, `seqvision classify DIR`); FFmpeg
# opens any of them. MPEG-TS (.ts, .m2ts, .mts) is what cameras, DVB and HLS segments write; .vob is DVD's MPEG-2
# program stream; .y4m raw frames; .ivf VP8/VP9/AV1; .ogv Theora; the rest raw elementary streams (README's
# conformance table: .h264/.264, .hevc/.265, .m1v/.m2v).
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ts",
                    ".m2ts", ".mts", ".vob", ".y4m", ".ivf", ".ogv", ".h264", ".264", ".hevc", ".265", ".m1v", ".m2v")


@dataclass(frozen=True)
class VideoMetadata:
    """What a video holds, measured from its packets (not trusted from the container header).

    Attributes:
        path: the file.
        num_frames: frames in presentation order that the reader can return (``len(reader)``).
        fps: average frame rate (frames per second).
        duration: seconds from the first frame's start to the last frame's end.
        width, height: frame size in pixels as returned at the native size (after autorotation, before resize).
        codec: FFmpeg codec name, e.g. ``"h264"``.
        rotation: clockwise degrees the display matrix asks for (0, 90, 180 or 270 for phone videos);
            ``width``/``height`` are after it when the reader autorotates.
        stream: the container index of the decoded video stream.
    """

    path: str
    num_frames: int
    fps: float
    duration: float
    width: int
    height: int
    codec: str
    rotation: int = 0
    stream: int = 0


@dataclass
class FrameBatch:
    """Frames with their indices and presentation times.

    Attributes:
        data: uint8 RGB frames, ``(T, 3, H, W)`` (NCHW) or ``(T, H, W, 3)`` (NHWC).
        indices: the frame index of each row of ``data`` (as requested: any order, duplicates kept).
        pts_seconds: float64 ``(T,)`` presentation time of each frame in seconds (stream time).
    """

    data: torch.Tensor
    indices: list[int]
    pts_seconds: torch.Tensor

    def __post_init__(self):
        if self.data.ndim != 4 or self.data.dtype != torch.uint8:
            raise ValueError(f"FrameBatch.data must be uint8 (T, C, H, W) or (T, H, W, C), got "
                             f"{self.data.dtype} {tuple(self.data.shape)}")
        if not (len(self.indices) == self.data.shape[0] == self.pts_seconds.shape[0]):
            raise ValueError(f"FrameBatch: {self.data.shape[0]} frames, {len(self.indices)} indices, "
                             f"{self.pts_seconds.shape[0]} timestamps")

    def __len__(self) -> int:
        return len(self.indices)

    def __repr__(self) -> str:
        return (f"FrameBatch(data={self.data.dtype} {tuple(self.data.shape)}, indices=[{len(self.indices)}], "
                f"pts_seconds={tuple(self.pts_seconds.shape)})")


@dataclass(frozen=True)
class SampledIndices:
    """Frame indices chosen by a sampler.

    Attributes:
        indices: frame indices to decode (sorted for every sampler).
        length: how many of them are real frames. Under ``short_policy="repeat"`` a short video's ``indices``
            is padded by repeating its last index, so ``length < len(indices)``; otherwise they are equal.
    """

    indices: list[int]
    length: int

    def __len__(self) -> int:
        return len(self.indices)
