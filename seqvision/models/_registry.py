"""Named presets (timm-style registry) and the model factory ``build_model``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

from torch import nn

from ..config import ModelConfig, config_from_dict
from ..data.vocab import Vocabulary
from ..errors import ConfigError
from ._captioner import Captioner
from ._encoder import SequenceEncoder
from ._heads import ClipClassifier, FrameLabeler

__all__ = ["Preset", "register_preset", "list_presets", "get_preset", "resolve_preset", "build_model",
           "build_encoder_from_config"]


@dataclass(frozen=True)
class Preset:
    """A named architecture: ``fields`` set ModelConfig values; ``head_hidden`` adds dense ReLU layers before
    the classifier (a structural extra that has no ModelConfig field)."""

    name: str
    fields: dict
    head_hidden: tuple[int, ...] = ()
    description: str = ""


_PRESETS: dict[str, Preset] = {}


def register_preset(name: str | None = None, *, head_hidden: tuple[int, ...] = ()) -> Callable:
    """Decorator registering a function that returns the preset's ModelConfig fields.

    Example:
        >>> @register_preset("tiny_gru")
        ... def tiny_gru():
        ...     "A small GRU classifier."
        ...     return {"cell": "gru", "hidden": 32}
    """

    def deco(fn: Callable[[], dict]) -> Callable[[], dict]:
        key = name or fn.__name__
        fields = fn()
        known = {f.name for f in dataclasses.fields(ModelConfig)}
        unknown = sorted(set(fields) - known - {"preset"})
        if unknown:
            raise ConfigError("model.preset", f"preset {key!r} sets unknown ModelConfig fields {unknown}")
        _PRESETS[key] = Preset(key, dict(fields), tuple(head_hidden), (fn.__doc__ or "").strip())
        return fn

    return deco


def list_presets() -> list[str]:
    """Names of the registered presets, sorted."""
    return sorted(_PRESETS)


def get_preset(name: str) -> Preset:
    """The :class:`Preset` called ``name``; an unknown name is a ConfigError naming ``model.preset``."""
    if not isinstance(name, str) or name not in _PRESETS:
        raise ConfigError("model.preset", f"unknown preset {name!r}; allowed: {', '.join(map(repr, list_presets()))}")
    return _PRESETS[name]


def resolve_preset(model_section: dict | None) -> ModelConfig:
    """The ModelConfig of a raw ``model:`` YAML section: defaults, then the preset's values, then the user's keys.

    Example:
        >>> resolve_preset({"preset": "lrcn", "hidden": 64}).hidden, resolve_preset({"preset": "lrcn"}).cell
        (64, 'lstm')
    """
    section = dict(model_section or {})
    name = section.get("preset") or ""
    merged = {}
    if name:
        if not isinstance(name, str):
            raise ConfigError("model.preset", f"must be a preset name, got {name!r}")
        merged.update(get_preset(name).fields)
    merged.update(section)
    merged["preset"] = name
    return config_from_dict({"model": merged}).model  # type and range checks, errors name model.<key>


# ----------------------------------------------------------------------------------------------------------------
# presets


@register_preset("lrcn")
def lrcn() -> dict:
    """LRCN (Donahue et al. 2015): one LSTM layer of 256 over CNN features, last-step linear classifier."""
    return {"task": "classify", "cell": "lstm", "layers": 1, "hidden": 256, "head": "last", "head_dropout": 0.5}


@register_preset("s2vt")
def s2vt() -> dict:
    """S2VT-style captioner (Venugopalan et al. 2015): LSTM encoder, LSTM decoder started from its state."""
    return {"task": "caption", "cell": "lstm", "layers": 1, "hidden": 512, "decoder": "s2vt", "embed_dim": 512,
            "head_dropout": 0.5}


@register_preset("sa_lstm")
def sa_lstm() -> dict:
    """Soft-attention LSTM captioner (Yao et al. 2015): additive temporal attention at every word."""
    return {"task": "caption", "cell": "lstm", "layers": 1, "hidden": 512, "decoder": "attention",
            "embed_dim": 256, "attention_dim": 256, "head_dropout": 0.5}


@register_preset("keras_cnn_rnn", head_hidden=(8,))
def keras_cnn_rnn() -> dict:
    """Keras "video classification with a CNN-RNN": GRU(16) -> GRU(8) -> dropout 0.4 -> dense(8, relu) ->
    dense(classes)."""
    return {"task": "classify", "cell": "gru", "hidden_sizes": [16, 8], "head": "last", "head_dropout": 0.4}


# ----------------------------------------------------------------------------------------------------------------
# factory


def build_encoder_from_config(model_cfg: ModelConfig, *, input_dim: int) -> SequenceEncoder:
    """The :class:`SequenceEncoder` described by ``model_cfg``."""
    m = model_cfg
    if m.hidden_sizes and m.layers not in (1, len(m.hidden_sizes)):
        raise ConfigError("model.layers", f"is {m.layers} but model.hidden_sizes has {len(m.hidden_sizes)} "
                                          "entries: leave layers at 1 or make them agree")
    return SequenceEncoder(input_dim, cell=m.cell, hidden=m.hidden, layers=m.layers, hidden_sizes=list(m.hidden_sizes),
                           bidirectional=m.bidirectional, dropout=m.dropout, nonlinearity=m.nonlinearity,
                           input_proj=m.input_proj, input_norm=m.input_norm)


def build_model(model_cfg: ModelConfig, *, input_dim: int, num_classes: int = 0,
                vocab: Vocabulary | None = None) -> nn.Module:
    """Build the task model of ``model_cfg`` (already resolved with :func:`resolve_preset`).

    Args:
        model_cfg: the ``model`` section.
        input_dim: D, the feature width.
        num_classes: K, classes (``classify``) or frame labels (``frames``).
        vocab: the caption vocabulary (``caption``).

    Returns:
        A :class:`ClipClassifier`, :class:`FrameLabeler` or :class:`Captioner`. Same arguments, same structure
        (so a checkpoint's ``model_state`` loads into it).
    """
    m = model_cfg
    if not isinstance(m, ModelConfig):
        raise ConfigError("model", f"build_model needs a ModelConfig, got {type(m).__name__}")
    if not isinstance(input_dim, int) or input_dim < 1:
        raise ConfigError("model", f"input_dim must be a positive int (the feature width), got {input_dim!r}")
    head_hidden = get_preset(m.preset).head_hidden if m.preset else ()
    encoder = build_encoder_from_config(m, input_dim=input_dim)
    if m.task in ("classify", "frames"):
        if num_classes < 2:
            raise ConfigError("model.task", f"task {m.task!r} needs num_classes >= 2 (the dataset's "
                                            f"{'labels' if m.task == 'classify' else 'frame labels'}), got {num_classes}")
        if m.task == "classify":
            return ClipClassifier(encoder, num_classes=num_classes, head=m.head, head_dropout=m.head_dropout,
                                  head_hidden=head_hidden, attention_dim=m.attention_dim)
        return FrameLabeler(encoder, num_classes=num_classes, head_dropout=m.head_dropout)
    if m.task == "caption":
        if vocab is None or not isinstance(vocab, Vocabulary):
            raise ConfigError("model.task", "task 'caption' needs a Vocabulary (vocab=Vocabulary.build(...))")
        return Captioner(encoder, vocab, decoder=m.decoder, cell=m.cell, embed_dim=m.embed_dim,
                         hidden=m.decoder_hidden, attention_dim=m.attention_dim, max_len=m.max_caption_len,
                         scheduled_sampling=m.scheduled_sampling, dropout=m.head_dropout,
                         nonlinearity=m.nonlinearity)
    raise ConfigError("model.task", f"got {m.task!r}; allowed: 'classify', 'frames', 'caption'")
