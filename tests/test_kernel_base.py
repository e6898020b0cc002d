"""base="kernel": a USF scored with a kernel density over its training rows' latents (density.KernelBase)."""

import math

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import logsumexp

import usfad.explain
from usfad import USFlow, load
from usfad.density import NEGLIGIBLE_LOG_TERM, KernelBase, log_sum_exp
from usfad.metrics import latent_distance

RNG = np.random.default_rng(0)
TWO_GROUPS = np.concatenate([RNG.normal(size=(300, 3)) * 0.5 - 3, RNG.normal(size=(300, 3)) * 0.5 + 3])
# the kernel base alone (input_kernel="auto" adds the identity flow's kernel; its own tests below say so)
SMALL = {"hidden_features": (16,), "n_blocks": 2, "max_steps": 300, "input_kernel": False}
WITH_INPUT = {**SMALL, "input_kernel": True}


def kernel(centres: np.ndarray, h: float) -> KernelBase:
    base = KernelBase(centres.shape[1], len(centres)).double()
    base.means.copy_(torch.as_tensor(centres))
    base.bandwidth.fill_(h)
    return base


def test_log_prob_is_the_kernel_density_and_a_point_on_a_centre_leaves_that_centre_out():
    centres = RNG.normal(size=(40, 4)) * 2 + 10  # far from the origin: the expansion must not cancel
    centres[39] = centres[38]  # a repeated row: two centres at one point
    z = np.concatenate([RNG.normal(size=(6, 4)) * 2 + 10, centres[:3], centres[38:39]])
    base = kernel(centres, 0.7)
    per = np.stack([stats.multivariate_normal(c, 0.49 * np.eye(4)).logpdf(z) for c in centres])
    expected = logsumexp(per, axis=0) - math.log(40)
    # rows 6-8 are centres 0-2: each is scored against the other 39; row 9 keeps one of its two centres
    for row, centre in ((6, 0), (7, 1), (8, 2), (9, 38)):
        expected[row] = logsumexp(np.delete(per[:, row], centre)) - math.log(39)
    np.testing.assert_allclose(base.log_prob(torch.as_tensor(z)).numpy(), expected, rtol=1e-10)
    # in float32 too (the rounding of the distance is what "on a centre" allows), and in blocks of 4 rows
    base32 = kernel(centres, 0.7).float()
    base32.block_rows = 4
    np.testing.assert_allclose(base32.log_prob(torch.as_tensor(z, dtype=torch.float32)).numpy(), expected, rtol=1e-5)
    # a point near a centre but not on it keeps every kernel
    near = centres[:1] + 1e-3
    full = logsumexp([stats.multivariate_normal(c, 0.49 * np.eye(4)).logpdf(near[0]) for c in centres]) - math.log(40)
    np.testing.assert_allclose(base.log_prob(torch.as_tensor(near)).numpy(), [full], rtol=1e-10)
    # sq_distance: a soft minimum of the squared distances, >= 0, and log_prob is the Gaussian formula of scale h
    z = z[:6]
    sq = base.sq_distance(torch.as_tensor(z)).numpy()
    nearest = ((z[:, None] - centres[None]) ** 2).sum(-1).min(1)
    assert (sq >= nearest - 1e-9).all() and (sq <= nearest + 2 * 0.49 * math.log(40) + 1e-9).all()
    with pytest.raises(ValueError, match="at least 2 centres"):
        KernelBase(4, 1)


