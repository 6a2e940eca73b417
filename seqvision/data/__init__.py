"""seqvision.data: dataset layouts -> records, synthetic videos, the video Dataset, transforms and collate.

Example:
    >>> from seqvision.config import DataConfig
    >>> from seqvision.data import VideoDataset, collate, load_index, make_synthetic_dataset
    >>> make_synthetic_dataset("data/synth", num_videos=240)
    >>> index = load_index(DataConfig(format="synthetic", root="data/synth"))
    >>> ds = VideoDataset(index.split("train"), num_frames=16, size=64)
"""

from ._collate import IGNORE_INDEX, SYSTEMIC_FIRST, ErrorReport, collate
from ._dataset import VideoDataset, worker_context
from ._records import DatasetIndex, VideoRecord
from ._transforms import IMAGENET_MEAN, IMAGENET_STD, Normalize, build_transform
from .formats import FORMATS, load_index
from .synth import SYNTH_CLASSES, SYNTH_FRAME_LABELS, make_synthetic_dataset
from .vocab import Vocabulary

__all__ = [
    "VideoRecord",
    "DatasetIndex",
    "load_index",
    "FORMATS",
    "make_synthetic_dataset",
    "SYNTH_CLASSES",
    "SYNTH_FRAME_LABELS",
    "VideoDataset",
    "worker_context",
    "build_transform",
    "Normalize",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "collate",
    "ErrorReport",
    "SYSTEMIC_FIRST",
    "IGNORE_INDEX",
    "Vocabulary",
]
