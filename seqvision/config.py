"""Typed experiment configs: dataclasses with a comment per field, YAML files that override the defaults,
and ``--set key=value`` overrides with dotted keys.

Unknown keys and bad values are :class:`~seqvision.errors.ConfigError` naming the dotted key, what is allowed,
and the closest known key. Everything is checked before any work starts.

Example:
    >>> cfg = load_config("configs/synthetic_classify.yaml", overrides=["train.epochs=3", "model.cell=gru"])
    >>> cfg.model.cell
    'gru'
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from .errors import ConfigError
from .presets import _CHECKERS as _PRESET_CHECKERS
from .presets import get_preset, list_presets, preset_model_section

__all__ = [
    "Config",
    "DataConfig",
    "EncoderConfig",
    "ModelConfig",
    "TrainConfig",
    "EvalConfig",
    "load_config",
    "config_from_dict",
    "config_to_dict",
    "apply_overrides",
    "save_config",
]

DatasetFormat = Literal["manifest", "synthetic", "ucf101", "hmdb51", "folder", "kinetics", "msrvtt", "msvd"]
SamplerName = Literal["uniform", "random_segment", "dense", "fps", "all"]
Task = Literal["classify", "frames", "caption"]


@dataclass
class DataConfig:
    format: DatasetFormat = "manifest"  # dataset layout on disk
    root: str = ""  # folder with the videos (for "manifest": the folder the manifest's paths are relative to)
    annotations: str = ""  # annotation file or folder; "" = the format's usual place under root
    split: str = "train"  # split to train on
    val_split: str = "val"  # split for validation / early stopping ("" = none)
    test_split: str = "test"  # split `seqvision eval` uses by default
    fold: int = 1  # UCF101 / HMDB51 official split number (1-3)
    val_fraction: float = 0.1  # seeded split for formats without one (folder per class)
    test_fraction: float = 0.2
    num_frames: int = 16  # T: frames per clip
    sampler: SamplerName = "uniform"  # uniform segment centres (TSN); training may use random_segment
    train_sampler: str = ""  # sampler for the training split ("" = same as `sampler`)
    stride: int = 1  # frame stride for the "dense" sampler
    fps: float = 0.0  # frames per second for the "fps" sampler
    max_frames: int = 0  # cap for the "all" sampler (0 = num_frames)
    short_policy: Literal["repeat", "truncate"] = "repeat"  # videos shorter than T: repeat last frame, or fewer
    size: int = 112  # frames are resized at decode time to size x size ("square") or short side = size
    resize: Literal["square", "short_side"] = "square"
    crop: int = 0  # centre crop (random crop for training) after resize; 0 = none
    flip: bool = False  # random horizontal flip in training
    backend: Literal["pyav", "decord"] = "pyav"  # video decoding backend
    stream: int = -1  # video stream to decode, by container index (-1 = the one the ffmpeg CLI picks)
    autorotate: bool = True  # apply the display matrix (phone videos) as ffmpeg does; false = coded orientation
    num_workers: int = 2  # DataLoader workers for decoding
    on_error: Literal["skip", "raise"] = "skip"  # a bad video is skipped and reported, or raises
    cache_dir: str = ""  # feature cache ("" = <out>/features)


@dataclass
class EncoderConfig:
    name: str = "resnet18"  # torchvision model name, or "efficientnet_lite0" (offline ImageNet weights)
    weights: str = "none"  # "none" = random init, "DEFAULT", "IMAGENET1K_V1", ... or a local .pth path
    pooling: Literal["avg", "max", "grid"] = "avg"  # pooling of the last feature map
    grid: int = 2  # grid x grid cells for pooling="grid"
    trainable: bool = False  # fine-tune end to end (else frozen, eval mode, inference_mode)
    chunk_size: int = 64  # frames per CNN forward when frozen (bounds memory)
    channels_last: bool = True  # NHWC memory format on CPU when it helps
    amp: bool = True  # autocast on CUDA
    # extraction resizes frames while decoding (CPU, swscale) or on the CNN's device (auto: device on CUDA)
    resize_on: Literal["auto", "decoder", "device"] = "auto"
    compile: bool = False  # extraction: torch.compile the frozen CNN (pays a one-off compile; helps on CUDA)


@dataclass
class ModelConfig:
    preset: str = ""  # named architecture ("lrcn", "s2vt", "sa_lstm", "keras_cnn_rnn"); fields below override
    task: Task = "classify"  # many-to-one "classify", many-to-many "frames" or "caption"
    cell: Literal["rnn", "lstm", "gru", "mingru", "minlstm"] = "lstm"  # min*: parallel over time (Feng et al. 2024)
    nonlinearity: Literal["tanh", "relu"] = "tanh"  # vanilla RNN only
    layers: int = 1
    hidden: int = 256
    hidden_sizes: list[int] = field(default_factory=list)  # per-layer sizes (stacked modules), e.g. [16, 8]
    bidirectional: bool = False
    dropout: float = 0.0  # between RNN layers
    input_proj: int = 0  # k > 0: project the features to k before the RNN; with standardize, fixed to the training
    # split's top-k principal components (PCA, set by the trainer); without, a learned Linear. 0 = none
    input_norm: bool = False  # LayerNorm on the input features
    standardize: bool = True  # per-dimension (x - mean) / std of the features, statistics of the training split
    head: Literal["last", "mean", "max", "attention"] = "last"  # many-to-one pooling
    head_dropout: float = 0.5
    head_hidden: list[int] = field(default_factory=list)  # dense ReLU layers before the classifier (Keras: [8])
    decoder: Literal["s2vt", "attention"] = "attention"  # captioning decoder
    embed_dim: int = 256  # word embedding size
    decoder_hidden: int = 0  # 0 = same as hidden
    attention_dim: int = 128
    max_caption_len: int = 20  # tokens, <bos>/<eos> excluded
    scheduled_sampling: float = 0.0  # probability of feeding the model's own word in training
    vocab_min_freq: int = 1
    vocab_max_size: int = 10000


@dataclass
class TrainConfig:
    input: Literal["features", "video"] = "features"  # cached features (fast) or raw video through the encoder
    epochs: int = 10
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-2
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    schedule: Literal["cosine", "step", "none"] = "cosine"
    warmup_epochs: float = 0.0
    step_size: int = 10  # epochs per LR step for schedule="step"
    gamma: float = 0.1
    clip_grad: float = 1.0  # gradient norm clipping (0 = off); RNNs explode without it
    early_stop: int = 0  # patience in epochs on the validation metric (0 = off)
    metric: str = "auto"  # validation metric to select `best.pt` ("auto": accuracy / frame accuracy / CIDEr)
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"  # autocast on CUDA
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", ...
    deterministic: bool = False
    num_workers: int = 0  # DataLoader workers for cached features
    tensorboard: bool = False
    progress: bool = True
    baseline: bool = True  # after training, a linear probe / nearest-neighbour baseline on the same features


@dataclass
class EvalConfig:
    split: str = ""  # "" = data.test_split
    beam_size: int = 3
    length_penalty: float = 0.6  # beam scores sum(log p) / num_tokens ** this (1.0 favoured long captions)
    max_len: int = 0  # 0 = model.max_caption_len
    top_k: int = 5


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    seed: int = 0
    out: str = "runs/exp"  # run directory: resolved config, logs, checkpoints, plots


# ----------------------------------------------------------------------------------------------------------------
# Conversion with validation


def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _describe(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        return f"a list of {_describe(typing.get_args(tp)[0])}"
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _coerce(key: str, tp, value, source: str | None):
    """Check ``value`` against the type ``tp``; convert where lossless (int -> float, "3" -> 3 for --set)."""
    origin = typing.get_origin(tp)
    bad = ConfigError(key, f"got {value!r} ({type(value).__name__}); expected {_describe(tp)}", source=source)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value in allowed:
            return value
        close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(key, f"got {value!r}; allowed: {', '.join(map(repr, allowed))}{hint}", source=source)
    if origin in (Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _coerce(key, arg, value, source)
            except ConfigError:
                continue
        raise bad
    if origin in (list, tuple):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise bad
        (item_tp,) = typing.get_args(tp)[:1]
        return [_coerce(f"{key}[{i}]", item_tp, v, source) for i, v in enumerate(value)]
    if tp is type(None):
        if value is None:
            return None
        raise bad
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise bad
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise bad
    if tp is str:
        if value is None:
            return ""
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise bad
    if dataclasses.is_dataclass(tp):
        return _from_dict(tp, value, key, source)
    raise bad


def _from_dict(cls, data, prefix: str, source: str | None):
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(prefix or "<root>", f"expected a mapping of keys, got {type(data).__name__}", source=source)
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.5)
            hint = f"; did you mean '{(prefix + '.') if prefix else ''}{close[0]}'?" if close else "."
            raise ConfigError(dotted, f"unknown key{hint} Known keys here: {', '.join(names)}", source=source)
        kwargs[key] = _coerce(dotted, hints[key], value, source)
    return cls(**kwargs)


def config_from_dict(data: dict, *, source: str | None = None) -> Config:
    """Build a validated :class:`Config` from a nested dict (missing keys take their defaults).

    A ``model.preset`` name fills the model section from the preset first; keys the user set win.
    """
    model = data.get("model") if isinstance(data, dict) else None
    if isinstance(model, dict) and model.get("preset"):
        try:
            fields = preset_model_section(model["preset"])
        except ConfigError as exc:
            raise ConfigError(exc.key, exc.reason, source=source) from None
        data = {**data, "model": {**fields, **model}}
    cfg = _from_dict(Config, data, "", source)
    validate(cfg, source=source)
    return cfg


def config_to_dict(cfg) -> dict:
    """A plain nested dict (YAML/JSON-safe) of a config."""
    return dataclasses.asdict(cfg)


def _parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(item, "an override must look like key=value, e.g. train.epochs=5")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not all(part.strip() for part in key.split(".")):
        what = "no key before '='" if not key else f"the dotted key {key!r} has an empty part"
        raise ConfigError(item, f"{what}; an override must look like key=value, e.g. train.epochs=5")
    try:
        value = yaml.safe_load(raw) if raw.strip() != "" else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(data: dict, overrides: list[str] | None) -> dict:
    """Apply ``key=value`` strings (dotted keys, YAML-typed values) to a nested dict, in place."""
    for item in overrides or []:
        parts, value = _parse_override(item)
        node = data
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(".".join(parts), f"'{part}' is a value, not a section")
            node = child
        node[parts[-1]] = value
    return data


def load_config(path: str | os.PathLike | None = None, *, overrides: list[str] | None = None) -> Config:
    """Load a YAML config (or the defaults when ``path`` is None), apply ``--set`` overrides, validate.

    Raises:
        ConfigError: the file is missing or not valid YAML, or a key is unknown or holds a bad value.
    """
    data: dict = {}
    source = None
    if path is not None:
        source = str(path)
        p = Path(path)
        if not p.is_file():
            raise ConfigError("<file>", "config file does not exist", source=source)
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise ConfigError("<file>", f"not valid YAML: {exc}", source=source) from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError("<file>", f"expected a mapping at the top level, got {type(loaded).__name__}", source=source)
        data = loaded
    apply_overrides(data, overrides)
    return config_from_dict(data, source=source)


def save_config(cfg: Config, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML."""
    Path(path).write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False), encoding="utf-8")


