"""ONNX export of the image detectors: images -> (scores, maps), scoring like ImageDetector.predict."""

import numpy as np
import pytest
import torch

from usfad.cli import main
from usfad.export import OPSET, verify_image_onnx
from usfad.flows import FLOWS, FixedLinear, LULinear
from usfad.vision.data import make_synthetic_dataset
from usfad.vision.detector import ImageDetector
from usfad.vision.heads import HEADS
from vision_standin import TinyBackbone, textured_images

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


@pytest.fixture(autouse=True)
def _one_thread():
    """Small tensors: one torch thread is faster, and fair to a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _tiny(model="fastflow", flow="usf", **params):
    # standardize=False: the stand-in backbone's features barely vary over the training images,
    # so standardised per position a planted defect drives U-Flow's maps to ~1e5, where float32
    # rounding alone (PyTorch's own frozen-LU copy included) passes 1e-4. The scaler inside the
    # graph has its own test below.
    settings = {"image_size": 32, "epochs": 1, "batch_size": 4, "n_blocks": 2, "random_state": 0, "standardize": False}
    return ImageDetector(model, flow, backbone=TinyBackbone(), **{**settings, **params}).fit(textured_images(8))


def _fresh(size=32, n=12):
    """Normal and defective images: scores spread over a wide range.

    (Pure noise images are so far from the training images, once standardised per position,
    that the affine U-Flow's maps reach values where float32 rounding through its exp
    couplings differs by up to 1.3e-4 between ONNX Runtime and PyTorch.)
    """
    half = n // 2
    return torch.cat(
        [
            textured_images(half, size=size, seed=3),
            textured_images(n - half, size=size, seed=4, defect=True),
        ]
    )


@pytest.mark.parametrize("flow", FLOWS)
@pytest.mark.parametrize("model", HEADS)
def test_each_head_and_flow_exports_and_scores_like_predict_at_batch_1_and_12(model, flow, tmp_path):
    det = _tiny(model, flow)
    path = det.export_onnx(tmp_path / "m.onnx")
    report = verify_image_onnx(det, path, _fresh(), batch_sizes=(1, 12))
    assert set(report.output_rel_diff) == {"scores", "maps"}
    for name in ("scores", "maps"):
        assert set(report.output_rel_diff[name]) == {1, 12}
    assert report.passed, str(report)
    # image scores within the tabular tolerance; maps (out-of-distribution images standardised
    # per position reach large NLLs) within IMAGE_RTOL, checked by `passed` (measured <= 3e-5)
    assert max(report.output_rel_diff["scores"].values()) <= 1e-5, str(report)


@pytest.mark.parametrize("model", ["fastflow", "uflow"])
def test_density_maps_export_too(model, tmp_path):
    det = _tiny(model, "affine", maps="density")
    report = verify_image_onnx(det, det.export_onnx(tmp_path / "m.onnx"), _fresh(), batch_sizes=(1, 12))
    assert report.passed, str(report)


def test_the_graph_module_runs_predicts_scoring_path_with_lu_layers_frozen():
    det = _tiny("uflow", "usf")
    graph = det.scoring_module()
    assert not any(isinstance(m, LULinear) for m in graph.modules())
    assert any(isinstance(m, FixedLinear) for m in graph.modules())
    assert any(isinstance(m, LULinear) for m in det.head_.modules())  # the detector itself is untouched
    images = _fresh()
    with torch.no_grad():
        scores, maps = graph(images)
    expected_scores, expected_maps = det.score_maps(images)
    assert maps.shape == (12, 32, 32) and scores.shape == (12,)
    np.testing.assert_allclose(scores.numpy(), expected_scores, rtol=1e-5)
    np.testing.assert_allclose(maps.numpy(), expected_maps, rtol=1e-5, atol=1e-6)


def test_exported_file_declares_names_shapes_dynamic_batch_opset_and_metadata(tmp_path):
    det = _tiny("cflow", "affine")
    model = onnx.load(str(det.export_onnx(tmp_path / "m.onnx")))
    assert {o.domain: o.version for o in model.opset_import}[""] == OPSET
    (inp,) = model.graph.input
    assert inp.name == "images" and inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert dims == ["batch", 3, 32, 32]
    outputs = {o.name: [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim] for o in model.graph.output}
    assert outputs == {"scores": ["batch"], "maps": ["batch", 32, 32]}
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["usfad.class"] == "ImageDetector" and meta["usfad.model"] == "cflow" and meta["usfad.flow"] == "affine"
    assert meta["usfad.image_size"] == "32"


@pytest.mark.parametrize("model", ["fastflow", "cflow"])
def test_the_feature_scaler_is_inside_the_graph(model, tmp_path):
    det = _tiny(model, standardize=True)
    plain = _tiny(model, standardize=False)
    images = _fresh()
    assert not np.allclose(det.decision_function(images), plain.decision_function(images))
    report = verify_image_onnx(det, det.export_onnx(tmp_path / "m.onnx"), images, batch_sizes=(1, 12))
    assert report.passed and max(report.output_rel_diff["scores"].values()) <= 1e-5, str(report)


def test_export_at_another_image_size_resizes_inside_like_predict(tmp_path):
    det = _tiny("fastflow", "affine")
    path = det.export_onnx(tmp_path / "m48.onnx", image_size=48)
    images = _fresh(size=48, n=6)
    report = verify_image_onnx(det, path, images, batch_sizes=(1, 6))
    assert report.passed and max(report.output_rel_diff["scores"].values()) <= 1e-5, str(report)
    assert det.score_maps(images)[1].shape == (6, 48, 48)  # what the graph was compared with


def test_verify_rejects_images_of_another_size_than_the_graph(tmp_path):
    det = _tiny()
    path = det.export_onnx(tmp_path / "m.onnx")
    with pytest.raises(ValueError, match=r"takes images of shape \[batch, 3, 32, 32\]"):
        verify_image_onnx(det, path, _fresh(size=48, n=3))


def test_verify_reports_a_failure_for_the_graph_of_another_model(tmp_path):
    path = _tiny("fastflow", "usf", random_state=1).export_onnx(tmp_path / "other.onnx")
    report = verify_image_onnx(_tiny("fastflow", "usf", random_state=2), path, _fresh(n=3), batch_sizes=(1, 3))
    assert not report.passed and "FAILED" in str(report)


@pytest.mark.parametrize("model", ["fastflow", "uflow"])
def test_a_torchvision_mobilenet_v2_detector_exports_and_matches(model, tmp_path):
    det = ImageDetector(
        model, "usf", backbone="mobilenet_v2", weights=None, image_size=64, epochs=1, batch_size=4, n_blocks=1
    ).fit(textured_images(4, size=64))
    path = det.export_onnx(tmp_path / "mobilenet.onnx")
    report = verify_image_onnx(det, path, _fresh(size=64, n=6), batch_sizes=(1, 6))
    assert report.worst <= 1e-5, str(report)


@pytest.fixture(scope="module")
def image_model(tmp_path_factory):
    """An image model file as ``usfad image fit`` writes it (MobileNetV2, random weights, 64 px)."""
    tmp = tmp_path_factory.mktemp("image-model")
    root = make_synthetic_dataset(tmp / "tiles", n_train=4, n_test_good=2, n_test_defect=2, image_size=64, seed=0)
    det = ImageDetector("fastflow", "usf", backbone="mobilenet_v2", weights=None, image_size=64, epochs=1, n_blocks=1)
    det.fit(root)
    return det.save(tmp / "model.usfad"), root


def test_cli_export_recognises_an_image_model_and_checks_it_on_random_images(image_model, tmp_path, capsys):
    model, _ = image_model
    out = tmp_path / "image.onnx"
    assert main(["export", str(model), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "exported ImageDetector (fastflow, usf, backbone mobilenet_v2)" in printed
    assert "input images float32 (batch, 3, 64, 64)" in printed
    assert "8 random 64 x 64 images" in printed and "scores" in printed and "maps" in printed
    assert "at batch 1," in printed and "at batch 8" in printed and "check passed" in printed
    session_inputs = onnx.load(str(out)).graph.input
    assert session_inputs[0].name == "images"


def test_cli_export_checks_an_image_model_on_image_files_and_fails_an_impossible_tolerance(
    image_model, tmp_path, capsys
):
    model, root = image_model
    args = ["export", str(model), "-o", str(tmp_path / "m.onnx"), "--check-data", str(root / "test")]
    assert main([*args, "--image-size", "48"]) == 0
    printed = capsys.readouterr().out
    assert "4 image(s) of" in printed and "(batch, 3, 48, 48)" in printed and "check passed" in printed
    assert main([*args, "--rtol", "0"]) == 1
    assert "check FAILED" in capsys.readouterr().out


def test_cli_export_says_when_a_file_is_not_a_usfad_model(tmp_path, capsys):
    bogus = tmp_path / "not-a-model.usfad"
    bogus.write_bytes(b"hello")
    assert main(["export", str(bogus), "-o", str(tmp_path / "x.onnx")]) == 1
    assert "not a readable usfad model file" in capsys.readouterr().err
