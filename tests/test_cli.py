"""The `seqvision` command end to end, in subprocesses, on a tiny synthetic set."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from seqvision.errors import ArgumentError, ConfigError
from seqvision.io import sample_indices
from seqvision.runtime import select_device
from stream_checkpoints import tiny_checkpoints

ROOT = Path(__file__).resolve().parents[1]


def run(*args, check=True, cwd=None):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="2")
    proc = subprocess.run([sys.executable, "-m", "seqvision", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or ROOT, env=env, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"seqvision {' '.join(map(str, args))} exited {proc.returncode}\n"
                             f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}")
    return proc


@pytest.mark.parametrize("cmd", ["synth", "extract", "train", "eval", "classify", "caption", "inspect", "bench",
                                 "info", "demo"])
def test_every_subcommand_has_help(cmd):
    proc = run(cmd, "--help")
    assert "usage: seqvision " + cmd in proc.stdout


def test_info_checks_every_part_and_passes_here():
    proc = run("info")  # exit 0: every required check passed
    out = proc.stdout
    for name in ("torch", "torchvision", "av", "numpy", "PyYAML", "matplotlib", "pycocoevalcap", "tqdm", "einops"):
        assert any(line.split()[:1] == [name] and len(line.split()) >= 2 for line in out.splitlines()), name
    for check in ("encode", "pyav", "encoder"):
        assert any(line.split()[:2] == ["OK", check] for line in out.splitlines()), (check, out)
    if importlib.util.find_spec("decord") is not None:
        assert any(line.split()[:2] == ["OK", "decord"] for line in out.splitlines()), out
    assert out.rstrip().endswith("OK: every required check passed")


# seqvision info with av.open raising what PyAV 19.0 raised for seqvision's old call (a real broken install)
BROKEN_AV = """
import sys, av
def _open(*args, **kwargs):
    raise TypeError("open() got an unexpected keyword argument 'metadata_errors'")
av.open = _open
from seqvision.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_info_fails_with_the_exact_error_when_pyav_is_broken():
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="2")
    proc = subprocess.run([sys.executable, "-c", BROKEN_AV, "info"], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=600)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    fail = [line for line in proc.stdout.splitlines() if line.split()[:2] == ["FAIL", "encode"]]
    assert fail and "TypeError: open() got an unexpected keyword argument 'metadata_errors'" in fail[0], proc.stdout
    assert "OK    encoder" in proc.stdout  # the other checks still run and report
    assert proc.stdout.rstrip().splitlines()[-1].startswith("FAIL: encode, pyav")


def test_info_device_check_fails_for_a_missing_device():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: `--device cuda` is not a failure here")
    proc = run("info", "--device", "cuda", check=False)
    assert proc.returncode == 1
    line = [x for x in proc.stdout.splitlines() if x.split()[:2] == ["FAIL", "encoder"]]
    assert line and "CUDA is not available" in line[0], proc.stdout


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA device")
def test_info_runs_the_encoder_on_cuda():
    out = run("info", "--device", "cuda").stdout
    assert any(x.split()[:2] == ["OK", "encoder"] and "cuda" in x for x in out.splitlines()), out


def test_bad_config_key_fails_before_work(tmp_path):
    proc = run("train", "--config", ROOT / "configs" / "synthetic_classify.yaml", "--set", "model.cel=gru",
               "--set", f"out={tmp_path / 'run'}", check=False)
    assert proc.returncode == 2
    assert "model.cel" in proc.stderr and "did you mean 'model.cell'" in proc.stderr
    assert not (tmp_path / "run").exists()


def _tiny_overrides(data_root: Path, out: Path, task: str) -> list[str]:
    sets = [f"data.root={data_root}", f"out={out}", "data.size=32", "data.num_frames=8", "data.num_workers=0",
            f"data.cache_dir={out.parent / 'features'}", "encoder.name=resnet18", "encoder.weights=none",
            "model.hidden=16", "train.epochs=2", "train.batch_size=8", "train.progress=false", "eval.beam_size=2"]
    if task == "caption":
        sets += ["model.embed_dim=16", "model.attention_dim=16", "model.max_caption_len=8"]
    out_args = []
    for s in sets:
        out_args += ["--set", s]
    return out_args


