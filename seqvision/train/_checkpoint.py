"""Checkpoint I/O: the :class:`Checkpoint` dataclass, one plain-data file written atomically, loaded with
``torch.load(weights_only=True)`` only.

Everything in a checkpoint is a tensor, dict, list, tuple, str, number, bool or None, so loading never runs code
from the file. RNG states are converted to tensors and lists (NumPy's state tuple becomes a list of ints).
"""

from __future__ import annotations

import os
import pickle
import random
import zipfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._fileio import atomic_write
from ..errors import CheckpointError
from ..presets import get_preset, list_presets

__all__ = [
    "Checkpoint",
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "REQUIRED_KEYS",
    "save_checkpoint",
    "load_checkpoint",
    "capture_rng_state",
    "restore_rng_state",
]

CHECKPOINT_FORMAT = "seqvision-checkpoint"
CHECKPOINT_VERSION = 2  # 1: seqvision 0.1 (converted on load, see Checkpoint.from_dict)
REQUIRED_KEYS = ("format", "version", "config", "model_state", "input_dim")


@dataclass
class Checkpoint:
    """A training checkpoint: the one reader and writer of ``best.pt`` / ``last.pt`` (format version 2).

    The file is this dataclass as a plain dict (plus ``format`` and ``version``), written atomically by
    :meth:`save` and read with ``torch.load(weights_only=True)`` only by :meth:`load`, so loading never runs code
    from the file. Version 1 files (seqvision 0.1) are converted on load: they gain ``extra`` and ``task``, and
    their config gains the ``model.head_hidden`` that their preset implied.

    Attributes:
        config: the resolved config (``seqvision.config.config_to_dict``).
        model_state: the task model's ``state_dict`` (CPU tensors).
        input_dim: D, the feature width the model reads.
        task: ``model.task``.
        label_names, frame_label_names: class names in id order; vocab: ``Vocabulary.to_dict()`` or None.
        encoder_state: the frame encoder's weights when the config cannot rebuild them (random init that made
            the feature cache, or fine-tuned end to end); None = the configured pretrained weights.
        optimizer, scheduler, scaler: their ``state_dict`` (resume); None in an inference-only checkpoint.
        epoch, global_step: completed epochs and optimiser steps.
        rng: :func:`capture_rng_state` of rank 0; rng_ranks: every rank's (DDP) or None; world_size: ranks.
        metrics: one row per epoch (the run's history); metric / best_metric / best_epoch: the selection.
        extra: plain data other parts attach (e.g. a baseline's metrics), keyed by who wrote it.
        pace: the rate the training clips' frames were sampled at (``seqvision.train._hooks.training_pace``:
            ``{"fps": median Hz, "min", "q1", "q3", "max", "clips", "of", "sampler", "num_frames"}``) when the
            model was trained on ``data.num_frames`` spread over each clip (``data.sampler`` uniform) from a
            feature cache that kept the clips' durations; None otherwise (and in files written before it was
            kept). ``seqvision stream`` feeds frames at ``pace["fps"]`` when not told ``--fps``.

    Example:
        >>> ckpt = Checkpoint.load("runs/exp/best.pt")
        >>> ckpt.epoch, ckpt.label_names[:3]
    """

    config: dict
    model_state: dict
    input_dim: int
    task: str = ""
    label_names: list = field(default_factory=list)
    frame_label_names: list = field(default_factory=list)
    vocab: dict | None = None
    encoder_state: dict | None = None
    optimizer: dict | None = None
    scheduler: dict | None = None
    scaler: dict | None = None
    epoch: int = 0
    global_step: int = 0
    rng: dict | None = None
    rng_ranks: list | None = None
    world_size: int = 1
    metrics: list = field(default_factory=list)
    metric: str = ""
    best_metric: float | None = None
    best_epoch: int = 0
    extra: dict = field(default_factory=dict)
    pace: dict | None = None

    def __post_init__(self):
        if not self.task:
            self.task = str((self.config.get("model") or {}).get("task", "classify"))

    def to_dict(self) -> dict[str, Any]:
        """The file's content: ``{"format", "version", <every field>}`` (plain data only)."""
        return {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
                **{f.name: getattr(self, f.name) for f in fields(self)}}

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "<checkpoint>") -> "Checkpoint":
        """Build from a file's dict, converting older versions; ``format`` / ``version`` may be absent (a dict
        built in Python is taken as the current version).

        Raises:
            CheckpointError: naming ``source``: a newer or unknown version, missing or unknown entries, or
                entries of the wrong type.
        """
        data = dict(data)
        if data.pop("format", CHECKPOINT_FORMAT) != CHECKPOINT_FORMAT:
            raise CheckpointError(f"{source}: not a seqvision checkpoint (no 'format': {CHECKPOINT_FORMAT!r} entry)")
        version = data.pop("version", CHECKPOINT_VERSION)
        if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= CHECKPOINT_VERSION:
            raise CheckpointError(f"{source}: checkpoint version {version!r} is not supported "
                                  f"(this seqvision reads versions 1 to {CHECKPOINT_VERSION})")
        if version == 1:
            data = _upgrade_v1(data)
        missing = [k for k in REQUIRED_KEYS[2:] if k not in data]
        if missing:
            raise CheckpointError(f"{source}: checkpoint lacks required entries: {', '.join(missing)}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise CheckpointError(f"{source}: checkpoint has unknown entries {unknown} (written by a newer "
                                  "seqvision?)")
        for key, kind in (("config", dict), ("model_state", dict), ("input_dim", int), ("label_names", list),
                          ("frame_label_names", list), ("metrics", list), ("extra", dict)):
            if key in data and not isinstance(data[key], kind):
                raise CheckpointError(f"{source}: checkpoint entry {key!r} is a {type(data[key]).__name__}, "
                                      f"expected a {kind.__name__} (corrupt checkpoint)")
        pace = data.get("pace")
        if pace is not None and not (isinstance(pace, dict) and isinstance(pace.get("fps"), (int, float))
                                     and not isinstance(pace.get("fps"), bool) and pace["fps"] > 0):
            raise CheckpointError(f"{source}: checkpoint entry 'pace' is {pace!r}, expected None or a dict with a "
                                  "positive 'fps' (corrupt checkpoint)")
        return cls(**data)

    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically: a temporary file in the same folder, flushed and fsynced, then ``os.replace``d over
        the target. A crash at any point leaves the previous file (if any) intact. Returns the path."""
        state = self.to_dict()
        return atomic_write(path, lambda f: torch.save(state, f), sync_dir=True)

    @classmethod
    def load(cls, path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> "Checkpoint":
        """Load safely (``weights_only=True``; pickled objects are refused) and convert older versions.

        Raises:
            CheckpointError: naming the file, when it is missing, truncated or corrupt, not a seqvision
                checkpoint, of an unsupported version, or holds pickled Python objects (never unpickled); a file
                that is no torch.save file at all (a YAML config, a CSV, a video) is named from its first bytes.
        """
        path = Path(path)
        if path.is_dir():  # a run folder: name the files train leaves in it
            found = [p.name for p in (path / "best.pt", path / "last.pt") if p.is_file()]
            raise CheckpointError(f"{path}: is a folder, not a checkpoint file; seqvision train writes best.pt and "
                                  "last.pt in its run folder" + (f" (this one holds {' and '.join(found)})"
                                                                  if found else ""))
        if not path.is_file():
            raise CheckpointError(f"{path}: checkpoint file does not exist")
        if path.stat().st_size == 0:
            raise CheckpointError(f"{path}: checkpoint file is empty (truncated)")
        with open(path, "rb") as f:
            head = f.read(4096)
        if not head.startswith(_TORCH_MAGIC):  # torch.load would call a YAML file "pickled objects"
            raise CheckpointError(f"{path}: not a seqvision checkpoint (a PyTorch .pt file written by seqvision "
                                  f"train): it looks like {_looks_like(path, head)}")
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
        if "version" not in state:
            raise CheckpointError(f"{path}: checkpoint has no 'version' entry (corrupt checkpoint)")
        return cls.from_dict(state, source=str(path))


def _upgrade_v1(data: dict) -> dict:
    """Version 1 -> 2: ``extra`` is new; ``model.head_hidden`` became a config field (version 1 took it from the
    named preset at build time, so the same value is written into the config here)."""
    data = {**data, "extra": {"converted_from_version": 1}}
    config = data.get("config")
    if isinstance(config, dict) and isinstance(config.get("model"), dict) and "head_hidden" not in config["model"]:
        model = dict(config["model"])
        name = model.get("preset") or ""
        model["head_hidden"] = list(get_preset(name).head_hidden) if name in list_presets() else []
        data["config"] = {**config, "model": model}
    return data


def save_checkpoint(state: Checkpoint | dict[str, Any], path: str | os.PathLike) -> Path:
    """:meth:`Checkpoint.save` of ``state`` (a :class:`Checkpoint`, or its plain-dict form).

    Returns:
        The path written.
    """
    ckpt = state if isinstance(state, Checkpoint) else Checkpoint.from_dict(state, source=str(path))
    return ckpt.save(path)


def load_checkpoint(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The plain-dict form (:meth:`Checkpoint.to_dict`) of :meth:`Checkpoint.load`: the current version's
    entries, whatever version the file has.

    Raises:
        CheckpointError: see :meth:`Checkpoint.load`.

    Example:
        >>> ckpt = load_checkpoint("runs/exp/best.pt")
        >>> ckpt["epoch"], ckpt["label_names"][:3]
    """
    return Checkpoint.load(path, map_location=map_location).to_dict()


# What a file torch.save wrote starts with: a zip archive (PyTorch >= 1.6) or a pickle of protocol 2+ (the legacy
# format, and raw pickles). Anything else is another kind of file, named by _looks_like.
_TORCH_MAGIC = (b"PK\x03\x04", b"\x80")

# (first bytes, offset, what) of the files a user is likely to pass by mistake
_SIGNATURES = (
    (b"ftyp", 4, "a video (MP4/MOV)"), (b"\x1a\x45\xdf\xa3", 0, "a video (Matroska/WebM)"),
    (b"RIFF", 0, "a video or audio file (RIFF: AVI/WAV)"), (b"\x00\x00\x01\xba", 0, "a video (MPEG program stream)"),
    (b"\x00\x00\x01\xb3", 0, "a video (MPEG-1/2 elementary stream)"), (b"\x00\x00\x00\x01", 0, "a video (raw H.264/HEVC)"),
    (b"YUV4MPEG2", 0, "a video (Y4M)"), (b"DKIF", 0, "a video (IVF)"), (b"OggS", 0, "an Ogg media file"),
    (b"FLV", 0, "a video (FLV)"), (b"\x30\x26\xb2\x75", 0, "a video (ASF/WMV)"),
    (b"\x89PNG", 0, "an image (PNG)"), (b"\xff\xd8\xff", 0, "an image (JPEG)"),
    (b"\x93NUMPY", 0, "a NumPy .npy array"), (b"\x89HDF", 0, "an HDF5 file"),
)
_TEXT_KINDS = {".yaml": "YAML", ".yml": "YAML", ".json": "JSON", ".jsonl": "JSON lines", ".csv": "CSV",
               ".md": "Markdown text", ".txt": "text", ".log": "a text log"}


def _looks_like(path: Path, head: bytes) -> str:
    """What a file that is not a torch.save file appears to be, from its first bytes (and, for text, its name)."""
    for magic, offset, what in _SIGNATURES:
        if head[offset:offset + len(magic)] == magic:
            return what
    if len(head) >= 189 and head[0] == head[188] == 0x47:  # MPEG-TS: a sync byte every 188 bytes
        return "a video (MPEG-TS)"
    text = head.decode("utf-8", errors="ignore")
    if b"\x00" not in head and len(text.encode("utf-8")) >= len(head) - 3:  # a cut multi-byte character at most
        kind = _TEXT_KINDS.get(path.suffix.lower(), "text")
        first = text.strip().splitlines()[0][:60] if text.strip() else ""
        return f"{kind} (starts {first!r})" if first else kind
    return f"unrecognised binary data (first bytes {head[:8].hex(' ')})"


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
