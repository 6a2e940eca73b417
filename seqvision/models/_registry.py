"""The model factory ``build_model``: a resolved ``model`` config section in, a task model out.

Presets are plain config data in :mod:`seqvision.presets` (re-exported here for convenience); this module reads a
:class:`~seqvision.config.ModelConfig` and never the other way round.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from ..config import ModelConfig, config_from_dict, validate_model
from ..data.vocab import Vocabulary
from ..errors import ConfigError
from ..presets import Preset, get_preset, list_presets, register_preset
from ._captioner import Captioner
from ._encoder import SequenceEncoder
from ._heads import ClipClassifier, FrameLabeler

__all__ = ["Preset", "register_preset", "list_presets", "get_preset", "resolve_preset", "build_model",
           "register_model", "build_encoder_from_config"]


def resolve_preset(model_section: dict | None) -> ModelConfig:
    """The ModelConfig of a raw ``model:`` YAML section: defaults, then the preset's values, then the user's keys.

    Example:
        >>> resolve_preset({"preset": "lrcn", "hidden": 64}).hidden, resolve_preset({"preset": "lrcn"}).cell
        (64, 'lstm')
    """
    section = dict(model_section or {})
    name = section.get("preset") or ""
    if name and not isinstance(name, str):
        raise ConfigError("model.preset", f"must be a preset name, got {name!r}")
    section["preset"] = name
    return config_from_dict({"model": section}).model  # the preset's values, type and range checks


def build_encoder_from_config(model_cfg: ModelConfig, *, input_dim: int) -> SequenceEncoder:
    """The :class:`SequenceEncoder` described by ``model_cfg``."""
    m = model_cfg
    return SequenceEncoder(input_dim, cell=m.cell, hidden=m.hidden, layers=m.layers, hidden_sizes=list(m.hidden_sizes),
                           bidirectional=m.bidirectional, dropout=m.dropout, nonlinearity=m.nonlinearity,
                           input_proj=m.input_proj, input_norm=m.input_norm)


ModelBuilder = Callable[..., nn.Module]  # (model_cfg, encoder, *, num_classes, vocab) -> task model
_BUILDERS: dict[str, ModelBuilder] = {}


def register_model(task: str) -> Callable[[ModelBuilder], ModelBuilder]:
    """Decorator registering the builder of ``task``'s model (timm-style ``@register_model``).

    The builder gets the resolved ModelConfig, the built :class:`SequenceEncoder` and keyword-only
    ``num_classes`` / ``vocab``; it raises :class:`ConfigError` naming the ``model.<key>`` it cannot honour.

    Example:
        >>> @register_model("my_task")
        ... def my_task(m, encoder, *, num_classes, vocab):
        ...     return MyModel(encoder, num_classes=num_classes)
    """

    def deco(fn: ModelBuilder) -> ModelBuilder:
        _BUILDERS[task] = fn
        return fn

    return deco


def build_model(model_cfg: ModelConfig, *, input_dim: int, num_classes: int = 0,
                vocab: Vocabulary | None = None) -> nn.Module:
    """Build the task model of ``model_cfg`` (already resolved: presets applied by the config layer).

    Args:
        model_cfg: the ``model`` section.
        input_dim: D, the feature width.
        num_classes: K, classes (``classify``) or frame labels (``frames``).
        vocab: the caption vocabulary (``caption``).

    Returns:
        A :class:`ClipClassifier`, :class:`FrameLabeler` or :class:`Captioner` (the builder registered for
        ``model_cfg.task``). Same arguments, same structure (so a checkpoint's ``model_state`` loads into it).
        Every one returns a :class:`~seqvision.models.ModelOutput` from ``forward`` and ``predict``.

    Raises:
        ConfigError: naming the ``model.<key>`` (this is a boundary: a ModelConfig may be built in Python).
    """
    m = model_cfg
    if not isinstance(m, ModelConfig):
        raise ConfigError("model", f"build_model needs a ModelConfig, got {type(m).__name__}")
    if not isinstance(input_dim, int) or input_dim < 1:
        raise ConfigError("model", f"input_dim must be a positive int (the feature width), got {input_dim!r}")
    validate_model(m)
    builder = _BUILDERS.get(m.task)
    if builder is None:
        raise ConfigError("model.task", f"got {m.task!r}; allowed: {', '.join(map(repr, _BUILDERS))}")
    return builder(m, build_encoder_from_config(m, input_dim=input_dim), num_classes=num_classes, vocab=vocab)


def _need_classes(m: ModelConfig, num_classes: int, what: str) -> None:
    if num_classes < 2:
        raise ConfigError("model.task", f"task {m.task!r} needs num_classes >= 2 (the dataset's {what}), "
                                        f"got {num_classes}")


@register_model("classify")
def _clip_classifier(m: ModelConfig, encoder: SequenceEncoder, *, num_classes: int, vocab=None) -> ClipClassifier:
    _need_classes(m, num_classes, "labels")
    return ClipClassifier(encoder, num_classes=num_classes, head=m.head, head_dropout=m.head_dropout,
                          head_hidden=tuple(m.head_hidden), attention_dim=m.attention_dim)


@register_model("frames")
def _frame_labeler(m: ModelConfig, encoder: SequenceEncoder, *, num_classes: int, vocab=None) -> FrameLabeler:
    _need_classes(m, num_classes, "frame labels")
    return FrameLabeler(encoder, num_classes=num_classes, head_dropout=m.head_dropout)


@register_model("caption")
def _captioner(m: ModelConfig, encoder: SequenceEncoder, *, num_classes: int = 0, vocab=None) -> Captioner:
    if vocab is None or not isinstance(vocab, Vocabulary):
        raise ConfigError("model.task", "task 'caption' needs a Vocabulary (vocab=Vocabulary.build(...))")
    return Captioner(encoder, vocab, decoder=m.decoder, cell=m.cell, embed_dim=m.embed_dim, hidden=m.decoder_hidden,
                     attention_dim=m.attention_dim, max_len=m.max_caption_len,
                     scheduled_sampling=m.scheduled_sampling, dropout=m.head_dropout, nonlinearity=m.nonlinearity)
