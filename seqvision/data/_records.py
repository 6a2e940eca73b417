"""What a dataset index holds: one :class:`VideoRecord` per video, gathered in a :class:`DatasetIndex`."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

__all__ = ["VideoRecord", "DatasetIndex", "SPLIT_ALIASES"]

# Readers store "train" / "val" / "test"; the names datasets use for them are accepted too.
SPLIT_ALIASES = {"training": "train", "validate": "val", "validation": "val", "valid": "val", "testing": "test"}


@dataclass
class VideoRecord:
    """One video of a dataset.

    Attributes:
        id: unique name of the video within the dataset (e.g. the file stem).
        path: absolute path of the video file.
        split: "train", "val", "test" (or a dataset's own split name).
        label: class index into :attr:`DatasetIndex.label_names`, or None when unlabelled.
        captions: reference captions (may be empty).
        frame_labels: one class index per video frame (into ``frame_label_names``), or None.
        start, end: seconds within the file to use (None = from the start / to the end). Formats whose files are
            already cut clips (Kinetics, MSR-VTT, MSVD) leave them None.
    """

    id: str
    path: str
    split: str = "train"
    label: int | None = None
    captions: list[str] = field(default_factory=list)
    frame_labels: list[int] | None = None
    start: float | None = None
    end: float | None = None


@dataclass
class DatasetIndex:
    """All records of a dataset plus its class names and the files that were listed but not found.

    Attributes:
        records: every video found on disk, in annotation order.
        label_names: class names; ``record.label`` indexes this list.
        frame_label_names: per-frame class names (empty when the dataset has none).
        missing: ``(path, why)`` for each annotated video that is not on disk (left out of ``records``).
    """

    records: list[VideoRecord]
    label_names: list[str] = field(default_factory=list)
    frame_label_names: list[str] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)

    def split(self, name: str) -> list[VideoRecord]:
        """The records of one split ("train", "val", "test"; "validate"/"validation" mean "val"); empty when the
        dataset has no such split."""
        name = SPLIT_ALIASES.get(name, name)
        return [r for r in self.records if r.split == name]

    @property
    def splits(self) -> dict[str, int]:
        """Number of records per split."""
        return dict(Counter(r.split for r in self.records))

    def __len__(self) -> int:
        return len(self.records)

    def __repr__(self) -> str:
        return (f"DatasetIndex(records={len(self.records)}, splits={self.splits}, "
                f"classes={len(self.label_names)}, frame_classes={len(self.frame_label_names)}, "
                f"missing={len(self.missing)})")
