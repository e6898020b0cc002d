"""The detector contract: scikit-learn estimator rules, PyOD names, save/load, thresholds."""

import warnings

import numpy as np
import pytest
import torch
from scipy import stats
from sklearn.base import clone

from usfad import DeepSVDD, FlowDetector, NonUSFlow, USFlow, load
from usfad.errors import ModelFileError, RepresentationCollapseWarning
from usfad.flows import USF_FLOWS

FAST = {"epochs": 5, "hidden_features": (16,), "n_blocks": 2, "batch_size": 64}
FAST_SVDD = {"epochs": 5, "hidden_features": (16,), "latent_features": 4, "batch_size": 64}
DETECTORS = [
    pytest.param(USFlow, FAST, id="usflow"),
    pytest.param(NonUSFlow, FAST, id="nonusflow"),
    pytest.param(DeepSVDD, FAST_SVDD, id="deepsvdd"),
    pytest.param(DeepSVDD, {**FAST_SVDD, "objective": "soft-boundary", "warm_up_epochs": 2}, id="deepsvdd-soft"),
]


@pytest.mark.parametrize(("cls", "params"), DETECTORS)
def test_estimator_contract(cls, params, gaussian_data):
    det = cls(**params)
    assert det.get_params()["epochs"] == 5
    copy = clone(det)
    assert copy.get_params() == det.get_params() and copy is not det
    det.set_params(contamination=0.2)
    assert det.contamination == 0.2
    assert det.fit(gaussian_data) is det
    n = len(gaussian_data)
    assert det.n_features_in_ == 3
    assert det.decision_scores_.shape == (n,) and det.labels_.shape == (n,)
    assert set(np.unique(det.labels_)) <= {0, 1}
    assert abs(det.labels_.mean() - 0.2) < 0.02  # threshold_ by contamination
    X = gaussian_data[:7]
    scores = det.decision_function(X)
    assert scores.shape == (7,) and np.isfinite(scores).all()
    assert np.array_equal(det.score_samples(X), -scores)
    assert np.array_equal(det.predict(X), (scores > det.threshold_).astype(int))
    proba = det.predict_proba(X)
    assert proba.shape == (7, 2) and np.allclose(proba.sum(1), 1) and (proba >= 0).all()
    assert det.latent(X).shape[0] == 7
    assert not hasattr(clone(det), "model_")  # clone copies parameters, not fitted state


@pytest.mark.parametrize(("cls", "params"), DETECTORS)
def test_save_load_round_trip_gives_identical_scores(cls, params, gaussian_data, tmp_path):
    det = cls(**params).fit(gaussian_data)
    path = det.save(tmp_path / "model.usfad")
    again = load(path)
    assert type(again) is cls and again.get_params() == det.get_params()
    X = gaussian_data[::13] * 1.5
    assert np.array_equal(again.decision_function(X), det.decision_function(X))
    assert again.threshold_ == det.threshold_
    assert np.array_equal(again.labels_, det.labels_)
    assert type(cls.load(path)) is cls


def test_fit_is_reproducible_and_leaves_global_rng_alone(gaussian_data):
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a = USFlow(**FAST, random_state=7).fit(gaussian_data).decision_function(gaussian_data)
    assert torch.equal(torch.rand(1), expected_next)
    b = USFlow(**FAST, random_state=7).fit(gaussian_data).decision_function(gaussian_data)
    c = USFlow(**FAST, random_state=8).fit(gaussian_data).decision_function(gaussian_data)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_usflow_scores_rank_exactly_like_latent_distance(gaussian_data):
    det = USFlow(**FAST, base="gaussian").fit(gaussian_data)  # the distance to one centre (kernel: test_kernel_base)
    X = np.random.default_rng(1).normal(size=(300, 3)) * 3
    dist = np.linalg.norm(det.latent(X), axis=1)
    assert stats.spearmanr(det.decision_function(X), dist)[0] == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("flow", USF_FLOWS)
def test_chi2_threshold_flags_about_alpha_of_fresh_normal_data(flow):
    rng = np.random.default_rng(0)
    cov = np.array([[1.0, 0.6, 0.0], [0.6, 1.0, 0.3], [0.0, 0.3, 1.0]])
    X = rng.multivariate_normal([1, -2, 0.5], cov, size=2000)
    fresh = rng.multivariate_normal([1, -2, 0.5], cov, size=5000)
    settings = {"threshold": "chi2", "alpha": 0.05, "epochs": 20, "hidden_features": (32, 32), "n_blocks": 2}
    det = FlowDetector(flow=flow, **settings).fit(X)
    assert 0.03 < det.predict(fresh).mean() < 0.07


