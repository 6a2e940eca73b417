"""seqvision.models: sequence encoder, task models (clip classifier, frame labeller, captioner), reference
cells and inspection, presets and the ``build_model`` factory.

Example:
    >>> from seqvision.models import build_model, resolve_preset
    >>> model = build_model(resolve_preset({"preset": "lrcn", "hidden": 32}), input_dim=512, num_classes=5)
    >>> model.predict(torch.randn(2, 16, 512), torch.tensor([16, 9])).probs.shape
    torch.Size([2, 5])
"""

from ._captioner import AdditiveAttention, Captioner, CaptionerOutput, shift_for_teacher_forcing
from ._cells import LayerTrace, ReferenceOutput, reference_forward
from ._encoder import EncoderOutput, SequenceEncoder, lengths_to_mask, reverse_padded
from ._heads import (
    AttentionPool,
    ClassifierOutput,
    ClipClassifier,
    FrameLabeler,
    LastPool,
    MaxPool,
    MeanPool,
    PoolOutput,
    masked_softmax,
)
from ._inspect import Inspection, LayerInspection, inspect
from ._output import ModelOutput
from ._registry import (
    Preset,
    build_model,
    get_preset,
    list_presets,
    register_model,
    register_preset,
    resolve_preset,
)

__all__ = [
    "build_model",
    "register_model",
    "ModelOutput",
    "resolve_preset",
    "register_preset",
    "list_presets",
    "get_preset",
    "Preset",
    "SequenceEncoder",
    "EncoderOutput",
    "reverse_padded",
    "lengths_to_mask",
    "ClipClassifier",
    "ClassifierOutput",
    "FrameLabeler",
    "LastPool",
    "MeanPool",
    "MaxPool",
    "AttentionPool",
    "PoolOutput",
    "masked_softmax",
    "Captioner",
    "CaptionerOutput",
    "AdditiveAttention",
    "shift_for_teacher_forcing",
    "reference_forward",
    "ReferenceOutput",
    "LayerTrace",
    "inspect",
    "Inspection",
    "LayerInspection",
]
