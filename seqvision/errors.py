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
    "SystemicDecodeError",
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


class ArgumentError(SeqVisionError, ValueError):
    """A function or class got a bad argument (below the config layer). ``argument`` names the parameter (e.g.
    ``"weights"``), ``reason`` says why; the config-facing entry points (``build_encoder``,
    ``VideoDataset.from_config``) map it to the dotted key (``ConfigError("encoder.weights", reason)``)."""

    def __init__(self, argument: str, reason: str):
        self.argument = argument
        self.reason = reason
        super().__init__(f"{argument}: {reason}")

    def __reduce__(self):  # picklable across DataLoader workers
        return (type(self), (self.argument, self.reason))


class DatasetError(SeqVisionError):
    """A dataset's annotations or layout are wrong (missing file, bad line, unknown class)."""


class CacheError(SeqVisionError):
    """A feature-cache entry or index is missing, corrupt or inconsistent."""


class CheckpointError(SeqVisionError):
    """A checkpoint file is missing, truncated, corrupt, or holds something that is not plain data."""


class SystemicDecodeError(SeqVisionError):
    """Every video failed to load, or the first ones all failed for one reason: the installation or the data is
    broken, not a few files, so the run stops instead of skipping everything (see
    :meth:`seqvision.data.ErrorReport.raise_if_systemic`).

    Attributes:
        failed: how many videos failed; ``seen``: how many were tried (none of them loaded).
        total: how many the run holds (``None`` when unknown).
        causes: ``(reason, first_path)`` per distinct cause, in the order first seen.
    """

    def __init__(self, failed: int, seen: int, total: int | None, causes: list[tuple[str, str]]):
        self.failed, self.seen, self.total = int(failed), int(seen), total
        self.causes = [(str(r), str(p)) for r, p in causes]
        shown = "; ".join(f"{r} (first: {p})" for r, p in self.causes[:5])
        more = f"; ... {len(self.causes) - 5} more causes" if len(self.causes) > 5 else ""
        if total is not None and seen >= total:
            head = f"{failed} of {total} videos failed to decode"
        else:
            of = f" of {total}" if total is not None else ""
            head = (f"the first {failed}{of} videos all failed to decode for the same reason; stopped instead of "
                    "skipping every file")
        super().__init__(f"{head}: {shown}{more}. Not a bad file but a broken installation or dataset: "
                         "`seqvision info` checks the decoders")

    def __reduce__(self):
        return (type(self), (self.failed, self.seen, self.total, self.causes))
