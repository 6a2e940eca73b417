"""``OnlinePredictor``: a trained checkpoint run one frame at a time, with the sequence model's state carried
between frames (O(1) work per frame), for live streams and users' own capture loops."""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field

import av
import numpy as np
import torch
from av.video.reformatter import VideoReformatter

from ..config import Config
from ..data import build_transform
from ..errors import SeqVisionError
from ..io._pyav_backend import (  # _REFORMAT_KWARGS: threads= only on PyAV >= 17
    _REFORMAT_KWARGS, TRANSPOSING, _display_matrix, display_transform, orient)
from ..runtime import select_device
from ..tasks import Task, get_task, named_top_k
from ..train import load_model

__all__ = ["OnlinePredictor", "NotStreamableError", "FramePreparer", "frame_size", "check_streamable"]


class NotStreamableError(SeqVisionError, ValueError):
    """The checkpoint's model needs a whole clip before it can answer, so it cannot run online."""


def frame_size(cfg: Config, height: int, width: int) -> tuple[int, int]:
    """``(H, W)`` the decoder resizes a ``height x width`` frame to, as the training data path does
    (``data.size`` with ``data.resize`` "square" or "short_side")."""
    s = int(cfg.data.size)
    if cfg.data.resize == "square":
        return s, s
    if height <= width:
        return s, max(1, round(width * s / height))
    return max(1, round(height * s / width)), s


def check_streamable(model: torch.nn.Module, *, source: str = "<checkpoint>") -> None:
    """Raise :class:`NotStreamableError` (saying why and what to train instead) when ``model`` cannot step.

    Frame labellers and clip classifiers step when their encoder is unidirectional (every pooling head has an
    online form: last step, running mean / max, attention with a running softmax normaliser). Captioners are
    streamed window by window (their encoder may be bidirectional), so they always pass (the task's
    ``Task.online``: ``"step"`` or ``"window"``).
    """
    task = get_task(model.task)
    if task.online == "window":
        return
    if getattr(model.encoder, "bidirectional", False):
        what = task.online_answer
        raise NotStreamableError(
            f"{source}: the model's encoder is bidirectional: its backward direction reads every later frame, so "
            f"{what} is not known until the video ends and cannot be given online. Train a unidirectional model to "
            f"stream (model.bidirectional: false, e.g. configs/synthetic_frames_causal.yaml), or label whole "
            f"videos with `seqvision classify --window`")


class FramePreparer:
    """Turns a frame into the model's input exactly as the training data path does: autorotation, swscale resize
    to ``data.size`` (``data.resize``), RGB, then the centre crop of ``data.crop``.

    ``__call__(frame)``: an ``av.VideoFrame`` (any pixel format), or RGB uint8 ``(H, W, 3)`` (NumPy or tensor) /
    ``(3, H, W)`` tensor of any size -> ``(3, H, W)`` uint8 tensor.

    Autorotation (``data.autorotate``, as :class:`seqvision.io.VideoReader` and the FFmpeg CLI do it): a decoded
    ``av.VideoFrame`` carrying a display matrix (a phone video's rotation: libavcodec copies the stream's matrix
    onto every frame) is converted at its coded orientation, at the size the rotated frame resizes to, then
    transposed / flipped (``seqvision.io``'s ``display_transform`` and ``orient``). Arrays are taken as upright.

    Raises:
        ValueError: a frame that is not RGB uint8.
    """

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self._crop = build_transform(cfg.data, train=False)
        self._reformatter = VideoReformatter()

    def __call__(self, frame) -> torch.Tensor:
        if not isinstance(frame, av.VideoFrame):
            arr = frame.cpu().numpy() if torch.is_tensor(frame) else np.asarray(frame)
            if arr.ndim == 3 and arr.shape[0] == 3 and arr.shape[-1] != 3:
                arr = arr.transpose(1, 2, 0)  # (H, W, 3)
            if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[-1] != 3:
                raise ValueError(f"frame must be an av.VideoFrame or RGB uint8 (H, W, 3) / (3, H, W), got "
                                 f"{arr.dtype} {arr.shape}")
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")
            transform = None
        else:
            transform = display_transform(_display_matrix(frame))[1] if self.cfg.data.autorotate else None
        if transform in TRANSPOSING:  # convert at the coded orientation, then transpose (as VideoReader does)
            h, w = frame_size(self.cfg, frame.width, frame.height)
            rgb = self._reformatter.reformat(frame, width=h, height=w, format="rgb24", **_REFORMAT_KWARGS)
        else:
            h, w = frame_size(self.cfg, frame.height, frame.width)
            rgb = self._reformatter.reformat(frame, width=w, height=h, format="rgb24", **_REFORMAT_KWARGS)
        rgb = np.ascontiguousarray(orient(rgb.to_ndarray(), transform))  # (H, W, 3)
        x = torch.from_numpy(rgb).permute(2, 0, 1)  # (3, H, W)
        if self._crop is not None:
            x = self._crop(x[None])[0].as_subclass(torch.Tensor)
        return x