def _check(cond: bool, key: str, reason: str, source):
    if not cond:
        raise ConfigError(key, reason, source=source)


def validate(cfg: Config, *, source: str | None = None) -> None:
    """Range checks across fields (types were already checked)."""
    d, m, t, e = cfg.data, cfg.model, cfg.train, cfg.eval
    _check(d.num_frames >= 1, "data.num_frames", f"must be >= 1, got {d.num_frames}", source)
    _check(d.size >= 8, "data.size", f"must be >= 8 pixels, got {d.size}", source)
    _check(d.crop >= 0 and d.crop <= d.size, "data.crop", f"must be in [0, data.size={d.size}], got {d.crop}", source)
    _check(d.stride >= 1, "data.stride", f"must be >= 1, got {d.stride}", source)
    _check(d.fold in (1, 2, 3), "data.fold", f"allowed: 1, 2, 3; got {d.fold}", source)
    _check(d.num_workers >= 0, "data.num_workers", f"must be >= 0, got {d.num_workers}", source)
    _check(0 <= d.val_fraction < 1 and 0 <= d.test_fraction < 1 and d.val_fraction + d.test_fraction < 1,
           "data.val_fraction", "val_fraction and test_fraction must be in [0, 1) and sum below 1", source)
    allowed_samplers = typing.get_args(SamplerName)
    _check(d.train_sampler in ("",) + allowed_samplers, "data.train_sampler",
           f"got {d.train_sampler!r}; allowed: '', {', '.join(map(repr, allowed_samplers))}", source)
    _check(d.sampler != "fps" or d.fps > 0, "data.fps", "must be > 0 when data.sampler is 'fps'", source)
    validate_model(m, source=source)
    _check(cfg.encoder.grid >= 1, "encoder.grid", "must be >= 1", source)
    _check(cfg.encoder.chunk_size >= 1, "encoder.chunk_size", "must be >= 1", source)
    _check(t.epochs >= 1, "train.epochs", f"must be >= 1, got {t.epochs}", source)
    _check(t.batch_size >= 1, "train.batch_size", f"must be >= 1, got {t.batch_size}", source)
    _check(t.lr > 0, "train.lr", f"must be > 0, got {t.lr}", source)
    _check(t.clip_grad >= 0, "train.clip_grad", "must be >= 0 (0 = off)", source)
    _check(t.early_stop >= 0, "train.early_stop", "must be >= 0 (0 = off)", source)
    _check(t.device == "auto" or t.device == "cpu" or t.device.startswith("cuda") or t.device == "mps",
           "train.device", f"got {t.device!r}; allowed: 'auto', 'cpu', 'cuda', 'cuda:N', 'mps'", source)
    _check(e.beam_size >= 1, "eval.beam_size", f"must be >= 1, got {e.beam_size}", source)
    _check(e.top_k >= 1, "eval.top_k", f"must be >= 1, got {e.top_k}", source)
    _check(bool(cfg.out), "out", "must name a run directory", source)


