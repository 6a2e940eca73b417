"""Online inference speed (`seqvision stream`): frames/s and per-frame latency split into decode, CNN and RNN for
the demo's classifier at the demo's frame size, beside bare PyTorch doing the same per-frame work in the same
process; optionally a live 25 fps MPEG-TS stream over UDP on 127.0.0.1 (dropped frames, end-to-end latency).

The demo classifier is configs/synthetic_classify.yaml (EfficientNet-Lite0 with its shipped ImageNet weights,
2x2 grid pooling, 96 px frames, an LSTM of 128 with attention pooling, stepped online with a running softmax).
Weights do not change the speed, so the sequence model is freshly initialised (no training needed).

    seqvision bench stream                  # 250 frames of a 64x64 25 fps video, 1 thread
    seqvision bench stream --live           # also a real-time UDP stream at 25 fps
    seqvision bench stream --smoke          # tiny (test suite)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import tempfile
import threading
import time
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import torch

from seqvision.config import load_config
from seqvision.features import build_encoder
from seqvision.models import build_model
from seqvision.stream import FrameSource, OnlinePredictor, run_stream
from seqvision.tasks import Labels, build_task

ROOT = Path(__file__).resolve().parents[1]


def make_video(path: Path, *, frames: int, size: int, fps: int = 25) -> Path:
    """H.264 in MPEG-TS (the format of live streams), a moving square on a gradient."""
    with av.open(str(path), "w", format="mpegts") as out:
        st = out.add_stream("libx264", rate=fps, options={"preset": "veryfast", "g": "25"})
        st.width = st.height = size
        st.pix_fmt = "yuv420p"
        st.time_base = Fraction(1, fps)
        yy, xx = np.mgrid[0:size, 0:size]
        for i in range(frames):
            img = np.zeros((size, size, 3), np.uint8)
            img[..., 0] = (xx * 3 + i * 5) % 256
            img[..., 1] = (yy * 2) % 256
            s = size // 4
            x0 = (i * 2) % (size - s)
            img[size // 3:size // 3 + s, x0:x0 + s] = 255
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            for pkt in st.encode(frame):
                out.mux(pkt)
        for pkt in st.encode():
            out.mux(pkt)
    return path


def build(config: str, overrides: list[str]):
    cfg = load_config(config, overrides=overrides)
    encoder = build_encoder(cfg.encoder).eval()
    labels = [f"class{i}" for i in range(6)]
    model = build_model(cfg.model, input_dim=encoder.dim, num_classes=len(labels)).eval()
    loaded = SimpleNamespace(model=model, encoder=encoder, config=cfg, label_names=labels, frame_label_names=[],
                             task=build_task(cfg.model.task, Labels(label_names=labels)))
    return cfg, loaded


@torch.inference_mode()
def bare_pytorch(loaded, frames: list[np.ndarray], reps: int) -> dict:
    """The same per-frame work written directly in PyTorch: normalise, CNN trunk, pooling, one LSTM step, the
    attention-pooled classifier. ``frames``: RGB (H, W, 3) uint8 at the model size (decoding not timed)."""
    enc, model = loaded.encoder, loaded.model
    mean, std = torch.tensor(enc.mean).view(1, 3, 1, 1), torch.tensor(enc.std).view(1, 3, 1, 1)
    times = []
    cpu0 = time.process_time()
    for _ in range(reps):
        state = None
        for f in frames:
            t0 = time.perf_counter()
            x = (torch.from_numpy(f).permute(2, 0, 1)[None].float() / 255 - mean) / std  # (1, 3, H, W)
            feats = enc._pool(enc.trunk(x.contiguous(memory_format=torch.channels_last)))  # (1, D)
            _, state = model.step(feats, state)
            times.append((time.perf_counter() - t0) * 1e3)
    cpu = (time.process_time() - cpu0) * 1e3 / len(times)
    return {"mean": statistics.fmean(times), "p50": statistics.median(times), "cpu": cpu}


def udp_sender(url: str, video: Path, fps: int, stop: threading.Event) -> None:
    """Re-send the packets of ``video`` over UDP at ``fps`` frames per second (real time)."""
    time.sleep(1.0)
    with av.open(str(video)) as src, av.open(url, "w", format="mpegts") as out:
        ist = src.streams.video[0]
        ost = out.add_stream_from_template(ist)
        t0 = time.perf_counter()
        n = 0
        for pkt in src.demux(ist):
            if stop.is_set():
                break
            if pkt.dts is None:
                continue
            pkt.stream = ost
            out.mux(pkt)
            n += 1
            time.sleep(max(0.0, t0 + n / fps - time.perf_counter()))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="stream", description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "synthetic_classify.yaml"))
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--frames", type=int, default=250, help="frames of the test video (25 fps)")
    ap.add_argument("--video-size", type=int, default=64, help="the demo's videos are 64x64")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: batch-1 inference of a small CNN gains little from more, and nothing on a busy machine)")
    ap.add_argument("--micro-batch", type=int, default=1)
    ap.add_argument("--live", action="store_true", help="also stream the video over UDP at 25 fps in real time")
    ap.add_argument("--smoke", action="store_true", help="a few frames with a tiny random CNN (test suite)")
    ap.add_argument("--out", default="bench_out/stream")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    overrides = list(args.overrides)
    if args.smoke:
        args.frames = min(args.frames, 12)
        overrides += ["encoder.name=resnet18", "encoder.weights=none", "data.size=32", "model.hidden=8"]
    cfg, loaded = build(args.config, overrides)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        video = make_video(Path(tmp) / "bench.ts", frames=args.frames, size=args.video_size)
        pred = OnlinePredictor(loaded, top_k=3)
        run_stream(FrameSource(video), pred, max_frames=5)  # warm-up (allocator, oneDNN kernels)
        pred.reset()
        cpu0 = time.process_time()  # CPU seconds of this process (all threads): robust to other load
        summary, _ = run_stream(FrameSource(video), pred, micro_batch=args.micro_batch, queue_size=2,
                                keep_results=False)
        cpu_per_frame = (time.process_time() - cpu0) * 1e3 / max(1, summary.processed)
        lat = summary.latency_ms
        compute = {k: lat[k]["mean"] for k in ("decode", "cnn", "rnn")}
        per_frame = sum(compute.values())
        with av.open(str(video)) as c:
            size = cfg.data.size
            frames = [f.to_ndarray(width=size, height=size, format="rgb24") for f in c.decode(video=0)]
        bare = bare_pytorch(loaded, frames, reps=1 if args.smoke else 2)
        payload = {
            "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
                       f"{args.threads} threads",
            "model": f"{cfg.encoder.name} ({cfg.encoder.weights}) {cfg.encoder.pooling} @ {cfg.data.size} px, "
                     f"{cfg.model.cell} {cfg.model.hidden}, head {cfg.model.head}",
            "file": {"frames": summary.processed, "frames_per_s": summary.fps,
                     "latency_ms": lat, "per_frame_ms": round(per_frame, 3),
                     "bare_pytorch_ms": round(bare["mean"], 3),
                     "cpu_ms_per_frame": round(cpu_per_frame, 3), "bare_pytorch_cpu_ms": round(bare["cpu"], 3),
                     "load_average_1min": round(os.getloadavg()[0], 2),
                     "overhead_ratio": round((compute["cnn"] + compute["rnn"]) / bare["mean"], 3)},
        }
        if args.live:
            port = _free_port()
            stop = threading.Event()
            sender = threading.Thread(target=udp_sender, args=(f"udp://127.0.0.1:{port}?pkt_size=1316", video, 25,
                                                               stop), daemon=True)
            pred.reset()
            sender.start()
            live, _ = run_stream(FrameSource(f"udp://127.0.0.1:{port}", timeout=3.0, reconnects=0), pred,
                                 keep_results=False)
            stop.set()
            payload["live_udp_25fps"] = {"frames": live.processed, "dropped": live.dropped,
                                         "latency_ms": live.latency_ms, "end": live.end_reason}
    (out_dir / "results.json").write_text(json.dumps(payload, indent=2))
    f = payload["file"]
    print(f"{payload['model']}; {payload['machine']}")
    print(f"{'part':<8} {'mean ms':>8} {'p50':>8} {'p95':>8}")
    for k in ("decode", "cnn", "rnn"):
        print(f"{k:<8} {lat[k]['mean']:>8.2f} {lat[k]['p50']:>8.2f} {lat[k]['p95']:>8.2f}")
    print(f"per frame {f['per_frame_ms']:.2f} ms (decode + CNN + RNN) -> {1000 / f['per_frame_ms']:.0f} frames/s of "
          f"compute; the run: {f['frames_per_s']} frames/s; bare PyTorch CNN+RNN {f['bare_pytorch_ms']:.2f} ms "
          f"(ours / bare = {f['overhead_ratio']:.2f})")
    print(f"CPU time per frame, whole pipeline (decode thread included): {f['cpu_ms_per_frame']:.2f} ms; bare "
          f"PyTorch CNN+RNN {f['bare_pytorch_cpu_ms']:.2f} ms (wall times above are inflated when the machine is "
          f"busy: load average {f['load_average_1min']})")
    if args.live:
        lv = payload["live_udp_25fps"]
        print(f"live UDP 25 fps: {lv['frames']} frames, {lv['dropped']} dropped, end-to-end latency p50 "
              f"{lv['latency_ms']['total']['p50']:.1f} ms, p95 {lv['latency_ms']['total']['p95']:.1f} ms")
    print(f"wrote {out_dir / 'results.json'}")
    return 0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    raise SystemExit(main())
