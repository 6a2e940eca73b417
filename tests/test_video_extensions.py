"""Folder scans take every ending the reader decodes (a new-user trial: .y4m .vob .h264 .m2v .ivf .ogv were
skipped by `classify DIR` and by the folder dataset format although the reader decodes them)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from seqvision.config import load_config
from seqvision.data import load_index
from seqvision.io import VIDEO_EXTENSIONS
from stream_checkpoints import tiny_checkpoints

ROOT = Path(__file__).resolve().parents[1]
SRC = ["-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25", "-t", "1"]
# ending -> ffmpeg output options (the muxer is taken from the ending unless -f is given)
KINDS = {".y4m": ["-pix_fmt", "yuv420p"], ".vob": ["-c:v", "mpeg2video", "-f", "vob"],
         ".h264": ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-f", "h264"],
         ".264": ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-f", "h264"],
         ".hevc": ["-c:v", "libx265", "-x265-params", "log-level=error", "-f", "hevc"],
         ".265": ["-c:v", "libx265", "-x265-params", "log-level=error", "-f", "hevc"],
         ".m1v": ["-c:v", "mpeg1video", "-f", "mpeg1video"], ".m2v": ["-c:v", "mpeg2video", "-f", "mpeg2video"],
         ".ivf": ["-c:v", "libvpx", "-b:v", "200k"], ".ogv": ["-c:v", "libtheora"],
         ".mts": ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-f", "mpegts"],
         ".m2ts": ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-f", "mpegts"],
         ".3gp": ["-c:v", "h263", "-s", "176x144"], ".mpg": ["-c:v", "mpeg1video"], ".mpeg": ["-c:v", "mpeg1video"],
         ".wmv": ["-c:v", "wmv2"], ".flv": ["-c:v", "flv1"]}


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs the ffmpeg CLI to write the files")
def test_folder_scans_take_every_ending_the_reader_decodes(tmp_path):
    cls = tmp_path / "data" / "walk"
    cls.mkdir(parents=True)
    for ext, opts in KINDS.items():
        subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *SRC, *opts, str(cls / f"v{ext}")],
                       check=True)
    assert set(KINDS) <= set(VIDEO_EXTENSIONS)
    index = load_index(load_config(overrides=["data.format=folder", f"data.root={tmp_path / 'data'}"]).data)
    assert sorted(Path(r.path).suffix for r in index.records) == sorted(KINDS)
    ck = tiny_checkpoints(tmp_path / "tiny")["classify"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="2")
    proc = subprocess.run([sys.executable, "-m", "seqvision", "classify", "--checkpoint", str(ck), str(cls), "--json"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0 and "skipped" not in proc.stderr, proc.stderr
    assert sorted(Path(r["path"]).suffix for r in json.loads(proc.stdout)["results"]) == sorted(KINDS)