def validate_model(m: ModelConfig, *, source: str | None = None) -> None:
    """Range and cross-field checks of a ``model`` section (also run by ``seqvision.models.build_model``, which
    may get a ModelConfig built in Python). Raises :class:`ConfigError` naming the ``model.<key>``."""
    if m.preset:
        get_preset(m.preset)  # an unknown name is a ConfigError naming model.preset
    _check(m.layers >= 1, "model.layers", f"must be >= 1, got {m.layers}", source)
    _check(not m.hidden_sizes or m.layers in (1, len(m.hidden_sizes)), "model.layers",
           f"is {m.layers} but model.hidden_sizes has {len(m.hidden_sizes)} entries: leave layers at 1 or make "
           "them agree", source)
    _check(m.hidden >= 1, "model.hidden", f"must be >= 1, got {m.hidden}", source)
    _check(all(h >= 1 for h in m.hidden_sizes), "model.hidden_sizes", "every size must be >= 1", source)
    _check(all(h >= 1 for h in m.head_hidden), "model.head_hidden", "every width must be >= 1", source)
    _check(m.input_proj >= 0, "model.input_proj", f"must be >= 0 (0 = none), got {m.input_proj}", source)
    _check(m.embed_dim >= 1, "model.embed_dim", f"must be >= 1, got {m.embed_dim}", source)
    _check(m.decoder_hidden >= 0, "model.decoder_hidden", "must be >= 0 (0 = model.hidden)", source)
    _check(m.attention_dim >= 1, "model.attention_dim", f"must be >= 1, got {m.attention_dim}", source)
    _check(0 <= m.dropout < 1, "model.dropout", f"must be in [0, 1), got {m.dropout}", source)
    _check(0 <= m.head_dropout < 1, "model.head_dropout", f"must be in [0, 1), got {m.head_dropout}", source)
    _check(0 <= m.scheduled_sampling <= 1, "model.scheduled_sampling", "must be in [0, 1]", source)
    _check(m.max_caption_len >= 1, "model.max_caption_len", "must be >= 1", source)
    _check(m.vocab_min_freq >= 1, "model.vocab_min_freq", "must be >= 1", source)
    _check(m.vocab_max_size >= 5, "model.vocab_max_size", "must be >= 5 (4 special tokens + 1 word)", source)


def _check_preset_fields(name: str, fields: dict) -> None:
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(fields) - known - {"preset"})
    _check(not unknown, "model.preset", f"preset {name!r} sets unknown ModelConfig fields {unknown}", None)


_PRESET_CHECKERS.append(_check_preset_fields)
for _name in list_presets():
    _check_preset_fields(_name, get_preset(_name).fields)


def check_paths(cfg: Config) -> None:
    """Check that the dataset paths exist (call before any work starts that reads them)."""
    if cfg.data.format == "synthetic":
        return
    _check(bool(cfg.data.root), "data.root", "is required: the folder that holds the videos", None)
    _check(Path(cfg.data.root).exists(), "data.root", f"path does not exist: {cfg.data.root}", None)
    if cfg.data.annotations:
        _check(Path(cfg.data.annotations).exists(), "data.annotations",
               f"path does not exist: {cfg.data.annotations}", None)


__all__ += ["validate", "validate_model", "check_paths"]
