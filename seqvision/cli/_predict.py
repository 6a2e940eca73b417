"""Inference on users' videos: classify, caption, inspect. Shared by the CLI and the demo."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..config import Config
from ..data import ErrorReport, VideoDataset, VideoRecord, collate, worker_context
from ..errors import SeqVisionError, VideoDecodeError
from ..models import inspect
from ..report import frame_strip, plot_attention, plot_gates
from ..runtime import select_device
from ..tasks import DecodeOptions, Task
from ..train import load_model

__all__ = ["predict_videos", "inspect_video", "inspect_clip", "InspectResult", "Predictor"]


class Predictor:
    """A checkpoint ready for inference on video files: decode -> frame encoder -> sequence model.

    Attributes:
        task: the checkpoint's :class:`~seqvision.tasks.Task` (names, predictions, records).
        model, encoder: in eval mode on ``device``.
        cfg: the checkpoint's config.
    """

    def __init__(self, checkpoint: str | Path, *, device: str = "auto"):
        self.device = select_device(device)
        self.loaded = load_model(checkpoint, device=str(self.device))
        self.cfg: Config = self.loaded.config
        self.model = self.loaded.model.eval()
        self.encoder = self.loaded.encoder.eval()
        self.task: Task = self.loaded.task

    def loader(self, videos: list[Path], *, batch_size: int = 8, num_workers: int | None = None) -> DataLoader:
        records = [VideoRecord(id=Path(p).stem, path=str(p), split="predict", label=None, captions=[],
                               frame_labels=None, start=None, end=None) for p in videos]
        data_cfg = dataclasses.replace(self.cfg.data, on_error="skip")
        ds = VideoDataset.from_config(data_cfg, records, train=False)
        workers = min(data_cfg.num_workers, 2) if num_workers is None else num_workers
        if len(records) <= batch_size:
            workers = 0  # spawning workers costs more than decoding a handful of clips
        return DataLoader(ds, batch_size=batch_size, num_workers=workers, collate_fn=collate,
                          multiprocessing_context=worker_context(ds, workers))

    @torch.inference_mode()
    def features(self, batch) -> torch.Tensor:
        video = batch["video"].to(self.device)  # (B, T, C, H, W) uint8
        return self.encoder(video).float()  # (B, T, D)


MODES = {"classify": ("classify", "frames"), "caption": ("caption",)}  # CLI command -> tasks it runs


def predict_videos(checkpoint, videos, *, mode: str = "classify", device: str = "auto", batch_size: int = 8,
                   progress: bool = True, top_k: int = 5, beam_size: int | None = None, error_types: bool = False):
    """Run a checkpoint (a path, or a loaded :class:`Predictor` to reuse) over video files.

    ``top_k``: labels per clip-classifier record (0: all classes), as ``stream --top-k`` and ``classify --window``.

    Returns:
        ``(results, failed)``: one record per video (:meth:`seqvision.tasks.Task.record`: ``label`` and
        ``top_k`` for clip classifiers, ``frame_labels`` for frame labellers, with ``frames``: the video's
        0-based frame indices they label, one per label, the frames the checkpoint's sampler picked; ``caption``
        and ``score`` for captioners) and ``failed = [(path, reason)]``; with ``error_types``, ``[(path, reason, error_type)]``,
        ``error_type`` the error's class name (``VideoDecodeError``, ...).

    Raises:
        SeqVisionError: the checkpoint's task is not one ``mode`` runs (``seqvision classify`` runs classify
            and frames models, ``seqvision caption`` captioners).
    """
    pred = checkpoint if isinstance(checkpoint, Predictor) else Predictor(checkpoint, device=device)
    if pred.task.name not in MODES[mode]:
        other = next(m for m, tasks in MODES.items() if pred.task.name in tasks)
        raise SeqVisionError(f"{checkpoint}: this checkpoint is a '{pred.task.name}' model; use `seqvision {other}`")
    results: list[dict] = []
    failed: list[tuple] = []
    if not videos:
        return results, failed
    decode = DecodeOptions.from_config(pred.cfg, beam_size=beam_size)
    bar = tqdm(total=len(videos), desc=mode, unit="video", disable=not progress, leave=False)
    report = ErrorReport()  # only for the systemic-failure rule; `failed` lists every failure
    for batch in pred.loader(list(videos), batch_size=batch_size):
        report.check(batch, total=len(videos))  # stops the run when every video fails
        for (p, e), kind in zip(batch.get("errors", []), batch["error_types"]):
            failed.append((str(p), str(e), kind) if error_types else (str(p), str(e)))
        n = len(batch.get("path", []))
        bar.update(n + len(batch.get("errors", [])))
        if n == 0:
            continue
        feats = pred.features(batch)  # (B, T, D)
        with torch.inference_mode():
            out = pred.task.predict(pred.model, feats, batch["lengths"].to(pred.device), decode)
        records = pred.task.records(batch, out, top_k=top_k or len(pred.task.output_names))  # top_k 0: all
        for row, rec in enumerate(records):
            if "frame_labels" in rec:  # which frames of the video the labels belong to (a sampled subset)
                rec["frames"] = clip_frames(batch, row, len(rec["frame_labels"]))
        results.extend(records)
    bar.close()
    return results, failed


def clip_frames(batch, row: int, count: int) -> list[int]:
    """The video's 0-based frame indices of the first ``count`` steps of clip ``row`` of a :class:`VideoDataset`
    batch: the frames the checkpoint's sampler picked (``seqvision.io.sample_indices``), as they were decoded."""
    return [int(i) for i in batch["frame_indices"][row][:count]]