def test_chi2_threshold_needs_a_usf(gaussian_data):
    with pytest.raises(ValueError, match="uniformly scaling flow"):
        NonUSFlow(threshold="chi2", **FAST).fit(gaussian_data)
    with pytest.raises(ValueError, match="uniformly scaling flow"):
        DeepSVDD(threshold="chi2", **FAST_SVDD).fit(gaussian_data)


def test_flow_switch_is_fixed_by_the_presets():
    assert USFlow().flow_ == "usf" and NonUSFlow().flow_ == "affine"
    assert FlowDetector(flow="affine").flow_ == "affine"
    with pytest.raises(ValueError, match="USFlow is flow='usf'"):
        USFlow(flow="affine").fit(np.zeros((4, 2)))


def test_kappa_is_only_defined_for_usf(gaussian_data):
    assert np.isfinite(USFlow(**FAST).fit(gaussian_data).kappa_)
    assert np.isfinite(FlowDetector(flow="usf-gin", **FAST).fit(gaussian_data).kappa_)
    with pytest.raises(AttributeError, match="USF"):
        _ = NonUSFlow(**FAST).fit(gaussian_data).kappa_


def test_deepsvdd_centre_avoids_near_zero_coordinates(gaussian_data):
    det = DeepSVDD(**FAST_SVDD, eps=0.1).fit(gaussian_data)
    assert (det.model_.center.abs() >= 0.1 - 1e-7).all()


def test_deepsvdd_is_bias_free_by_default(gaussian_data):
    det = DeepSVDD(**FAST_SVDD).fit(gaussian_data)
    assert all(m.bias is None for m in det.model_.modules() if isinstance(m, torch.nn.Linear))


def test_deepsvdd_warns_when_its_representation_collapses(gaussian_data):
    collapsing = DeepSVDD(bias=True, epochs=300, lr=1e-2, weight_decay=0.1, patience=1000, validation_fraction=0)
    with pytest.warns(RepresentationCollapseWarning, match="collapsed"):
        collapsing.fit(gaussian_data)
    assert collapsing.collapsed_
    with warnings.catch_warnings():
        warnings.simplefilter("error", RepresentationCollapseWarning)
        assert not DeepSVDD(**FAST_SVDD).fit(gaussian_data).collapsed_


def test_soft_boundary_sets_a_radius(gaussian_data):
    det = DeepSVDD(**{**FAST_SVDD, "objective": "soft-boundary", "nu": 0.2, "warm_up_epochs": 1}).fit(gaussian_data)
    radius = float(det.model_.radius)
    assert radius > 0
    dist = np.sum((det.latent(gaussian_data) - det.model_.center.numpy()) ** 2, axis=1)
    assert np.allclose(det.decision_scores_, dist - radius**2, atol=1e-4)


def test_load_rejects_missing_corrupt_and_foreign_files(tmp_path, gaussian_data):
    with pytest.raises(FileNotFoundError, match="no model file"):
        load(tmp_path / "missing.usfad")
    garbage = tmp_path / "garbage.usfad"
    garbage.write_bytes(b"\x00\x01not a model at all")
    with pytest.raises(ModelFileError, match="not a readable usfad model"):
        load(garbage)
    path = USFlow(**FAST).fit(gaussian_data).save(tmp_path / "usf.usfad")
    with pytest.raises(ModelFileError, match="holds a USFlow, not a DeepSVDD"):
        DeepSVDD.load(path)
    truncated = tmp_path / "truncated.usfad"
    truncated.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ModelFileError):
        load(truncated)


