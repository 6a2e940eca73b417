"""Each benchmark runs in its smallest mode so the scripts keep working (no timing assertions: numbers are
reported, not tested). `seqvision bench NAME ...` loads the same scripts."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_seq_len_smallest(tmp_path):
    load("seq_len").main(["--quick", "--max-t", "16", "--reps", "1", "--reps-overhead", "1", "--out", str(tmp_path)])
    data = json.loads((tmp_path / "seq_len.json").read_text())
    assert {"scaling", "overhead", "packing", "decoding"} <= set(data)
    assert (tmp_path / "seq_len_scaling.png").read_bytes()[:4] == b"\x89PNG"


def test_seq_len_min_cells_and_long_range_smallest(tmp_path):
    """Seconds: the minGRU/minLSTM rows, the Transformer and the long-range accuracy task at toy sizes."""
    load("seq_len").main(["--quick", "--max-t", "16", "--reps", "1", "--cells", "lstm,mingru,minlstm",
                          "--layers", "1", "--directions", "uni", "--sections", "scaling,longrange",
                          "--acc-max-t", "16", "--acc-steps", "2", "--acc-layers", "1", "--out", str(tmp_path)])
    data = json.loads((tmp_path / "seq_len.json").read_text())
    assert {"mingru-L1-uni", "minlstm-L1-uni", "lstm-L1-uni", "transformer"} <= set(data["scaling"])
    assert data["scaling"]["mingru-L1-uni"]["scan_rel_error_f32"]["16"] < 1e-4
    assert set(data["longrange"]) == {"lstm", "mingru", "minlstm", "transformer"}
    assert all(0 <= a <= 1 for row in data["longrange"].values() for a in row["accuracy"])
    assert (tmp_path / "seq_len_scaling.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_gpu_check_cpu_dry_run(tmp_path):
    """benchmarks/gpu_check.sh end to end on CPU at toy sizes (its CUDA path needs a GPU host)."""
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--cpu-dry-run"], env=env,
                          capture_output=True, text=True, timeout=600)
    summary = (tmp_path / "gpu_check" / "summary.txt").read_text()
    status = {}
    for line in summary.splitlines():  # the step table comes first; later lines may start with a step's name
        words = line.split()
        if words[:1] and words[0] in ("env", "tests", "pipeline", "seq-len"):
            status.setdefault(words[0], words[1])
    assert status == {"env": "ok", "tests": "ok", "pipeline": "ok", "seq-len": "ok"}, proc.stdout[-3000:]
    assert "long-range accuracy" in summary


@pytest.mark.slow
def test_decode_smallest(tmp_path):
    load("decode").main(["--smoke", "--out", str(tmp_path)])
    data = json.loads((tmp_path / "results.json").read_text())
    contenders = {r["contender"] for r in data["results"]}
    assert {"ours-pyav", "pyav-all"} <= contenders
    ours = [r for r in data["results"] if r["contender"].startswith("ours")]
    assert ours and all(r["exact"] for r in ours)  # our reader is frame-exact on every case
    assert (tmp_path / "decode.png").is_file()


@pytest.mark.slow
def test_pipeline_smallest(tmp_path):
    load("pipeline").main(["--quick", "--videos", "2", "--size", "32", "--frames", "4", "--models", "resnet18",
                           "--workers", "0", "--out", str(tmp_path)])
    data = json.loads((tmp_path / "results.json").read_text())
    assert data
    assert (tmp_path / "pipeline.png").is_file()


@pytest.mark.slow
def test_fuzz_smallest(tmp_path, capsys):
    load("fuzz").main(["--count", "12", "--seed", "0", "--json", str(tmp_path / "fuzz.json")])
    results = json.loads((tmp_path / "fuzz.json").read_text())
    assert len(results) >= 12


def test_bench_command_finds_the_scripts():
    from seqvision.cli import build_parser

    args = build_parser().parse_args(["bench", "decode", "--smoke"])
    assert args.which == "decode" and args.args == ["--smoke"]
