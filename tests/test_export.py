"""ONNX export: every tabular detector's graph scores like decision_function (float32, 1e-5)."""

import numpy as np
import pytest
import torch

from usfad.cli import main
from usfad.detectors import DeepSVDD, DeepSVDDVAE, FlowDetector, NonUSFlow, USFlow, VAEFlow
from usfad.export import (
    OPSET,
    export_module,
    inference_copy,
    onnx_session,
    relative_difference,
    run_onnx,
    verify_module,
    verify_onnx,
)
from usfad.flows import AdditiveCoupling, Conjugate, FixedLinear, LUConv1x1, LULinear, Sequential, conv

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

TINY = {"hidden_features": (16,), "epochs": 1, "random_state": 0}
DETECTORS = {
    "usflow": lambda: USFlow(n_blocks=2, **TINY),
    "usflow-kernel": lambda: USFlow(n_blocks=2, base="kernel", **TINY),
    "usflow-kernel-widths": lambda: adaptive(USFlow(n_blocks=2, **TINY)),
    "usflow-gaussian-weight": lambda: USFlow(n_blocks=2, gaussian_weight=0.5, **TINY),  # kernels + trained Gaussian
    "nonusflow": lambda: NonUSFlow(n_blocks=2, **TINY),
    "flow-affine": lambda: FlowDetector(flow="affine", n_blocks=2, clamp=1.9, **TINY),
    "deepsvdd": lambda: DeepSVDD(**TINY),
    "deepsvdd-soft-boundary": lambda: DeepSVDD(objective="soft-boundary", warm_up_epochs=1, **TINY),
    "vaeflow-usf": lambda: VAEFlow(n_blocks=2, **TINY),
    "vaeflow-affine-neg-elbo": lambda: VAEFlow(prior="affine", n_blocks=2, score="neg_elbo", **TINY),
    "vaeflow-normal": lambda: VAEFlow(prior="normal", **TINY),
    "deepsvddvae": lambda: DeepSVDDVAE(score="distance+recon", **TINY),
}


def adaptive(detector: FlowDetector) -> FlowDetector:
    """A flow detector whose kernels always have per-centre widths (the local power 1)."""
    detector.kernel_local_powers = (1.0,)
    return detector


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: tiny models on a shared machine run slower with more."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def raw_data():
    """Raw features far from standardised (offsets 100, scales 5): the scaler must be inside."""
    rng = np.random.default_rng(0)
    train = rng.normal(size=(300, 6)) * 5.0 + 100.0
    fresh = rng.normal(size=(1000, 6)) * 7.0 + 100.0
    fresh[:20] += 40.0  # a few far-out rows: large scores
    return train, fresh


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_exported_graph_scores_fresh_data_like_decision_function_at_batch_1_and_1000(name, raw_data, tmp_path):
    train, fresh = raw_data
    detector = DETECTORS[name]().fit(train)
    path = detector.export_onnx(tmp_path / "model.onnx")
    report = verify_onnx(detector, path, fresh, batch_sizes=(1, 1000))
    assert set(report.max_rel_diff) == {1, 1000}
    assert report.passed, str(report)
    assert report.worst <= 1e-5


def test_scoring_module_maps_raw_features_to_decision_function_scores_with_lu_layers_frozen(raw_data):
    train, fresh = raw_data
    detector = USFlow(n_blocks=2, **TINY).fit(train)
    graph = detector.scoring_module()
    assert not graph.training
    assert not any(isinstance(m, LULinear) for m in graph.modules())
    assert any(isinstance(m, LULinear) for m in detector.model_.modules())  # the detector itself is untouched
    with torch.no_grad():
        scores = graph(torch.as_tensor(fresh, dtype=torch.float64))
    assert scores.dtype == torch.float64
    np.testing.assert_allclose(scores.numpy(), detector.decision_function(fresh), rtol=1e-6)


def test_relative_difference_is_relative_above_one_and_absolute_below():
    assert relative_difference(np.array([100.001]), np.array([100.0])) == pytest.approx(1e-5)
    assert relative_difference(np.array([1e-3]), np.array([0.0])) == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="shapes differ"):
        relative_difference(np.zeros(2), np.zeros(3))


def test_verify_reports_a_failure_for_a_graph_of_another_model(raw_data, tmp_path):
    train, fresh = raw_data
    a = USFlow(n_blocks=2, **TINY).fit(train)
    b = USFlow(n_blocks=2, **{**TINY, "random_state": 1}).fit(train)
    path = a.export_onnx(tmp_path / "a.onnx")
    report = verify_onnx(b, path, fresh[:50], batch_sizes=(50,))
    assert not report.passed
    assert "FAILED" in str(report)


