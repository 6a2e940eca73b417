"""`seqvision demo`: the whole library on the built-in synthetic dataset, in a few minutes on a laptop CPU.

synthetic videos -> per-frame features (offline ImageNet EfficientNet-Lite0) cached once -> a clip classifier,
a frame labeller and a captioner trained on the cached features -> evaluated on the held-out split -> a printed
report and an HTML report with frame strips, predictions, attention and LSTM gates.
"""

from __future__ import annotations

import copy
import json
import time
import warnings
from pathlib import Path

from ..config import config_from_dict
from ..data import make_synthetic_dataset
from ..features import extract_features
from ..report import write_html_report
from ..tasks import get_task
from ..train import evaluate, train
from ._predict import Predictor, inspect_video, predict_videos

__all__ = ["run_demo", "demo_configs"]

GOALS = {"accuracy": 0.90, "BLEU-4": 0.5, "seconds": 300}
NUM_VIDEOS = {"full": 360, "small": 60}


def demo_configs(out: Path, *, small: bool = False, device: str = "auto") -> dict[str, dict]:
    """The three configs the demo trains (the same settings as configs/synthetic_*.yaml)."""
    base = {
        # the 64x64 videos are upscaled to 96x96 at decode time: EfficientNet's last feature map is then 3x3
        # (2x2 at 64), and 2x2 grid pooling keeps where the shape is (average pooling loses it: accuracy ~0.2)
        "data": {"format": "synthetic", "root": str(out / "data"), "num_frames": 16, "size": 96,
                 "cache_dir": str(out / "features"), "num_workers": 2},
        "encoder": {"name": "efficientnet_lite0", "weights": "DEFAULT", "pooling": "grid", "grid": 2},
        "train": {"batch_size": 16, "device": device, "progress": False},  # one line per model instead
        "seed": 0,
    }
    scale = 0.5 if small else 1.0
    tasks = {
        "classify": {"model": {"task": "classify", "cell": "lstm", "hidden": 128, "head": "last",
                               "head_dropout": 0.2, "input_proj": 128},
                     "train": {"epochs": 15, "lr": 0.002, "metric": "train_loss"}},
        "frames": {"model": {"task": "frames", "cell": "gru", "layers": 2, "hidden": 64, "bidirectional": True},
                   "train": {"epochs": 15, "lr": 0.002}},
        "caption": {"model": {"preset": "sa_lstm", "task": "caption", "cell": "lstm", "decoder": "attention",
                              "hidden": 128, "embed_dim": 64, "attention_dim": 64, "max_caption_len": 12},
                    "train": {"epochs": 20, "lr": 0.003, "metric": "CIDEr"},
                    "eval": {"beam_size": 3}},
    }
    configs = {}
    for name, extra in tasks.items():
        cfg = copy.deepcopy(base)
        for section, values in extra.items():
            cfg.setdefault(section, {}).update(values)
        cfg["train"]["epochs"] = max(2, int(cfg["train"]["epochs"] * scale))
        cfg["out"] = str(out / "runs" / name)
        configs[name] = cfg
    return configs


def _line(char: str = "-") -> str:
    return char * 78


