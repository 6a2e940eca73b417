"""One error family for the whole library.

Every error seqvision raises on bad input derives from :class:`SeqVisionError`, so callers can catch one
type. Each message names the file or the config key that was wrong and, where it helps, what is allowed.
"""

from __future__ import annotations

import os

__all__ = [
    "SeqVisionError",
    "VideoDecodeError",
    "ConfigError",
    "DatasetError",
    "CacheError",
    "CheckpointError",
]


class SeqVisionError(Exception):
    """Base class of every error seqvision raises on bad input."""


class VideoDecodeError(SeqVisionError):
    """A video could not be opened or decoded. ``path`` names the file, ``reason`` says why."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # picklable across DataLoader workers
        return (type(self), (self.path, self.reason))


class ConfigError(SeqVisionError, ValueError):
    """A config key is unknown, missing or holds a bad value. ``key`` is the dotted key."""

    def __init__(self, key: str, reason: str, *, source: str | None = None):
        self.key = key
        self.reason = reason
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}config key '{key}': {reason}")

    def __reduce__(self):
        return (_rebuild_config_error, (self.key, self.reason, self.source))


def _rebuild_config_error(key, reason, source):
    return ConfigError(key, reason, source=source)


class DatasetError(SeqVisionError):
    """A dataset's annotations or layout are wrong (missing file, bad line, unknown class)."""


class CacheError(SeqVisionError):
    """A feature-cache entry or index is missing, corrupt or inconsistent."""


class CheckpointError(SeqVisionError):
    """A checkpoint file is missing, truncated, corrupt, or holds something that is not plain data."""
