"""Decode benchmark: clips/s of seqvision.io.VideoReader (pyav, decord) side by side with the peers.

    python benchmarks/decode.py [--quick] [--out bench_out/decode] [--reps N]
    seqvision bench decode --quick

Generates test videos (320x240 like UCF101 with GOP 60, the same as MPEG-4/AVI, 1280x720, a long-GOP 250
clip, a 60 s clip), then for uniform 16-frame sampling and dense 32-frame clips times, per clip (open + decode,
as a dataset does), every contender:
  ours-pyav, ours-decord           seqvision.io.VideoReader(backend=...).get_frames
  decord                           decord.VideoReader(...).get_batch(indices)
  pyav-all                         plain PyAV: decode every frame in order, convert the wanted ones
  torchcodec                       torchcodec VideoDecoder(seek_mode="exact").get_frames_at (when importable)
Each contender's frames are checked in the same run against a reference full decode (a 16x16 luma thumbnail of
every frame; a returned frame must be nearest to the thumbnail of the frame asked for). The table shows median
clips/s and whether the contender was exact; JSON and a PNG bar chart go to --out.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from seqvision.io import VideoReader, sample_indices  # noqa: E402

# name -> (width, height, seconds, gop, codec, suffix)
VIDEOS = {
    "320x240_10s_gop60": (320, 240, 10, 60, "h264", ".mp4"),
    "320x240_10s_gop60_mpeg4avi": (320, 240, 10, 60, "mpeg4", ".avi"),
    "1280x720_10s_gop60": (1280, 720, 10, 60, "h264", ".mp4"),
    "320x240_10s_gop250": (320, 240, 10, 250, "h264", ".mp4"),
    "320x240_60s_gop250": (320, 240, 60, 250, "h264", ".mp4"),
}
QUICK_VIDEOS = {
    "320x240_10s_gop60": (320, 240, 10, 60, "h264", ".mp4"),
    "320x240_10s_gop60_mpeg4avi": (320, 240, 10, 60, "mpeg4", ".avi"),
    "1280x720_4s_gop60": (1280, 720, 4, 60, "h264", ".mp4"),
    "320x240_10s_gop250": (320, 240, 10, 250, "h264", ".mp4"),
}
SMOKE_VIDEOS = {  # the test suite's run: one tiny video, to keep the script working (not to measure)
    "160x120_2s_gop25": (160, 120, 2, 25, "h264", ".mp4"),
}
FPS = 25


def make_video(path: Path, width: int, height: int, seconds: float, gop: int, codec: str) -> Path:
    """Moving textured content (a translating noise texture, a gradient, a moving square), encoded for real."""
    if path.exists():
        return path
    rng = np.random.default_rng(0)
    tex = rng.integers(0, 256, size=(height // 4 + 8, width // 4 + 8, 3), dtype=np.uint8)
    tex = np.kron(tex, np.ones((4, 4, 1), dtype=np.uint8))  # 4x4 blocks: texture the encoder must code
    yy, xx = np.mgrid[0:height, 0:width]
    tmp = path.with_suffix(".tmp" + path.suffix)
    with av.open(str(tmp), "w") as c:
        if codec == "h264":
            s = c.add_stream("libx264", rate=FPS, options={"preset": "veryfast", "crf": "23", "g": str(gop),
                                                           "keyint_min": str(gop), "sc_threshold": "0", "bf": "3"})
        else:
            s = c.add_stream("mpeg4", rate=FPS, options={"g": str(gop), "bf": "2", "qscale": "4"})
            s.codec_context.bit_rate = 1_500_000
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        s.codec_context.time_base = Fraction(1, FPS)
        for i in range(int(seconds * FPS)):
            ox, oy = (i * 2) % 16, (i // 3) % 8
            img = tex[oy : oy + height, ox : ox + width].copy()
            img[..., 0] = (img[..., 0] // 2 + ((xx + i * 3) % 256) // 2).astype(np.uint8)
            side = min(width, height) // 4
            x0, y0 = (i * 5) % (width - side), (i * 3) % (height - side)
            img[y0 : y0 + side, x0 : x0 + side] = (250, 240, 20)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    tmp.rename(path)
    return path


def _thumb(rgb: np.ndarray) -> np.ndarray:
    """16x16 mean luma of an (H, W, 3) frame, float32 (256,)."""
    h, w = rgb.shape[:2]
    luma = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)  # (H, W)
    luma = luma[: h - h % 16, : w - w % 16]
    return luma.reshape(16, luma.shape[0] // 16, 16, luma.shape[1] // 16).mean(axis=(1, 3)).ravel()


def reference_thumbs(path: Path) -> np.ndarray:
    """Thumbnails of every frame in presentation order from a plain sequential PyAV decode: (N, 256)."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        return np.stack([_thumb(f.to_ndarray(format="rgb24")) for f in c.decode(s)])