def test_load_rejects_other_format_versions(tmp_path, gaussian_data):
    from safetensors import safe_open
    from safetensors.torch import save_file

    path = USFlow(**FAST).fit(gaussian_data).save(tmp_path / "usf.usfad")
    with safe_open(str(path), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    save_file(tensors, str(tmp_path / "v99.usfad"), metadata={**meta, "version": "99"})
    with pytest.raises(ModelFileError, match="format version 99"):
        load(tmp_path / "v99.usfad")


def test_auto_noise_shrinks_as_the_training_rows_grow(gaussian_data):
    noises = [USFlow.noise_for(n) for n in (50, 500, 5_000, 50_000, 500_000)]
    assert all(a > b > 0 for a, b in zip(noises, noises[1:]))
    det = USFlow(epochs=1).fit(gaussian_data)
    assert det.noise_ == pytest.approx(USFlow.noise_for(len(gaussian_data)))
    assert USFlow(epochs=1, noise=0.3).fit(gaussian_data).noise_ == 0.3


@pytest.mark.parametrize("bad", [{"noise": -0.1}, {"noise": "lots"}, {"noise": float("nan")}, {"mixing": "qr"}])
def test_bad_noise_or_mixing_is_refused(bad, gaussian_data):
    with pytest.raises(ValueError, match=next(iter(bad))):
        USFlow(epochs=1, **bad).fit(gaussian_data)


@pytest.mark.parametrize("d, outer", [(4, "LULinear"), (USFlow.lu_mixing_max_features + 1, "Permutation")])
def test_auto_mixing_uses_permutations_only_for_wide_data(d, outer):
    X = np.random.default_rng(0).normal(size=(40, d))
    det = USFlow(epochs=1, hidden_features=(8,)).fit(X)
    blocks = det.model_.flow.layers[: det.n_blocks]
    assert {type(b.outer).__name__ for b in blocks} == {outer}
    assert det.model_.flow.constant_logdet  # a USF either way
    z = det.model_.flow(torch.as_tensor(X[:5], dtype=torch.float32))[1]
    assert torch.allclose(z, z[0].expand_as(z))


@pytest.mark.parametrize(
    ("n_rows", "batch_size", "expected"), [(1, 512, 1), (129, 512, 1), (1025, 512, 2), (1026, 512, 3)]
)
def test_steps_per_epoch_counts_the_batches_the_loop_steps_on(n_rows, batch_size, expected):
    from usfad.train import steps_per_epoch

    assert steps_per_epoch(n_rows, batch_size) == expected  # a trailing batch of one row is skipped


def test_auto_epochs_and_patience_keep_small_sets_training_for_their_step_floors(tmp_path):
    from usfad.train import TrainConfig, epochs_and_patience

    floors = TrainConfig(epochs=100, patience=10, batch_size=512, min_steps=500, min_patience_steps=50)
    assert epochs_and_patience(floors, 130) == (500, 50)  # one step per epoch: the floors bind
    assert epochs_and_patience(floors, 1040) == (167, 17)  # three steps per epoch
    assert epochs_and_patience(floors, 20_000) == (100, 10)  # 40 steps per epoch: as given
    X = np.random.default_rng(0).normal(size=(150, 3))
    auto = USFlow(epochs="auto", patience="auto", hidden_features=(8,), n_blocks=1, random_state=0).fit(X)
    fixed = USFlow(epochs=100, patience=10, hidden_features=(8,), n_blocks=1, random_state=0).fit(X)
    assert len(fixed.history_.train_loss) <= 100  # one step per epoch, stopped by the cap or the patience
    # stopped early only after 50 steps without improvement, or ran to the 500-step floor
    assert len(auto.history_.train_loss) > len(fixed.history_.train_loss)
    best = auto.history_.best_epoch
    assert auto.history_.steps == 500 or auto.history_.steps - (best + 1) == 50
    again = load(auto.save(tmp_path / "auto.usfad"))
    assert again.epochs == "auto" and again.patience == "auto"
    # above auto_floors_max_features the floors are off: 100 epochs of one step, patience 10
    wide = np.random.default_rng(1).normal(size=(150, USFlow.auto_floors_max_features + 1))
    config = USFlow(hidden_features=(8,), n_blocks=1, epochs=1, random_state=0).fit(wide)._train_config()
    assert (config.epochs, config.min_steps) == (1, 0)  # an integer epochs is taken as given
    auto_wide = USFlow(hidden_features=(8,), n_blocks=1, random_state=0).fit(wide)
    config = auto_wide._train_config()
    assert (config.epochs, config.patience, config.min_steps, config.min_patience_steps) == (100, 10, 0, 0)
    assert len(auto_wide.history_.train_loss) <= 100


@pytest.mark.parametrize(
    ("detector", "message"),
    [
        (lambda: USFlow(epochs="many"), r"epochs must be an integer >= 1 or 'auto', got 'many'"),
        (lambda: NonUSFlow(patience=1.5), r"patience must be an integer >= 0 or 'auto', got 1\.5"),
        (lambda: DeepSVDD(epochs="auto"), r"epochs must be an integer >= 1, got 'auto'"),
    ],
)
def test_auto_is_a_flows_option_only_and_other_strings_are_refused(detector, message):
    with pytest.raises(ValueError, match=message):
        detector().fit(np.zeros((10, 2)) + np.arange(10)[:, None])
