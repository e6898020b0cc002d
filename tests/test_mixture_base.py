"""base_components > 1: a USF on a mixture of unit Gaussians (density.GaussianMixtureBase)."""

import math
import warnings

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import logsumexp

from usfad import USFlow, load
from usfad.density import GaussianMixtureBase
from usfad.errors import DataError

RNG = np.random.default_rng(0)
TWO_GROUPS = np.concatenate([RNG.normal(size=(300, 3)) * 0.5 - 3, RNG.normal(size=(300, 3)) * 0.5 + 3])
SMALL = {"hidden_features": (16,), "n_blocks": 2, "max_steps": 300, "base": "gaussian"}  # scored by the mixture


def test_log_prob_is_the_mixture_density():
    torch.manual_seed(0)
    base = GaussianMixtureBase(4, 3)
    with torch.no_grad():
        base.means.copy_(torch.randn(3, 4) * 2)
        base.logits.copy_(torch.tensor([0.5, -1.0, 0.0]))
    z = torch.randn(7, 4, dtype=torch.float32) * 3
    w = torch.softmax(base.logits, 0).detach().numpy()
    per = [stats.multivariate_normal(m, np.eye(4)).logpdf(z.numpy()) for m in base.means.detach().numpy()]
    expected = logsumexp(np.stack(per) + np.log(w)[:, None], axis=0)
    np.testing.assert_allclose(base.log_prob(z).detach().numpy(), expected, rtol=1e-5)
    with pytest.raises(ValueError, match="components must be >= 1"):
        GaussianMixtureBase(4, 0)


def test_one_gaussian_puts_its_density_between_two_groups_and_a_mixture_does_not():
    midpoint = np.zeros((1, 3))
    one = USFlow(**SMALL).fit(TWO_GROUPS)
    two = USFlow(**SMALL, base_components=2).fit(TWO_GROUPS)
    # one Gaussian base: the empty space between the groups is as likely as the groups
    assert np.mean(one.decision_scores_ < one.decision_function(midpoint)[0]) < 0.5
    # two components: it scores above every training row
    assert two.decision_function(midpoint)[0] > two.decision_scores_.max()
    means = np.sort(two.model_.base.means.detach().numpy()[:, 0])
    assert means[0] < 0 < means[1]  # one mean per group (k-means start, seen through the flow)


def test_the_mixture_is_saved_and_restored(tmp_path):
    det = USFlow(**SMALL, base_components=3).fit(TWO_GROUPS)
    restored = load(det.save(tmp_path / "m.usfad"))
    assert isinstance(restored.model_.base, GaussianMixtureBase) and restored.base_components == 3
    np.testing.assert_array_equal(restored.decision_function(TWO_GROUPS), det.decision_function(TWO_GROUPS))
    assert math.isfinite(restored.kappa_)  # still a USF: one log-determinant for every row


def test_chi2_needs_one_gaussian_and_too_few_rows_is_a_clear_error():
    with pytest.raises(ValueError, match="threshold='chi2' reads the latent distance from one Gaussian"):
        USFlow(base_components=2, threshold="chi2").fit(TWO_GROUPS)
    with pytest.raises(DataError, match="base_components=8 needs at least 16 training rows, got 1[0-9]"):
        USFlow(**SMALL, base_components=8).fit(TWO_GROUPS[:15])
    with pytest.raises(ValueError, match="base_components must be an integer >= 1"):
        USFlow(base_components=0).fit(TWO_GROUPS)


