"""Attributions: every tabular detector's add up to its score difference; usfad explain streams them."""

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from usfad import DeepSVDD, DeepSVDDVAE, FlowDetector, NonUSFlow, USFlow, VAEFlow, load
from usfad.cli import main
from usfad.density import GaussianBase
from usfad.errors import DataError, NotFittedError
from usfad.explain import (
    gauss_legendre,
    latent_path_attributions,
    neighbour_baselines,
    spread_residual,
    straight_path_attributions,
)
from usfad.flows import LULinear
from usfad.plots import plot_attributions

FAST = {"epochs": 3, "hidden_features": (16,), "batch_size": 64}
#: the flows score with one Gaussian here: the latent path's exactness is a property of that
#: base (the kernel base's explanations: tests/test_kernel_base.py)
ONE_GAUSSIAN = {**FAST, "base": "gaussian"}
MAKERS = {
    "usflow": lambda: USFlow(**ONE_GAUSSIAN, n_blocks=2),
    "usf-gin": lambda: FlowDetector(flow="usf-gin", **ONE_GAUSSIAN, n_blocks=2),
    "nonusflow": lambda: NonUSFlow(**ONE_GAUSSIAN, n_blocks=2),
    "deepsvdd": lambda: DeepSVDD(epochs=3, hidden_features=(16,), latent_features=4),
    "vaeflow": lambda: VAEFlow(**FAST, n_blocks=1),
    "deepsvddvae": lambda: DeepSVDDVAE(epochs=3, hidden_features=(16,)),
}
USFS = ["usflow", "usf-gin"]
COV = np.array([[1.0, 0.8, 0.0, 0.3], [0.8, 1.0, 0.2, 0.0], [0.0, 0.2, 1.0, -0.5], [0.3, 0.0, -0.5, 1.0]])
BIG = np.finfo(np.float64).max


def _gaussian(n, seed):
    return np.random.default_rng(seed).multivariate_normal([1.0, -2.0, 0.5, 3.0], COV, size=n)


X_TRAIN = _gaussian(400, 0)


def _rows():
    """Fresh normal rows and rows with one feature shifted by 4 to 8 sd."""
    X = _gaussian(60, 1)
    X[:20, 2] += 8.0
    X[20:30, 0] -= 4.0
    return X


@pytest.fixture(scope="module")
def fitted():
    return {name: make().fit(X_TRAIN) for name, make in MAKERS.items()}


def _relative(a, b):
    return np.abs(a - b) / np.abs(b)


# --- the guarantee --------------------------------------------------------------------


