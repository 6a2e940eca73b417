"""Pipeline benchmark: each stage of feature extraction alone (decode with 0..N workers, the CNN on frames in
memory, the bare torchvision model) and the whole pipeline, side by side in one process, so the bottleneck is
visible; plus encoder options and training on cached features vs decoded video.

    python benchmarks/pipeline.py --quick            # or: seqvision bench pipeline --quick
    python benchmarks/pipeline.py --videos 48 --size 224 --models resnet18 mobilenet_v3_large --workers 0 1 2

Goals (issue 16): the pipeline >= 0.8 x its slowest stage alone (decode with the most workers, or the CNN);
decode frames/s >= 0.7 x linear in workers up to the core count; on a 2-core CPU extraction >= 0.9 x the CNN
alone. Rounds are interleaved (every stage once per round, best of the rounds), so a busy machine slows all
contenders alike; the load average is printed and saved with the figures. Writes ``results.json`` and
``pipeline.png`` to ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from seqvision.config import config_from_dict  # noqa: E402
from seqvision.data import VideoDataset, collate, load_index, make_synthetic_dataset  # noqa: E402
from seqvision.features import FeatureDataset, FrameEncoder, extract_features  # noqa: E402
from seqvision.features._extract import chunk_frames, decode_loader, device_resize  # noqa: E402
from seqvision.runtime import select_device  # noqa: E402


def _cfg(root: Path, out: Path, *, name: str, workers: int, size: int, frames: int, cache: Path,
         resize_on: str = "auto", compile: bool = False):
    return config_from_dict({
        "data": {"format": "manifest", "root": str(root), "num_frames": frames, "size": size,
                 "num_workers": workers, "cache_dir": str(cache)},
        "encoder": {"name": name, "weights": "none", "resize_on": resize_on, "compile": compile},
        "train": {"device": "cpu" if not torch.cuda.is_available() else "cuda", "batch_size": 8},
        "out": str(out), "seed": 0,
    })


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _time_decode(cfg, records, device, chunk: int, *, min_frames: int = 4096) -> float:
    """Frames/s of the extraction's decode stage alone (its DataLoader, workers and collate; no CNN).

    The records are repeated to at least ``min_frames`` frames, so the workers' start-up (forking the process)
    does not dominate on a small dataset that a fast decoder finishes in a fraction of a second.
    """
    repeat = max(1, -(-min_frames // max(1, len(records) * cfg.data.num_frames)))
    loader, _ = decode_loader(cfg, list(records) * repeat, device, chunk=chunk)
    frames, t0 = 0, time.perf_counter()
    for batch in loader:
        frames += sum(int(r.shape[0]) for r in batch["runs"])
    return frames / (time.perf_counter() - t0)


def _frames_in_memory(cfg, records, chunk: int) -> list[torch.Tensor]:
    """The clips' frames at the CNN's input size, in chunks of ``chunk``: ``[(N, C, H, W) uint8]``."""
    ds = VideoDataset.from_config(dataclasses.replace(cfg.data, on_error="skip"), records, train=False)
    frames = torch.cat([s["video"] for s in (ds[i] for i in range(len(ds))) if "video" in s])  # (N, C, H, W)
    return list(frames.split(chunk))


def _time_cnn(fn, chunks, device, *, mode: str = "inference", bf16: bool = False) -> float:
    """Frames/s of ``fn`` (frames -> features) over in-memory uint8 chunks already on ``device``."""
    ctx_mode = {"inference": torch.inference_mode, "no_grad": torch.no_grad}[mode]
    amp = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
    with ctx_mode(), amp():  # warm-up at the timed shapes (oneDNN / cuDNN pick kernels per shape)
        for c in {tuple(c.shape): c for c in chunks}.values():
            fn(c)
    _sync(device)
    t0 = time.perf_counter()
    with ctx_mode(), amp():
        for c in chunks:
            fn(c)
    _sync(device)
    return sum(int(c.shape[0]) for c in chunks) / (time.perf_counter() - t0)


def _bare_model(name: str, device, mean, std):
    """The plain torchvision classifier (the speed oracle): same frames, normalised the same way."""
    model = torchvision.models.get_model(name, weights=None).eval().to(device, memory_format=torch.channels_last)
    m = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=device).view(1, 3, 1, 1)

    def run(x):
        x = ((x.float() / 255 - m) / s).contiguous(memory_format=torch.channels_last)
        if device.type == "cuda":
            with torch.autocast("cuda", dtype=torch.bfloat16):
                return model(x)
        return model(x)
    return run


def _train_throughput(loader, encoder, device, *, epochs: int = 1) -> float:
    """Clips/s of a small LSTM classifier (forward + backward + step) fed by ``loader``."""
    model = None
    opt = None
    clips, t0 = 0, time.perf_counter()
    for _ in range(epochs):
        for batch in loader:
            if batch.get("empty"):
                continue
            if "features" in batch:
                x = batch["features"].to(device)  # (B, T, D)
            else:
                x = encoder(batch["video"].to(device))  # (B, T, D)
            if model is None:
                model = torch.nn.ModuleDict({"rnn": torch.nn.LSTM(x.shape[-1], 128, batch_first=True),
                                             "head": torch.nn.Linear(128, 8)}).to(device)
                opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
            out, _ = model["rnn"](x)  # (B, T, 128)
            idx = (batch["lengths"].to(device) - 1).clamp(min=0)
            last = out[torch.arange(out.shape[0], device=device), idx]  # (B, 128)
            loss = torch.nn.functional.cross_entropy(model["head"](last), batch["label"].to(device).clamp(min=0) % 8)
            opt.zero_grad()
            loss.backward()
            opt.step()
            clips += x.shape[0]
    return clips / (time.perf_counter() - t0)


def _load() -> str:
    try:
        return "/".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "?"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="seqvision bench pipeline", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="8 videos, 2 rounds, no encoder options, 1 training epoch")
    ap.add_argument("--out", default="bench_out/pipeline")
    ap.add_argument("--videos", type=int, default=0, help="synthetic videos (default 48, --quick 8)")
    ap.add_argument("--size", type=int, default=112, help="CNN input size (data.size, square)")
    ap.add_argument("--native", type=int, default=0, help="the videos' own size (default = --size)")
    ap.add_argument("--frames", type=int, default=16, help="frames per clip")
    ap.add_argument("--models", nargs="+", default=["resnet18", "mobilenet_v3_large"])
    ap.add_argument("--workers", nargs="+", type=int, default=None,
                    help="DataLoader worker counts (default 0 1 2 .. cores; --quick: 0 and 2)")
    ap.add_argument("--rounds", type=int, default=0, help="interleaved rounds (default 3, --quick 2)")
    ap.add_argument("--resize-on", default="auto", choices=["auto", "decoder", "device"],
                    help="encoder.resize_on for the pipeline (device: resize native frames on the CNN's device)")
    ap.add_argument("--compile", action="store_true", help="encoder.compile (torch.compile the CNN)")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)

    device = select_device(args.device)
    cores = os.cpu_count() or 1
    n_videos = args.videos or (8 if args.quick else 48)
    rounds = args.rounds or (2 if args.quick else 3)
    workers_list = args.workers or ([0, 2] if args.quick else sorted({0, 1, 2, *range(4, cores + 1, 4), cores}))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    load_start = _load()
    results: dict = {"device": str(device), "threads": torch.get_num_threads(), "cores": cores, "videos": n_videos,
                     "size": args.size, "native": args.native or args.size, "frames": args.frames,
                     "resize_on": args.resize_on, "compile": args.compile, "torch": torch.__version__,
                     "rounds": rounds, "load_avg_start": load_start, "stages": [], "encoder_options": [],
                     "training": {}}
    rows = []

    with tempfile.TemporaryDirectory(prefix="seqvision-bench-") as tmp:
        tmp = Path(tmp)
        make_synthetic_dataset(tmp / "data", num_videos=n_videos, size=max(32, (args.native or args.size) // 2 * 2),
                               min_frames=args.frames + 8, max_frames=args.frames + 24, progress=False)
        for name in args.models:
            def cfg_for(w, cache, resize_on=args.resize_on):
                return _cfg(tmp / "data", tmp / "run", name=name, workers=w, size=args.size, frames=args.frames,
                            cache=cache, resize_on=resize_on, compile=args.compile)

            base = cfg_for(0, tmp / "cache0", resize_on="decoder")
            records = load_index(base.data, seed=0).records
            chunk = chunk_frames(device, base.encoder)
            chunks = [c.to(device) for c in _frames_in_memory(base, records, chunk)]
            enc = FrameEncoder(name, seed=0, chunk_size=chunk).to(device).eval()
            if args.compile:
                enc.trunk.compile()
            bare = _bare_model(name, device, enc.mean, enc.std)
            contenders = {"CNN alone (FrameEncoder)": lambda x: enc(x),
                          "bare torchvision model": bare}
            if args.resize_on == "device" or (args.resize_on == "auto" and device.type == "cuda"):
                native = [c.to(device) for c in _frames_in_memory(cfg_for(0, tmp / "n", "device"), records, chunk)]
                contenders["device resize + CNN"] = None  # timed on native frames below
            best: dict[str, float] = {}

            def keep(label, fps):
                best[label] = max(best.get(label, 0.0), fps)

            for r in range(rounds):  # interleaved: every stage once per round; best of the rounds
                for label, fn in contenders.items():
                    if fn is None:
                        keep(label, _time_cnn(lambda x: enc(device_resize(x, size=args.size)), native, device))
                    else:
                        keep(label, _time_cnn(fn, chunks, device))
                for w in workers_list:
                    keep(f"decode w={w}", _time_decode(cfg_for(w, tmp / "unused"), records, device, chunk,
                                                       min_frames=512 if args.quick else 4096))
                    s = extract_features(cfg_for(w, tmp / f"cache-{name}-{w}-{r}"), progress=False,
                                         device=str(device))
                    keep(f"pipeline w={w}", s.frames_per_s)
            cnn = best["CNN alone (FrameEncoder)"]
            one = best.get("decode w=1")
            entry = {"model": name, "fps": best, "cnn_alone_fps": cnn, "pipeline": {}, "decode_scaling": {}}
            rows.append((name, "CNN alone (FrameEncoder)", f"{cnn:9.1f} frames/s", ""))
            rows.append((name, "bare torchvision model", f"{best['bare torchvision model']:9.1f} frames/s",
                         f"FrameEncoder = {cnn / best['bare torchvision model']:.2f} x bare"))
            if "device resize + CNN" in best:
                rows.append((name, "device resize + CNN", f"{best['device resize + CNN']:9.1f} frames/s",
                             f"{best['device resize + CNN'] / cnn:.2f} x CNN alone"))
            for w in workers_list:
                d = best[f"decode w={w}"]
                lin = f"{d / (w * one):.2f} x linear (w=1 x {w})" if one and w >= 1 else ""
                entry["decode_scaling"][w] = d / (w * one) if one and w >= 1 else None
                rows.append((name, f"decode alone, workers={w}", f"{d:9.1f} frames/s", lin))
            for w in workers_list:
                p = best[f"pipeline w={w}"]
                slowest = min(cnn, best[f"decode w={w}"])
                entry["pipeline"][w] = {"fps": p, "vs_cnn": p / cnn, "vs_slowest": p / slowest}
                rows.append((name, f"pipeline, workers={w}", f"{p:9.1f} frames/s",
                             f"{p / cnn:.2f} x CNN alone, {p / slowest:.2f} x slowest stage"))
            results["stages"].append(entry)

            if not args.quick and name == args.models[0]:
                _encoder_options(name, chunks, chunk, device, rounds, results, rows)

        # Training throughput: cached features vs decoded video through the frozen encoder.
        name = args.models[0]
        w = max(workers_list)
        cfg = _cfg(tmp / "data", tmp / "run", name=name, workers=w, size=args.size, frames=args.frames,
                   cache=tmp / f"cache-{name}-{w}-0", resize_on=args.resize_on)
        index = load_index(cfg.data, seed=0)
        from torch.utils.data import DataLoader

        feat_loader = DataLoader(FeatureDataset(cfg, "train"), batch_size=8, shuffle=True, collate_fn=collate)
        video_ds = VideoDataset.from_config(cfg.data, index.split("train"), train=True)
        video_loader = DataLoader(video_ds, batch_size=8, shuffle=True, num_workers=w, collate_fn=collate)
        enc = FrameEncoder(name, seed=0).to(device).eval()
        f_cps = _train_throughput(feat_loader, None, device, epochs=2 if args.quick else 5)
        v_cps = _train_throughput(video_loader, enc, device, epochs=1)
        results["training"] = {"model": name, "features_clips_per_s": f_cps, "video_clips_per_s": v_cps,
                               "speedup": f_cps / v_cps}
        rows.append(("train LSTM", "cached features", f"{f_cps:9.1f} clips/s", f"{f_cps / v_cps:.1f} x video"))
        rows.append(("train LSTM", f"decoded video + {name}", f"{v_cps:9.1f} clips/s", "1.0 x"))

    results["load_avg_end"] = _load()
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    print(f"pipeline benchmark on {device} ({torch.get_num_threads()} threads, {cores} cores), {n_videos} videos, "
          f"{args.frames} frames at {args.size}px (native {args.native or args.size}px), resize_on={args.resize_on}"
          f"{', compiled' if args.compile else ''}; best of {rounds} interleaved rounds; "
          f"load average {load_start} -> {results['load_avg_end']}")
    for r in rows:
        print("  ".join(c.ljust(wd) for c, wd in zip(r, widths)))
    (out / "results.json").write_text(json.dumps(results, indent=1))
    _plot(results, out / "pipeline.png")
    print(f"wrote {out / 'results.json'} and {out / 'pipeline.png'}")
    return 0


def _encoder_options(name, chunks, chunk, device, rounds, results, rows) -> None:
    """Encoder variants on the same in-memory frames (the first model only)."""
    variants = [("default (channels_last, inference_mode)", dict(channels_last=True), {}),
                ("contiguous NCHW", dict(channels_last=False), {}),
                ("no_grad instead of inference_mode", dict(channels_last=True), {"mode": "no_grad"})]
    if device.type == "cpu":
        variants.append(("bf16 autocast (CPU)", dict(channels_last=True), {"bf16": True}))
    else:
        variants.append(("AMP off (fp32 on CUDA)", dict(channels_last=True, amp=False), {}))
    encs = [(label, FrameEncoder(name, seed=0, chunk_size=chunk, **kw).to(device).eval(), tkw)
            for label, kw, tkw in variants]
    best: dict[str, float] = {}
    for _ in range(rounds):
        for label, e, tkw in encs:
            if best.get(label, 0.0) < 0:
                continue
            try:
                best[label] = max(best.get(label, 0.0), _time_cnn(e._encode, chunks, device, **tkw))
            except RuntimeError as exc:  # e.g. no bf16 kernels on this CPU
                best[label] = -1.0
                rows.append((f"encoder {name}", label, "unsupported", str(exc)[:40]))
    ref = best[encs[0][0]]
    for label, _, _ in encs:
        fps = best[label]
        if fps < 0:
            continue
        results["encoder_options"].append({"model": name, "variant": label, "fps": fps, "vs_default": fps / ref})
        rows.append((f"encoder {name}", label, f"{fps:9.1f} frames/s", f"{fps / ref:.2f} x default"))


def _plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.28 * sum(len(e["fps"]) for e in results["stages"])))
    labels, values, colors = [], [], []
    for e in results["stages"]:
        for label, fps in e["fps"].items():
            labels.append(f"{e['model']}: {label}")
            values.append(fps)
            colors.append("tab:green" if label.startswith("pipeline") else
                          "tab:orange" if label.startswith("decode") else "tab:blue")
    ax.barh(labels, values, color=colors)
    ax.invert_yaxis()
    ax.set_xscale("log")  # decoding small frames is 10-100x faster than a CNN on CPU
    ax.set_xlabel("frames / s (log)")
    ax.set_title(f"stages alone (blue: CNN, orange: decode) and the pipeline (green), {results['device']}, "
                 f"{results['size']} px", fontsize=9)
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