def test_explanations_take_the_latent_path_and_add_up():
    det = USFlow(**SMALL, base_components=2).fit(TWO_GROUPS)
    rows = np.array([[0.0, 0.0, 0.0], [3.0, 3.0, -3.0]])
    attributions = det.explain(rows)  # from the training mean, by default
    mean_score = det.decision_function(TWO_GROUPS.mean(0, keepdims=True))
    np.testing.assert_allclose(attributions.sum(1), det.decision_function(rows) - mean_score, rtol=1e-4, atol=1e-4)
    from usfad.explain import flow_parts

    assert flow_parts(det.model_) is not None  # the latent path, as with one Gaussian
    # not quadratic along the path on a mixture: eight points, not one, and a small quadrature residual
    out = det.explanation(rows)
    assert out.n_points == 8 and out.path == "latent"
    assert USFlow(**SMALL).fit(TWO_GROUPS).explanation(rows).n_points == 1  # one Gaussian: exact at one point
    assert (np.abs(out.residual) < 0.01 * np.abs(out.scores - out.baseline_scores)).all()


def test_the_typical_baseline_on_a_mixture_scores_the_median_training_score():
    det = USFlow(**SMALL, base_components=2).fit(TWO_GROUPS)
    typical = float(np.median(det.decision_scores_))
    rows = np.concatenate([RNG.normal(size=(20, 3)) * 3, TWO_GROUPS[:5]])
    out = det.explain(rows, baseline="typical")
    scores = det.decision_function(rows)
    above = scores > typical
    assert above.sum() >= 10 and (~above).sum() >= 3
    np.testing.assert_array_equal(out[~above], 0.0)  # at or below the median: nothing to explain
    # above it: the attributions add up to the score minus the median, the baseline scoring the median
    np.testing.assert_allclose(out[above].sum(1), scores[above] - typical, rtol=1e-3, atol=2e-3)


@pytest.mark.parametrize(
    ("n_rows", "n_features", "threshold", "expected"),
    [(600, 3, "contamination", 8), (600, 128, "conformal", 8), (600, 129, "contamination", 1)]
    + [(600, 3, "chi2", 1), (15, 3, "contamination", 1), (16, 3, "contamination", 8)],
)
def test_auto_takes_eight_components_on_narrow_data_and_one_gaussian_otherwise(n_rows, n_features, threshold, expected):
    assert USFlow(base_components="auto", threshold=threshold).components_for(n_rows, n_features) == expected
    assert USFlow(base_components=3).components_for(n_rows, n_features) == 3  # a number is taken as given


def test_auto_records_what_it_used_and_the_file_keeps_it(tmp_path):
    det = USFlow(**SMALL, base_components="auto").fit(TWO_GROUPS)
    assert det.base_components_ == 8 and isinstance(det.model_.base, GaussianMixtureBase)
    restored = load(det.save(tmp_path / "m.usfad"))
    assert restored.base_components_ == 8
    np.testing.assert_array_equal(restored.decision_function(TWO_GROUPS), det.decision_function(TWO_GROUPS))
    one = USFlow(**SMALL, base_components="auto", threshold="chi2").fit(TWO_GROUPS)
    assert one.base_components_ == 1 and math.isfinite(one.threshold_)


def test_the_nll_increases_with_the_latent_distance_on_a_mixture_too():
    from usfad.metrics import latent_distance

    det = USFlow(**SMALL, base_components=3).fit(TWO_GROUPS)
    probe = np.concatenate([TWO_GROUPS[::10], RNG.normal(size=(50, 3)) * 4])
    r, nll = latent_distance(det, probe), det.decision_function(probe)
    # NLL = r^2 / 2 + (d/2) log(2 pi) - kappa, exactly, for any USF on any of these bases
    np.testing.assert_allclose(nll, r**2 / 2 + 1.5 * np.log(2 * np.pi) - det.kappa_, rtol=1e-4, atol=1e-4)
    one = USFlow(**SMALL).fit(TWO_GROUPS)  # one Gaussian: the plain distance to its mean
    np.testing.assert_allclose(latent_distance(one, probe), np.linalg.norm(one.latent(probe), axis=1), rtol=1e-12)


def test_fewer_distinct_rows_than_components_fits_without_warnings():
    X = np.repeat(np.eye(3), 20, axis=0)  # 3 distinct rows, 8 components
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        det = USFlow(**SMALL, base_components=8).fit(X)
    assert np.isfinite(det.decision_function(X)).all()
