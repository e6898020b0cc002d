"""base="kernel": a USF scored with a kernel density over its training rows' latents (density.KernelBase)."""

import math

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import logsumexp

from usfad import USFlow, load
from usfad.density import KernelBase
from usfad.metrics import latent_distance

RNG = np.random.default_rng(0)
TWO_GROUPS = np.concatenate([RNG.normal(size=(300, 3)) * 0.5 - 3, RNG.normal(size=(300, 3)) * 0.5 + 3])
SMALL = {"hidden_features": (16,), "n_blocks": 2, "max_steps": 300}


def kernel(centres: np.ndarray, h: float) -> KernelBase:
    base = KernelBase(centres.shape[1], len(centres)).double()
    base.means.copy_(torch.as_tensor(centres))
    base.bandwidth.fill_(h)
    return base


def test_log_prob_is_the_kernel_density_and_exclude_leaves_one_centre_out():
    centres = RNG.normal(size=(40, 4)) * 2 + 10  # far from the origin: the expansion must not cancel
    z = np.concatenate([RNG.normal(size=(6, 4)) * 2 + 10, centres[:3]])
    base = kernel(centres, 0.7)
    per = np.stack([stats.multivariate_normal(c, 0.49 * np.eye(4)).logpdf(z) for c in centres])
    expected = logsumexp(per, axis=0) - math.log(40)
    np.testing.assert_allclose(base.log_prob(torch.as_tensor(z)).numpy(), expected, rtol=1e-10)
    # rows 6-8 are centres 0-2: left out, each is scored against the other 39
    exclude = torch.tensor([-1] * 6 + [0, 1, 2])
    loo = expected.copy()
    for row, centre in ((6, 0), (7, 1), (8, 2)):
        loo[row] = logsumexp(np.delete(per[:, row], centre)) - math.log(39)
    np.testing.assert_allclose(base.log_prob(torch.as_tensor(z), exclude).numpy(), loo, rtol=1e-10)
    # blocks of 4 rows give what one block gives
    base.block_rows = 4
    np.testing.assert_allclose(base.log_prob(torch.as_tensor(z), exclude).numpy(), loo, rtol=1e-10)
    # sq_distance: a soft minimum of the squared distances, >= 0, and log_prob is the Gaussian formula of scale h
    sq = base.sq_distance(torch.as_tensor(z)).numpy()
    nearest = ((z[:, None] - centres[None]) ** 2).sum(-1).min(1)
    assert (sq >= nearest - 1e-9).all() and (sq <= nearest + 2 * 0.49 * math.log(40) + 1e-9).all()
    with pytest.raises(ValueError, match="at least 2 centres"):
        KernelBase(4, 1)


def test_the_kernel_scores_the_empty_space_between_groups_above_every_training_row():
    det = USFlow(**SMALL, base="kernel").fit(TWO_GROUPS)
    assert isinstance(det.model_.base, KernelBase) and det.kernel_centres_ == len(TWO_GROUPS)
    assert det.decision_function(np.zeros((1, 3)))[0] > det.decision_scores_.max()
    assert 0 < float(det.model_.base.scale) < 10


def test_training_rows_are_scored_without_their_own_kernel():
    X = RNG.normal(size=(600, 4))
    det = USFlow(**SMALL, base="kernel").fit(X)
    direct = det.decision_function(X)
    # its own kernel makes a row more likely: every training row scores higher (worse) without it
    assert (det.decision_scores_ > direct).all()
    # so the contamination threshold, a quantile of those scores, holds on fresh rows from the same law
    fresh = RNG.normal(size=(4000, 4))
    assert 0.06 < det.predict(fresh).mean() < 0.15
    # with its own kernel in, training rows would look far more typical than fresh rows
    assert np.mean(direct > det.threshold_) < 0.5 * det.predict(fresh).mean()


def test_at_most_kernel_max_centres_rows_and_calibration_rows_are_never_centres(monkeypatch):
    monkeypatch.setattr(USFlow, "kernel_max_centres", 50)
    det = USFlow(**SMALL, base="kernel").fit(TWO_GROUPS)
    assert det.kernel_centres_ == 50 and det.model_.base.means.shape == (50, 3)
    # the 50 centre rows score without themselves, the other 550 against all 50
    assert np.sum(det.decision_scores_ > det.decision_function(TWO_GROUPS) + 1e-9) == 50
    monkeypatch.setattr(USFlow, "kernel_max_centres", 10_000)
    conformal = USFlow(**SMALL, base="kernel", threshold="conformal", alpha=0.05).fit(TWO_GROUPS)
    n_cal = len(conformal.calibration_scores_)
    assert conformal.kernel_centres_ == len(TWO_GROUPS) - n_cal
    # calibration rows are scored against all centres, as a fresh row is
    calibration = np.sort(conformal.decision_scores_)
    assert np.isin(conformal.calibration_scores_, calibration).all()


def test_the_kernel_is_saved_and_restored(tmp_path):
    det = USFlow(**SMALL, base="kernel").fit(TWO_GROUPS)
    restored = load(det.save(tmp_path / "m.usfad"))
    assert isinstance(restored.model_.base, KernelBase) and restored.kernel_centres_ == 600
    assert float(restored.model_.base.scale) == float(det.model_.base.scale)
    np.testing.assert_array_equal(restored.decision_function(TWO_GROUPS), det.decision_function(TWO_GROUPS))
    np.testing.assert_array_equal(restored.decision_scores_, det.decision_scores_)
    gaussian = load(USFlow(**SMALL, base="gaussian").fit(TWO_GROUPS).save(tmp_path / "g.usfad"))
    assert gaussian.kernel_centres_ == 0 and not isinstance(gaussian.model_.base, KernelBase)


def test_the_nll_increases_with_the_latent_distance_on_a_kernel_base():
    det = USFlow(**SMALL, base="kernel").fit(TWO_GROUPS)
    probe = np.concatenate([TWO_GROUPS[::10], RNG.normal(size=(50, 3)) * 4])
    r, nll, h = latent_distance(det, probe), det.decision_function(probe), float(det.model_.base.scale)
    # NLL = r^2 / (2 h^2) + (d/2) log(2 pi h^2) - kappa: the Gaussian formula at scale h
    expected = r**2 / (2 * h**2) + 1.5 * np.log(2 * np.pi * h**2) - det.kappa_
    np.testing.assert_allclose(nll, expected, rtol=1e-4, atol=1e-3)


def test_explanations_on_a_kernel_base_add_up():
    det = USFlow(**SMALL, base="kernel").fit(TWO_GROUPS)
    rows = np.array([[0.0, 0.0, 0.0], [3.0, 3.0, -3.0], [-3.5, -2.5, -3.0]])
    out = det.explanation(rows)
    assert out.path == "latent" and out.n_points == 8
    np.testing.assert_allclose(out.attributions.sum(1), out.scores - out.baseline_scores, rtol=1e-4, atol=1e-4)
    typical = float(np.median(det.decision_scores_))
    scores = det.decision_function(rows)
    attributions = det.explain(rows, baseline="typical")
    above = scores > typical
    assert above[:2].all()
    np.testing.assert_allclose(attributions[above].sum(1), scores[above] - typical, rtol=1e-3, atol=2e-3)


def test_bad_base_settings_are_clear_errors():
    with pytest.raises(ValueError, match=r"base must be one of \('auto', 'gaussian', 'kernel'\), got 'knn'"):
        USFlow(base="knn").fit(TWO_GROUPS)
    with pytest.raises(ValueError, match="base='kernel' scores with a kernel density"):
        USFlow(base="kernel", threshold="chi2").fit(TWO_GROUPS)
