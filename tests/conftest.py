"""Shared fixtures. Test videos are made by tests/assets.py (real codecs via PyAV); the synthetic dataset by
seqvision's own generator, once per session."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # `import assets`

# Tests run on CPU with tiny models, where threading costs more than it gives.
os.environ.setdefault("OMP_NUM_THREADS", "1")  # tiny models: 1 thread is fastest on 2 shared cores


def _missing_ffmpeg() -> list[str]:
    return [tool for tool in ("ffmpeg", "ffprobe") if shutil.which(tool) is None]


def pytest_configure(config):
    """Without the ffmpeg CLI (the outside oracle) the frame-conformance, stream and rotation tests skip. CI sets
    SEQVISION_REQUIRE_FFMPEG=1 (``.ci/run`` installs ffmpeg), so there a missing ffmpeg stops the run instead of
    letting it pass on the tidy tests alone."""
    missing = _missing_ffmpeg()
    if missing and os.environ.get("SEQVISION_REQUIRE_FFMPEG") == "1":
        raise pytest.UsageError(f"SEQVISION_REQUIRE_FFMPEG=1 but {' and '.join(missing)} not on PATH: install "
                                "ffmpeg (Debian: apt-get install ffmpeg); the ffmpeg-oracle tests would all skip")


def pytest_report_header(config):
    missing = _missing_ffmpeg()
    if missing:
        return f"ffmpeg CLI: {', '.join(missing)} not found: the ffmpeg-oracle tests will SKIP"
    return f"ffmpeg CLI: {shutil.which('ffmpeg')}"


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory) -> Path:
    """A small synthetic dataset (36 videos, 32x32): returns the folder that holds manifest.jsonl."""
    from seqvision.data import make_synthetic_dataset

    out = tmp_path_factory.mktemp("synthetic")
    make_synthetic_dataset(out, num_videos=36, seed=0, size=32, min_frames=12, max_frames=20, progress=False)
    return out


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """One intra-op thread for the whole suite: the tests' models are tiny, and on a shared 2-core machine
    OpenMP spin-waiting with 2 threads makes them 10-50x slower (OMP_NUM_THREADS above covers subprocesses)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
