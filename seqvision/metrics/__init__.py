"""seqvision.metrics: clip classification, frame labelling and captioning metrics.

Only numpy, torch, pycocoevalcap and :mod:`seqvision.errors` are imported here, so any stage can use it.

- :func:`classification_metrics`, :func:`confusion_matrix`: top-k, mean class accuracy, per-class P/R/F1.
- :func:`frame_metrics`: per-frame accuracy, segmental edit score, F1@{10,25,50} (MS-TCN conventions).
- :func:`caption_scores`: BLEU-1..4, METEOR, ROUGE-L, CIDEr-D via pycocoevalcap's own scorers.
"""

from ._captions import caption_scores, java_available, tokenize_captions
from ._classification import classification_metrics, confusion_matrix
from ._frames import edit_score, f1_overlap, frame_metrics, segments

__all__ = [
    "classification_metrics",
    "confusion_matrix",
    "frame_metrics",
    "segments",
    "edit_score",
    "f1_overlap",
    "caption_scores",
    "tokenize_captions",
    "java_available",
]
