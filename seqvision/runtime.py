"""Device selection, mixed precision and seeding, shared by feature extraction, training and inference."""

from __future__ import annotations

import contextlib
import os
import random
import warnings

import numpy as np
import torch

from .errors import ArgumentError

__all__ = ["select_device", "autocast", "seed_everything"]


def select_device(name: str = "auto", *, key: str = "device") -> torch.device:
    """``"auto"`` picks CUDA when present, else CPU; anything else is checked to exist.

    Args:
        name: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
        key: what the error names: the CLI option (``device``) or the config key (``train.device``).

    Raises:
        ArgumentError: (named ``key``) not a device name, or CUDA asked for on a machine without it. The CLI
            reports it with exit status 2.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ArgumentError(key, f"not a device: {name!r}; allowed: 'auto', 'cpu', 'cuda', 'cuda:N'") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ArgumentError(key, f"{name!r} asked for, but CUDA is not available on this machine")
    return device


def autocast(device: torch.device, mode: str = "auto"):
    """Autocast context: bf16 (fp16 where bf16 is missing) on CUDA for ``"auto"``; float32 on CPU."""
    if mode == "off":
        return contextlib.nullcontext()
    if device.type == "cuda":
        if mode in ("auto", "bf16"):
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        else:
            dtype = torch.float16
        return torch.autocast("cuda", dtype=dtype)
    if mode in ("bf16", "fp16"):
        # CPU autocast is slower here (measured 5-9x in benchmarks/pipeline.py) and oneDNN's fused LSTM has no
        # bf16 kernel on many CPUs, so mixed precision is a CUDA feature: say so once and run in float32.
        warnings.warn(f"mixed precision ({mode}) is used on CUDA only; running in float32 on {device}",
                      stacklevel=2)
    return contextlib.nullcontext()


def seed_everything(seed: int, *, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch (all devices); optionally ask torch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