@dataclass
class _Window:
    """Features of the current caption window, and where it started (stream seconds)."""

    feats: list[torch.Tensor] = field(default_factory=list)  # (D,) each
    start: float | None = None
    end: float | None = None
    index: int | None = None  # which window of ``window`` seconds (time windows only)


class OnlinePredictor:
    """Run a checkpoint online: ``step(frame)`` encodes one frame with the CNN and advances the sequence model.

    * ``frames`` models: the frame's label and probabilities (equal to the offline model's output at that
      frame for a unidirectional encoder).
    * ``classify`` models: the running label of the clip so far (frames since the last :meth:`reset`, or
      since the current window began when a window is set); equal to the offline model on those frames.
    * ``caption`` models: a caption per window (``data.num_frames`` picked uniformly from the window's frames,
      as the training clips were sampled); the other steps return ``"caption": None``.

    Windows, as ``seqvision classify --window SECONDS`` cuts a long video: ``window`` seconds of stream time, window
    ``k`` holding the frames with ``k * window <= time_s < (k + 1) * window`` (``step`` must then get ``time_s``;
    :class:`FrameSource` times start at 0). A time window's caption comes with the first frame of a later window
    (or from :meth:`flush`). ``window_frames`` counts frames instead (the caption comes with the window's last
    frame).

    Frames are resized exactly as the training data path does (swscale, ``data.size`` / ``data.resize``, then
    the centre crop of ``data.crop``), so a file's frames streamed through ``step`` give the offline outputs.

    Args:
        loaded: a :class:`seqvision.train.LoadedModel` with its frame encoder (see :meth:`from_checkpoint`).
        window: seconds of stream time per window (clip models reset their state at each window; captioners
            caption each window).
        window_frames: frames per window instead. Neither: clip models never reset; captioners use windows
            of ``2 * data.num_frames`` frames.
        top_k: probabilities reported per step (all classes when K <= top_k).

    Raises:
        NotStreamableError: the model needs the whole clip (a bidirectional encoder for classify / frames).
        ValueError: ``window`` not > 0 and finite, ``window_frames`` not >= 1, or both given; a step without ``time_s``
            when ``window`` (seconds) is set.

    Example:
        >>> pred = OnlinePredictor.from_checkpoint("runs/synthetic_classify/best.pt")
        >>> for frame in my_camera():              # (H, W, 3) uint8 RGB, any size
        ...     out = pred.step(frame)
        ...     print(out["index"], out["label"], out["probs"])
        >>> pred.reset()                            # a new clip
    """

    def __init__(self, loaded, *, window: float | None = None, window_frames: int | None = None, top_k: int = 5,
                 beam_size: int | None = None, source: str = "<checkpoint>"):
        self.model = loaded.model.eval()
        self.encoder = loaded.encoder.eval()
        self.cfg: Config = loaded.config
        self.task: str = self.model.task
        self.spec: Task = loaded.task  # what the outputs mean and how the task runs online
        check_streamable(self.model, source=source)
        self.names = list(self.spec.output_names)
        self.device = next(self.model.parameters()).device
        if window is not None and window_frames is not None:
            raise ValueError(f"give window (seconds) or window_frames, not both; got {window}, {window_frames}")
        if window is not None and not 0 < float(window) < math.inf:
            raise ValueError(f"window must be > 0 seconds and finite, got {window}")
        if window_frames is not None and int(window_frames) < 1:
            raise ValueError(f"window_frames must be >= 1, got {window_frames}")
        self.window = float(window) if window is not None else None  # seconds of stream time
        self.window_frames = (int(window_frames) if window_frames is not None
                              else None if window is not None else self.spec.online_window(self.cfg))
        self.top_k = top_k
        self.beam_size = beam_size or self.cfg.eval.beam_size
        checkpoint = getattr(loaded, "checkpoint", None)
        self.pace: dict | None = getattr(checkpoint, "pace", None)  # Checkpoint.pace: the training clips' rate
        self._prepare = FramePreparer(self.cfg)
        self.reset()

    @property
    def training_fps(self) -> float | None:
        """The frame rate the model was trained at (Hz), the rate to feed it frames at: ``data.fps`` for the
        ``fps`` sampler, else the rate the training clips' frames were sampled at (``Checkpoint.pace["fps"]``:
        the median over the training clips of ``data.num_frames`` / clip duration; recorded for the uniform
        sampler since the feature cache keeps the clips' durations); None when unknown (an older checkpoint or
        cache), or for a sampler of consecutive frames (``dense``, ``all``)."""
        data = self.cfg.data
        if data.sampler == "fps":
            return float(data.fps) if data.fps > 0 else None
        return float(self.pace["fps"]) if self.pace is not None else None

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, *, device: str = "cpu", **options) -> "OnlinePredictor":
        """Load ``path`` (a ``best.pt`` / ``last.pt``) with its frame encoder; ``options`` as for the class.

        Raises:
            CheckpointError: the file is missing or not a seqvision checkpoint.
            NotStreamableError: see the class.
        """
        loaded = load_model(path, device=str(select_device(device)), with_encoder=True)
        return cls(loaded, source=str(path), **options)

    # ------------------------------------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the stream so far: the next frame starts a new clip (state, window and counters)."""
        self.state = None
        self.index = 0  # frames stepped since reset
        self.in_window = 0  # frames in the current clip-model window
        self.window_index = 0  # the clip-model window of the last frame
        self._caption = _Window()

    def prepare(self, frame) -> torch.Tensor:
        """One frame as the model's input: ``(3, H, W)`` uint8 at the training size (see :class:`FramePreparer`)."""
        return self._prepare(frame)

    @torch.inference_mode()
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """CNN features of prepared frames ``(N, 3, H, W)`` uint8 -> ``(N, D)`` float32."""
        return self.encoder(frames.to(self.device)).float()

    def step(self, frame, *, time_s: float | None = None) -> dict:
        """Encode one frame and advance the model; returns the result for this frame (see :meth:`step_many`)."""
        return self.step_many([frame], times=[time_s])[0]

    def step_many(self, frames, *, times=None) -> list[dict]:
        """A micro-batch: the CNN runs once on all ``frames``, the sequence model steps through them in order.

        Returns one dict per frame: ``index`` (frames since :meth:`reset`), ``time`` (the given stream time, s),
        ``latency_ms`` (``cnn``: resize + CNN, this frame's share of the batch; ``rnn``: the
        sequence model's step and the output), and by task ``label`` + ``probs``
        (``{name: probability}``, top-k) for frames / classify (classify adds ``window``), ``caption`` (str or
        None) + ``window`` ``[start, end]`` seconds for caption.
        """
        times = list(times) if times is not None else [None] * len(frames)
        t0 = time.perf_counter()
        x = torch.stack([self.prepare(f) for f in frames])  # (N, 3, H, W)
        feats = self.encode(x)  # (N, D)
        cnn_ms = (time.perf_counter() - t0) * 1e3 / len(frames)
        results = []
        for feat, t in zip(feats, times):
            t1 = time.perf_counter()
            r = self._advance(feat, t)
            r["latency_ms"] = {"cnn": cnn_ms, "rnn": (time.perf_counter() - t1) * 1e3}
            results.append(r)
        return results

    def flush(self) -> dict | None:
        """End of stream: a captioner's last, partial window (None when empty or for other tasks)."""
        if self.spec.online != "window" or not self._caption.feats:
            return None
        return self._finish_caption()

    # ------------------------------------------------------------------------------------------------------------
    def _probs(self, logits: torch.Tensor) -> tuple[str, dict[str, float]]:
        named = named_top_k(logits.float().softmax(-1), self.names, self.top_k)  # from (K,)
        return next(iter(named)), named

    @torch.inference_mode()
    def _advance(self, feat: torch.Tensor, t: float | None) -> dict:
        out: dict = {"index": self.index, "time": t}
        k = self._window_of(t)
        self.index += 1
        if self.spec.online == "window":  # the offline model on each window (captioners)
            out["caption"] = None
            if self.window is not None and self._caption.feats and k != self._caption.index:
                out.update(self._finish_caption())  # a frame of a later window: the last one is complete
            w = self._caption
            w.start = t if w.start is None else w.start
            w.end, w.index = t, k
            w.feats.append(feat)
            if self.window is None and len(w.feats) >= self.window_frames:
                out.update(self._finish_caption())
            return out
        if self.spec.online_window_resets and k != self.window_index:
            self.state, self.in_window = None, 0
            self.window_index = k
        logits, self.state = self.model.step(feat[None], self.state)  # (1, K)
        self.in_window += 1
        out["label"], out["probs"] = self._probs(logits[0])
        if self.spec.online_window_resets:
            out["window"] = self.window_index
            out["frames_in_clip"] = self.in_window
        return out

    def _window_of(self, t: float | None) -> int:
        """The window of the frame about to be stepped (0 when there are no windows)."""
        if self.window is not None:
            if t is None:
                raise ValueError(f"window={self.window:g} is in seconds of stream time: pass step(frame, time_s=...) "
                                 f"(or count frames with window_frames=)")
            return math.floor(t / self.window + 1e-9)
        return self.index // self.window_frames if self.window_frames else 0

    def _finish_caption(self) -> dict:
        w = self._caption
        feats = torch.stack(w.feats)  # (n, D)
        out = self.spec.window_output(self.model, feats[None], self.cfg, top_k=self.top_k, beam_size=self.beam_size)
        self._caption = _Window()
        return {**out, "window": [w.start, w.end], "window_frames": len(feats)}