def exact(frames_nhwc: np.ndarray, indices: list[int], ref: np.ndarray) -> bool:
    """Every returned frame is nearest (in thumbnail distance) to the reference frame asked for."""
    for f, i in zip(frames_nhwc, indices):
        d = np.abs(ref - _thumb(f)[None]).mean(axis=1)  # (N,)
        if d[i] > d.min() + 1e-6 or d[i] > 4.0:
            return False
    return True


# -- contenders: each returns (T, H, W, 3) uint8 numpy for a path and indices ------------------------------
def ours(backend):
    def run(path, indices):
        with VideoReader(path, backend=backend, dimension_order="NHWC") as vr:
            return vr.get_frames(indices).numpy()
    return run


def decord_batch(path, indices):
    import decord

    vr = decord.VideoReader(str(path), ctx=decord.cpu(0))
    out = vr.get_batch(indices).asnumpy()
    del vr
    return out


def pyav_all(path, indices):
    wanted = {}
    for j, i in enumerate(indices):
        wanted.setdefault(i, []).append(j)
    last = max(indices)
    out = [None] * len(indices)
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        for n, frame in enumerate(c.decode(s)):
            if n in wanted:
                arr = frame.to_ndarray(format="rgb24")
                for j in wanted[n]:
                    out[j] = arr
            if n >= last:
                break
    return np.stack(out)


def torchcodec_exact(path, indices):
    from torchcodec.decoders import VideoDecoder

    dec = VideoDecoder(str(path), seek_mode="exact", dimension_order="NHWC")
    return dec.get_frames_at(indices).data.numpy()


