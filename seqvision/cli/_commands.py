"""Subcommand implementations. Each one parses nothing itself: it turns arguments into library calls."""

from __future__ import annotations

import importlib.util
import json
import platform
import shutil
import sys
from pathlib import Path

from ..config import check_paths, load_config
from ..errors import ConfigError, SeqVisionError

VIDEO_EXTENSIONS = {".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp"}


def _err(msg: str) -> None:
    print(msg, file=sys.stderr)


def _config(args):
    cfg = load_config(args.config, overrides=args.overrides)
    if getattr(args, "device", None):
        cfg.train.device = args.device
    return cfg


# ---------------------------------------------------------------------------------------------------------------


def cmd_synth(args) -> int:
    from ..data import make_synthetic_dataset

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
    from ..features import extract_features

    cfg = _config(args)
    check_paths(cfg)
    summary = extract_features(cfg, splits=args.split)
    print(summary)
    return 1 if getattr(summary, "failed", 0) else 0


def cmd_train(args) -> int:
    from ..train import train

    cfg = _config(args)
    check_paths(cfg)
    result = train(cfg, resume=args.resume, progress=cfg.train.progress)
    import os

    if os.environ.get("RANK", "0") == "0":  # under torchrun, one summary, not one per rank
        print(result)
    return 0


def cmd_eval(args) -> int:
    from ..train import evaluate

    result = evaluate(args.checkpoint, split=args.split, cfg_overrides=args.overrides, out=args.out,
                      progress=not args.json)
    if args.json:
        print(json.dumps(result.get("metrics", result), default=float))
    else:
        print(result.get("table", json.dumps(result.get("metrics", {}), indent=2, default=float)))
    return 0


def collect_videos(inputs: list[str]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Expand files and folders (recursively, by video extension); missing paths are reported, not fatal."""
    found: list[Path] = []
    missing: list[tuple[str, str]] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            vids = sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in VIDEO_EXTENSIONS)
            if not vids:
                missing.append((item, "folder holds no video files (" + ", ".join(sorted(VIDEO_EXTENSIONS)) + ")"))
            found.extend(vids)
        elif p.is_file():
            found.append(p)
        else:
            missing.append((item, "no such file or folder"))
    return found, missing


def cmd_predict(args) -> int:
    from ._predict import predict_videos

    videos, problems = collect_videos(args.inputs)
    if getattr(args, "window", None):  # long untrimmed videos, window by window (seqvision.stream)
        from ._stream import window_command

        return window_command(args, videos, problems)
    opts = {"top_k": args.top_k} if args.mode == "classify" else {"beam_size": args.beam_size}
    results, failed = predict_videos(args.checkpoint, videos, mode=args.mode, device=args.device,
                                     batch_size=args.batch_size, progress=not args.json, **opts)
    failed = problems + failed
    if args.json:
        out = {"results": results, "errors": [{"path": p, "error": e} for p, e in failed]}
        print(json.dumps(out))
    else:
        for r in results:
            if args.mode == "classify":
                preds = ", ".join(f"{p['label']} {p['probability']:.3f}" for p in r["top_k"])
                print(f"{r['path']}: {preds}")
            else:
                print(f"{r['path']}: {r['caption']}")
        for p, e in failed:
            print(f"{p}: FAILED: {e}")
        if failed:
            _err(f"{len(failed)} of {len(failed) + len(results)} inputs failed")
    return 1 if failed else 0


def cmd_inspect(args) -> int:
    from ._predict import inspect_video

    written = inspect_video(args.checkpoint, args.video, out=args.out)
    for path in written:
        print(path)
    return 0


def cmd_stream(args) -> int:
    from ._stream import stream_command

    return stream_command(args)


def cmd_export(args) -> int:
    from ._stream import export_command

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


def _version(mod: str) -> str:
    try:
        m = __import__(mod)
        return getattr(m, "__version__", "installed")
    except Exception as exc:  # optional dependency missing or broken
        return f"not available ({type(exc).__name__})"


def cmd_info(args) -> int:
    import torch

    from .. import __version__

    print(f"seqvision   {__version__}")
    print(f"python      {platform.python_version()} ({platform.machine()}, {platform.system()})")
    for mod in ("torch", "torchvision", "av", "decord", "einops", "numpy", "torchcodec"):
        print(f"{mod:<11} {_version(mod)}")
    try:
        import av

        print(f"ffmpeg      libavcodec {av.library_versions.get('libavcodec')}")
    except Exception:
        pass
    backends = ["pyav"] + (["decord"] if not _version("decord").startswith("not") else [])
    print(f"backends    {', '.join(backends)}")
    cuda = torch.cuda.is_available()
    print(f"device      {'cuda: ' + torch.cuda.get_device_name(0) if cuda else 'cpu'} "
          f"({torch.get_num_threads()} CPU threads)")
    print(f"java        {'found (METEOR and the PTB tokenizer available)' if shutil.which('java') else 'not found (METEOR skipped)'}")
    try:
        from ..features import list_encoders

        print(f"encoders    {len(list_encoders())} (torchvision) + efficientnet_lite0 (offline ImageNet weights)")
    except Exception:
        pass
    return 0


def cmd_demo(args) -> int:
    import os

    from ._demo import run_demo

    small = args.small or os.environ.get("SEQVISION_DEMO_SMALL", "") not in ("", "0")
    report = run_demo(args.out, small=small, device=args.device)
    return 0 if report.get("ok", True) else 1


__all__ = ["cmd_synth", "cmd_extract", "cmd_train", "cmd_eval", "cmd_predict", "cmd_inspect", "cmd_stream", "cmd_export", "cmd_bench",
           "cmd_info", "cmd_demo", "collect_videos", "SeqVisionError"]
