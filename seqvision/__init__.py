"""seqvision: video sequence modeling with the CNN + RNN recipe.

Decoded clips -> per-frame CNN features -> a configurable RNN -> a clip label, a label per frame, or a caption.
"""

from .errors import CacheError, CheckpointError, ConfigError, DatasetError, SeqVisionError, VideoDecodeError

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "SeqVisionError",
    "VideoDecodeError",
    "ConfigError",
    "DatasetError",
    "CacheError",
    "CheckpointError",
]