@pytest.mark.parametrize("name", list(MAKERS))
def test_attributions_add_up_to_the_score_minus_the_baselines_score(fitted, name):
    det, X = fitted[name], _rows()
    e = det.explanation(X)
    assert e.attributions.shape == X.shape and e.attributions.dtype == np.float64
    assert e.path == ("latent" if name in ("usflow", "usf-gin", "nonusflow") else "straight")
    np.testing.assert_allclose(e.attributions.sum(1), e.scores - e.baseline_scores, rtol=1e-12, atol=1e-12)
    # in the units of decision_function: the same sum, from its own scores, to 1e-4 relative
    delta = det.decision_function(X) - det.decision_function(det.scaler_mean_[None])[0]
    assert _relative(e.attributions.sum(1), delta).max() < 1e-4
    np.testing.assert_allclose(e.baselines, np.broadcast_to(det.scaler_mean_, X.shape), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(det.explain(X), e.attributions)


@pytest.mark.parametrize("name", USFS)
@pytest.mark.parametrize("n_points", [1, 2, 5])
def test_a_uniformly_scaling_flow_is_complete_on_its_latent_path_at_any_number_of_points(fitted, name, n_points):
    e = fitted[name].explanation(_rows(), n_points=n_points)
    # what the quadrature left out of the sum, before it is spread: float32 rounding only
    assert np.abs(e.residual / (e.scores - e.baseline_scores)).max() < 1e-4
    assert e.n_points == n_points


def test_usf_rows_whose_float32_sum_misses_are_explained_again_in_float64(fitted, monkeypatch):
    import usfad.explain

    X = _rows()
    e32 = fitted["usflow"].explanation(X)
    monkeypatch.setattr(usfad.explain, "EXACT_RTOL", 0.0)  # every row with any float32 residual
    e = fitted["usflow"].explanation(X)
    assert e.float64_rows.sum() > len(X) // 2 and not fitted["nonusflow"].explanation(X).float64_rows.any()
    redone = e.float64_rows
    assert np.abs(e.residual[redone] / (e.scores - e.baseline_scores)[redone]).max() < 1e-10
    np.testing.assert_allclose(e.attributions, e32.attributions, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(e.scores, e32.scores, rtol=1e-5)


def test_other_detectors_spread_their_quadrature_residual(fitted):
    e = fitted["nonusflow"].explanation(_rows(), n_points=1)
    assert np.abs(e.residual).max() > 1e-4  # the log-det's gradient: one point does not integrate it
    np.testing.assert_allclose(e.attributions.sum(1), e.scores - e.baseline_scores, rtol=1e-12, atol=1e-12)
    assert (
        fitted["nonusflow"].explanation(_rows()[:2]).n_points == 8
        and fitted["usflow"].explanation(_rows()[:2]).n_points == 1
    )


def test_a_shifted_feature_gets_the_largest_attribution():
    det = USFlow(epochs=8, hidden_features=(32,), n_blocks=2, batch_size=128).fit(_gaussian(1000, 2))
    X = _gaussian(200, 3)
    for j in range(4):
        shifted = X.copy()
        shifted[:, j] += 6.0 * np.sqrt(COV[j, j])
        assert (det.explain(shifted).argmax(1) == j).mean() > 0.9


# --- baselines ------------------------------------------------------------------------


@pytest.mark.parametrize("name", USFS)
def test_the_typical_baseline_is_the_point_of_median_training_score_on_each_rows_latent_ray(fitted, name):
    det, X = fitted[name], _rows()
    e = det.explanation(X, "typical")
    typical = np.median(det.decision_scores_)
    inside = e.scores <= typical
    assert inside.any() and (~inside).any()
    np.testing.assert_array_equal(e.attributions[inside], 0.0)  # its own baseline: nothing to explain
    np.testing.assert_array_equal(e.baselines[inside], X[inside])
    assert _relative(e.baseline_scores[~inside], typical).max() < 1e-4
    np.testing.assert_allclose(e.attributions.sum(1), e.scores - e.baseline_scores, rtol=1e-12, atol=1e-12)
    assert (e.attributions[~inside].sum(1) > 0).all()
    np.testing.assert_allclose(det.decision_function(e.baselines[~inside]), typical, rtol=1e-4)


@pytest.mark.parametrize("name", ["nonusflow", "deepsvdd", "vaeflow"])
def test_the_typical_baseline_needs_a_uniformly_scaling_flow(fitted, name):
    with pytest.raises(ValueError, match="needs a uniformly scaling flow"):
        fitted[name].explain(_rows(), "typical")


@pytest.mark.parametrize("name", ["usflow", "nonusflow", "deepsvdd"])
def test_a_baseline_of_raw_rows_one_or_one_per_row(fitted, name):
    det, X = fitted[name], _rows()
    one = X_TRAIN[5]
    e = det.explanation(X, one)
    np.testing.assert_allclose(e.baselines, np.broadcast_to(one, X.shape), atol=1e-9)
    delta = det.decision_function(X) - det.decision_function(one[None])[0]
    assert _relative(e.attributions.sum(1), delta).max() < 1e-4
    per_row = X_TRAIN[:60]
    e = det.explanation(X, per_row)
    assert _relative(e.attributions.sum(1), det.decision_function(X) - det.decision_function(per_row)).max() < 1e-4
    np.testing.assert_allclose(det.explain(X, X), 0.0, atol=1e-5)  # each row its own baseline


def _nearest_mean(det, X, reference, k, outside=0.01):
    """Brute force: the mean of the ``k`` reference rows nearest each row, in standardised features.

    Each row's features outside the reference's ``outside`` .. ``1 - outside`` quantiles are
    left out of its distances (all kept when every one is outside, or ``outside=None``).
    """
    U = (X - det.scaler_mean_) / det.scaler_scale_
    R = (reference - det.scaler_mean_) / det.scaler_scale_
    kept = np.ones(U.shape, dtype=bool)
    if outside is not None:
        low, high = np.quantile(R, outside, axis=0), np.quantile(R, 1 - outside, axis=0)
        for i, u in enumerate(U):
            inside = (u >= low) & (u <= high)
            kept[i] = inside if inside.any() else True
    distances = (kept[:, None, :] * (U[:, None, :] - R[None, :, :]) ** 2).sum(-1)
    return reference[np.argsort(distances, axis=1)[:, :k]].mean(1)


@pytest.mark.parametrize("name", ["usflow", "deepsvdd"])
def test_the_neighbours_baseline_adds_up_to_the_score_minus_its_baselines_score(fitted, name):
    det, X = fitted[name], _rows()
    e = det.explanation(X, "neighbours", reference=X_TRAIN)
    np.testing.assert_allclose(e.attributions.sum(1), e.scores - e.baseline_scores, rtol=1e-12, atol=1e-12)
    delta = det.decision_function(X) - det.decision_function(e.baselines)
    assert _relative(e.attributions.sum(1), delta).max() < 1e-4
    np.testing.assert_allclose(e.baselines, _nearest_mean(det, X, X_TRAIN, 10), rtol=0, atol=1e-12)  # default 10
    np.testing.assert_array_equal(det.explain(X, "neighbours", reference=X_TRAIN), e.attributions)
    np.testing.assert_array_equal(det.explain(X, reference=X_TRAIN), e.attributions)  # a reference: neighbours


def test_the_neighbours_baseline_is_the_mean_of_the_k_nearest_reference_rows_in_standardised_features(fitted):
    det = fitted["nonusflow"]
    reference = X_TRAIN[:50] * [1.0, 10.0, 0.1, 1.0]  # scales that differ: nearness is standardised
    X = _rows()[:12]
    for k in (1, 3, 50):
        e = det.explanation(X, "neighbours", reference=reference, n_neighbours=k)
        np.testing.assert_allclose(e.baselines, _nearest_mean(det, X, reference, k), rtol=0, atol=1e-12)
    assert not np.allclose(_nearest_mean(det, X, reference, 3), _nearest_mean(det, X, reference, 1))
    U = (X - det.scaler_mean_) / det.scaler_scale_
    R = (reference - det.scaler_mean_) / det.scaler_scale_
    for block in (1, 7, 10**6):  # one row at a time, a few, all at once
        np.testing.assert_allclose(
            neighbour_baselines(U, reference, R, 3, block=block), _nearest_mean(det, X, reference, 3), atol=1e-12
        )
    for outside in (None, 0.2):
        np.testing.assert_allclose(
            neighbour_baselines(U, reference, R, 3, outside=outside),
            _nearest_mean(det, X, reference, 3, outside=outside),
            atol=1e-12,
        )
    frame = pd.DataFrame(X_TRAIN[:30], columns=list("abcd"))
    named = USFlow(**FAST, n_blocks=1).fit(pd.DataFrame(X_TRAIN, columns=list("abcd")))
    e = named.explanation(pd.DataFrame(X, columns=list("abcd")), "neighbours", reference=frame, n_neighbours=2)
    np.testing.assert_allclose(e.baselines, _nearest_mean(named, X, X_TRAIN[:30], 2), atol=1e-12)
    with pytest.raises(DataError, match="reference has the model's columns in another order"):
        named.explain(X, "neighbours", reference=frame[list("bacd")])


def _pairs(n, seed, rho=0.95):
    """Three pairs of features, each pair correlated ``rho``: columns a0 b0 a1 b1 a2 b2."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, 3))
    b = rho * a + np.sqrt(1 - rho**2) * rng.normal(size=(n, 3))
    return np.stack([a, b], axis=2).reshape(n, 6)


def test_from_its_nearest_normal_rows_a_swapped_feature_is_among_the_top_two():
    train = _pairs(1000, 0)
    det = USFlow(epochs=8, hidden_features=(32,), n_blocks=2, batch_size=128, random_state=0).fit(train)
    X = _pairs(200, 1)
    donor = np.random.default_rng(2).permutation(len(X))
    apart = np.abs(X[:, 0] - X[donor, 0]) > 1.5  # feature 0 from another row, far from its partner's value
    X = X[apart]
    X[:, 0] = _pairs(200, 1)[donor[apart], 0]
    assert len(X) >= 40

    def found(A):  # share of rows with feature 0 among their 2 largest attributions (chance: 1/3)
        return (np.argsort(-A, axis=1, kind="stable")[:, :2] == 0).any(1).mean()

    near, mean = found(det.explain(X, "neighbours", reference=train)), found(det.explain(X))
    assert near >= 0.85 and near > mean


def test_a_feature_shifted_out_of_range_is_left_out_of_the_neighbour_search():
    train = _pairs(1000, 0)
    det = USFlow(epochs=8, hidden_features=(32,), n_blocks=2, batch_size=128, random_state=0).fit(train)
    X = _pairs(100, 1)
    X[:, 0] += 5.0  # 5 standard deviations: for most rows beyond the reference's 99th percentile of a0
    U = (X - det.scaler_mean_) / det.scaler_scale_
    R = (train - det.scaler_mean_) / det.scaler_scale_
    masked = neighbour_baselines(U, train, R, 10)
    whole = neighbour_baselines(U, train, R, 10, outside=None)
    # left out, a0 takes the neighbours' ordinary values and b0 (its partner) stays near the row's;
    # measured on it, the neighbours come from the tail and share the shift
    gap, gap_whole = np.abs(masked - X).mean(0), np.abs(whole - X).mean(0)
    assert gap[0] > 4.5 and gap_whole[0] < 4.0  # measured: 5.1 and 3.1
    assert gap[1] < 0.5 < gap_whole[1]  # b0, a0's partner: 0.24 and 1.59
    top = np.argmax(det.explain(X, "neighbours", reference=train), axis=1)
    assert (top == 0).mean() >= 0.9


@pytest.mark.parametrize(
    ("baseline", "options", "error", "message"),
    [
        ("neighbours", {}, ValueError, "baseline='neighbours' needs reference rows"),
        ("neighbours", {"reference": X_TRAIN[:, :3]}, DataError, "reference has 3 features, but USFlow is expecting 4"),
        ("neighbours", {"reference": X_TRAIN[:5] * np.nan}, DataError, "reference contains"),
        ("mean", {"reference": X_TRAIN}, ValueError, "reference goes with baseline='neighbours' only; baseline 'mean'"),
        ("typical", {"n_neighbours": 3}, ValueError, "n_neighbours goes with baseline='neighbours' only"),
        (X_TRAIN[0], {"reference": X_TRAIN}, ValueError, "baseline rows does not use it"),
        ("neighbours", {"reference": X_TRAIN, "n_neighbours": 0}, ValueError, "n_neighbours must be an integer >= 1"),
        ("neighbours", {"reference": X_TRAIN, "n_neighbours": 2.5}, ValueError, "n_neighbours must be an integer"),
        ("neighbours", {"reference": X_TRAIN, "n_neighbours": True}, ValueError, "n_neighbours must be an integer"),
        ("neighbours", {"reference": X_TRAIN[:4]}, ValueError, r"n_neighbours=10 needs 1 to 4 reference rows"),
    ],
)
def test_the_neighbours_baseline_refuses_a_missing_or_bad_reference(fitted, baseline, options, error, message):
    with pytest.raises(error, match=message):
        fitted["usflow"].explain(_rows(), baseline, **options)


@pytest.mark.parametrize(
    ("baseline", "error", "message"),
    [
        ("median", ValueError, "baseline must be one of"),
        (np.zeros(3), DataError, "baseline has 3 features, but USFlow is expecting 4"),
        (np.zeros((2, 4)), DataError, "baseline has 2 rows; give one row, or one per row of X"),
        (np.array([0.0, np.nan, 0.0, 0.0]), DataError, "baseline contains 1 NaN"),
    ],
)
def test_a_bad_baseline_is_named(fitted, baseline, error, message):
    with pytest.raises(error, match=message):
        fitted["usflow"].explain(_rows(), baseline)


@pytest.mark.parametrize("n_points", [0, -1, 1.5, True, "4"])
def test_n_points_must_be_a_positive_integer(fitted, n_points):
    with pytest.raises(ValueError, match="n_points must be an integer >= 1"):
        fitted["usflow"].explain(_rows(), n_points=n_points)


# --- inputs, as decision_function takes them ---------------------------------------------


@pytest.mark.parametrize(
    "X",
    [
        np.array([[1.0, np.nan, 0.0, 0.0]] * 3),
        np.arange(4.0),
        np.zeros((3, 5)),
        np.array([["a", "b", "c", "d"]]),
        np.zeros((0, 4)),
        [[1.0, 2.0], [3.0]],
    ],
)
def test_bad_input_gets_the_errors_of_decision_function(fitted, X):
    det = fitted["usflow"]
    with pytest.raises(DataError) as scored:
        det.decision_function(X)
    with pytest.raises(DataError) as explained:
        det.explain(X)
    assert str(explained.value) == str(scored.value)


def test_an_unfitted_detector_and_a_frame_with_other_columns_are_refused():
    with pytest.raises(NotFittedError):
        USFlow().explain(X_TRAIN)
    frame = pd.DataFrame(X_TRAIN, columns=list("abcd"))
    det = USFlow(**FAST, n_blocks=1).fit(frame)
    with pytest.raises(DataError, match="columns in another order"):
        det.explain(frame[list("bacd")])
    assert det.explain(frame.iloc[:5]).shape == (5, 4)


def test_a_row_beyond_float32_reach_is_put_on_its_far_features(fitted):
    det, X = fitted["usflow"], _rows()[:10]
    X[4, 1] = 1e39
    A = det.explain(X)
    np.testing.assert_array_equal(A[4], [0.0, BIG, 0.0, 0.0])
    others = np.delete(np.arange(10), 4)
    np.testing.assert_allclose(A[others], det.explain(X[others]), rtol=1e-6, atol=1e-9)


def test_batches_and_save_load_do_not_change_the_attributions(fitted, tmp_path):
    det, X = fitted["usflow"], _rows()
    A = det.explain(X)
    small = load(det.save(tmp_path / "m.usfad"))
    small.score_batch_size = 7
    np.testing.assert_allclose(small.explain(X), A, rtol=1e-5, atol=1e-6)


# --- the paths and the rule ---------------------------------------------------------------


def test_gauss_legendre_integrates_polynomials_up_to_degree_2n_minus_1():
    for n in (1, 2, 5):
        t, w = gauss_legendre(n)
        assert ((t > 0) & (t < 1)).all() and abs(float(w.sum()) - 1) < 1e-14
        assert abs(float((w * t ** (2 * n - 1)).sum()) - 1 / (2 * n)) < 1e-12
    with pytest.raises(ValueError):
        gauss_legendre(0)


def test_the_straight_path_is_exact_for_a_quadratic_score_with_one_point():
    u = torch.randn(5, 3, dtype=torch.float64)
    c = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    A = straight_path_attributions(lambda v: (c * v**2).sum(1), u, torch.zeros_like(u), 1)
    torch.testing.assert_close(A, c * u**2)


class _LinearFlowModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.flow = LULinear(3).double()
        with torch.no_grad():
            self.flow.lower.normal_()
            self.flow.upper.normal_()
        self.base = GaussianBase(3).double()

    def nll(self, x):
        z, logdet = self.flow(x)
        return -(self.base.log_prob(z) + logdet)


def test_the_latent_path_of_a_linear_flow_is_the_straight_path_in_closed_form():
    model = _LinearFlowModel()
    u = torch.randn(6, 3, dtype=torch.float64)
    z = model.flow(u)[0]
    A = latent_path_attributions(model.nll, model.flow, z, torch.zeros_like(z), 1)
    W = model.flow.weight().detach()
    torch.testing.assert_close(A, u * (u @ W.T @ W) / 2)  # s = ||W u||^2 / 2 + const, from 0


def test_spread_residual_shares_by_size_and_fills_a_row_of_zeros_evenly():
    A = torch.tensor([[1.0, -3.0, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    spread, residual = spread_residual(A, torch.tensor([-1.5, 0.3], dtype=torch.float64))
    torch.testing.assert_close(residual, torch.tensor([0.5, 0.3], dtype=torch.float64))
    torch.testing.assert_close(spread, torch.tensor([[1.125, -2.625, 0.0], [0.1, 0.1, 0.1]], dtype=torch.float64))


def test_plot_attributions_writes_a_png(tmp_path):
    path = plot_attributions(
        tmp_path / "a.png",
        np.array([2.0, -1.0, 0.1]),
        np.array([9.0, 1.0, 30.0]),
        ["a", "b", "c"],
        np.zeros(3),
        np.ones(3),
        title="t",
    )
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- usfad explain --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("explain")
    pd.DataFrame(X_TRAIN, columns=["a", "b,c", "d", "e"]).to_csv(folder / "train.csv", index=False)
    assert main(["fit", str(folder / "train.csv"), "--epochs", "3", "--quiet", "-o", str(folder / "m.usfad")]) == 0
    return folder / "m.usfad"


def _data_csv(path, X):
    pd.DataFrame(X, columns=["a", "b,c", "d", "e"]).to_csv(path, index=False)
    return path


def test_usfad_explain_writes_score_label_and_the_top_features_by_name(tmp_path, model_file, capsys):
    X = _rows()
    data = _data_csv(tmp_path / "data.csv", X)
    out, scores = tmp_path / "out.csv", tmp_path / "scores.csv"
    assert (
        main(["explain", str(model_file), str(data), "--top", "2", "--chunk-size", "7", "--quiet", "-o", str(out)]) == 0
    )
    assert "explained 60 rows with USFlow (baseline mean)" in capsys.readouterr().out
    assert main(["score", str(model_file), str(data), "-o", str(scores)]) == 0
    written = pd.read_csv(out, keep_default_na=False)
    assert list(written.columns) == ["score", "label", "feature_1", "attribution_1", "feature_2", "attribution_2"]
    expected = pd.read_csv(scores)
    np.testing.assert_allclose(written["score"], expected["score"], rtol=1e-6)  # float32, other batches
    np.testing.assert_array_equal(written["label"], expected["label"])
    A = load(model_file).explain(X)
    order = np.argsort(-A, axis=1)[:, :2]
    names = np.array(["a", "b,c", "d", "e"])
    np.testing.assert_array_equal(written["feature_1"], names[order[:, 0]])
    np.testing.assert_array_equal(written["feature_2"], names[order[:, 1]])
    # float32 in other batches: chunks of 7 rows here, and a kernel base's refined rows go through in their own
    np.testing.assert_allclose(written["attribution_1"], A[np.arange(60), order[:, 0]], rtol=1e-5, atol=1e-9)
    assert (written["feature_1"][:20] == "d").all()  # the shifted feature


def test_usfad_explain_names_npz_columns_by_position_and_leaves_zero_attributions_unnamed(tmp_path, capsys):
    np.savez(tmp_path / "train.npz", X=X_TRAIN)
    model = tmp_path / "m.usfad"
    # the typical baseline follows one flow's latent radius: the kernel base alone, without the identity flow's
    fit = ["fit", str(tmp_path / "train.npz"), "--epochs", "3", "--input-kernel", "off", "--quiet", "-o", str(model)]
    assert main(fit) == 0
    np.savez(tmp_path / "data.npz", X=_rows())
    out = tmp_path / "out.csv"
    assert (
        main(["explain", str(model), str(tmp_path / "data.npz"), "--baseline", "typical", "--quiet", "-o", str(out)])
        == 0
    )
    written = pd.read_csv(out, keep_default_na=False)
    named = written["feature_1"] != ""
    assert set(written["feature_1"][named]) <= {"x0", "x1", "x2", "x3"} and named[:20].all()
    assert (written["attribution_1"][~named] == 0).all() and (~named).any()  # typical rows: nothing to explain


def test_usfad_explain_stops_at_a_bad_row_and_keeps_the_rows_before(tmp_path, model_file, capsys):
    data = _data_csv(tmp_path / "data.csv", _rows()[:10])
    lines = data.read_text().splitlines()
    lines[6] = "1.0,,2.0,3.0"  # row 5, line 7
    data.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.csv"
    assert main(["explain", str(model_file), str(data), "--quiet", "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "line 7" in err and "the 5 row(s) before it were written to" in err
    assert len(pd.read_csv(out)) == 5


def test_usfad_explain_refuses_wrong_arguments_clearly(tmp_path, model_file, capsys):
    data = _data_csv(tmp_path / "data.csv", _rows()[:10])
    out = str(tmp_path / "out.csv")
    assert main(["explain", str(model_file), str(data), "--top", "5", "-o", out]) == 1
    assert "--top 5 asks for more features than the model has (4)" in capsys.readouterr().err
    assert main(["explain", str(model_file), str(data), "-o", str(data)]) == 1
    assert "is the input file" in capsys.readouterr().err
    for bad in (["--top", "0"], ["--baseline", "median"], ["--points", "x"]):
        with pytest.raises(SystemExit):
            main(["explain", str(model_file), str(data), "-o", out, *bad])
    with pytest.raises(SystemExit):
        main(["explain", str(model_file), str(data)])  # no -o
    np.savez(tmp_path / "train.npz", X=X_TRAIN)
    affine = tmp_path / "affine.usfad"
    assert (
        main(
            ["fit", str(tmp_path / "train.npz"), "--model", "nonusflow", "--epochs", "1", "--quiet", "-o", str(affine)]
        )
        == 0
    )
    np.savez(tmp_path / "data.npz", X=_rows())
    assert main(["explain", str(affine), str(tmp_path / "data.npz"), "--baseline", "typical", "-o", out]) == 1
    assert "needs a uniformly scaling flow" in capsys.readouterr().err
    # the default USFlow also scores with the identity flow's kernel: no typical baseline, and the error says why
    both = tmp_path / "both.usfad"
    assert main(["fit", str(tmp_path / "train.npz"), "--epochs", "1", "--quiet", "-o", str(both)]) == 0
    assert main(["explain", str(both), str(tmp_path / "data.npz"), "--baseline", "typical", "-o", out]) == 1
    assert "input_kernel=True" in capsys.readouterr().err
    svdd = ["fit", str(tmp_path / "train.npz"), "--model", "deepsvdd", "--input-kernel", "on", "-o", str(both)]
    assert main(svdd) == 1
    assert "--input-kernel goes with a flow model" in capsys.readouterr().err
    assert not (tmp_path / "out.csv").exists()


def test_usfad_explain_from_the_neighbours_in_a_reference_file(tmp_path, model_file, capsys):
    X = _rows()[:20]
    data = _data_csv(tmp_path / "data.csv", X)
    out = tmp_path / "out.csv"
    reference = model_file.parent / "train.csv"
    args = ["explain", str(model_file), str(data), "--top", "4", "--baseline", "neighbours", "--quiet"]
    assert main([*args, "--reference", str(reference), "--neighbours", "3", "-o", str(out)]) == 0
    assert f"(baseline neighbours: the mean of 3 nearest of 400 rows of {reference})" in capsys.readouterr().out
    written = pd.read_csv(out, keep_default_na=False)
    A = load(model_file).explain(X, "neighbours", reference=X_TRAIN, n_neighbours=3)
    names = np.array(["a", "b,c", "d", "e"])
    order = np.argsort(-A, axis=1)
    np.testing.assert_array_equal(written["feature_1"], names[order[:, 0]])
    got = written[[f"attribution_{i}" for i in range(1, 5)]].to_numpy().sum(1)
    np.testing.assert_allclose(got, A.sum(1), rtol=1e-6, atol=1e-9)  # all four: the whole sum
    # a label column is dropped from both files, and the reference keeps its rows labelled 0
    labelled = pd.DataFrame(X_TRAIN, columns=["a", "b,c", "d", "e"]).assign(y=0)
    far = pd.DataFrame(X[:5] + 0.01, columns=["a", "b,c", "d", "e"]).assign(y=1)  # would be the nearest rows
    pd.concat([labelled, far]).to_parquet(tmp_path / "train.parquet", index=False)
    _data_csv(tmp_path / "data_y.csv", X)
    frame = pd.read_csv(tmp_path / "data_y.csv").assign(y=1)
    frame.to_csv(tmp_path / "data_y.csv", index=False)
    args = ["explain", str(model_file), str(tmp_path / "data_y.csv"), "--top", "4"]  # --reference: neighbours
    args += ["--reference", str(tmp_path / "train.parquet"), "--label-column", "y", "--neighbours", "3", "--quiet"]
    assert main([*args, "-o", str(out)]) == 0
    got = pd.read_csv(out, keep_default_na=False)[[f"attribution_{i}" for i in range(1, 5)]].to_numpy().sum(1)
    np.testing.assert_allclose(got, A.sum(1), rtol=1e-6, atol=1e-9)


def test_usfad_explain_refuses_reference_flags_that_do_not_fit(tmp_path, model_file, capsys):
    data = _data_csv(tmp_path / "data.csv", _rows()[:10])
    reference = str(model_file.parent / "train.csv")
    out = tmp_path / "out.csv"
    base = ["explain", str(model_file), str(data), "--quiet", "-o", str(out)]
    cases = [
        (["--baseline", "neighbours"], "--baseline neighbours needs --reference TRAIN_FILE"),
        (["--baseline", "mean", "--reference", reference], "--reference goes with --baseline neighbours; --baseline"),
        (["--baseline", "typical", "--neighbours", "3"], "--neighbours goes with --baseline neighbours"),
        (["--neighbours", "3"], "--neighbours needs --reference TRAIN_FILE"),
        (["--baseline", "neighbours", "--reference", reference, "--neighbours", "401"], "--neighbours 401 asks for"),
    ]
    for extra, message in cases:
        assert main([*base, *extra]) == 1
        assert message in capsys.readouterr().err
    copy = tmp_path / "reference.csv"
    copy.write_bytes((model_file.parent / "train.csv").read_bytes())
    assert main([*base[:-1], str(copy), "--baseline", "neighbours", "--reference", str(copy)]) == 1
    assert f"the output {copy} is the input file {copy}" in capsys.readouterr().err
    assert copy.read_bytes() == (model_file.parent / "train.csv").read_bytes()
    np.savez(tmp_path / "narrow.npz", X=X_TRAIN[:, :3])
    pd.DataFrame(X_TRAIN, columns=["a", "b", "d", "e"]).to_csv(tmp_path / "renamed.csv", index=False)
    for bad, message in (("narrow.npz", "has 3 features, but USFlow is expecting 4"), ("renamed.csv", "columns")):
        assert main([*base, "--baseline", "neighbours", "--reference", str(tmp_path / bad)]) == 1
        assert message in capsys.readouterr().err
    assert not out.exists()  # every check before DATA is read
    with pytest.raises(SystemExit):
        main([*base, "--baseline", "neighbours", "--reference", reference, "--neighbours", "0"])


def test_usfad_explain_plots_the_top_scoring_rows(tmp_path, model_file, capsys):
    X = _rows()
    data = _data_csv(tmp_path / "data.csv", X)
    plots = tmp_path / "plots"
    args = ["explain", str(model_file), str(data), "--plot", str(plots), "--plot-rows", "3", "--chunk-size", "16"]
    assert main([*args, "--quiet", "-o", str(tmp_path / "out.csv")]) == 0
    top = np.argsort(-load(model_file).decision_function(X))[:3]
    assert sorted(p.name for p in plots.glob("*.png")) == sorted(f"row_{i}.png" for i in top)
    assert "3 plot(s) in" in capsys.readouterr().out


def test_the_demo_report_draws_usflows_top_scoring_row_of_each_dataset(tmp_path):
    from usfad.experiments.demo import run_demo
    from usfad.reporting.demo import write_plots

    result = run_demo(["wine"], [42], quick=True, progress=False)
    e = result.explanations["wine"]
    assert e.attributions.shape == e.values.shape == (1, 13)
    assert e.scores[0] == max(result.scores["wine"]["USFlow"][1])
    assert (tmp_path / "explain_wine.png").name in {p.split("/")[-1] for p in write_plots(result, tmp_path)}
    assert (tmp_path / "explain_wine.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rows_whose_float32_attributions_overflow_are_explained_again_in_float64():
    X = _gaussian(300, 0)
    det = DeepSVDD(epochs=3, hidden_features=(16,), latent_features=4, random_state=0).fit(X)
    last = [m for m in det.model_.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():  # outputs of 1e21 (a non-USF's latent reached 1e18 five deviations out, 6_cardio)
        last.weight.mul_(1e21)
    rows = X[:5] + 3.0
    out = det.explanation(rows)
    assert out.float64_rows.all() and np.isfinite(out.attributions).all()
    assert (out.scores > 1e39).all()  # beyond float32
    np.testing.assert_allclose(out.attributions.sum(1), out.scores - out.baseline_scores, rtol=1e-6)
    with torch.no_grad():  # beyond float64 too: a clear error
        last.weight.mul_(1e140)
    with pytest.raises(DataError, match=r"overflows, even in float64"):
        det.explain(rows)
