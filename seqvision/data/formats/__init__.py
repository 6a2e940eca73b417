"""Dataset layouts on disk -> a :class:`~seqvision.data.DatasetIndex`. One small module per format.

``load_index(data_cfg)`` dispatches on ``data_cfg.format``: "manifest" / "synthetic" (our JSONL/CSV),
"ucf101", "hmdb51", "folder", "kinetics", "msrvtt", "msvd". Each reader's module docstring describes the layout
it expects.
"""

from __future__ import annotations

import logging
from typing import Callable

from ...config import DataConfig
from ...errors import DatasetError
from .._records import DatasetIndex
from . import _folder, _hmdb51, _kinetics, _manifest, _msrvtt, _msvd, _ucf101

__all__ = ["load_index", "FORMATS"]

FORMATS: dict[str, Callable[..., DatasetIndex]] = {
    "manifest": _manifest.load,
    "synthetic": _manifest.load,
    "ucf101": _ucf101.load,
    "hmdb51": _hmdb51.load,
    "folder": _folder.load,
    "kinetics": _kinetics.load,
    "msrvtt": _msrvtt.load,
    "msvd": _msvd.load,
}


def load_index(data_cfg: DataConfig, *, seed: int = 0) -> DatasetIndex:
    """Read a dataset's annotations and list its videos.

    Args:
        data_cfg: ``format`` picks the reader; ``root``, ``annotations``, ``fold``, ``val_fraction`` and
            ``test_fraction`` are used where the format needs them.
        seed: seeds the split for formats that have none on disk.

    Returns:
        A :class:`DatasetIndex`: records found on disk, class names, and ``missing`` ``(path, why)`` pairs.

    Raises:
        DatasetError: a missing annotation file (names the path and the expected layout) or a bad line
            (names ``file:line`` and what was expected).

    Example:
        >>> index = load_index(DataConfig(format="ucf101", root="/data/UCF101", fold=1))
        >>> len(index.split("train")), index.label_names[:2]
        (9537, ['ApplyEyeMakeup', 'ApplyLipstick'])
    """
    reader = FORMATS.get(data_cfg.format)
    if reader is None:
        raise DatasetError(f"data.format: got {data_cfg.format!r}; allowed: {', '.join(map(repr, FORMATS))}")
    index = reader(data_cfg, seed=seed)
    if index.missing:  # e.g. Kinetics clips that were never downloaded: left out, but never silently
        logging.getLogger("seqvision.data").warning(
            "%d annotated video(s) are not on disk and are left out (data.format=%r), e.g. %s: %s",
            len(index.missing), data_cfg.format, *index.missing[0])
    return index
