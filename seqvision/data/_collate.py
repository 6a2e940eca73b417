"""Batching variable-length clips (or feature sequences), and the report of videos that failed to load."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ..errors import DatasetError, SystemicDecodeError

__all__ = ["collate", "ErrorReport", "IGNORE_INDEX", "SYSTEMIC_FIRST"]

SYSTEMIC_FIRST = 8  # ErrorReport.raise_if_systemic: this many failures from the start, all of one cause, stop a run
IGNORE_INDEX = -100  # label of padded steps / unlabelled clips (torch.nn.CrossEntropyLoss's default ignore_index)
_KNOWN = {"video", "features", "length", "label", "frame_labels", "captions", "path", "id", "error", "error_type",
          "kind"}


def _pad(tensors: list[torch.Tensor], length: int, value, dtype) -> torch.Tensor:
    """Stack ``(T_i, ...)`` tensors into ``(B, length, ...)``, padding the time axis with ``value``."""
    rest = tensors[0].shape[1:]
    out = torch.full((len(tensors), length, *rest), value, dtype=dtype)  # (B, T, ...)
    for i, t in enumerate(tensors):
        out[i, : t.shape[0]] = t
    return out


def collate(samples: list[dict]) -> dict:
    """Batch samples of :class:`~seqvision.data.VideoDataset` (or feature samples), padding to the longest clip.

    Failed samples (``{"error": (path, reason), ...}``) are left out of the tensors and listed in
    ``batch["errors"]``, so a bad file never stops a DataLoader.

    Args:
        samples: sample dicts with ``video`` uint8 ``(T, C, H, W)`` or ``features`` float ``(T, D)``, ``length``,
            optional ``label``, ``frame_labels`` ``(T,)``, ``captions``, ``path``, ``id``.

    Returns:
        ``video`` ``(B, T, C, H, W)`` (zero-padded) or ``features`` ``(B, T, D)``, ``lengths`` long ``(B,)``,
        ``mask`` bool ``(B, T)`` (True on the first ``length`` steps), ``label`` long ``(B,)`` (-100 when a clip
        has none), ``frame_labels`` long ``(B, T)`` (-100 on padded / repeated steps), ``captions``
        list[list[str]], ``path``, ``id`` lists, ``errors`` list[(path, reason)], ``error_types`` (one class name or None per
        error), ``empty`` bool. Other sample keys
        are gathered into lists. When every sample failed, ``empty`` is True and the tensors have B = 0
        (``video`` ``(0, 0, 0, 0, 0)`` / ``features`` ``(0, 0, 0)``): skip such a batch after reporting its errors.

    Raises:
        DatasetError: clips whose frame sizes differ (use ``data.resize="square"`` or ``data.crop``).
    """
    good = [s for s in samples if "error" not in s]
    errors = [(str(s["error"][0]), str(s["error"][1])) for s in samples if "error" in s]
    if good:
        key = "features" if "features" in good[0] else "video"
    else:
        key = "features" if any(s.get("kind") == "features" for s in samples) else "video"
    error_types = [s.get("error_type") for s in samples if "error" in s]  # class names (None: not given)
    batch: dict = {"errors": errors, "error_types": error_types, "empty": not good}
    if not good:
        batch[key] = torch.zeros((0, 0, 0) if key == "features" else (0, 0, 0, 0, 0),
                                 dtype=torch.float32 if key == "features" else torch.uint8)
        batch.update(lengths=torch.zeros(0, dtype=torch.long), mask=torch.zeros(0, 0, dtype=torch.bool),
                     label=torch.zeros(0, dtype=torch.long), frame_labels=torch.zeros(0, 0, dtype=torch.long),
                     captions=[], path=[], id=[])
        return batch

    data = [s[key] for s in good]
    shapes = {tuple(d.shape[1:]) for d in data}
    if len(shapes) > 1:
        raise DatasetError(f"collate: clips have different frame shapes {sorted(shapes)} "
                           f"(ids {[s.get('id') for s in good]}); set data.resize='square' or data.crop so every "
                           "clip has the same size")
    t_max = max(d.shape[0] for d in data)
    batch[key] = _pad(data, t_max, 0, data[0].dtype)  # (B, T, C, H, W) or (B, T, D)
    lengths = torch.tensor([int(s.get("length", s[key].shape[0])) for s in good], dtype=torch.long)  # (B,)
    batch["lengths"] = lengths
    batch["mask"] = torch.arange(t_max)[None, :] < lengths[:, None]  # (B, T)
    batch["label"] = torch.tensor([IGNORE_INDEX if s.get("label") is None else int(s["label"]) for s in good],
                                  dtype=torch.long)  # (B,)
    frame_labels = [s["frame_labels"] if s.get("frame_labels") is not None
                    else torch.full((s[key].shape[0],), IGNORE_INDEX, dtype=torch.long) for s in good]
    batch["frame_labels"] = _pad([torch.as_tensor(f, dtype=torch.long) for f in frame_labels], t_max,
                                 IGNORE_INDEX, torch.long)  # (B, T)
    batch["captions"] = [list(s.get("captions") or []) for s in good]
    batch["path"] = [str(s.get("path", "")) for s in good]
    batch["id"] = [str(s.get("id", "")) for s in good]
    for extra in sorted({k for s in good for k in s} - _KNOWN):
        batch[extra] = [s.get(extra) for s in good]
    return batch


class ErrorReport:
    """Collects the videos that failed to load (from ``batch["errors"]``), one entry per file.

    Example:
        >>> report = ErrorReport()
        >>> for batch in loader:
        ...     report.add(batch)
        >>> print(report.summary())
        2 videos skipped: bad.mp4 (no video stream); empty.mp4 (file is empty)
    """

    def __init__(self) -> None:
        self._items: dict[str, str] = {}
        self.occurrences = 0  # failures seen, counting a file again each epoch it fails
        self.loaded = 0  # samples that loaded, counted from the batches given to add()

    def add(self, errors, *, loaded: int | None = None) -> int:
        """Record ``batch["errors"]`` (pass the batch or the list). Returns how many failures it held.

        ``loaded``: how many samples of this batch loaded, counted in :attr:`loaded` (which
        :meth:`raise_if_systemic` reads); by default ``len(batch["id"])`` when a batch is passed, else 0."""
        if isinstance(errors, dict):
            loaded = len(errors.get("id") or []) if loaded is None else loaded
            errors = errors.get("errors", [])
        self.loaded += loaded or 0
        n = 0
        for path, reason in errors:
            self._items.setdefault(str(path), str(reason))
            n += 1
        self.occurrences += n
        return n

    def check(self, batch: dict, *, total: int | None = None) -> int:
        """:meth:`add` the batch, then :meth:`raise_if_systemic`; returns how many failures the batch held.

        Raises:
            SystemicDecodeError: see :meth:`raise_if_systemic`.
        """
        n = self.add(batch)
        self.raise_if_systemic(total=total)
        return n

    def raise_if_systemic(self, *, total: int | None = None, ok: int | None = None,
                          first: int = SYSTEMIC_FIRST) -> None:
        """Stop a run whose failures are systemic instead of skipping every video (the one place of this rule).

        Systemic: nothing has loaded yet (``ok == 0``) and either every one of ``total`` (at least 2) videos
        failed with at least two of them for one cause (or at least ``first`` of them, whatever the causes), or
        the first ``first`` failures all have one cause (the reason with the file's own path taken out). A few
        inputs that each fail for their own reason (an empty file and a text file), scattered bad files, or any
        failure after a video loaded, are not systemic: they stay skipped and reported. Call it after each
        batch (``report.add(batch)``); cheap.

        Args:
            total: videos this run will try (``None`` when unknown: only the ``first`` rule applies).
            ok: videos that loaded so far (default: :attr:`loaded`, counted by :meth:`add` from batches; pass
                it when loaded videos do not pass through ``add``, e.g. already cached ones).
            first: how many failures in a row from the start, for one cause, are systemic.

        Raises:
            SystemicDecodeError: naming the count and each distinct cause with its first file, e.g.
                ``168 of 168 videos failed to decode: TypeError: ... (first: videos/synth_00000.mp4)``.
        """
        ok = self.loaded if ok is None else ok
        failed = self.count
        if ok > 0 or failed == 0:
            return
        causes: dict[str, str] = {}
        for path, reason in self._items.items():
            causes.setdefault(_cause(path, reason), path)
        every = (total is not None and total >= 2 and failed >= total
                 and (len(causes) < failed or failed >= first))  # a shared cause, or too many to be chance
        if every or (failed >= first and len(causes) == 1):
            raise SystemicDecodeError(failed, failed, total, [(r, p) for r, p in causes.items()])

    @property
    def count(self) -> int:
        """Number of distinct files that failed."""
        return len(self._items)

    @property
    def items(self) -> list[tuple[str, str]]:
        """``(path, reason)`` per failed file, in the order first seen."""
        return list(self._items.items())

    def __len__(self) -> int:
        return self.count

    def write(self, path: str | os.PathLike) -> Path:
        """Write ``{"count", "occurrences", "items": [{"path", "reason"}]}`` as JSON; returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"count": self.count, "occurrences": self.occurrences,
                   "items": [{"path": p, "reason": r} for p, r in self.items]}
        path.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
        return path

    def summary(self, *, show: int = 3) -> str:
        """One line: how many videos were skipped and the first few with their reasons."""
        if not self._items:
            return "no videos skipped"
        shown = "; ".join(f"{os.path.basename(p)} ({r})" for p, r in self.items[:show])
        more = f"; ... {self.count - show} more" if self.count > show else ""
        noun = "video" if self.count == 1 else "videos"
        return f"{self.count} {noun} skipped: {shown}{more}"

    def __repr__(self) -> str:
        return f"ErrorReport(count={self.count}, occurrences={self.occurrences})"


def _cause(path: str, reason: str) -> str:
    """The reason with this file's own path and name taken out, so one cause reads the same for every file."""
    for text in sorted({path, os.path.basename(path)}, key=len, reverse=True):
        if text:
            reason = reason.replace(text, "<file>")
    return reason