def _fmt(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"


def run_demo(out: str | Path = "demo_out", *, small: bool = False, device: str = "auto") -> dict:
    """Run the demo end to end; returns the summary dict (also written to ``<out>/summary.json``)."""
    t0 = time.perf_counter()
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    num_videos = NUM_VIDEOS["small" if small else "full"]
    raw = demo_configs(out, small=small, device=device)
    configs = {k: config_from_dict(v) for k, v in raw.items()}
    data, enc = configs["classify"].data, configs["classify"].encoder
    print(_line("="))
    print(f"seqvision demo{' (small)' if small else ''}: {num_videos} synthetic videos -> features -> "
          "classifier, frame labeller, captioner")
    print(_line("="))

    t = time.perf_counter()
    manifest = make_synthetic_dataset(out / "data", num_videos=num_videos, seed=0, progress=False)
    rows = [json.loads(x) for x in Path(manifest).read_text().splitlines() if x.strip()]
    test_rows = [r for r in rows if r["split"] == "test"]
    counts = {s: sum(r["split"] == s for r in rows) for s in ("train", "val", "test")}
    print(f"[1/5] data       {num_videos} videos ({counts['train']} train / {counts['val']} val / "
          f"{counts['test']} test), 6 classes, in {out / 'data'} ({_fmt(time.perf_counter() - t)})")

    t = time.perf_counter()
    ext = extract_features(configs["classify"], progress=False)
    print(f"[2/5] features   EfficientNet-Lite0 (offline ImageNet weights), {data.num_frames} frames/clip at "
          f"{data.size}px, {enc.pooling} pooling, D={ext.dim}: {ext.frames / max(ext.seconds, 1e-9):.0f} frames/s "
          f"({_fmt(time.perf_counter() - t)})")

    what = {"classify": "classifier", "frames": "frame labeller", "caption": "captioner"}
    metrics: dict[str, dict] = {}
    baselines: dict[str, dict] = {}  # seqvision.baselines on the same features (the trainer's baseline hook)
    for name, cfg in configs.items():
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = train(cfg, progress=False)
        m = cfg.model
        arch = f"{'bi' if m.bidirectional else ''}{m.cell.upper()} {m.layers}x{m.hidden}"
        baselines[name] = res.baseline
        # the kept epoch's validation metric, also where best.pt is chosen by another (train_loss: the converged
        # model), next to the baseline's
        val = res.metric if res.metric.startswith("val_") else f"val_{get_task(m.task).default_metric}"
        kept = next((row.get(val) for row in res.history if row.get("epoch") == res.best_epoch), None)
        shown = "n/a" if kept is None else f"{kept:.3f}"
        base = res.baseline.get(f"baseline_{val}")
        base = "" if base is None else f" (baseline {res.baseline.get('baseline', '')} {base:.3f})"
        how = "the best" if val == res.metric else f"kept by {res.metric.replace('_', ' ')}"
        print(f"[3/5] {what[name]:<14} {arch}, {res.epochs_run} epochs, {val.replace('_', ' ')} {shown}{base} "
              f"at epoch {res.best_epoch} ({how}) ({_fmt(time.perf_counter() - t)})")

    t = time.perf_counter()
    for name, cfg in configs.items():
        res = evaluate(Path(cfg.out) / "best.pt", split="test", out=Path(cfg.out) / "eval", progress=False,
                       meteor=False)
        metrics[name] = res["metrics"]
    print(f"[4/5] evaluated  the three models on {len(test_rows)} held-out test videos "
          f"({_fmt(time.perf_counter() - t)})")

    t = time.perf_counter()
    examples = test_rows[:4]
    paths = [Path(manifest).parent / r["path"] for r in examples]
    # load each checkpoint once for all the examples
    classifier = Predictor(Path(configs["classify"].out) / "best.pt", device=device)
    captioner = Predictor(Path(configs["caption"].out) / "best.pt", device=device)
    cls, _ = predict_videos(classifier, paths, mode="classify", progress=False,
                            top_k=3)
    cap, _ = predict_videos(captioner, paths, mode="caption", progress=False)
    report_dir = out / "report"
    report_dir.mkdir(exist_ok=True)
    cards = []
    for j, (row, path) in enumerate(zip(examples, paths)):
        ex_dir = report_dir / f"example{j}"
        gate_pngs = inspect_video(classifier, path, out=ex_dir / "classifier")
        cap_pngs = inspect_video(captioner, path, out=ex_dir / "captioner")
        c = next((r for r in cls if r["path"] == str(path)), None)
        k = next((r for r in cap if r["path"] == str(path)), None)
        strip = next(p for p in gate_pngs if p.name == "frames.png")
        plots = [p for p in gate_pngs if p.name.startswith(("attention", "gates_layer0"))]
        plots += [p for p in cap_pngs if p.name.startswith("attention")]
        card = {
            "title": row["id"],
            "image": str(strip.relative_to(report_dir)),
            "rows": [("true label", row["label"]),
                     ("predicted", f"{c['label']} ({c['top_k'][0]['probability']:.2f})" if c else "failed"),
                     ("a reference caption", row["captions"][0]),
                     ("generated caption", k["caption"] if k else "failed")],
            "plots": [str(p.relative_to(report_dir)) for p in plots],
            "_pred": c["label"] if c else None, "_cap": k["caption"] if k else None,
        }
        if c:
            card["correct"] = c["label"] == row["label"]
        cards.append(card)
    t_report = time.perf_counter() - t

    wall = time.perf_counter() - t0
    acc = float(metrics["classify"].get("top1", float("nan")))
    frame_acc = float(metrics["frames"].get("frame_accuracy", float("nan")))
    bleu4 = float(metrics["caption"].get("BLEU-4", float("nan")))
    cider = float(metrics["caption"].get("CIDEr", float("nan")))
    summary = {
        "videos": num_videos, "test videos": len(test_rows),
        "clip accuracy": round(acc, 4), "frame accuracy": round(frame_acc, 4),
        "BLEU-4": round(bleu4, 4), "CIDEr": round(cider, 4), "wall time (s)": round(wall, 1),
    }
    for name, key in (("classify", "baseline_val_accuracy"), ("frames", "baseline_val_frame_accuracy"),
                      ("caption", "baseline_val_CIDEr")):
        if key in baselines.get(name, {}):  # validation split: the linear probe / nearest-neighbour captions
            summary[f"{what[name]} baseline ({baselines[name]['baseline']}, val)"] = round(baselines[name][key], 4)
    html = write_html_report(report_dir / "index.html", title="seqvision demo", summary=summary,
                             sections=[{"heading": "Test videos", "cards": [
                                 {k: v for k, v in card.items() if not k.startswith("_")} for card in cards]}])
    summary["report"] = str(html)
    goals_met = acc >= GOALS["accuracy"] and bleu4 >= GOALS["BLEU-4"]  # wall time depends on the machine
    summary["ok"] = bool(goals_met) or small
    (out / "summary.json").write_text(json.dumps(summary, indent=2))

    print(f"[5/5] report     predictions, gate and attention plots for {len(examples)} test videos "
          f"({_fmt(t_report)})")
    print(_line("="))
    # the goals are for the full demo; the small one (tests) only checks that everything runs
    mark = (lambda ok: "not checked with --small" if small else "met" if ok else "MISSED")
    print(f"clip classification   test accuracy  {acc:.3f}   (goal >= {GOALS['accuracy']:.2f}: "
          f"{mark(acc >= GOALS['accuracy'])})")
    print(f"frame labelling       frame accuracy {frame_acc:.3f}")
    print(f"captioning            BLEU-4         {bleu4:.3f}   (goal >= {GOALS['BLEU-4']:.2f}: "
          f"{mark(bleu4 >= GOALS['BLEU-4'])})")
    print(f"                      CIDEr          {cider:.3f}")
    print(_line())
    for card, row in zip(cards, examples):
        print(f"{row['id']}: true {row['label']!r:<14} predicted {card['_pred']!r}")
        print(f"    reference: {row['captions'][0]}")
        print(f"    generated: {card['_cap']}")
    print(_line())
    print(f"HTML report: {html}")
    print(f"wall time: {wall:.1f} s (goal <= {GOALS['seconds']} s: {mark(wall <= GOALS['seconds'])})")
    print(_line("="))
    return summary
