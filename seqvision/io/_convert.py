"""RGB conversion as the ffmpeg command-line tool does it.

``ffmpeg -i F -pix_fmt rgb24 -f rawvideo -`` converts with a scale filter it inserts itself (``auto_scale_0``,
``flags=bicubic``, progressive, chroma sited at the centre of the luma block it covers whatever the frame
says) and, where the frame size changes mid-stream, scales to the size of the first frame. PyAV's ``VideoReformatter`` (FFmpeg
7.1/8.x ``sws_scale_frame``) differs in three ways that change pixels:

- its default interpolation is bilinear (the CLI's generic path is bicubic): odd-size 4:2:0 frames differ;
- it sites chroma where the frame says (H.264/HEVC: left, MPEG-2 style): 10-bit (no unscaled fast path) differs;
- it converts the two fields of a frame flagged interlaced separately: interlaced H.264/MPEG-2 differ.

A ``scale`` filter in PyAV's own filter graph with ``flags=bicubic:interl=0`` and that chroma position given
explicitly reproduces the CLI byte for byte on every kind measured (see README, "Decoding").
"""

from __future__ import annotations

from fractions import Fraction

import av
import av.filter
import numpy as np

__all__ = ["CliRGBConverter"]

# The options the CLI's auto-inserted scaler ends up with (FFmpeg 5.1 fftools: sws_flags default "bicubic").
_SCALE_ARGS = "w={w}:h={h}:flags=bicubic:interl=0:in_h_chr_pos={hpos}:in_v_chr_pos={vpos}:threads=1"


def _centre(chroma_size) -> int:
    """libswscale 6's default chroma position (1/256 luma pixel) along one axis, given the format's
    ``chroma_width``/``chroma_height``: the centre of the luma block a chroma sample covers,
    ``(128 << log2 subsampling) - 128`` (0 for 4:4:4, 128 for 4:2:0)."""
    ratio = max(1, 256 // max(1, chroma_size(256)))  # 1, 2, 4
    return (128 << (ratio.bit_length() - 1)) - 128


class CliRGBConverter:
    """Converts decoded frames to packed RGB24 as ``ffmpeg -pix_fmt rgb24`` does.

    One filter graph per (input size, input format, output size), rebuilt when a frame brings a new one.
    """

    def __init__(self):
        self._graph = None
        self._key = None

    def _build(self, frame, width: int, height: int):
        graph = av.filter.Graph()
        source = graph.add_buffer(width=frame.width, height=frame.height, format=frame.format,
                                  time_base=Fraction(1, 1))
        fmt = frame.format
        scale = graph.add("scale", _SCALE_ARGS.format(w=width, h=height, hpos=_centre(fmt.chroma_width),
                                                      vpos=_centre(fmt.chroma_height)))
        to_rgb = graph.add("format", "rgb24")
        sink = graph.add("buffersink")
        source.link_to(scale)
        scale.link_to(to_rgb)
        to_rgb.link_to(sink)
        graph.configure()
        return graph

    def convert(self, frame, width: int, height: int) -> np.ndarray:
        """Return ``frame`` (an ``av.VideoFrame`` of any size and pixel format) as uint8 ``(height, width, 3)``
        RGB, scaled to ``width`` x ``height`` if it differs (bicubic, as the CLI scales a mid-stream size change).

        Raises:
            av.error.FFmpegError / ValueError: FFmpeg cannot build the graph for this frame's format.
        """
        key = (frame.width, frame.height, frame.format.name, width, height)
        if key != self._key:
            self._graph, self._key = None, None
            self._graph = self._build(frame, width, height)
            self._key = key
        self._graph.push(frame)
        return self._graph.pull().to_ndarray()
