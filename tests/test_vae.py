"""VAEFlow (VAE with a USF / affine / N(0, I) prior) and DeepSVDDVAE: contract and scores."""

import numpy as np
import pytest
import torch
from sklearn.base import clone

from usfad.detectors import load
from usfad.detectors.vae import PRIORS, DeepSVDDVAE, VAEFlow, default_latent_features

FAST = {"epochs": 2, "hidden_features": (16,), "batch_size": 64}
FAST_FLOW = {**FAST, "n_blocks": 2}
VAES = [
    pytest.param(VAEFlow, {**FAST_FLOW, "prior": "usf"}, id="vaeflow-usf"),
    pytest.param(VAEFlow, {**FAST_FLOW, "prior": "affine"}, id="vaeflow-affine"),
    pytest.param(VAEFlow, {**FAST_FLOW, "prior": "normal"}, id="vaeflow-normal"),
    pytest.param(DeepSVDDVAE, FAST, id="deepsvddvae"),
    pytest.param(DeepSVDDVAE, {**FAST, "score": "distance+recon"}, id="deepsvddvae-recon"),
]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize(("cls", "params"), VAES)
def test_vae_detectors_train_and_give_finite_scores(cls, params, gaussian_data):
    det = cls(**params)
    assert clone(det).get_params() == det.get_params()
    assert det.fit(gaussian_data) is det
    assert det.history_.steps > 0 and np.isfinite(det.history_.train_loss).all()
    X = gaussian_data[:9] * 2.0
    scores = det.decision_function(X)
    assert scores.shape == (9,) and np.isfinite(scores).all()
    assert det.decision_scores_.shape == (len(gaussian_data),)
    assert det.latent(X).shape == (9, default_latent_features(3))
    components = det.score_components(X)
    assert set(components) == set(cls.scores)
    assert np.array_equal(components[det.score], scores)
    assert all(v.shape == (9,) and np.isfinite(v).all() for v in components.values())
    assert not hasattr(clone(det), "model_")


def test_vaeflow_anomaly_is_recon_plus_latent_and_each_score_is_selectable(gaussian_data):
    det = VAEFlow(**FAST_FLOW).fit(gaussian_data)
    c = det.score_components(gaussian_data)
    assert set(c) == {"anomaly", "recon", "latent", "neg_elbo"}
    assert np.array_equal(c["anomaly"], c["recon"] + c["latent"])
    for name in VAEFlow.scores:
        assert np.array_equal(det.set_params(score=name).decision_function(gaussian_data), c[name])


def test_neg_elbo_of_a_sample_does_not_depend_on_its_batch(gaussian_data):
    det = VAEFlow(**FAST_FLOW, score="neg_elbo").fit(gaussian_data)
    alone = det.decision_function(gaussian_data[:3])
    within = det.decision_function(gaussian_data[:50])[:3]
    assert np.allclose(alone, within, rtol=1e-6) and np.isfinite(alone).all()


@pytest.mark.parametrize(("cls", "params"), VAES)
def test_vae_save_load_round_trip_gives_identical_scores(cls, params, gaussian_data, tmp_path):
    det = cls(**params).fit(gaussian_data)
    again = load(det.save(tmp_path / "vae.usfad"))
    assert type(again) is cls and again.get_params() == det.get_params()
    X = gaussian_data[::11] * 1.5
    assert np.array_equal(again.decision_function(X), det.decision_function(X))
    for name, values in det.score_components(X).items():
        assert np.array_equal(again.score_components(X)[name], values), name


def test_usf_prior_is_a_uniformly_scaling_flow_and_affine_is_not(gaussian_data):
    flows = {p: VAEFlow(**FAST_FLOW, prior=p).fit(gaussian_data).model_.prior.flow for p in PRIORS}
    assert flows["usf"].constant_logdet
    assert not flows["affine"].constant_logdet
    assert len(flows["normal"].layers) == 0  # the identity: p(z) = N(0, I)


def test_normal_prior_is_the_standard_gaussian(gaussian_data):
    det = VAEFlow(**FAST, prior="normal").fit(gaussian_data)
    z = torch.randn(5, det.model_.latent_features)
    expected = -torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(1)
    assert torch.allclose(det.model_.prior_nll(z), expected, atol=1e-5)


def test_latent_size_default_depends_on_dimension():
    assert [default_latent_features(d) for d in (1, 2, 5, 20, 64, 1000)] == [2, 2, 2, 10, 32, 32]
    X = np.random.default_rng(0).normal(size=(40, 20))
    assert VAEFlow(**FAST_FLOW).fit(X).latent(X).shape == (40, 10)
    assert VAEFlow(**FAST_FLOW, latent_features=3).fit(X).latent(X).shape == (40, 3)


def test_deepsvddvae_centre_avoids_near_zero_coordinates_and_scores_distance(gaussian_data):
    det = DeepSVDDVAE(**FAST, eps=0.1).fit(gaussian_data)
    center = det.model_.center.numpy()
    assert (np.abs(center) >= 0.1 - 1e-7).all()
    X = gaussian_data[:20]
    dist = np.sum((det.latent(X) - center) ** 2, axis=1)
    assert np.allclose(det.decision_function(X), dist, rtol=1e-5)
    c = det.score_components(X)
    assert np.array_equal(c["distance+recon"], det.svdd_weight * c["distance"] + c["recon"])


@pytest.mark.parametrize(
    ("cls", "params", "message"),
    [
        (VAEFlow, {"prior": "nonusf"}, "prior must be one of"),
        (VAEFlow, {"score": "distance"}, "score must be one of"),
        (VAEFlow, {"latent_features": 0}, "latent_features"),
        (VAEFlow, {"beta": -1.0}, "beta"),
        (DeepSVDDVAE, {"score": "latent"}, "score must be one of"),
        (DeepSVDDVAE, {"svdd_weight": -1.0}, "svdd_weight"),
        (VAEFlow, {"threshold": "chi2"}, "uniformly scaling flow"),
    ],
)
def test_vae_parameters_are_checked_at_fit(cls, params, message, gaussian_data):
    with pytest.raises(ValueError, match=message):
        cls(**FAST, **params).fit(gaussian_data)
