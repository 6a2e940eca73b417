"""UCF101: ``UCF-101/<Class>/v_<Class>_gXX_cYY.avi`` with ``ucfTrainTestlist/{classInd,trainlistNN,testlistNN}.txt``.

``classInd.txt`` numbers the classes from 1 (``1 ApplyEyeMakeup``); ``trainlistNN.txt`` lines are
``Class/file.avi <number>``; ``testlistNN.txt`` lines are the path only (the class is the folder). Lines end in
CRLF. File names may differ in case from what is on disk; they are resolved case-insensitively. There is no
official validation split: ``split("val")`` is empty (use ``data.val_split=test`` or ``""``).
"""

from __future__ import annotations

from pathlib import Path

from ...config import DataConfig
from ...errors import DatasetError
from .._records import DatasetIndex, VideoRecord
from ._common import FileFinder, annotations_of, bad_line, read_lines, require, root_of

LAYOUT = "ucfTrainTestlist/classInd.txt, trainlist0N.txt, testlist0N.txt (UCF101 layout)"


def _video_dir(root: Path) -> Path:
    return root / "UCF-101" if (root / "UCF-101").is_dir() else root


def _annotation_dir(data_cfg: DataConfig, root: Path) -> Path:
    if data_cfg.annotations:
        return annotations_of(data_cfg, root)
    for cand in (root / "ucfTrainTestlist", root.parent / "ucfTrainTestlist"):
        if cand.is_dir():
            return cand
    return root / "ucfTrainTestlist"


def read_class_ind(path: Path) -> list[str]:
    """Class names in label order from ``classInd.txt`` (numbered from 1)."""
    by_number: dict[int, str] = {}
    for n, line in read_lines(require(path, LAYOUT)):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise bad_line(path, n, line, "'<number> <ClassName>', e.g. '1 ApplyEyeMakeup'")
        number = int(parts[0])
        if number in by_number:
            raise bad_line(path, n, line, f"a class number not used before ({number} repeats)")
        by_number[number] = parts[1]
    if sorted(by_number) != list(range(1, len(by_number) + 1)):
        raise DatasetError(f"{path}: class numbers must run 1..{len(by_number)} without gaps")
    return [by_number[i] for i in range(1, len(by_number) + 1)]


def load(data_cfg: DataConfig, *, seed: int = 0) -> DatasetIndex:
    root = root_of(data_cfg, "ucf101")
    ann = _annotation_dir(data_cfg, root)
    names = read_class_ind(ann / "classInd.txt")
    by_lower = {name.lower(): i for i, name in enumerate(names)}
    finder = FileFinder(_video_dir(root))
    records: list[VideoRecord] = []
    missing: list[tuple[str, str]] = []
    for split, fname in (("train", f"trainlist{data_cfg.fold:02d}.txt"), ("test", f"testlist{data_cfg.fold:02d}.txt")):
        path = ann / fname
        for n, line in read_lines(require(path, LAYOUT)):
            parts = line.split()
            rel = parts[0].replace("\\", "/")
            if len(parts) > 2 or "/" not in rel:
                raise bad_line(path, n, line, "'<Class>/<video>.avi' optionally followed by a class number")
            if len(parts) == 2:
                if not parts[1].isdigit() or not 1 <= int(parts[1]) <= len(names):
                    raise bad_line(path, n, line, f"a class number in 1..{len(names)} after the path")
                label = int(parts[1]) - 1
            else:
                folder = rel.split("/")[0].lower()
                if folder not in by_lower:
                    raise bad_line(path, n, line, f"a class folder listed in {ann / 'classInd.txt'}")
                label = by_lower[folder]
            found = finder.rel(rel)
            if found is None:
                missing.append((str(finder.root / rel), "file not found"))
                continue
            records.append(VideoRecord(id=Path(rel).stem, path=str(found), split=split, label=label))
    return DatasetIndex(records, label_names=names, missing=missing)
