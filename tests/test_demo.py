"""`seqvision demo --small` end to end: summary.json with the metric keys, an HTML report whose links all exist."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]
METRIC_KEYS = ("clip accuracy", "frame accuracy", "BLEU-4", "CIDEr", "wall time (s)")


@pytest.mark.slow
def test_demo_small_end_to_end(tmp_path):
    out = tmp_path / "demo"
    env = {**os.environ, "SEQVISION_DEMO_SMALL": "1"}
    proc = subprocess.run([sys.executable, "-m", "seqvision", "demo", "--small", "--out", str(out),
                           "--device", "cpu"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "wall time" in proc.stdout and "HTML report" in proc.stdout

    summary = json.loads((out / "summary.json").read_text())
    for key in METRIC_KEYS:
        assert key in summary, (key, summary)
        value = summary[key]
        assert isinstance(value, (int, float)) and value == value, (key, value)  # a number, not NaN
    assert 0.0 <= summary["clip accuracy"] <= 1.0 and 0.0 <= summary["frame accuracy"] <= 1.0
    assert 0.0 <= summary["BLEU-4"] <= 1.0 and summary["CIDEr"] >= 0.0
    assert summary["ok"] is True

    html_path = Path(summary["report"])
    assert html_path.is_file() and html_path.stat().st_size > 0
    text = html_path.read_text(encoding="utf-8")
    links = re.findall(r'(?:src|href)="([^"]+)"', text)
    local = [link for link in links if not urlparse(link).scheme and not link.startswith("#")]
    assert any(link.endswith(".png") for link in local), "the report shows no images"
    missing = [link for link in local if not (html_path.parent / unquote(link)).is_file()]
    assert not missing, missing
    # every run's files are where the configs say
    for name in ("classify", "frames", "caption"):
        assert (out / "runs" / name / "best.pt").is_file()


@pytest.mark.parametrize("task", ["classify", "frames", "caption"])
def test_demo_trains_what_the_configs_ship(task, tmp_path):
    """`seqvision train --config configs/synthetic_<task>.yaml` reproduces the demo's step (paths aside)."""
    from seqvision.cli._demo import demo_configs
    from seqvision.config import config_from_dict, config_to_dict, load_config

    demo = config_to_dict(config_from_dict(demo_configs(tmp_path)[task]))
    shipped = config_to_dict(load_config(ROOT / "configs" / f"synthetic_{task}.yaml"))
    ignore = {"data": {"root", "cache_dir", "num_workers"}, "train": {"device", "progress"}}
    for section in ("data", "encoder", "model", "train", "eval"):
        a = {k: v for k, v in demo[section].items() if k not in ignore.get(section, ())}
        b = {k: v for k, v in shipped[section].items() if k not in ignore.get(section, ())}
        assert a == b, (section, {k: (a[k], b.get(k)) for k in a if a[k] != b.get(k)})
    assert demo["seed"] == shipped["seed"]