def test_exported_file_declares_opset_dynamic_batch_names_and_threshold(raw_data, tmp_path):
    train, _ = raw_data
    detector = USFlow(n_blocks=2, **TINY).fit(train)
    model = onnx.load(str(detector.export_onnx(tmp_path / "m.onnx")))
    assert {o.domain: o.version for o in model.opset_import}[""] == OPSET
    (inp,) = model.graph.input
    (out,) = model.graph.output
    assert (inp.name, out.name) == ("X", "score")
    assert inp.type.tensor_type.shape.dim[0].dim_param == "batch"
    assert inp.type.tensor_type.shape.dim[1].dim_value == 6
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    meta = {p.key: p.value for p in model.metadata_props}
    assert float(meta["usfad.threshold"]) == detector.threshold_
    assert meta["usfad.class"] == "USFlow" and meta["usfad.n_features"] == "6"


def test_frozen_lu_layer_matches_the_lu_layer_both_ways(float64):
    torch.manual_seed(0)
    layer = LULinear(5)
    with torch.no_grad():
        layer.upper.add_(0.3 * torch.randn(5, 5))
        layer.log_diag.add_(0.2 * torch.randn(5))
    frozen = layer.frozen()
    assert isinstance(frozen, FixedLinear)
    x = torch.randn(7, 5)
    y, ld = layer(x)
    y2, ld2 = frozen(x)
    torch.testing.assert_close(y2, y)
    torch.testing.assert_close(ld2, ld)
    torch.testing.assert_close(frozen.inverse(y), layer.inverse(y))


class _MapHead(torch.nn.Module):
    """A tiny image-style head: a conjugated coupling on a feature map -> (scores, maps)."""

    def __init__(self):
        super().__init__()
        coupling = AdditiveCoupling(4, conv(hidden_channels=8))
        torch.nn.init.normal_(coupling.conditioner[-1].weight, std=0.1)
        self.flow = Sequential([Conjugate(coupling, LUConv1x1(4)), LUConv1x1(4)])

    def forward(self, x):
        z, _ = self.flow(x)
        maps = z.pow(2).sum(1, keepdim=True)
        return maps.flatten(1).amax(1), maps


def test_export_module_writes_several_named_outputs_with_a_dynamic_batch(tmp_path):
    torch.manual_seed(0)
    head = inference_copy(_MapHead())
    assert not any(isinstance(m, LULinear) for m in head.modules())
    path = export_module(
        head,
        torch.randn(2, 4, 6, 6),
        tmp_path / "head.onnx",
        input_names=("features",),
        output_names=("image_score", "anomaly_map"),
    )
    session = onnx_session(path, threads=1)
    assert [o.name for o in session.get_outputs()] == ["image_score", "anomaly_map"]
    x = torch.randn(5, 4, 6, 6)
    torch.manual_seed(0)
    reference = _MapHead()  # same seed: the unfrozen twin of head
    with torch.no_grad():
        want_scores, want_maps = reference.eval()(x)
    for batch in (1, 5):
        scores, maps = run_onnx(session, x.numpy(), batch_size=batch)
        assert maps.shape == (5, 1, 6, 6)
        assert relative_difference(scores, want_scores.numpy()) < 1e-5
        assert relative_difference(maps, want_maps.numpy()) < 1e-5
    report = verify_module(reference, path, x, batch_sizes=(1, 5))
    assert report.passed and set(report.max_rel_diff) == {1, 5}


def test_export_module_says_when_output_names_do_not_match(tmp_path):
    with pytest.raises(ValueError, match="returns 2 output"):
        export_module(inference_copy(_MapHead()), torch.randn(2, 4, 6, 6), tmp_path / "x.onnx")


def test_cli_export_writes_the_file_and_prints_the_check(tmp_path, raw_data, capsys):
    train, _ = raw_data
    model = USFlow(n_blocks=2, **TINY).fit(train).save(tmp_path / "m.safetensors")
    out = tmp_path / "m.onnx"
    assert main(["export", str(model), "-o", str(out), "--check-rows", "200"]) == 0
    printed = capsys.readouterr().out
    assert out.is_file()
    assert "max relative difference" in printed and "at batch 1," in printed and "at batch 200" in printed
    assert "check passed" in printed


def test_cli_export_fails_when_the_check_tolerance_is_impossible(tmp_path, raw_data, capsys):
    train, _ = raw_data
    model = NonUSFlow(n_blocks=2, **TINY).fit(train).save(tmp_path / "m.safetensors")
    code = main(["export", str(model), "-o", str(tmp_path / "m.onnx"), "--rtol", "0", "--check-rows", "300"])
    assert code == 1
    assert "check FAILED" in capsys.readouterr().out
