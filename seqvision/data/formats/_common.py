"""Helpers shared by the format readers: reading annotation files, finding videos on disk, seeded splits."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ...config import DataConfig
from ...errors import DatasetError
from ...io import VIDEO_EXTENSIONS as VIDEO_EXTS


def root_of(data_cfg: DataConfig, fmt: str) -> Path:
    if not data_cfg.root:
        raise DatasetError(f"data.root is required for data.format={fmt!r}: the folder that holds the videos")
    root = Path(data_cfg.root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"data.root: {root} is not a folder (data.format={fmt!r})")
    return root


def annotations_of(data_cfg: DataConfig, default: Path) -> Path:
    """``data.annotations`` when set (made absolute against the working directory), else ``default``."""
    return Path(data_cfg.annotations).expanduser() if data_cfg.annotations else default


def require(path: Path, layout: str) -> Path:
    """Raise DatasetError naming ``path`` and the expected layout when it does not exist."""
    if not path.exists():
        raise DatasetError(f"{path}: annotation file not found; expected {layout} "
                           "(set data.annotations to point elsewhere)")
    return path


def read_lines(path: Path) -> list[tuple[int, str]]:
    """``(line_number, text)`` of the non-blank lines, stripped (CRLF and a UTF-8 BOM are fine)."""
    try:
        text = path.read_text(encoding="utf-8-sig", errors="replace")
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read annotation file ({exc.strerror or exc})") from None
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]


def bad_line(path: Path, lineno: int, line: str, expected: str) -> DatasetError:
    shown = line if len(line) <= 80 else line[:77] + "..."
    return DatasetError(f"{path}:{lineno}: cannot parse {shown!r}; expected {expected}")


class FileFinder:
    """Find files under a root by relative path case-insensitively, or by stem anywhere below it.

    The tree is walked once, lazily; datasets made on case-insensitive file systems (UCF101's
    ``HandstandPushups`` vs ``v_HandStandPushups_*``) then resolve on Linux too.
    """

    def __init__(self, root: Path, *, exts: tuple[str, ...] = VIDEO_EXTS):
        self.root = root
        self.exts = exts
        self._by_rel: dict[str, str] | None = None
        self._by_stem: dict[str, list[str]] | None = None

    def _walk(self) -> None:
        self._by_rel, self._by_stem = {}, {}
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=True):
            dirnames.sort()
            rel_dir = os.path.relpath(dirpath, self.root)
            for name in sorted(filenames):
                if not name.lower().endswith(self.exts):
                    continue
                rel = name if rel_dir == "." else os.path.join(rel_dir, name)
                rel = rel.replace(os.sep, "/")
                self._by_rel.setdefault(rel.lower(), rel)
                self._by_stem.setdefault(os.path.splitext(name)[0].lower(), []).append(rel)

    def rel(self, relpath: str) -> Path | None:
        """The file at ``relpath`` (any case), or None."""
        exact = self.root / relpath
        if exact.is_file():
            return exact
        if self._by_rel is None:
            self._walk()
        hit = self._by_rel.get(relpath.replace("\\", "/").lower())
        return self.root / hit if hit else None

    def stem(self, stem: str, *, prefer: tuple[str, ...] = ()) -> Path | None:
        """A video file named ``stem.<ext>`` anywhere below the root (the first under a ``prefer`` folder wins)."""
        if self._by_stem is None:
            self._walk()
        hits = self._by_stem.get(stem.lower(), [])
        if not hits:
            return None
        for folder in prefer:
            folder = folder.lower().rstrip("/") + "/"
            for h in hits:
                if h.lower().startswith(folder):
                    return self.root / h
        return self.root / hits[0]


def seeded_splits(labels: list, *, val_fraction: float, test_fraction: float, seed: int) -> list[str]:
    """Split names per item, stratified by label (None = one group), reproducible from ``seed``."""
    rng = np.random.default_rng([seed, 7])
    out = ["train"] * len(labels)
    groups: dict = {}
    for i, lab in enumerate(labels):
        groups.setdefault(lab, []).append(i)
    for key in sorted(groups, key=lambda k: (k is None, str(k))):
        members = groups[key]
        members = [members[k] for k in rng.permutation(len(members))]
        n_val = int(round(val_fraction * len(members)))
        n_test = int(round(test_fraction * len(members)))
        for i in members[:n_val]:
            out[i] = "val"
        for i in members[n_val:n_val + n_test]:
            out[i] = "test"
    return out