@dataclass
class InspectResult:
    """What :func:`inspect_clip` made for one video.

    Attributes:
        paths: the files written: ``frames.png``, ``gates_layer<l>_<direction>.png`` per layer and direction,
            ``attention.png`` when the model attends, then ``frames.json`` (``{"video", "frames"}``).
        frames: one dict per inspected step, in clip order: ``step`` (0..T-1, the plots' step axis), ``frame``
            (the video's 0-based frame index: the sampler's pick) and ``time`` (seconds from the first frame).
    """

    paths: list[Path]
    frames: list[dict]


def inspect_clip(checkpoint, video, *, out="inspect_out", device: str = "cpu") -> InspectResult:
    """Plots of the gates and states of each RNN layer over the clip's frames, and attention when present; every
    plot names the sampled frames by their frame index in the video (and the strip by time too).

    ``checkpoint`` is a path or a loaded :class:`Predictor` (reuse one for many videos).

    Raises:
        VideoDecodeError: the video cannot be decoded.
    """
    pred = checkpoint if isinstance(checkpoint, Predictor) else Predictor(checkpoint, device=device)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    batches = list(pred.loader([Path(video)], batch_size=1, num_workers=0))
    batch = batches[0]
    if batch.get("errors"):
        p, e = batch["errors"][0]
        raise VideoDecodeError(p, str(e))
    feats = pred.features(batch)
    lengths = batch["lengths"].to(pred.device)
    ins = inspect(pred.model, feats, lengths, beam_size=pred.cfg.eval.beam_size)  # captioners: `caption`'s beam
    written: list[Path] = []
    L = int(batch["lengths"][0])
    frames = clip_frames(batch, 0, L)  # (L,) video frame index of each step
    times = [float(t) for t in batch["frame_times"][0][:L]]  # s from the video's first frame
    written.append(frame_strip(batch["video"][0][:L], out / "frames.png", indices=frames, times=times))
    for i, layer in enumerate(ins.layers):
        arrays = dict(layer.gates)
        arrays["hidden state"] = layer.hidden
        if getattr(layer, "cell", None) is not None:
            arrays["cell state"] = layer.cell
        direction = getattr(layer, "direction", "forward")
        name = f"gates_layer{getattr(layer, 'layer', i)}_{direction}.png"
        title = f"{getattr(layer, 'kind', '')} layer {getattr(layer, 'layer', i)} ({direction})".strip()
        written.append(plot_gates(arrays, out / name, title=title, frame_indices=frames))
    if getattr(ins, "attention", None) is not None:
        written.append(plot_attention(ins.attention, out / "attention.png", words=getattr(ins, "words", None),
                                      title="attention over frames", frame_indices=frames))
    steps = [{"step": t, "frame": f, "time": s} for t, (f, s) in enumerate(zip(frames, times))]
    listing = out / "frames.json"
    listing.write_text(json.dumps({"video": str(video), "frames": steps}, indent=1) + "\n")
    written.append(listing)
    return InspectResult(paths=written, frames=steps)


def inspect_video(checkpoint, video, *, out="inspect_out", device: str = "cpu") -> list[Path]:
    """:func:`inspect_clip`'s written files (PNGs, then ``frames.json``)."""
    return inspect_clip(checkpoint, video, out=out, device=device).paths