@pytest.mark.slow
def test_cli_end_to_end(tmp_path):
    data = tmp_path / "data"
    out = run("synth", "--out", data, "--num-videos", 18, "--size", 32, "--min-frames", 10, "--max-frames", 14)
    assert "wrote 18 videos" in out.stdout
    manifest = [json.loads(x) for x in (data / "manifest.jsonl").read_text().splitlines()]
    videos = [data / r["path"] for r in manifest[:3]]
    bad = tmp_path / "broken.mp4"
    bad.write_text("this is not a video")

    cls_out = tmp_path / "runs" / "cls"
    run("train", "--config", ROOT / "configs" / "synthetic_classify.yaml", *_tiny_overrides(data, cls_out, "classify"))
    assert (cls_out / "best.pt").is_file() and (cls_out / "config.yaml").is_file()

    ev = run("eval", "--checkpoint", cls_out / "best.pt", "--split", "test", "--json")
    metrics = json.loads(ev.stdout)
    assert 0.0 <= metrics["top1"] <= 1.0

    proc = run("classify", "--checkpoint", cls_out / "best.pt", *videos, bad, "--top-k", 2, "--json", check=False)
    assert proc.returncode == 1, proc.stderr  # one input failed
    result = json.loads(proc.stdout)  # stdout is JSON and nothing else
    assert [r["path"] for r in result["results"]] == [str(v) for v in videos]
    assert all(len(r["top_k"]) == 2 for r in result["results"])
    assert [e["path"] for e in result["errors"]] == [str(bad)]
    assert [e["error_type"] for e in result["errors"]] == ["VideoDecodeError"]  # as `classify --window` says

    proc = run("classify", "--checkpoint", cls_out / "best.pt", videos[0], tmp_path / "nope.mp4", "--top-k", 0,
               "--json", check=False)
    result = json.loads(proc.stdout)
    assert len(result["results"][0]["top_k"]) == 6  # 0: all classes, as `stream` and `classify --window`
    assert result["errors"] == [{"path": str(tmp_path / "nope.mp4"), "error": "no such file or folder",
                                 "error_type": None}]  # never opened

    proc = run("classify", "--checkpoint", cls_out / "best.pt", data, "--top-k", 1)
    assert proc.returncode == 0 and proc.stdout.count("\n") == 18

    cap_out = tmp_path / "runs" / "cap"
    run("train", "--config", ROOT / "configs" / "synthetic_caption.yaml", *_tiny_overrides(data, cap_out, "caption"))
    proc = run("caption", "--checkpoint", cap_out / "best.pt", *videos, "--beam-size", 2, "--json")
    result = json.loads(proc.stdout)
    assert len(result["results"]) == 3 and all(isinstance(r["caption"], str) for r in result["results"])

    wrong = run("caption", "--checkpoint", cls_out / "best.pt", videos[0], check=False)
    assert wrong.returncode == 2 and "seqvision classify" in wrong.stderr

    run("inspect", "--checkpoint", cap_out / "best.pt", videos[0], "--out", tmp_path / "insp")
    pngs = sorted(p.name for p in (tmp_path / "insp").glob("*.png"))
    assert "attention.png" in pngs and any(p.startswith("gates_layer0") for p in pngs)
    for p in (tmp_path / "insp").glob("*.png"):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_commands_import_at_the_top():
    """Issue #13: imports at the top; an import inside a function is a deliberately lazy heavy one, marked
    ``# lazy: <why>`` on its line."""
    for name in ("_commands.py",):
        path = ROOT / "seqvision" / "cli" / name
        lines = path.read_text().splitlines()
        tree = ast.parse("\n".join(lines))
        inner = [node for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
                 for node in ast.walk(fn) if isinstance(node, (ast.Import, ast.ImportFrom))]
        unmarked = [f"{name}:{n.lineno}: {lines[n.lineno - 1].strip()}" for n in inner
                    if "# lazy: " not in lines[n.lineno - 1]]
        assert not unmarked, "imports inside functions without a '# lazy: <why>' mark:\n" + "\n".join(unmarked)


def test_select_device_names_its_argument():
    """runtime is below the config layer: its error names the argument (``device``), not ``train.device``."""
    with pytest.raises(ArgumentError) as err:
        select_device("tpu")
    assert err.value.argument == "device" and "'tpu'" in str(err.value) and not isinstance(err.value, ConfigError)
    if not torch.cuda.is_available():
        with pytest.raises(ArgumentError, match="^device: 'cuda' asked for, but CUDA is not available"):
            select_device("cuda")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_config_device_error_names_the_config_key(tmp_path):
    """From a config run the same error names ``train.device``, the key the user has to change."""
    data = tmp_path / "data"
    run("synth", "--out", data, "--num-videos", 6, "--size", 32, "--min-frames", 6, "--max-frames", 8)
    out = run("train", "--config", "configs/synthetic_classify.yaml", *_tiny_overrides(data, tmp_path / "run", "classify"),
              "--set", "train.device=cuda", check=False)
    assert out.returncode == 2, out.stderr
    assert "train.device: 'cuda' asked for, but CUDA is not available" in out.stderr, out.stderr


