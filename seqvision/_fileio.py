"""Atomic file writes: the one way seqvision writes checkpoints, cache entries and indexes."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

from ._faults import fault_point

__all__ = ["atomic_write"]


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object], *, sync_dir: bool = False) -> Path:
    """Write a file so that readers see either the old file or the complete new one, never a part.

    ``write(f)`` fills a temporary file in the same folder, which is flushed, fsynced and renamed over ``path``;
    on any error (or a kill) the temporary file is removed or left as a ``.<name>.*.tmp`` beside it and ``path``
    is untouched. ``sync_dir`` also fsyncs the folder so the rename itself survives a power loss.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        fault_point("write", path.name)  # tests: SEQVISION_FAULT=kill:write=last.pt (seqvision._faults)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if sync_dir:
        try:
            dir_fd = os.open(path.parent, os.O_RDONLY)
        except OSError:
            return path
        try:
            os.fsync(dir_fd)
        except OSError:
            pass
        finally:
            os.close(dir_fd)
    return path