def test_a_row_near_a_centre_keeps_its_kernel_in_float32_and_float64_alike():
    # wide latents (as on 5_campaign): float32's rounding of ||z||^2 + ||c||^2 - 2 z.c is about 0.1 here,
    # so the block's terms alone would take a row 0.05 from a centre for that centre; the direct
    # distance tells them apart, and a row computed again (moved by 1e-6 of its size) still lies on it
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(50, 8)) * 30
    step = rng.normal(size=(3, 8))
    near = centres[:3] + 0.05 * step / np.linalg.norm(step, axis=1, keepdims=True)
    again = centres[:3] * (1 + 1e-6 * rng.normal(size=(3, 8)))
    z = np.concatenate([centres[:3], again, near])
    base64 = kernel(centres, 0.2)
    base32 = kernel(centres, 0.2).float()
    expected = [0, 1, 2, 0, 1, 2, -1, -1, -1]
    assert base64.own_centres(torch.as_tensor(z)).tolist() == expected
    assert base32.own_centres(torch.as_tensor(z, dtype=torch.float32)).tolist() == expected
    full = logsumexp([stats.multivariate_normal(c, 0.04 * np.eye(8)).logpdf(near) for c in centres], axis=0)
    np.testing.assert_allclose(base64.log_prob(torch.as_tensor(near)).numpy(), full - math.log(50), rtol=1e-10)
    got32 = base32.log_prob(torch.as_tensor(near, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(got32, full - math.log(50), atol=0.1)  # float32's rounding, not a missing kernel


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore:`torch.jit.trace` is deprecated:FutureWarning")
def test_a_row_on_a_centre_finds_it_when_a_near_neighbours_rounded_term_is_larger():
    # 40 rows, each with a neighbour 0.05 away (inside float32's rounding of the block's terms, about
    # 0.1 here): the block may rank the neighbour first; each row must still leave out its own centre
    rng = np.random.default_rng(2)
    rows = rng.normal(size=(40, 8)) * 30
    step = rng.normal(size=(40, 8))
    neighbours = rows + 0.05 * step / np.linalg.norm(step, axis=1, keepdims=True)
    centres = np.concatenate([neighbours, rows]).astype(np.float32)  # the neighbours come first
    z = torch.as_tensor(centres[40:])
    base32 = kernel(centres.astype(np.float64), 0.2).float()
    assert base32.own_centres(z).tolist() == list(range(40, 80))
    assert kernel(centres.astype(np.float64), 0.2).own_centres(z.double()).tolist() == list(range(40, 80))
    traced = torch.jit.trace(lambda rows: base32.own_centres(rows), z[:3])  # an exported graph's: 8 nearest
    assert traced(z).tolist() == list(range(40, 80))


def test_a_centre_far_out_does_not_make_every_row_search_for_the_one_it_lies_on():
    # the rounding of a row's term grows with its own centre's norm, not with the largest: a centre
    # 1,000 out (as 16_http's latents have) must leave rows 0.05 from a centre out of the search,
    # while rows on a centre (recomputed, moved by 1e-7 of their size) are still found
    rng = np.random.default_rng(3)
    centres = np.concatenate([rng.normal(size=(300, 3)), [[1e3, 0.0, 0.0]]])
    step = rng.normal(size=(20, 3))
    near = centres[20:40] + 0.05 * step / np.linalg.norm(step, axis=1, keepdims=True)
    z = torch.as_tensor(np.concatenate([centres[:20] * (1 + 1e-7 * rng.normal(size=(20, 3))), near]))
    for dtype in (torch.float64, torch.float32):
        base = kernel(centres, 0.01).to(dtype)
        rows = z.to(dtype)
        assert base.own_centres(rows).tolist() == list(range(20)) + [-1] * 20
        origin, product, c_norms, _ = base._centre_side()
        zc = rows - origin
        z_norms = zc.pow(2).sum(1)
        terms = torch.cat([zc, z_norms[:, None], torch.ones(40, 1, dtype=dtype)], 1).mm(product).clamp_max(0)
        searched = -terms.amax(1) <= base._reach(rows, 0.5 / base.bandwidth**2, z_norms, c_norms, origin)
        assert searched.tolist() == [True] * 20 + [False] * 20


def test_the_nearest_centre_by_the_blocks_terms_is_the_first_of_equals_as_torch_argmax():
    from usfad.density import _argmax_rows

    terms = torch.as_tensor(RNG.integers(-3, 1, size=(50, 40)), dtype=torch.float32)
    terms[7] = -math.inf
    assert torch.equal(_argmax_rows(terms), terms.argmax(1))


def test_per_centre_widths_give_the_sample_point_kernel_density_and_sq_distance_stays_non_negative():
    centres = RNG.normal(size=(30, 3)) * 2 + 10
    widths = 1 + 3 * RNG.random(30)
    widths[4] = 1.0  # the narrowest kernel has the bandwidth itself
    z = np.concatenate([RNG.normal(size=(8, 3)) * 2 + 10, centres[:2]])
    base = kernel(centres, 0.5)
    base.widths.copy_(torch.as_tensor(widths))
    assert base.adaptive and not kernel(centres, 0.5).adaptive
    per = np.stack(
        [stats.multivariate_normal(c, (0.5 * w) ** 2 * np.eye(3)).logpdf(z) for c, w in zip(centres, widths)]
    )
    expected = logsumexp(per, axis=0) - math.log(30)
    for row, centre in ((8, 0), (9, 1)):  # a centre's own kernel is left out, whatever its width
        expected[row] = logsumexp(np.delete(per[:, row], centre)) - math.log(29)
    np.testing.assert_allclose(base.log_prob(torch.as_tensor(z)).numpy(), expected, rtol=1e-10)
    base32 = kernel(centres, 0.5).float()
    base32.widths.copy_(torch.as_tensor(widths))
    base32.block_rows = 3
    np.testing.assert_allclose(base32.log_prob(torch.as_tensor(z, dtype=torch.float32)).numpy(), expected, rtol=1e-5)
    assert (base.sq_distance(torch.as_tensor(z)) >= 0).all()
    # the gradient flows through the widths' terms too (explanations differentiate the score)
    point = torch.as_tensor(z[:1]).requires_grad_()
    base.log_prob(point).sum().backward()
    eps = 1e-6
    shifted = z[:1] + np.array([[eps, 0, 0]])
    numeric = (base.log_prob(torch.as_tensor(shifted)) - base.log_prob(torch.as_tensor(z[:1]))).item() / eps
    assert abs(point.grad[0, 0].item() - numeric) < 1e-4 * max(1.0, abs(numeric))


def test_a_state_without_widths_loads_with_width_one_and_widths_below_one_are_refused():
    centres = RNG.normal(size=(10, 2))
    state = {k: v for k, v in kernel(centres, 0.3).state_dict().items() if k != "widths"}
    restored = KernelBase(2, 10).double()
    restored.load_state_dict(state, strict=True)
    assert (restored.widths == 1).all() and not restored.adaptive
    state["widths"] = torch.full((10,), 0.5, dtype=torch.float64)
    with pytest.raises(ValueError, match="widths below 1"):
        KernelBase(2, 10).double().load_state_dict(state, strict=True)


def test_mean_log_probs_is_log_prob_at_each_setting_and_build_kernel_takes_the_best():
    rng = np.random.default_rng(3)
    centres = np.concatenate([rng.normal(size=(150, 3)) * 0.3, rng.normal(size=(50, 3)) * 2 + 5])
    base = kernel(centres, 1.0)
    rows = torch.as_tensor(centres[::4])
    own = torch.arange(0, 200, 4)
    settings = [(torch.ones(200), [0.2, 0.5, 1.0]), (torch.as_tensor(1 + rng.uniform(size=200) * 3), [0.1, 0.3, 0.9])]
    expected = np.zeros((2, 3))
    for j, (widths, bandwidths) in enumerate(settings):
        for k, h in enumerate(bandwidths):
            other = kernel(centres, h)
            other.widths.copy_(widths)
            expected[j, k] = float(other.log_prob(rows, exclude=own).mean())
    np.testing.assert_allclose(base.mean_log_probs(rows, settings, exclude=own).numpy(), expected, rtol=1e-12)
    assert float(base.bandwidth) == 1.0 and (base.widths == 1).all()  # its own are left alone
    # build_kernel keeps the setting whose held-out likelihood is highest: no candidate does better
    chosen = USFlow().build_kernel(torch.as_tensor(centres, dtype=torch.float32), torch.Generator().manual_seed(0))
    radii = USFlow().neighbour_radii(torch.as_tensor(centres, dtype=torch.float32))
    everyone = torch.arange(200)
    with torch.no_grad():
        best = float(chosen.double().log_prob(torch.as_tensor(centres), exclude=everyone).mean())
        for multiple in USFlow.kernel_multiples:
            h = multiple * float(radii.median())
            assert float(kernel(centres, h).log_prob(torch.as_tensor(centres), exclude=everyone).mean()) <= best + 1e-4


def test_kernel_widths_grow_where_the_centres_are_sparse_and_stay_one_without_a_local_power():
    rng = np.random.default_rng(1)
    dense, sparse = rng.normal(size=(400, 3)) * 0.1, rng.normal(size=(100, 3)) * 2 + 8
    centres = torch.as_tensor(np.concatenate([dense, sparse]), dtype=torch.float32)
    base = USFlow().build_kernel(centres, torch.Generator().manual_seed(0))
    widths = base.widths.numpy()
    assert widths.min() == 1.0 and widths[400:].mean() > 2 * widths[:400].mean()
    # the chosen kernel's held-out likelihood is at least the one-width kernel's (the power 0 is a candidate)
    fixed = USFlow()
    fixed.kernel_local_powers = (0.0,)
    one_width = fixed.build_kernel(centres, torch.Generator().manual_seed(0))
    assert (one_width.widths == 1).all()
    radii = fixed.neighbour_radii(centres.double())
    ratio = float(one_width.bandwidth) / float(radii.median())
    assert min(abs(ratio / m - 1) for m in fixed.kernel_multiples) < 1e-6
    with torch.no_grad():
        assert base.double().log_prob(centres.double()).mean() >= one_width.double().log_prob(centres.double()).mean()
    # on wide rows the widths' normalisers w^-d differ by at most 2 kernel_local_nats nats
    wide = torch.as_tensor(np.concatenate([rng.normal(size=(200, 400)) * 0.5, rng.normal(size=(50, 400)) * 3]))
    widths = USFlow().build_kernel(wide.float(), torch.Generator().manual_seed(0)).widths
    assert 400 * math.log(float(widths.max())) <= 2 * USFlow.kernel_local_nats + 1e-6


def test_log_sum_exp_skips_only_terms_that_add_nothing():
    # terms spread over thousands of nats, as a kernel's are, one row with a left-out (-inf) term
    terms = RNG.normal(size=(5, 3000)) * 400 - 1000
    terms[0, 7] = -math.inf
    terms[1, :2] = terms[1].max() - NEGLIGIBLE_LOG_TERM + np.array([0.5, -0.5])  # just above and below the cut
    for dtype, rtol in ((torch.float64, 1e-15), (torch.float32, 1e-7)):
        t = torch.as_tensor(terms, dtype=dtype)
        np.testing.assert_allclose(log_sum_exp(t).numpy(), torch.logsumexp(t, 1).numpy(), rtol=rtol)
    # the terms it raises get no gradient; the others get their softmax weight
    t = torch.as_tensor(terms, dtype=torch.float64).requires_grad_()
    log_sum_exp(t).sum().backward()
    weights = torch.softmax(t.detach(), 1)
    kept = t.detach() >= t.detach().amax(1, keepdim=True) - NEGLIGIBLE_LOG_TERM
    np.testing.assert_allclose(t.grad[kept].numpy(), weights[kept].numpy(), rtol=1e-12)
    assert (t.grad[~kept] == 0).all() and (~kept).any()


def test_the_kernel_scores_the_empty_space_between_groups_above_every_training_row():
    det = USFlow(**SMALL, base="kernel").fit(TWO_GROUPS)
    assert isinstance(det.model_.base, KernelBase) and det.kernel_centres_ == len(TWO_GROUPS)
    assert det.decision_function(np.zeros((1, 3)))[0] > det.decision_scores_.max()
    assert 0 < float(det.model_.base.scale) < 10


def test_training_rows_are_scored_without_their_own_kernel_at_fit_and_afterwards():
    X = RNG.normal(size=(600, 4))
    X[:10] += 4  # anomalies among the training rows
    det = USFlow(**SMALL, base="kernel").fit(X)
    # scored again (usfad score on the training file), a row gets what fit gave it
    np.testing.assert_allclose(det.decision_function(X), det.decision_scores_, rtol=1e-5)
    assert det.predict(X)[:10].all() and det.predict(X).sum() == det.labels_.sum()
    # the contamination threshold, a quantile of those scores, holds on fresh rows from the same law
    fresh = RNG.normal(size=(4000, 4))
    assert 0.05 < det.predict(fresh).mean() < 0.15
    # with its own kernel in, a training row would look far more typical: its own kernel dominates
    base = det.model_.base
    z = torch.as_tensor(det.latent(X[10:20]), dtype=torch.float32)
    with torch.no_grad():
        own_in = -torch.logsumexp(-0.5 * torch.cdist(z, base.means).pow(2) / base.scale**2, 1)
    assert (own_in.numpy() < -torch.logsumexp(base.log_terms(z), 1).numpy() - 1).all()


def test_the_number_of_centres_grows_with_the_rows_up_to_a_cap_that_narrows_on_wide_rows():
    det = USFlow()
    assert det.kernel_centres_for(500, 10) == 500  # every row below the cap
    assert det.kernel_centres_for(100_000, 27) == det.kernel_max_centres == 40_000
    assert det.kernel_centres_for(100_000, 1_000) == det.kernel_max_values // 1_000 == 4_000
    assert det.kernel_centres_for(100_000, 50_000) == det.kernel_min_centres == 2_000


def test_at_most_kernel_max_centres_rows_and_calibration_rows_are_never_centres(monkeypatch):
    monkeypatch.setattr(USFlow, "kernel_max_centres", 50)
    det = USFlow(**SMALL, base="kernel").fit(TWO_GROUPS)
    assert det.kernel_centres_ == 50 and det.model_.base.means.shape == (50, 3)
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


@pytest.mark.parametrize("baseline", ["mean", "typical", "neighbours"])
def test_training_rows_are_explained_without_their_own_kernel_all_along_their_path(baseline):
    X = RNG.normal(size=(400, 3))
    X[:5] += 4  # training anomalies: they lie on centres, as every training row does
    det = USFlow(**SMALL, base="kernel").fit(X)
    rows = X[:12]
    assert (det.model_.base.own_centres(torch.as_tensor(det.latent(rows), dtype=torch.float32)) >= 0).all()
    reference = X if baseline == "neighbours" else None
    out = det.explanation(rows, baseline=baseline, reference=reference, n_points=32)
    np.testing.assert_allclose(out.scores, det.decision_scores_[:12], rtol=1e-5)  # the score fit gave them
    np.testing.assert_allclose(out.attributions.sum(1), out.scores - out.baseline_scores, rtol=1e-6, atol=1e-6)
    # the path integrates the density the scores come from: 32 points leave little, where the own kernel's spike
    # at the path's end would leave about half of the score's change unexplained whatever the number of points
    moved = np.abs(out.scores - out.baseline_scores) > 1e-3
    assert moved[:5].all()
    assert np.abs(out.residual[moved] / (out.scores - out.baseline_scores)[moved]).max() < 0.01


def test_rows_the_quadrature_leaves_a_large_residual_on_are_integrated_again_with_more_points(monkeypatch):
    X = RNG.normal(size=(400, 3))
    X[:5] += 4
    det = USFlow(**SMALL, base="kernel").fit(X)
    fresh = np.concatenate([RNG.normal(size=(20, 3)) + 4, RNG.normal(size=(20, 3))])
    rows = np.concatenate([X[:10], fresh])

    def worst(out):
        diff = np.abs(out.scores - out.baseline_scores)
        moved = diff > 1e-6
        return (np.abs(out.residual[moved]) / diff[moved]).max()

    for baseline in ("mean", "typical"):
        out = det.explanation(rows, baseline=baseline)
        assert out.n_points == 8
        assert 0 < worst(out) <= usfad.explain.REFINE_RTOL  # a quadrature, refined where it missed
    monkeypatch.setattr(usfad.explain, "REFINE_FACTORS", ())  # 8 points for every row: some miss by more
    assert worst(det.explanation(rows, baseline="mean")) > usfad.explain.REFINE_RTOL


def test_input_kernel_scores_the_mean_of_the_flow_nll_and_the_identity_flow_nll(tmp_path):
    X = RNG.normal(size=(600, 4))
    X[:10] += 4
    det = USFlow(**WITH_INPUT).fit(X)
    model = det.model_
    assert isinstance(model.input_base, KernelBase) and det.input_centres_ == det.kernel_centres_ == 600
    fresh = RNG.normal(size=(50, 4)) * 1.5
    u = torch.as_tensor((fresh - det.scaler_mean_) / det.scaler_scale_, dtype=torch.float32)
    with torch.no_grad():
        z, logdet = model.flow(u)
        flow_nll = -(model.base.log_prob(z) + logdet)
        identity_nll = -model.input_base.log_prob(u)  # the identity flow: log-det 0
    np.testing.assert_allclose(det.decision_function(fresh), (0.5 * (flow_nll + identity_nll)).numpy(), rtol=1e-5)
    # the two kernels share their centre rows: a training row leaves itself out of both, at fit and afterwards
    rows = torch.as_tensor((X[:20] - det.scaler_mean_) / det.scaler_scale_, dtype=torch.float32)
    with torch.no_grad():
        assert torch.equal(model.input_base.own_centres(rows), model.base.own_centres(model.flow(rows)[0]))
    np.testing.assert_allclose(det.decision_function(X), det.decision_scores_, rtol=1e-5)
    assert det.predict(X)[:10].all()
    # a model file keeps it
    path = tmp_path / "input_kernel.usfad"
    det.save(path)
    np.testing.assert_array_equal(load(path).decision_function(fresh), det.decision_function(fresh))


def test_input_kernel_explanations_add_up_its_nll_ranks_like_its_pair_of_latents_and_what_it_refuses():
    X = RNG.normal(size=(600, 4))
    X[:10] += 4
    det = USFlow(**WITH_INPUT).fit(X)
    for rows in (X[:10], RNG.normal(size=(10, 4)) + 3):  # training rows (on a centre of both kernels) and fresh
        for baseline in ("mean", "neighbours"):
            e = det.explanation(rows, baseline, reference=X if baseline == "neighbours" else None)
            assert e.path == "straight"
            share = np.abs(e.residual) / np.abs(e.scores - e.baseline_scores)
            assert np.median(share) < 1e-3 and share.max() < 5e-3
    with pytest.raises(ValueError, match="input_kernel=True"):
        det.explain(X[:2], "typical")
    # a USF's NLL ranks rows exactly as the distance of its pair of latents (the flow's and the identity's)
    fresh = np.concatenate([RNG.normal(size=(200, 4)) * 2, X[:50]])
    assert stats.spearmanr(det.decision_function(fresh), latent_distance(det, fresh))[0] > 1 - 1e-9
    with pytest.raises(ValueError, match="needs a kernel base"):
        USFlow(**WITH_INPUT, base="gaussian").fit(X)
    with pytest.raises(ValueError, match="True, False or .auto."):
        USFlow(**{**SMALL, "input_kernel": "yes"}).fit(X)


def test_the_default_adds_the_identity_flows_kernel_wherever_a_kernel_base_scores():
    auto = {key: value for key, value in SMALL.items() if key != "input_kernel"}
    assert USFlow(**auto).fit(TWO_GROUPS).model_.input_base is not None
    assert USFlow(**auto, base="gaussian").fit(TWO_GROUPS).model_.input_base is None
    assert USFlow(**auto, threshold="chi2").fit(TWO_GROUPS).model_.input_base is None


def test_a_verbose_fit_shows_the_kernel_and_scoring_phases_and_a_quiet_one_nothing(capsys):
    X = np.random.default_rng(5).normal(size=(4200, 2))  # more rows than one scoring batch
    USFlow(hidden_features=(8,), n_blocks=1, max_steps=5, random_state=0, verbose=True).fit(X)
    shown = capsys.readouterr().err
    assert "kernel densities" in shown and "scoring the training rows" in shown
    USFlow(hidden_features=(8,), n_blocks=1, max_steps=5, random_state=0).fit(X)
    assert capsys.readouterr().err == ""


def test_repeated_rows_are_scored_once_and_score_as_if_each_were_scored():
    rng = np.random.default_rng(6)
    values = rng.normal(size=(300, 3))
    X = values[rng.integers(0, 300, size=9000)]  # 9,000 rows, at most 300 distinct: as a discrete table repeats
    det = USFlow(**SMALL, random_state=0).fit(X)
    distinct, where = det._distinct_rows(det._to_tensor(X))
    assert where is not None and len(distinct) <= 300
    once = det.decision_function(X)
    det.distinct_share = 0.0  # every row scored where it stands
    assert det._distinct_rows(det._to_tensor(X))[1] is None
    np.testing.assert_allclose(det.decision_function(X), once, rtol=1e-5)
    np.testing.assert_allclose(det.decision_scores_, once, rtol=1e-5)  # decision_scores_ came through the same path


def binary_and_continuous(n: int, seed: int = 0) -> np.ndarray:
    """Two binary columns, one constant, two continuous ones: ``gaussian_weight="auto"`` reads 2 of 4."""
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.integers(0, 2, (n, 2)).astype(float), np.full(n, 3.0), rng.normal(size=(n, 2))])