@pytest.mark.parametrize("args, words", [
    (["classify", "--top-k", "-1"], "argument --top-k: must be >= 0, got -1"),
    (["classify", "--top-k", "two"], "argument --top-k: expected an integer, got 'two'"),
    (["classify", "--batch-size", "0"], "argument --batch-size: must be > 0, got 0"),
    (["classify", "--batch-size", "-1"], "argument --batch-size: must be > 0, got -1"),
    (["caption", "--beam-size", "0"], "argument --beam-size: must be > 0, got 0"),
    (["caption", "--beam-size", "-1"], "argument --beam-size: must be > 0, got -1"),
    (["caption", "--batch-size", "0"], "argument --batch-size: must be > 0, got 0"),
])
def test_bad_numeric_options_of_classify_and_caption_are_one_error_line(tmp_path, args, words):
    """Once an IndexError / RuntimeError / ValueError traceback (exit 1) after loading the model, or (beam 0)
    silently the config's beam: now argparse's one line and exit 2 before anything runs (the checkpoint does
    not even exist)."""
    cmd, *opts = args
    proc = run(cmd, "--checkpoint", tmp_path / "missing.pt", tmp_path / "v.mp4", *opts, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == f"seqvision {cmd}: error: {words}"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Tiny classify / frames / caption checkpoints and their 12 synthetic videos (tests/stream_checkpoints.py)."""
    return tiny_checkpoints(tmp_path_factory.mktemp("tiny_cli"))


def test_a_folder_scan_says_which_files_it_skipped(tiny, tmp_path):
    """A folder's files without a video extension were dropped without a word (a new-user trial wondered where
    its clips went); now one stderr line per folder: how many, the first 5 (relative to the folder), the rest
    counted. Results and stdout are as before."""
    folder = tmp_path / "clips"
    (folder / "sub").mkdir(parents=True)
    for v in tiny["videos"][:2]:
        shutil.copy(v, folder / v.name)
    others = ["a.txt", "b.json", "sub/c.md", "d.csv", "e.yaml", "sub/f.log", "notes"]
    for name in others:
        (folder / name).write_text("not a video\n")
    for cmd, ck in (("classify", tiny["classify"]), ("caption", tiny["caption"])):
        proc = run(cmd, "--checkpoint", ck, folder, "--json")
        assert [r["path"] for r in json.loads(proc.stdout)["results"]] == [str(folder / v.name)
                                                                           for v in tiny["videos"][:2]]
        notes = [x for x in proc.stderr.splitlines() if "skipped" in x]
        assert len(notes) == 1, proc.stderr
        assert notes[0].startswith(f"seqvision {cmd}: skipped 7 files without a video extension in {folder} ")
        assert notes[0].endswith(": a.txt, b.json, d.csv, e.yaml, notes, ... (2 more)"), notes[0]
    only = run("classify", "--checkpoint", tiny["classify"], tiny["videos"][0], "--json")
    assert "skipped" not in only.stderr  # nothing skipped, nothing said


def test_a_folder_scan_follows_folder_links_and_names_what_cannot_be_a_video(tiny, tmp_path):
    """A sub-folder that is a link to a folder of videos was never searched (rglob does not follow folder links;
    the `folder` dataset format does), and a broken link or a FIFO named *.mp4 was dropped without a word, exit 0
    (a new-user trial). Now links are followed (a link to a folder holding it is noted on stderr, not followed),
    and the broken link and the FIFO fail in the results, with why."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(tiny["videos"][1], elsewhere / "linked.mp4")
    folder = tmp_path / "clips"
    folder.mkdir()
    shutil.copy(tiny["videos"][0], folder / "own.mp4")
    (folder / "more").symlink_to(elsewhere, target_is_directory=True)
    (folder / "up").symlink_to("..", target_is_directory=True)  # a loop: it holds clips/ itself
    (folder / "broken.mp4").symlink_to(tmp_path / "gone.mp4")
    os.mkfifo(folder / "fifo.mp4")
    proc = run("classify", "--checkpoint", tiny["classify"], folder, "--json", check=False)
    assert proc.returncode == 1, proc.stderr
    out = json.loads(proc.stdout)
    assert [r["path"] for r in out["results"]] == [str(folder / "more" / "linked.mp4"), str(folder / "own.mp4")]
    errors = {e["path"]: e["error"] for e in out["errors"]}
    assert errors == {str(folder / "broken.mp4"): f"broken symbolic link: its target {tmp_path / 'gone.mp4'} "
                                                   "does not exist",
                      str(folder / "fifo.mp4"): "not a regular file: a FIFO (named pipe)"}
    assert (f"seqvision classify: did not follow 1 folder link in {folder} that leads back to a folder above "
            "(a loop): up") in proc.stderr.splitlines(), proc.stderr


