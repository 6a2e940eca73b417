"""HMDB51: ``<root>/<class>/<video>.avi`` with ``<class>_test_split{1,2,3}.txt`` per class.

Split-file lines are ``<video>.avi <tag>``: 1 = train, 2 = test, 0 = not used in this split (left out). The
split files are looked for in ``data.annotations``, else in ``root/testTrainMulti_7030_splits``, ``root/splits``
or ``root`` itself. Classes are the sorted class names of the split files. There is no official validation split.
"""

from __future__ import annotations

import re
from pathlib import Path

from ...config import DataConfig
from ...errors import DatasetError
from .._records import DatasetIndex, VideoRecord
from ._common import FileFinder, bad_line, read_lines, root_of

LAYOUT = "<class>_test_split{1,2,3}.txt files with lines '<video>.avi <0|1|2>' (HMDB51 layout)"
_TAGS = {"1": "train", "2": "test"}


def _split_files(folder: Path, fold: int) -> dict[str, Path]:
    pattern = re.compile(rf"^(.+)_test_split{fold}\.txt$")
    out = {}
    if folder.is_dir():
        for p in sorted(folder.iterdir()):
            m = pattern.match(p.name)
            if m and p.is_file():
                out[m.group(1)] = p
    return out


def load(data_cfg: DataConfig, *, seed: int = 0) -> DatasetIndex:
    root = root_of(data_cfg, "hmdb51")
    fold = data_cfg.fold
    if data_cfg.annotations:
        candidates = [Path(data_cfg.annotations).expanduser()]
    else:
        candidates = [root / "testTrainMulti_7030_splits", root / "test_train_splits", root / "splits",
                      root.parent / "testTrainMulti_7030_splits", root]
    files: dict[str, Path] = {}
    for folder in candidates:
        files = _split_files(folder, fold)
        if files:
            break
    if not files:
        raise DatasetError(f"{candidates[0]}: no *_test_split{fold}.txt annotation files found; expected {LAYOUT} "
                           "(set data.annotations to the folder that holds them)")
    names = sorted(files)
    finder = FileFinder(root)
    records: list[VideoRecord] = []
    missing: list[tuple[str, str]] = []
    for label, name in enumerate(names):
        path = files[name]
        for n, line in read_lines(path):
            parts = line.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise bad_line(path, n, line, "'<video>.avi <tag>' with tag 0 (unused), 1 (train) or 2 (test)")
            if parts[1] == "0":
                continue
            rel = f"{name}/{parts[0]}"
            found = finder.rel(rel)
            if found is None:
                missing.append((str(root / rel), "file not found"))
                continue
            records.append(VideoRecord(id=Path(parts[0]).stem, path=str(found), split=_TAGS[parts[1]], label=label))
    return DatasetIndex(records, label_names=names, missing=missing)