def contenders() -> dict:
    out = {"ours-pyav": ours("pyav")}
    notes = {}
    try:
        import decord  # noqa: F401

        out["ours-decord"] = ours("decord")
        out["decord"] = decord_batch
    except Exception as exc:
        notes["decord"] = f"skipped: {type(exc).__name__}"
    out["pyav-all"] = pyav_all
    try:
        import torchcodec.decoders  # noqa: F401

        out["torchcodec"] = torchcodec_exact
    except Exception as exc:
        notes["torchcodec"] = f"skipped: not importable ({type(exc).__name__}: {str(exc).splitlines()[0][:80]})"
    notes["torchvision"] = "skipped: torchvision 0.2x has no video decoding API (moved to torchcodec)"
    return out, notes


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="decode", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer, shorter videos and repetitions")
    ap.add_argument("--smoke", action="store_true", help="one tiny video, one repetition (for the test suite)")
    ap.add_argument("--out", default="bench_out/decode", help="folder for results.json and decode.png")
    ap.add_argument("--reps", type=int, default=0, help="clips per contender and case (default 9, quick 5)")
    ap.add_argument("--only", default="", help="comma-separated video names to run")
    args = ap.parse_args(argv)
    import warnings

    warnings.simplefilter("ignore", RuntimeWarning)  # decord fallback notices are reported in the table
    out_dir = Path(args.out)
    (out_dir / "videos").mkdir(parents=True, exist_ok=True)
    videos = SMOKE_VIDEOS if args.smoke else QUICK_VIDEOS if args.quick else VIDEOS
    if args.only:
        videos = {k: v for k, v in {**VIDEOS, **QUICK_VIDEOS}.items() if k in args.only.split(",")}
    reps = args.reps or (1 if args.smoke else 5 if args.quick else 9)
    runners, notes = contenders()
    for k, v in notes.items():
        print(f"note: {k}: {v}", file=sys.stderr)

    results = []
    for vname, (w, h, sec, gop, codec, suffix) in videos.items():
        path = make_video(out_dir / "videos" / f"{vname}{suffix}", w, h, sec, gop, codec)
        ref = reference_thumbs(path)
        n = len(ref)
        with VideoReader(path, backend="decord") as vr:
            decord_used = vr.backend
        for scenario in ("uniform16", "dense32"):
            # Interleave the contenders rep by rep so that load from other processes hits them alike.
            times = {c: [] for c in runners}
            cpu = {c: [] for c in runners}
            ok = {c: True for c in runners}
            for r in range(reps):
                if scenario == "uniform16":
                    idx = sample_indices(n, sampler="uniform", num_frames=16).indices
                else:
                    idx = sample_indices(n, sampler="dense", num_frames=32, seed=r).indices
                for cname, fn in runners.items():
                    if not ok[cname] and not times[cname]:
                        continue
                    c0, t0 = time.process_time(), time.perf_counter()
                    try:
                        frames = fn(path, idx)
                    except Exception as exc:
                        ok[cname] = False
                        print(f"{vname} {scenario} {cname}: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
                        continue
                    times[cname].append(time.perf_counter() - t0)
                    cpu[cname].append(time.process_time() - c0)
                    if r < 2 and (frames.shape[0] != len(idx) or not exact(frames, idx, ref)):
                        ok[cname] = False
            for cname in runners:
                med = statistics.median(times[cname]) if times[cname] else float("nan")
                results.append({"video": vname, "scenario": scenario, "contender": cname, "frames": n,
                                "clips_per_s": 1.0 / med if times[cname] else 0.0, "median_s": med,
                                "cpu_ms_per_clip": 1000 * statistics.median(cpu[cname]) if cpu[cname] else None,
                                "exact": ok[cname], "reps": len(times[cname]),
                                "note": "falls back to pyav" if cname == "ours-decord" and decord_used != "decord"
                                else ""})
                rr = results[-1]
                print(f"{vname:28s} {scenario:9s} {cname:12s} {rr['clips_per_s']:8.2f} clips/s "
                      f"{rr['cpu_ms_per_clip'] or 0:8.1f} cpu-ms/clip {'exact' if ok[cname] else 'NOT EXACT'} "
                      f"{rr['note']}", file=sys.stderr, flush=True)

    # Table: one row per (video, scenario), contenders as columns, plus ours / fastest exact peer.
    names = list(runners)
    print("\nmedian clips/s (x = not frame-exact)")
    header = f"{'video':28s} {'clips':9s} " + " ".join(f"{c:>12s}" for c in names) + f" {'ours/best':>10s}"
    print(header)
    summary = []
    for vname in videos:
        for scenario in ("uniform16", "dense32"):
            rows = {r["contender"]: r for r in results if r["video"] == vname and r["scenario"] == scenario}
            cells = " ".join(f"{rows[c]['clips_per_s']:11.2f}{'' if rows[c]['exact'] else 'x'}" if c in rows
                             else f"{'-':>12s}" for c in names)
            peers = [r["clips_per_s"] for c, r in rows.items() if not c.startswith("ours") and r["exact"]]
            best_ours = max(rows[c]["clips_per_s"] for c in rows if c.startswith("ours") and rows[c]["exact"]) \
                if any(c.startswith("ours") and rows[c]["exact"] for c in rows) else 0.0
            ratio = best_ours / max(peers) if peers else float("nan")
            summary.append({"video": vname, "scenario": scenario, "ours_over_fastest_exact_peer": ratio})
            print(f"{vname:28s} {scenario:9s} {cells} {ratio:10.2f}")
    inexact = sorted({f"{r['contender']} on {r['video']}/{r['scenario']}" for r in results if not r["exact"]})
    print("not frame-exact: " + (", ".join(inexact) if inexact else "none"))
    for k, v in notes.items():
        print(f"{k}: {v}")
    payload = {"results": results, "summary": summary, "notes": notes, "quick": args.quick, "reps": reps,
               "pyav": av.__version__}
    (out_dir / "results.json").write_text(json.dumps(payload, indent=2))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        cases = [(v, s) for v in videos for s in ("uniform16", "dense32")]
        fig, ax = plt.subplots(figsize=(max(8, 1.6 * len(cases)), 4.5))
        width = 0.8 / len(names)
        for k, c in enumerate(names):
            vals = [next((r["clips_per_s"] for r in results if (r["video"], r["scenario"], r["contender"])
                          == (v, s, c)), 0.0) for v, s in cases]
            ax.bar(np.arange(len(cases)) + k * width, vals, width, label=c)
        ax.set_xticks(np.arange(len(cases)) + 0.4 - width / 2)
        ax.set_xticklabels([f"{v}\n{s}" for v, s in cases], fontsize=7)
        ax.set_ylabel("clips/s (median)")
        ax.set_yscale("log")
        ax.legend(fontsize=8)
        ax.set_title("seqvision.io decode throughput")
        fig.tight_layout()
        fig.savefig(out_dir / "decode.png", dpi=110)
        plt.close(fig)
    except Exception as exc:  # plotting is a convenience
        print(f"plot skipped: {exc}", file=sys.stderr)
    print(f"wrote {out_dir / 'results.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