def test_text_output_keeps_a_path_with_a_newline_on_one_line(tiny, tmp_path):
    """A file name holding a newline split classify's text line in two (a new-user trial; --json was fine): such
    a path is now printed Python-quoted with escapes, one line per input; --json keeps the real name."""
    odd = tmp_path / "new\nline.mp4"
    shutil.copy(tiny["videos"][0], odd)
    bad = tmp_path / "bad\tname.mp4"
    bad.write_text("not a video\n")
    plain = tmp_path / "plain ü.mp4"
    shutil.copy(tiny["videos"][1], plain)
    for cmd, ck in (("classify", tiny["classify"]), ("classify", tiny["frames"]), ("caption", tiny["caption"])):
        proc = run(cmd, "--checkpoint", ck, odd, bad, plain, check=False)
        lines = proc.stdout.splitlines()
        assert len(lines) == 3, proc.stdout
        sep = " (frame: label): " if ck == tiny["frames"] else ": "
        assert lines[0].startswith(repr(str(odd)) + sep)
        assert lines[1].startswith(f"{plain}{sep}")  # printable names stay as they are
        assert lines[2].startswith(repr(str(bad)) + ": FAILED: ")
    out = json.loads(run("classify", "--checkpoint", tiny["classify"], odd, "--json").stdout)
    assert out["results"][0]["path"] == str(odd)


def _run_into_closed_pipe(*args):
    """Run seqvision with its stdout a pipe whose reader is already gone, as under `| head` once head exits."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="2")
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run([sys.executable, "-m", "seqvision", *map(str, args)], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env, timeout=600)
    finally:
        os.close(write_end)
    return proc


@pytest.mark.parametrize("extra", [["--json"], ["--window", "0.5", "--json"], []])
def test_output_into_a_closed_pipe_is_no_traceback(tiny, extra):
    """`seqvision classify C f.mp4 --json | head -c 100` and `classify --window ... --json | head -3` ended in a
    BrokenPipeError traceback (a new-user trial). main follows Python's recipe: stdout to devnull, exit 1, quiet."""
    proc = _run_into_closed_pipe("classify", "--checkpoint", tiny["classify"], *tiny["videos"][:2], *extra)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr


@pytest.mark.skipif(shutil.which("ffprobe") is None, reason="needs the ffprobe CLI (the frame-count oracle)")
def test_classify_with_a_frame_labeller_says_which_frames_it_labels(tiny):
    """A frames model labels the data.num_frames frames its sampler picks, not every frame: the output gave 4
    labels without saying of which frames, and the text output was a KeyError traceback. Now `frames` (0-based
    frame indices, one per label) in --json and `index: label` pairs in text; the indices are the uniform
    sampler's picks for the frame count ffprobe decodes."""
    videos = tiny["videos"][:2]
    proc = run("classify", "--checkpoint", tiny["frames"], *videos, "--json")
    results = json.loads(proc.stdout)["results"]
    text = run("classify", "--checkpoint", tiny["frames"], *videos).stdout.splitlines()
    for video, r, line in zip(videos, results, text):
        count = int(subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
                                    "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", str(video)],
                                   capture_output=True, text=True, check=True).stdout)
        picked = sample_indices(count, sampler="uniform", num_frames=4)  # tiny_checkpoints: data.num_frames=4
        assert r["frames"] == picked.indices[:picked.length] and len(r["frame_labels"]) == len(r["frames"])
        assert line == f"{video} (frame: label): " + ", ".join(
            f"{i}: {label}" for i, label in zip(r["frames"], r["frame_labels"]))