def test_binary_share_counts_the_non_constant_columns_that_take_two_values():
    share = USFlow.binary_share
    assert share(torch.as_tensor(binary_and_continuous(50))) == 0.5
    three = torch.as_tensor([[0.0, 1.0], [1.0, 2.0], [2.0, 1.0]])  # three values, then two
    assert share(three) == 0.5
    assert share(torch.ones(5, 3)) == 0.0  # every column constant


@pytest.mark.filterwarnings("ignore:X has 1 constant:UserWarning")
def test_gaussian_weight_mixes_the_trained_bases_nll_into_the_kernels_and_keeps_every_promise(tmp_path):
    X = binary_and_continuous(500)
    X[:10, 3:] += 4
    det = USFlow(**WITH_INPUT).fit(X)
    model = det.model_
    assert det.gaussian_weight_ == 0.5 and float(model.trained_weight) == 0.5
    fresh = binary_and_continuous(60, seed=1)
    fresh[:, 3:] *= 1.5
    u = torch.as_tensor((fresh - det.scaler_mean_) / det.scaler_scale_, dtype=torch.float32)
    with torch.no_grad():
        z, logdet = model.flow(u)
        kernels = 0.5 * (-(model.base.log_prob(z) + logdet) - model.input_base.log_prob(u))
        trained = -(model.trained_base.log_prob(z) + logdet)  # the one Gaussian the flow trained with
    np.testing.assert_allclose(det.decision_function(fresh), (0.5 * kernels + 0.5 * trained).numpy(), rtol=1e-5)
    # training rows still leave their own kernels out, at fit and afterwards; a model file keeps everything
    np.testing.assert_allclose(det.decision_function(X), det.decision_scores_, rtol=1e-5)
    path = tmp_path / "weighted.usfad"
    det.save(path)
    again = load(path)
    assert again.gaussian_weight_ == 0.5
    np.testing.assert_array_equal(again.decision_function(fresh), det.decision_function(fresh))
    # a USF's NLL still ranks rows exactly as a distance of its latents (now three terms)
    rows = np.concatenate([fresh, X[:40]])
    assert stats.spearmanr(det.decision_function(rows), latent_distance(det, rows))[0] > 1 - 1e-9
    # explanations add up: binary columns put steep kernel steps on the path (the kernels alone
    # leave residuals up to about 2 % of the score's change here), the trained base is smooth
    e = det.explanation(np.concatenate([fresh[:5], X[:5]]), "mean")
    share = np.abs(e.residual) / np.abs(e.scores - e.baseline_scores)
    assert np.median(share) < 5e-3 and share.max() < 2e-2
    with pytest.raises(ValueError, match="--input-kernel off --gaussian-weight 0"):
        det.explain(X[:2], "typical")  # both switches named at once
    alone = USFlow(**SMALL).fit(X)  # the flow's kernel and its trained base, no input kernel
    assert alone.model_.input_base is None and alone.gaussian_weight_ == 0.5
    e = alone.explanation(np.concatenate([fresh[:5], X[:5]]), "mean")  # training rows leave their own kernel out
    np.testing.assert_allclose(e.scores[5:], alone.decision_scores_[:5], rtol=1e-5)
    # the straight path (the score is no longer one base's at the latent) crosses the flow kernel's
    # steps in the input space: residuals up to a few per cent here (the kernel alone, on its latent path: 2e-4)
    assert e.path == "straight"
    share = np.abs(e.residual) / np.abs(e.scores - e.baseline_scores)
    assert np.median(share) < 2e-2 and share.max() < 0.1
    with pytest.raises(ValueError, match="gaussian_weight"):
        alone.explain(X[:2], "typical")  # the kernel and the trained base: no one latent radius


