"""MSVD (Microsoft Video Description): ``video_corpus.csv`` and ``YouTubeClips/<VideoID>_<Start>_<End>.avi``.

Only rows whose ``Language`` is English are used. When ``youtube_mapping.txt`` (lines ``<clip_id> vidN``) is
found (beside the CSV or under ``root``), the usual split follows it: vid1-1200 train, vid1201-1300 val,
vid1301-1970 test; clips it does not list are left out. Without it, a seeded split uses ``data.val_fraction`` /
``data.test_fraction``. ``data.annotations`` is the CSV (default ``root/video_corpus.csv``, then
``root/annotations/video_corpus.csv``). MSVD has no clip labels (captioning only).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ...config import DataConfig
from ...errors import DatasetError
from .._records import DatasetIndex, VideoRecord
from ._common import FileFinder, bad_line, read_lines, root_of, seeded_splits

LAYOUT = "video_corpus.csv with columns VideoID,Start,End,WorkerID,Source,AnnotationTime,Language,Description"
_REQUIRED = ("VideoID", "Start", "End", "Language", "Description")


def _csv_path(data_cfg: DataConfig, root: Path) -> Path:
    if data_cfg.annotations:
        p = Path(data_cfg.annotations).expanduser()
        p = p / "video_corpus.csv" if p.is_dir() else p
        cands = [p]
    else:
        cands = [root / "video_corpus.csv", root / "annotations" / "video_corpus.csv"]
    for p in cands:
        if p.is_file():
            return p
    raise DatasetError(f"{cands[0]}: annotation file not found; expected {LAYOUT} (set data.annotations)")


def _mapping(csv_path: Path, root: Path) -> dict[str, int] | None:
    for p in (csv_path.parent / "youtube_mapping.txt", root / "youtube_mapping.txt"):
        if p.is_file():
            out = {}
            for n, line in read_lines(p):
                parts = line.split()
                if len(parts) != 2 or not parts[1].startswith("vid") or not parts[1][3:].isdigit():
                    raise bad_line(p, n, line, "'<clip_id> vid<N>'")
                out[parts[0]] = int(parts[1][3:])
            return out
    return None


def _split_of(number: int) -> str:
    return "train" if number <= 1200 else "val" if number <= 1300 else "test"


def load(data_cfg: DataConfig, *, seed: int = 0) -> DatasetIndex:
    root = root_of(data_cfg, "msvd")
    path = _csv_path(data_cfg, root)
    reader = csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig", errors="replace")))
    header = [h.strip() for h in (reader.fieldnames or [])]
    reader.fieldnames = header
    absent = [c for c in _REQUIRED if c not in header]
    if absent:
        raise DatasetError(f"{path}:1: header lacks column(s) {', '.join(absent)}; expected {LAYOUT}")
    captions: dict[str, list[str]] = {}
    for row in reader:
        if (row.get("Language") or "").strip().lower() != "english":
            continue
        vid, start, end = (row.get("VideoID") or "").strip(), (row.get("Start") or "").strip(), (row.get("End") or "").strip()
        if not vid or not start.isdigit() or not end.isdigit():
            raise DatasetError(f"{path}:{reader.line_num}: expected a VideoID and integer Start/End seconds, got "
                               f"{vid!r}, {start!r}, {end!r}")
        desc = (row.get("Description") or "").strip()
        if desc:
            captions.setdefault(f"{vid}_{start}_{end}", []).append(desc)
    clips = list(captions)
    mapping = _mapping(path, root)
    if mapping is not None:
        clips = sorted((c for c in clips if c in mapping), key=lambda c: mapping[c])
        splits = [_split_of(mapping[c]) for c in clips]
    else:
        splits = seeded_splits([None] * len(clips), val_fraction=data_cfg.val_fraction,
                               test_fraction=data_cfg.test_fraction, seed=seed)
    finder = FileFinder(root)
    records: list[VideoRecord] = []
    missing: list[tuple[str, str]] = []
    for clip, split in zip(clips, splits):
        found = finder.stem(clip, prefer=("YouTubeClips",))
        if found is None:
            missing.append((str(root / "YouTubeClips" / f"{clip}.avi"), "file not found"))
            continue
        records.append(VideoRecord(id=clip, path=str(found), split=split, captions=captions[clip]))
    return DatasetIndex(records, missing=missing)
