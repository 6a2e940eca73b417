"""MSR-VTT: ``train_val_videodatainfo.json`` / ``test_videodatainfo.json`` and ``videoN.mp4`` files.

Each JSON file has ``videos`` (``video_id``, ``split`` train/validate/test, ``category`` 0-19, ``"start time"``,
``"end time"``: times in the source YouTube video, the files are already cut, so records keep start/end None) and
``sentences`` (``video_id``, ``caption``). ``data.annotations`` is one of the JSON files or the folder holding
them (default ``root``, then ``root/annotations``). Videos are found by name anywhere below ``root``. The clip
label is the category.
"""

from __future__ import annotations

import json
from pathlib import Path

from ...config import DataConfig
from ...errors import DatasetError
from .._records import DatasetIndex, VideoRecord
from ._common import FileFinder, root_of

LAYOUT = "train_val_videodatainfo.json and/or test_videodatainfo.json with 'videos' and 'sentences' (MSR-VTT)"
FILES = ("train_val_videodatainfo.json", "test_videodatainfo.json")
CATEGORIES = ["music", "people", "gaming", "sports/actions", "news/events/politics", "education", "tv shows",
              "movie/comedy", "animation", "vehicles/autos", "howto", "travel", "science/technology",
              "animals/pets", "kids/family", "documentary", "food/drink", "cooking", "beauty/fashion",
              "advertisement"]
_SPLITS = {"train": "train", "validate": "val", "val": "val", "test": "test"}


def _json_files(data_cfg: DataConfig, root: Path) -> list[Path]:
    if data_cfg.annotations and Path(data_cfg.annotations).expanduser().is_file():
        return [Path(data_cfg.annotations).expanduser()]
    folders = [Path(data_cfg.annotations).expanduser()] if data_cfg.annotations else [root, root / "annotations"]
    for folder in folders:
        found = [folder / f for f in FILES if (folder / f).is_file()]
        if found:
            return found
    raise DatasetError(f"{folders[0] / FILES[0]}: annotation file not found; expected {LAYOUT} "
                       "(set data.annotations to the file or its folder)")


def _load_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}); expected {LAYOUT}") from None
    if not isinstance(data, dict) or not isinstance(data.get("videos"), list):
        raise DatasetError(f"{path}: expected a JSON object with a 'videos' list; expected {LAYOUT}")
    return data


def load(data_cfg: DataConfig, *, seed: int = 0) -> DatasetIndex:
    root = root_of(data_cfg, "msrvtt")
    videos: dict[str, tuple[str, int | None]] = {}
    captions: dict[str, list[str]] = {}
    for path in _json_files(data_cfg, root):
        data = _load_json(path)
        for k, v in enumerate(data["videos"]):
            if not isinstance(v, dict) or "video_id" not in v:
                raise DatasetError(f"{path}: videos[{k}] has no 'video_id'; expected {LAYOUT}")
            split = str(v.get("split", "test" if path.name.startswith("test") else "train"))
            cat = v.get("category")
            if cat is not None and (not isinstance(cat, int) or not 0 <= cat < len(CATEGORIES)):
                raise DatasetError(f"{path}: videos[{k}] ({v['video_id']}) category {cat!r} is not in 0..19")
            videos[str(v["video_id"])] = (_SPLITS.get(split, split), cat)
        for k, s in enumerate(data.get("sentences") or []):
            if not isinstance(s, dict) or "video_id" not in s or not isinstance(s.get("caption"), str):
                raise DatasetError(f"{path}: sentences[{k}] needs 'video_id' and a 'caption' string")
            captions.setdefault(str(s["video_id"]), []).append(s["caption"].strip())
    finder = FileFinder(root)
    records: list[VideoRecord] = []
    missing: list[tuple[str, str]] = []
    for vid in sorted(videos, key=lambda v: (len(v), v)):  # video2 before video10
        split, cat = videos[vid]
        found = finder.stem(vid)
        if found is None:
            missing.append((str(root / f"{vid}.mp4"), "file not found"))
            continue
        records.append(VideoRecord(id=vid, path=str(found), split=split, label=cat, captions=captions.get(vid, [])))
    return DatasetIndex(records, label_names=list(CATEGORIES), missing=missing)
