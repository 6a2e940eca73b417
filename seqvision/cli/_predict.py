"""Inference on users' videos: classify, caption, inspect. Shared by the CLI and the demo."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..config import Config, config_from_dict
from ..data import ErrorReport
from ..errors import SeqVisionError

__all__ = ["predict_videos", "inspect_video", "Predictor"]


class Predictor:
    """A checkpoint ready for inference on video files: decode -> frame encoder -> sequence model."""

    def __init__(self, checkpoint: str | Path, *, device: str = "auto"):
        from ..runtime import select_device
        from ..train import load_model

        self.device = select_device(device)
        self.loaded = load_model(checkpoint, device=str(self.device))
        cfg = self.loaded.config
        self.cfg: Config = cfg if isinstance(cfg, Config) else config_from_dict(cfg)
        self.model = self.loaded.model.eval()
        self.encoder = self.loaded.encoder
        if self.encoder is None:
            from ..features import build_encoder

            self.encoder = build_encoder(self.cfg.encoder).to(self.device)
        self.encoder.eval()
        self.task = self.model.task

    def loader(self, videos: list[Path], *, batch_size: int = 8, num_workers: int | None = None):
        from torch.utils.data import DataLoader

        from ..data import VideoDataset, VideoRecord, collate

        records = [VideoRecord(id=Path(p).stem, path=str(p), split="predict", label=None, captions=[],
                               frame_labels=None, start=None, end=None) for p in videos]
        data_cfg = dataclasses.replace(self.cfg.data, on_error="skip")
        ds = VideoDataset.from_config(data_cfg, records, train=False)
        workers = min(data_cfg.num_workers, 2) if num_workers is None else num_workers
        if len(records) <= batch_size:
            workers = 0  # spawning workers costs more than decoding a handful of clips
        return DataLoader(ds, batch_size=batch_size, num_workers=workers, collate_fn=collate)

    @torch.inference_mode()
    def features(self, batch) -> torch.Tensor:
        video = batch["video"].to(self.device)  # (B, T, C, H, W) uint8
        return self.encoder(video).float()  # (B, T, D)


def predict_videos(checkpoint, videos, *, mode: str = "classify", device: str = "auto", batch_size: int = 8,
                   progress: bool = True, top_k: int = 5, beam_size: int | None = None):
    """Run a checkpoint (a path, or a loaded :class:`Predictor` to reuse) over video files.

    Returns (results, failed) where failed = [(path, reason)]."""
    pred = checkpoint if isinstance(checkpoint, Predictor) else Predictor(checkpoint, device=device)
    allowed = {"classify": ("classify", "frames"), "caption": ("caption",)}[mode]
    if pred.task not in allowed:
        other = "caption" if pred.task == "caption" else "classify"
        raise SeqVisionError(f"{checkpoint}: this checkpoint is a '{pred.task}' model; use `seqvision {other}`")
    results: list[dict] = []
    failed: list[tuple[str, str]] = []
    if not videos:
        return results, failed
    beam = beam_size or pred.cfg.eval.beam_size
    bar = tqdm(total=len(videos), desc=mode, unit="video", disable=not progress, leave=False)
    report = ErrorReport()  # only for the systemic-failure rule; `failed` lists every failure
    for batch in pred.loader(list(videos), batch_size=batch_size):
        report.check(batch, total=len(videos))  # stops the run when every video fails
        failed.extend((str(p), str(e)) for p, e in batch.get("errors", []))
        n = len(batch.get("path", []))
        bar.update(n + len(batch.get("errors", [])))
        if n == 0:
            continue
        feats = pred.features(batch)  # (B, T, D)
        lengths = batch["lengths"].to(pred.device)
        with torch.inference_mode():
            if pred.task == "caption":
                out = pred.model.predict(feats, lengths, beam_size=beam)
            else:
                out = pred.model.predict(feats, lengths)
        for i in range(n):
            r = {"path": batch["path"][i], "id": batch["id"][i]}
            if pred.task == "classify":
                probs = out["probs"][i].float().cpu()
                k = min(top_k, probs.numel())
                vals, idx = probs.topk(k)
                r["top_k"] = [{"label": pred.loaded.label_names[j], "probability": round(float(v), 6)}
                              for v, j in zip(vals.tolist(), idx.tolist())]
                r["label"] = r["top_k"][0]["label"]
            elif pred.task == "frames":
                L = int(batch["lengths"][i])
                frame_preds = out["preds"][i][:L].tolist()
                names = pred.loaded.frame_label_names
                r["frame_labels"] = [names[j] for j in frame_preds]
            else:
                r["caption"] = out["texts"][i]
                r["score"] = float(out["scores"][i]) if "scores" in out else None
            results.append(r)
    bar.close()
    return results, failed


def inspect_video(checkpoint, video, *, out="inspect_out", device: str = "cpu") -> list[Path]:
    """Plots of the gates and states of each RNN layer over the clip's frames, and attention when present.

    ``checkpoint`` is a path or a loaded :class:`Predictor` (reuse one for many videos)."""
    from ..models import inspect
    from ..report import frame_strip, plot_attention, plot_gates

    pred = checkpoint if isinstance(checkpoint, Predictor) else Predictor(checkpoint, device=device)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    batches = list(pred.loader([Path(video)], batch_size=1, num_workers=0))
    batch = batches[0]
    if batch.get("errors"):
        p, e = batch["errors"][0]
        from ..errors import VideoDecodeError

        raise VideoDecodeError(p, str(e))
    feats = pred.features(batch)
    lengths = batch["lengths"].to(pred.device)
    opts = {"beam_size": pred.cfg.eval.beam_size} if pred.task == "caption" else {}  # the caption `caption` gives
    ins = inspect(pred.model, feats, lengths, **opts)
    written: list[Path] = []
    L = int(batch["lengths"][0])
    written.append(frame_strip(batch["video"][0][:L], out / "frames.png"))
    for i, layer in enumerate(ins.layers):
        arrays = dict(layer.gates)
        arrays["hidden state"] = layer.hidden
        if getattr(layer, "cell", None) is not None:
            arrays["cell state"] = layer.cell
        direction = getattr(layer, "direction", "forward")
        name = f"gates_layer{getattr(layer, 'layer', i)}_{direction}.png"
        title = f"{getattr(layer, 'kind', '')} layer {getattr(layer, 'layer', i)} ({direction})".strip()
        written.append(plot_gates(arrays, out / name, title=title))
    if getattr(ins, "attention", None) is not None:
        written.append(plot_attention(ins.attention, out / "attention.png", words=getattr(ins, "words", None),
                                      title="attention over frames"))
    return written