@pytest.mark.filterwarnings("ignore:X has 1 constant:UserWarning")
def test_gaussian_weight_zero_is_the_kernels_alone_and_bad_weights_are_refused():
    X = binary_and_continuous(300)
    plain = USFlow(**WITH_INPUT, gaussian_weight=0).fit(X)
    assert plain.model_.trained_base is None and plain.gaussian_weight_ == 0.0
    assert USFlow(**WITH_INPUT).fit(RNG.normal(size=(300, 3))).model_.trained_base is None  # no binary column
    # at weight 1 the kernels would weigh nothing: none is built, and the flow scores with the Gaussian it trained with
    alone = USFlow(**WITH_INPUT, gaussian_weight=1).fit(X)
    assert alone.gaussian_weight_ == 1.0 and alone.kernel_centres_ == 0 and alone.model_.input_base is None
    fresh = binary_and_continuous(40, seed=2)
    u = torch.as_tensor((fresh - alone.scaler_mean_) / alone.scaler_scale_, dtype=torch.float32)
    with torch.no_grad():
        z, logdet = alone.model_.flow(u)
        trained = -(alone.model_.base.log_prob(z) + logdet)
    np.testing.assert_allclose(alone.decision_function(fresh), trained.numpy(), rtol=1e-6)
    assert stats.spearmanr(alone.decision_function(fresh), latent_distance(alone, fresh))[0] > 1 - 1e-9
    for bad in (1.5, -0.1, "half"):
        with pytest.raises(ValueError, match="gaussian_weight"):
            USFlow(**SMALL, gaussian_weight=bad).fit(X)
    with pytest.raises(ValueError, match="needs a kernel base"):
        USFlow(**SMALL, gaussian_weight=0.5, threshold="chi2").fit(X)
    USFlow(**SMALL, gaussian_weight=0, threshold="chi2").fit(X)  # zero asks for nothing a Gaussian base lacks
