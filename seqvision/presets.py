"""Named model presets: plain config data beside the config (timm-style registry, but only data).

A preset is a name for a set of ``model:`` section values. ``config.py`` applies it under the user's own keys when
a config names ``model.preset``; ``seqvision.models`` only ever sees the resolved
:class:`~seqvision.config.ModelConfig`.
This module imports nothing of seqvision but :mod:`seqvision.errors`, so neither ``config`` nor ``models`` has to
import the other for presets (no import cycle).

Example:
    >>> get_preset("lrcn").fields["cell"]
    'lstm'
    >>> preset_model_section("keras_cnn_rnn")["head_hidden"]
    [8]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .errors import ConfigError

__all__ = ["Preset", "register_preset", "list_presets", "get_preset", "preset_model_section"]


@dataclass(frozen=True)
class Preset:
    """A named architecture.

    Attributes:
        name: the ``model.preset`` value.
        fields: ``model`` section values (``ModelConfig`` field names; checked when a config uses them).
        head_hidden: widths of the dense ReLU layers before the classifier (``model.head_hidden``).
        description: one line, from the registering function's docstring.
    """

    name: str
    fields: dict
    head_hidden: tuple[int, ...] = ()
    description: str = ""

    def model_section(self) -> dict:
        """The preset as a ``model:`` section (``head_hidden`` included)."""
        return {**self.fields, "head_hidden": list(self.head_hidden)}


_PRESETS: dict[str, Preset] = {}
_CHECKERS: list[Callable[[str, dict], None]] = []  # config.py registers its field check here (no import cycle)


def register_preset(name: str | None = None, *, head_hidden: tuple[int, ...] = ()) -> Callable:
    """Decorator registering a function that returns the preset's ``model`` section values.

    Raises:
        ConfigError: (key ``model.preset``) the values name unknown ``ModelConfig`` fields.

    Example:
        >>> @register_preset("tiny_gru")
        ... def tiny_gru():
        ...     "A small GRU classifier."
        ...     return {"cell": "gru", "hidden": 32}
    """

    def deco(fn: Callable[[], dict]) -> Callable[[], dict]:
        key = name or fn.__name__
        fields = dict(fn())
        for check in _CHECKERS:
            check(key, fields)
        _PRESETS[key] = Preset(key, fields, tuple(int(h) for h in head_hidden), (fn.__doc__ or "").strip())
        return fn

    return deco


def list_presets() -> list[str]:
    """Names of the registered presets, sorted."""
    return sorted(_PRESETS)


def get_preset(name: str) -> Preset:
    """The :class:`Preset` called ``name``.

    Raises:
        ConfigError: (key ``model.preset``) no preset has that name; the message lists the known ones.
    """
    if not isinstance(name, str) or name not in _PRESETS:
        raise ConfigError("model.preset", f"unknown preset {name!r}; allowed: {', '.join(map(repr, list_presets()))}")
    return _PRESETS[name]


def preset_model_section(name: str) -> dict:
    """``get_preset(name).model_section()``: the values a config's ``model`` section starts from."""
    return get_preset(name).model_section()


# ----------------------------------------------------------------------------------------------------------------
# the shipped presets


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
