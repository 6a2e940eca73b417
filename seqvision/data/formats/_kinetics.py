"""Kinetics: CSV annotations ``label,youtube_id,time_start,time_end,split[,is_cc]`` and downloaded clips.

A clip file is ``<youtube_id>_<start:06d>_<end:06d>.<ext>`` anywhere below ``root`` (usually ``root/``,
``root/<split>/`` or ``root/<split>/<label>/``). ``data.annotations`` is one CSV or a folder of them; the default
is ``root/annotations/*.csv``, else ``root/*.csv``. Split ``validate`` becomes ``val``. Rows whose clip is not on
disk are reported in ``missing`` and skipped. Classes are the sorted labels of all rows.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ...config import DataConfig
from ...errors import DatasetError
from .._records import DatasetIndex, VideoRecord
from ._common import FileFinder, root_of

LAYOUT = "Kinetics CSV files with the header label,youtube_id,time_start,time_end,split"
_SPLITS = {"train": "train", "training": "train", "validate": "val", "validation": "val", "val": "val",
           "test": "test", "testing": "test"}
_REQUIRED = ("youtube_id", "time_start", "time_end")


def _csv_files(data_cfg: DataConfig, root: Path) -> list[Path]:
    if data_cfg.annotations:
        target = Path(data_cfg.annotations).expanduser()
        files = sorted(target.glob("*.csv")) if target.is_dir() else [target] if target.is_file() else []
        where = target
    else:
        folder = root / "annotations"
        files = sorted(folder.glob("*.csv")) if folder.is_dir() else []
        files = files or sorted(root.glob("*.csv"))
        where = folder
    if not files:
        raise DatasetError(f"{where}: no annotation CSV found; expected {LAYOUT} "
                           "(set data.annotations to a CSV file or a folder of them)")
    return files


def _rows(path: Path):
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    reader.fieldnames = header
    absent = [c for c in _REQUIRED if c not in header]
    if absent:
        raise DatasetError(f"{path}:1: header {','.join(header)!r} lacks column(s) {', '.join(absent)}; "
                           f"expected {LAYOUT}")
    for row in reader:
        yield reader.line_num, row


def load(data_cfg: DataConfig, *, seed: int = 0) -> DatasetIndex:
    root = root_of(data_cfg, "kinetics")
    rows = []
    for path in _csv_files(data_cfg, root):
        default_split = _SPLITS.get(path.stem.lower(), path.stem)
        for n, row in _rows(path):
            yid = (row.get("youtube_id") or "").strip()
            try:
                start, end = int(float(row["time_start"])), int(float(row["time_end"]))
            except (TypeError, ValueError):
                raise DatasetError(f"{path}:{n}: time_start/time_end must be numbers, got "
                                   f"{row.get('time_start')!r}, {row.get('time_end')!r}") from None
            if not yid:
                raise DatasetError(f"{path}:{n}: empty youtube_id; expected {LAYOUT}")
            raw_split = (row.get("split") or "").strip() or default_split
            label = (row.get("label") or "").strip() or None
            rows.append((yid, start, end, _SPLITS.get(raw_split.lower(), raw_split), raw_split, label))
    names = sorted({r[5] for r in rows if r[5] is not None})
    label_of = {name: i for i, name in enumerate(names)}
    finder = FileFinder(root)
    records: list[VideoRecord] = []
    missing: list[tuple[str, str]] = []
    for yid, start, end, split, raw_split, label in rows:
        stem = f"{yid}_{start:06d}_{end:06d}"
        prefer = []
        if label is not None:
            prefer += [f"{raw_split}/{label}", f"{raw_split}/{label.replace(' ', '_')}"]
        prefer.append(raw_split)
        found = finder.stem(stem, prefer=tuple(prefer))
        if found is None:
            missing.append((str(root / f"{stem}.mp4"), "clip not downloaded (no file with this name below root)"))
            continue
        records.append(VideoRecord(id=stem, path=str(found), split=split,
                                   label=label_of[label] if label is not None else None))
    return DatasetIndex(records, label_names=names, missing=missing)
