"""Our own manifest (JSONL or CSV): the format :func:`~seqvision.data.make_synthetic_dataset` writes.

JSONL: one object per line, ``{"id", "path", "split", "label", "frame_labels", "captions"}`` (+ optional
``start``/``end`` seconds, ``meta``); only ``path`` is required. CSV: a header with ``path`` and any of
``id,split,label,captions,frame_labels,start,end``; ``captions`` separated by ``|``, ``frame_labels`` by spaces.
Relative paths are relative to ``data.root`` when set, else to the manifest's folder. Labels are names (or
indices into ``labels.json``). Label names come from ``labels.json`` beside the manifest
(``{"labels": [...], "frame_labels": [...]}`` or a plain list) when present, else the sorted unique labels.
Rows without a split get a seeded split stratified by label (``data.val_fraction``, ``data.test_fraction``).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from ...config import DataConfig
from ...errors import DatasetError
from .._records import DatasetIndex, VideoRecord
from ._common import seeded_splits

LAYOUT = "manifest.jsonl (one JSON object per line with at least 'path') or manifest.csv with a 'path' column"


def _manifest_path(data_cfg: DataConfig, fmt: str) -> Path:
    if data_cfg.annotations:
        p = Path(data_cfg.annotations).expanduser()
        cands = [p / "manifest.jsonl", p / "manifest.csv"] if p.is_dir() else [p]
    elif data_cfg.root:
        root = Path(data_cfg.root).expanduser()
        cands = [root / "manifest.jsonl", root / "manifest.csv"]
    else:
        raise DatasetError(f"data.root (or data.annotations) is required for data.format={fmt!r}: the folder "
                           "that holds manifest.jsonl")
    for p in cands:
        if p.is_file():
            return p
    raise DatasetError(f"{cands[0]}: manifest not found; expected {LAYOUT} (data.format={fmt!r}; set data.root "
                       "or data.annotations)")


def _label_file(manifest: Path) -> tuple[list[str] | None, list[str] | None]:
    p = manifest.parent / "labels.json"
    if not p.is_file():
        return None, None
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{p}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    if isinstance(data, list):
        data = {"labels": data}
    if not isinstance(data, dict) or not all(isinstance(x, str) for x in data.get("labels", []) +
                                                  data.get("frame_labels", [])):
        raise DatasetError(f"{p}: expected {{\"labels\": [names], \"frame_labels\": [names]}} or a list of names")
    return data.get("labels"), data.get("frame_labels")


def _rows_jsonl(path: Path, text: str):
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}:{n}: not valid JSON ({exc.msg}); expected {LAYOUT}") from None
        if not isinstance(row, dict) or not isinstance(row.get("path"), str) or not row["path"]:
            raise DatasetError(f"{path}:{n}: expected an object with a 'path' string; expected {LAYOUT}")
        yield n, row


def _rows_csv(path: Path, text: str):
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    reader.fieldnames = header
    if "path" not in header:
        raise DatasetError(f"{path}:1: the header has no 'path' column; expected {LAYOUT}")
    for row in reader:
        n = reader.line_num
        out: dict = {k: (v or "").strip() for k, v in row.items() if k}
        if not out.get("path"):
            raise DatasetError(f"{path}:{n}: empty 'path'")
        caps = out.get("captions", "")
        out["captions"] = [c.strip() for c in caps.split("|") if c.strip()]
        out["frame_labels"] = out["frame_labels"].replace("|", " ").split() if out.get("frame_labels") else None
        for key in ("start", "end"):
            if out.get(key):
                try:
                    out[key] = float(out[key])
                except ValueError:
                    raise DatasetError(f"{path}:{n}: '{key}' must be seconds (a number), got {out[key]!r}") from None
            else:
                out[key] = None
        for key in ("label", "split", "id"):
            out[key] = out.get(key) or None
        yield n, out


def _indexer(names: list[str] | None, seen: list[str], what: str, source: Path):
    """Map a label (a name, or an int index into labels.json) to an int."""
    table = names if names is not None else seen
    position = {name: i for i, name in enumerate(table)}

    def index(value, lineno: int) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            if names is None or not 0 <= value < len(names):
                raise DatasetError(f"{source}:{lineno}: {what} {value!r} is an index, but labels.json does not "
                                   "list that many names; use label names")
            return value
        if not isinstance(value, str):
            raise DatasetError(f"{source}:{lineno}: {what} must be a name (string), got {value!r}")
        if value not in position:
            shown = ", ".join(table[:20]) + (" ..." if len(table) > 20 else "")
            raise DatasetError(f"{source}:{lineno}: unknown {what} {value!r}; labels.json allows: {shown}")
        return position[value]

    return index


def load(data_cfg: DataConfig, *, seed: int = 0) -> DatasetIndex:
    fmt = data_cfg.format
    path = _manifest_path(data_cfg, fmt)
    base = Path(data_cfg.root).expanduser() if data_cfg.root else path.parent
    text = path.read_text(encoding="utf-8-sig")
    rows = list(_rows_csv(path, text) if path.suffix.lower() == ".csv" else _rows_jsonl(path, text))
    names, frame_names = _label_file(path)

    def strings(values):
        return sorted({str(v) for v in values if v is not None})

    seen = strings(r.get("label") for _, r in rows)
    seen_frames = strings(x for _, r in rows for x in (r.get("frame_labels") or []))
    label_names = names if names is not None else seen
    frame_label_names = frame_names if frame_names is not None else seen_frames
    label_ix = _indexer(names, seen, "label", path)
    frame_ix = _indexer(frame_names, seen_frames, "frame label", path)

    records: list[VideoRecord] = []
    missing: list[tuple[str, str]] = []
    ids: set[str] = set()
    for n, row in rows:
        video = Path(row["path"]).expanduser()
        video = video if video.is_absolute() else base / video
        rid = str(row.get("id") or Path(row["path"]).with_suffix("").as_posix())
        if rid in ids:
            raise DatasetError(f"{path}:{n}: id {rid!r} repeats; ids must be unique")
        ids.add(rid)
        label = row.get("label")
        label = None if label is None else label_ix(label, n)
        frames = row.get("frame_labels")
        if frames is not None and not isinstance(frames, list):
            raise DatasetError(f"{path}:{n}: 'frame_labels' must be a list (one label per video frame)")
        caps = row.get("captions") or []
        caps = [caps] if isinstance(caps, str) else caps
        if not isinstance(caps, list) or not all(isinstance(c, str) for c in caps):
            raise DatasetError(f"{path}:{n}: 'captions' must be a list of strings")
        start, end = row.get("start"), row.get("end")
        for key, val in (("start", start), ("end", end)):
            if val is not None and (isinstance(val, bool) or not isinstance(val, (int, float)) or val < 0):
                raise DatasetError(f"{path}:{n}: '{key}' must be seconds >= 0, got {val!r}")
        if not video.is_file():
            missing.append((str(video), "file not found"))
            continue
        records.append(VideoRecord(
            id=rid, path=str(video), split=str(row.get("split") or ""), label=label, captions=list(caps),
            frame_labels=None if frames is None else [frame_ix(x, n) for x in frames],
            start=None if start is None else float(start), end=None if end is None else float(end)))
    unsplit = [r for r in records if not r.split]
    if unsplit:
        splits = seeded_splits([r.label for r in unsplit], val_fraction=data_cfg.val_fraction,
                               test_fraction=data_cfg.test_fraction, seed=seed)
        for r, s in zip(unsplit, splits):
            r.split = s
    return DatasetIndex(records, label_names=list(label_names), frame_label_names=list(frame_label_names),
                        missing=missing)
