"""Frame-exact video decoding and frame sampling.

``VideoReader`` returns the i-th frame in presentation order for index i, with the PyAV (default) or decord
backend; ``sample_indices`` chooses which frames a clip uses. Imports nothing from seqvision except errors.
"""

from seqvision.errors import VideoDecodeError
from seqvision.io._decord_backend import decord_used
from seqvision.io._reader import DEFAULT_MAX_BYTES, VideoReader, check_reader_options
from seqvision.io._samplers import SAMPLERS, sample_indices
from seqvision.io._types import VIDEO_EXTENSIONS, FrameBatch, SampledIndices, VideoMetadata

__all__ = [
    "decord_used",
    "VideoReader",
    "check_reader_options",
    "VideoDecodeError",
    "VideoMetadata",
    "FrameBatch",
    "SampledIndices",
    "sample_indices",
    "SAMPLERS",
    "DEFAULT_MAX_BYTES",
    "VIDEO_EXTENSIONS",
]
