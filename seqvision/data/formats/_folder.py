"""Folder per class: ``<root>/<class>/<video>`` (or ``<root>/<split>/<class>/<video>``).

Classes are the sorted folder names; videos are files with an ending in ``seqvision.io.VIDEO_EXTENSIONS``
(any case: .mp4, .avi, .mkv, .ts, .y4m, ...). When the top-level folders are split names (train,
val/valid/validation, test) they give the split; otherwise a seeded split stratified by class uses
``data.val_fraction`` and ``data.test_fraction``.
"""

from __future__ import annotations

from pathlib import Path

from ...config import DataConfig
from ...errors import DatasetError
from .._records import DatasetIndex, VideoRecord
from ._common import VIDEO_EXTS, root_of, seeded_splits

_SPLIT_DIRS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


def _subdirs(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)


def _videos(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTS),
                  key=lambda p: p.name)


def load(data_cfg: DataConfig, *, seed: int = 0) -> DatasetIndex:
    root = root_of(data_cfg, "folder")
    top = _subdirs(root)
    if top and all(p.name.lower() in _SPLIT_DIRS for p in top):
        split_dirs = [(_SPLIT_DIRS[p.name.lower()], p) for p in top]
    else:
        split_dirs = [("", root)]
    names = sorted({c.name for _, d in split_dirs for c in _subdirs(d)})
    if not names:
        raise DatasetError(f"{root}: no class folders found; expected <root>/<class>/<video> with videos ending in "
                           f"{', '.join(VIDEO_EXTS)} (data.format='folder')")
    label_of = {name: i for i, name in enumerate(names)}
    records: list[VideoRecord] = []
    for split, folder in split_dirs:
        for cls in _subdirs(folder):
            for video in _videos(cls):
                vid = video.relative_to(root).with_suffix("").as_posix()  # e.g. "walk/clip1" or "train/walk/clip1"
                records.append(VideoRecord(id=vid, path=str(video), split=split,
                                           label=label_of[cls.name]))
    if not records:
        raise DatasetError(f"{root}: class folders hold no videos ({', '.join(VIDEO_EXTS)}) (data.format='folder')")
    if split_dirs[0][0] == "":
        splits = seeded_splits([r.label for r in records], val_fraction=data_cfg.val_fraction,
                               test_fraction=data_cfg.test_fraction, seed=seed)
        for r, s in zip(records, splits):
            r.split = s
    return DatasetIndex(records, label_names=names)
