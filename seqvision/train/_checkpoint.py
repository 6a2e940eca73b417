"""Checkpoint I/O: one plain-data file, written atomically, loaded with ``torch.load(weights_only=True)`` only.

Everything in a checkpoint is a tensor, dict, list, tuple, str, number, bool or None, so loading never runs code
from the file. RNG states are converted to tensors and lists (NumPy's state tuple becomes a list of ints).
"""

from __future__ import annotations

import os
import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._fileio import atomic_write
from ..errors import CheckpointError

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "REQUIRED_KEYS",
    "save_checkpoint",
    "load_checkpoint",
    "capture_rng_state",
    "restore_rng_state",
]

CHECKPOINT_FORMAT = "seqvision-checkpoint"
CHECKPOINT_VERSION = 1
REQUIRED_KEYS = ("format", "version", "config", "model_state", "input_dim", "label_names")


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` to ``path`` atomically: a temporary file in the same folder, flushed and fsynced, then
    ``os.replace``d over the target. A crash at any point leaves the previous file (if any) intact.

    Args:
        state: plain data only (tensors, dicts, lists, str, numbers); ``format``/``version`` are added if absent.
        path: the target file; its folder is created if needed.

    Returns:
        The path written.
    """
    state = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **state}
    return atomic_write(path, lambda f: torch.save(state, f), sync_dir=True)


def load_checkpoint(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a seqvision checkpoint safely (``weights_only=True``; pickled objects are refused).

    Raises:
        CheckpointError: naming the file, when it is missing, truncated or corrupt, not a seqvision checkpoint,
            or holds pickled Python objects (which are never unpickled).

    Example:
        >>> ckpt = load_checkpoint("runs/exp/best.pt")
        >>> ckpt["epoch"], ckpt["label_names"][:3]
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file does not exist")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: checkpoint file is empty (truncated)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        msg = str(exc)
        if "Weights only load failed" in msg or "Unsupported global" in msg or "GLOBAL" in msg:
            detail = _unsupported_global(msg)
            raise CheckpointError(
                f"{path}: not a plain-data checkpoint: it holds pickled Python objects{detail}; "
                "it will not be unpickled (seqvision loads checkpoints with weights_only=True only)"
            ) from None
        raise CheckpointError(f"{path}: corrupt checkpoint ({_short(exc)})") from None
    except (RuntimeError, OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile, IndexError,
            TypeError, AttributeError) as exc:
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint, or not a checkpoint ({_short(exc)})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a seqvision checkpoint (no 'format': {CHECKPOINT_FORMAT!r} entry)")
    version = state.get("version")
    if not isinstance(version, int) or version > CHECKPOINT_VERSION:
        raise CheckpointError(f"{path}: checkpoint version {version!r} is not supported "
                              f"(this seqvision reads up to {CHECKPOINT_VERSION})")
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks required entries: {', '.join(missing)}")
    return state


def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip().splitlines()[0]
    return text[:200]


def _unsupported_global(msg: str) -> str:
    for line in msg.splitlines():
        if "GLOBAL" in line or "Unsupported global" in line:
            return f" ({line.strip()[:160]})"
    return ""


# ----------------------------------------------------------------------------------------------------------------
# RNG states as plain data


def capture_rng_state(*, generator: torch.Generator | None = None) -> dict[str, Any]:
    """Python, NumPy, torch (CPU and every CUDA device) and an optional extra generator, as plain data."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": [py_version, list(py_state), py_gauss],
        "numpy": [np_name, np_keys.tolist(), int(np_pos), int(np_has_gauss), float(np_gauss)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "generator": generator.get_state() if generator is not None else None,
    }
    return state


def restore_rng_state(state: dict[str, Any], *, generator: torch.Generator | None = None) -> None:
    """Inverse of :func:`capture_rng_state`."""
    py_version, py_state, py_gauss = state["python"]
    random.setstate((int(py_version), tuple(int(v) for v in py_state), py_gauss))
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
    np.random.set_state((np_name, np.asarray(np_keys, dtype=np.uint32), int(np_pos), int(np_has_gauss),
                         float(np_gauss)))
    torch.set_rng_state(state["torch"].cpu())
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda])
    if generator is not None and state.get("generator") is not None:
        generator.set_state(state["generator"].cpu())
