"""Per-frame encoders: real torchvision CNNs (random init, small inputs) and the offline EfficientNet-Lite0."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
import torchvision

from assets import make_color_video
from seqvision.config import EncoderConfig
from seqvision.errors import ArgumentError, ConfigError
from seqvision.features import (
    EfficientNetLite0,
    FrameEncoder,
    build_encoder,
    efficientnet_lite0,
    list_encoders,
    packaged_lite0_weights,
)
from seqvision.features._extract import device_resize, target_size
from seqvision.io import VideoReader

SAMPLE_DATA = Path(__import__("matplotlib").get_data_path()) / "sample_data"


def _video(b=2, t=3, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, t, 3, size, size), dtype=torch.uint8, generator=g)  # (B, T, C, H, W)


@pytest.mark.parametrize("name, dim", [("resnet18", 512), ("mobilenet_v3_small", 576), ("efficientnet_b0", 1280),
                                       ("regnet_y_400mf", 440)])
def test_torchvision_encoders_give_b_t_d(name, dim):
    enc = FrameEncoder(name, seed=0)
    assert enc.dim == dim
    out = enc(_video())
    assert out.shape == (2, 3, dim) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    # Different frames, different features (relative: some random-init nets give tiny activations).
    assert (out[0, 0] - out[0, 1]).abs().max() > 1e-3 * out.abs().max() > 0
    # Frames are encoded independently: the same frame alone gives the same features.
    alone = enc(_video()[:1, 1:2])
    torch.testing.assert_close(alone[0, 0], out[0, 1], rtol=1e-4, atol=1e-4 * float(out.abs().max()))


def test_list_and_unknown_names():
    names = list_encoders()
    assert {"resnet18", "mobilenet_v3_large", "convnext_tiny", "efficientnet_lite0"} <= set(names)
    assert not any(n.startswith("vit_") for n in names)
    assert list_encoders("resnet*") and all(n.startswith("resnet") for n in list_encoders("resnet*"))
    # the config boundary names the key; the encoder below it names its own argument (issue #13)
    with pytest.raises(ConfigError, match="encoder.name.*resnet18"):
        build_encoder(EncoderConfig(name="resnet81"))
    with pytest.raises(ArgumentError, match="^name: .*resnet18"):
        FrameEncoder("resnet81")
    with pytest.raises(ConfigError, match="encoder.weights.*IMAGENET1K_V1"):
        build_encoder(EncoderConfig(name="resnet18", weights="IMAGENET_BOGUS"))
    with pytest.raises(ArgumentError, match="^weights: .*IMAGENET1K_V1"):
        FrameEncoder("resnet18", weights="IMAGENET_BOGUS")
    with pytest.raises(ConfigError, match="encoder.pooling"):
        build_encoder(EncoderConfig(name="resnet18", pooling="mean"))
    with pytest.raises(ArgumentError, match="^pooling: "):
        FrameEncoder("resnet18", pooling="mean")
    with pytest.raises(ConfigError, match="encoder.weights.*does not exist"):
        build_encoder(EncoderConfig(name="resnet18", weights="/nonexistent/w.pth"))
    with pytest.raises(ArgumentError, match="does not exist"):
        FrameEncoder("resnet18", weights="/nonexistent/w.pth")


def test_seeded_random_init_is_deterministic_and_leaves_global_rng():
    state = torch.random.get_rng_state()
    a, b, c = FrameEncoder("resnet18", seed=3), FrameEncoder("resnet18", seed=3), FrameEncoder("resnet18", seed=4)
    assert torch.equal(torch.random.get_rng_state(), state)
    x = _video(1, 2)
    torch.testing.assert_close(a(x), b(x))
    assert not torch.allclose(a(x), c(x))


def test_grid_and_max_pooling():
    x = _video(1, 2)
    avg = FrameEncoder("resnet18", seed=0)
    grid = FrameEncoder("resnet18", pooling="grid", grid=2, seed=0)
    mx = FrameEncoder("resnet18", pooling="max", seed=0)
    assert grid.dim == 512 * 4 and grid(x).shape == (1, 2, 2048)
    # The mean of the grid cells is the global average (64 px -> 2x2 map, one position per cell).
    cells = grid(x).view(1, 2, 512, 4)
    torch.testing.assert_close(cells.mean(-1), avg(x), rtol=1e-4, atol=1e-5)
    assert (mx(x) >= avg(x) - 1e-5).all()


def test_trainable_gets_gradients_frozen_does_not():
    x = _video(2, 2, size=32)
    trainable = FrameEncoder("mobilenet_v3_small", trainable=True, seed=0).train()
    out = trainable(x)
    assert out.requires_grad
    out.square().mean().backward()
    grads = [p.grad for p in trainable.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)

    frozen = FrameEncoder("mobilenet_v3_small", seed=0).train()  # train() must not unfreeze BN / dropout
    assert not frozen.trunk.training
    assert all(not p.requires_grad for p in frozen.parameters())
    feats = frozen(x)
    assert not feats.requires_grad
    # A trainable head on frozen features can still backpropagate (no inference-tensor leak).
    head = torch.nn.Linear(frozen.dim, 2)
    head(feats).sum().backward()
    assert head.weight.grad is not None


def test_chunking_matches_one_pass():
    x = _video(2, 5, size=32)
    one = FrameEncoder("resnet18", chunk_size=64, seed=1)
    small = FrameEncoder("resnet18", chunk_size=3, seed=1)
    torch.testing.assert_close(one(x), small(x), rtol=1e-4, atol=1e-5)


def test_float_input_rule_and_channels_last_agree():
    x = _video(1, 2, size=32)
    a = FrameEncoder("resnet18", seed=2, channels_last=True)
    b = FrameEncoder("resnet18", seed=2, channels_last=False)
    torch.testing.assert_close(a(x), b(x.float() / 255), rtol=1e-4, atol=1e-4)
    assert a.mean == pytest.approx((0.485, 0.456, 0.406)) and a.std == pytest.approx((0.229, 0.224, 0.225))


def test_local_weights_file_roundtrip(tmp_path):
    model = torchvision.models.get_model("resnet18", weights=None)
    torch.save(model.state_dict(), tmp_path / "r18.pth")
    a = FrameEncoder("resnet18", weights=str(tmp_path / "r18.pth"))
    b = FrameEncoder("resnet18", weights=str(tmp_path / "r18.pth"))
    x = _video(1, 2, size=32)
    torch.testing.assert_close(a(x), b(x))
    # Same as cutting the saved model by hand: conv trunk, then global average.
    model.eval()
    trunk = torch.nn.Sequential(*list(model.children())[:-2])
    frames = (x[0].float() / 255 - torch.tensor(a.mean).view(1, 3, 1, 1)) / torch.tensor(a.std).view(1, 3, 1, 1)
    with torch.no_grad():
        ref = trunk(frames).mean(dim=(2, 3))
    torch.testing.assert_close(a(x)[0], ref, rtol=1e-4, atol=1e-4)
    # A FrameEncoder's own state dict (what extraction saves as encoder.pt) reloads too.
    torch.save(a.state_dict(), tmp_path / "enc.pt")
    c = FrameEncoder("resnet18", weights=str(tmp_path / "enc.pt"))
    torch.testing.assert_close(c(x), a(x))
    # A file for another architecture names the file.
    with pytest.raises(ArgumentError, match="r18.pth"):
        FrameEncoder("mobilenet_v3_small", weights=str(tmp_path / "r18.pth"))
    with pytest.raises(ConfigError, match="encoder.weights.*r18.pth"):
        build_encoder(EncoderConfig(name="mobilenet_v3_small", weights=str(tmp_path / "r18.pth")))


def test_build_encoder_from_config():
    enc = build_encoder(EncoderConfig(name="mobilenet_v3_small", pooling="grid", grid=1, chunk_size=4), seed=0)
    assert isinstance(enc, FrameEncoder) and enc.dim == 576 and enc.chunk_size == 4


# ------------------------------------------------------------------------------------------------------------------
# Offline EfficientNet-Lite0


def test_lite0_loads_the_packaged_file_strictly():
    path = packaged_lite0_weights()
    assert path.is_file() and path.name.endswith(".pth")
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = EfficientNetLite0()
    result = model.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(4.65e6, rel=0.01)


def _image(name: str, size: int = 224) -> torch.Tensor:
    # PIL, not torchvision.io: torchvision 0.29 deprecates its image decoders (to be removed in favour of torchcodec)
    with PIL.Image.open(SAMPLE_DATA / name) as im:
        img = torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1)  # (3, H, W) uint8
    return torchvision.transforms.functional.resize(img, [size, size], antialias=True)  # (3, H, W) uint8


def test_lite0_classifies_a_real_photo():
    if not (SAMPLE_DATA / "grace_hopper.jpg").is_file():
        pytest.skip("matplotlib sample_data/grace_hopper.jpg not installed")
    categories = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"]  # names only, no download
    enc = FrameEncoder("efficientnet_lite0", weights="DEFAULT")
    model = efficientnet_lite0(pretrained=True).eval()
    img = _image("grace_hopper.jpg")
    x = (img.float()[None] / 255 - torch.tensor(enc.mean).view(1, 3, 1, 1)) / torch.tensor(enc.std).view(1, 3, 1, 1)
    with torch.no_grad():
        probs = model(x).softmax(-1)[0]
    top5 = [categories[i] for i in probs.topk(5).indices.tolist()]
    assert top5[0] == "military uniform", top5
    assert probs[652] > 0.2
    assert {"suit", "bow tie", "Windsor tie", "bulletproof vest"} & set(top5), top5
    # The encoder's features are the classifier's pooled features: its own head on them gives the same answer.
    feats = enc(img[None, None])  # (1, 1, 1280)
    assert feats.shape == (1, 1, 1280)
    torch.testing.assert_close(model._fc(feats[0]), model(x), rtol=1e-3, atol=1e-3)


def test_lite0_weights_names():
    with pytest.raises(ConfigError, match="encoder.weights"):
        build_encoder(EncoderConfig(name="efficientnet_lite0", weights="IMAGENET1K_V2"))
    with pytest.raises(ArgumentError, match="^weights: "):
        FrameEncoder("efficientnet_lite0", weights="IMAGENET1K_V2")
    enc = FrameEncoder("efficientnet_lite0", weights="IMAGENET1K", pooling="grid", grid=2)
    assert enc.dim == 1280 * 4
    assert enc.mean == pytest.approx((127 / 255,) * 3)


# ------------------------------------------------------------------------------------------------------------------
# Resizing on the CNN's device (encoder.resize_on: device) against the decoder's swscale resize


@pytest.mark.parametrize("native, size, resize, crop", [((120, 160), 64, "square", 0),
                                                        ((240, 320), 112, "short_side", 0),
                                                        ((240, 320), 112, "short_side", 96),
                                                        ((60, 80), 112, "square", 0)])
def test_device_resize_matches_the_decoder_up_to_resampling(tmp_path, native, size, resize, crop):
    path = make_color_video(tmp_path / "v.mp4", size=native, num_frames=8, seed=3)
    with VideoReader(path) as vr:
        frames = vr.get_frames(list(range(8)))  # (8, 3, H, W) native
    with VideoReader(path, size=size, resize=resize) as vr:
        ref = vr.get_frames(list(range(8)))  # swscale: YUV -> RGB and resize in one pass
        assert target_size(size, resize, vr.height, vr.width) == vr.output_size  # the reader's own rule
    if crop:
        ref = torchvision.transforms.v2.functional.center_crop(ref, [crop, crop])
    out = device_resize(frames, size=size, resize=resize, crop=crop)
    assert out.dtype == torch.uint8 and out.shape == ref.shape
    diff = (out.int() - ref.int()).abs().float()
    # Measured: mean 1.0-1.3 levels of 255; the largest differences sit on the sharp square's edges, where
    # swscale's fixed-point filter and chroma handling place the edge differently by a fraction of a pixel.
    assert diff.mean() < 2.5, float(diff.mean())
    assert (diff > 16).float().mean() < 0.02
    # The CNN sees the same picture: features agree closely (random-init nets amplify differences, so relative).
    enc = FrameEncoder("resnet18", seed=0)
    a, b = enc(out), enc(ref)
    cos = torch.nn.functional.cosine_similarity(a, b, dim=-1)
    assert cos.min() > 0.98, cos


def test_device_resize_checks_its_input():
    with pytest.raises(ValueError, match="uint8"):
        device_resize(torch.zeros(2, 3, 8, 8), size=4)
    same = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    assert device_resize(same, size=16) is same  # already at size: no resampling
    assert target_size(112, "short_side", 240, 320) == (112, 149)
    assert target_size(112, "short_side", 320, 240) == (149, 112)
    assert target_size(112, "square", 240, 320) == (112, 112)
