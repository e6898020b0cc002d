"""threshold="conformal": a held-out calibration split gives a false-alarm rate of at most alpha."""

import json
import math
import warnings

import numpy as np
import pytest
import torch
from safetensors import safe_open
from scipy import stats

from usfad import DeepSVDD, DeepSVDDVAE, NonUSFlow, USFlow, VAEFlow, load
from usfad.cli import main
from usfad.density import (
    NO_ALARM,
    calibration_size,
    calibration_split,
    conformal_p_values,
    conformal_threshold,
    exceedances_allowed,
    rows_for_calibration,
)
from usfad.detectors.base import fit_scaler
from usfad.errors import DataError, ModelFileError, ThresholdWarning
from usfad.modelfile import CHECKSUM_KEYS, write_model_file
from usfad.vision.detector import ImageDetector
from vision_standin import TinyBackbone, textured_images

FAST = {"epochs": 1, "hidden_features": (8,), "batch_size": 64}
MODELS = [
    pytest.param(lambda **kw: USFlow(**FAST, n_blocks=1, **kw), id="usflow"),
    pytest.param(lambda **kw: NonUSFlow(**FAST, n_blocks=1, **kw), id="nonusflow"),
    pytest.param(lambda **kw: DeepSVDD(**FAST, latent_features=2, **kw), id="deepsvdd"),
    pytest.param(lambda **kw: VAEFlow(**FAST, n_blocks=1, **kw), id="vaeflow"),
    pytest.param(lambda **kw: DeepSVDDVAE(**FAST, **kw), id="deepsvddvae"),
]
RNG = np.random.default_rng(0)
X = RNG.normal(size=(500, 3))
FRESH = RNG.normal(size=(2000, 3))


# --- the rule and the quantile, without a model ------------------------------------------
@pytest.mark.parametrize(
    ("n_rows", "n_cal"),
    [(40, 20), (41, 20), (100, 50), (199, 99), (200, 100), (500, 100), (501, 100), (1000, 200), (25_000, 5000)]
    + [(500_000, 100_000), (10**6, 100_000)],
)
def test_calibration_size_reads_only_the_number_of_rows(n_rows, n_cal):
    assert calibration_size(n_rows) == n_cal
    fit_rows, calibration_rows = calibration_split(n_rows, seed=3)
    assert len(calibration_rows) == n_cal and len(fit_rows) == n_rows - n_cal
    assert sorted(np.concatenate([fit_rows, calibration_rows]).tolist()) == list(range(n_rows))
    np.testing.assert_array_equal(calibration_split(n_rows, seed=3)[1], calibration_rows)  # seeded


@pytest.mark.parametrize("n_cal", [20, 99, 100, 101, 1000, 5000, 100_000])
@pytest.mark.parametrize("alpha", [None, 0.01, 0.05, 0.03])
def test_rows_for_calibration_is_the_fewest_rows_that_give_that_many(n_cal, alpha):
    rows = rows_for_calibration(n_cal, alpha)
    if rows is None:  # at alpha, the counts step past n_cal near the cap
        assert alpha is not None and n_cal > 99_000
        return
    assert calibration_size(rows, alpha) >= n_cal > calibration_size(rows - 1, alpha)
    assert rows_for_calibration(100_001, alpha) is None


@pytest.mark.parametrize(
    ("n_rows", "alpha", "n_cal"),
    [
        (1000, 0.05, 199),  # a fifth (200) down to the fewest rows allowing 10 above the threshold
        (984, 0.01, 199),  # 196 would deliver 1/197; up 3 rows to 2/200 rather than down 97 to 1/100
        (1158, 0.01, 199),  # 231: down 32 rows rather than up 68
        (500, 0.01, 99),  # the floor of 100, down to 99: 1/100 exactly
        (143, 0.01, 99),  # half (71) cannot flag at 0.01: up to the 99 that can, leaving 44 to fit
        (131, 0.01, 65),  # 99 would take more than three quarters: half, which flags nothing
        (47, 0.05, 19),  # a share of 23 rows, down to 19: 1/20
        (50, 0.1, 19),  # 25 rows, down to 19 (2/20) rather than up to 29, over half
        (2075, 0.001, 999),  # a fifth (415) cannot flag at 0.001: 999 can
        (138_636, 0.01, 27_699),
        (10**6, 0.01, 99_999),
    ],
)
def test_calibration_size_fits_alpha_so_the_rate_is_alpha(n_rows, alpha, n_cal):
    assert calibration_size(n_rows, alpha) == n_cal
    if exceedances_allowed(n_cal, alpha):
        assert exceedances_allowed(n_cal, alpha) / (n_cal + 1) == pytest.approx(alpha)


def test_calibration_on_more_than_half_of_the_rows_warns():
    with pytest.warns(UserWarning, match=r"alpha=0.01 needs 99 calibration rows .*other 44 of 143 rows only"):
        fit_rows, calibration_rows = calibration_split(143, seed=0, alpha=0.01)
    assert len(calibration_rows) == 99 and len(fit_rows) == 44
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        calibration_split(143, seed=0, alpha=0.05)  # 59 of 143


def test_the_threshold_is_the_ceil_n_plus_1_times_1_minus_alpha_th_smallest_score():
    scores = RNG.permutation(np.arange(1.0, 100.0))  # 1..99, in any order
    assert exceedances_allowed(99, 0.01) == 1  # 100 * 0.01 is 1, float error or not
    assert conformal_threshold(scores, 0.01) == 99.0  # ceil(100 * 0.99) = 99th smallest
    assert conformal_threshold(scores, 0.05) == 95.0
    assert conformal_threshold(scores, 0.5) == 50.0
    assert conformal_threshold(scores, 0.0099) == NO_ALARM  # 1/(n + 1) = 0.01 > alpha: nothing may be exceeded
    p = conformal_p_values(scores, np.array([0.0, 50.0, 99.0, 99.5, np.finfo(np.float64).max]))
    np.testing.assert_allclose(p, [1.0, 0.51, 0.02, 0.01, 0.01])


@pytest.mark.parametrize(("n_cal", "alpha"), [(19, 0.05), (99, 0.01), (150, 0.01), (150, 0.05), (1000, 0.05)])
def test_over_calibration_draws_the_false_alarm_rate_is_between_alpha_minus_1_over_n_plus_1_and_alpha(n_cal, alpha):
    rng = np.random.default_rng(1)
    draws = 20_000
    calibration = rng.standard_exponential(size=(draws, n_cal))  # any continuous law: rank-based
    fresh = rng.standard_exponential(size=draws)
    thresholds = np.array([conformal_threshold(c, alpha) for c in calibration])
    rate = float((fresh > thresholds).mean())
    expected = exceedances_allowed(n_cal, alpha) / (n_cal + 1)
    assert alpha - 1 / (n_cal + 1) < expected <= alpha
    assert abs(rate - expected) < 4 * math.sqrt(expected * (1 - expected) / draws)
    p = np.array([conformal_p_values(c, [f])[0] for c, f in zip(calibration[:2000], fresh[:2000], strict=True)])
    np.testing.assert_array_equal(p <= alpha, fresh[:2000] > thresholds[:2000])


# --- the detectors ----------------------------------------------------------------------
def test_on_a_gaussian_the_flagged_share_of_fresh_rows_is_alpha_within_the_conformal_law():
    rng = np.random.default_rng(2)
    mixing = rng.normal(size=(4, 4))  # a correlated Gaussian
    train, fresh = rng.normal(size=(2000, 4)) @ mixing, rng.normal(size=(20_000, 4)) @ mixing
    for alpha in (0.01, 0.05):
        det = USFlow(epochs=3, hidden_features=(16,), n_blocks=2, threshold="conformal", alpha=alpha).fit(train)
        n_cal = len(det.calibration_scores_)
        assert n_cal == 399  # a fifth (400), to the nearest count whose (n_cal + 1) alpha is whole
        assert exceedances_allowed(n_cal, alpha) / (n_cal + 1) == pytest.approx(alpha)
        share = float(det.predict(fresh).mean())
        # one fit: the share of a fresh draw around the conditional rate of one calibration draw,
        # the beta-binomial law of split conformal (the binomial around alpha ignores the draw)
        allowed = exceedances_allowed(n_cal, alpha)
        low, high = stats.betabinom.ppf([0.0005, 0.9995], len(fresh), allowed, n_cal + 1 - allowed) / len(fresh)
        assert low <= share <= high, (alpha, share, low, high)
        assert alpha - 3.3 * math.sqrt(alpha / n_cal) <= share <= alpha + 3.3 * math.sqrt(alpha / n_cal)


@pytest.mark.parametrize("make", MODELS)
def test_every_detector_calibrates_p_values_and_predicts_by_them(make, tmp_path):
    det = make(threshold="conformal", alpha=0.05).fit(X)
    assert len(det.calibration_scores_) == 99 and (np.diff(det.calibration_scores_) >= 0).all()
    assert len(det.decision_scores_) == len(det.labels_) == len(X)  # every row, calibration rows included
    p = det.p_values(FRESH)
    assert ((p > 0) & (p <= 1)).all() and p.min() >= 1 / 100
    np.testing.assert_array_equal(det.predict(FRESH), (p <= 0.05).astype(int))
    restored = load(det.save(tmp_path / "m.usfad"))
    np.testing.assert_array_equal(restored.calibration_scores_, det.calibration_scores_)
    assert restored.threshold_ == det.threshold_
    np.testing.assert_array_equal(restored.p_values(FRESH), p)
    np.testing.assert_array_equal(restored.predict(FRESH), det.predict(FRESH))


def test_p_values_of_fresh_normal_rows_are_uniform_ish():
    det = USFlow(epochs=3, hidden_features=(16,), n_blocks=2, threshold="conformal").fit(X)
    p = det.p_values(RNG.normal(size=(5000, 3)))
    # n_cal = 100: P(p <= a) is a Beta draw around a with sd <= 0.05; 3.5 sd of room
    for a in (0.1, 0.25, 0.5, 0.75, 0.9):
        assert abs(float((p <= a).mean()) - a) < 0.18, a
    assert stats.kstest(p, "uniform").statistic < 0.18
    assert float(np.median(det.p_values(FRESH + 6.0))) < 0.02  # far rows get small p-values


def test_the_calibration_rows_stay_out_of_the_scaler_and_the_training():
    det = USFlow(**FAST, n_blocks=1, threshold="conformal", random_state=7).fit(X)
    fit_rows, calibration_rows = calibration_split(len(X), seed=7, alpha=det.alpha)
    mean, scale, _ = fit_scaler(X[fit_rows])
    np.testing.assert_allclose(det.scaler_mean_, mean)
    np.testing.assert_allclose(det.scaler_scale_, scale)
    np.testing.assert_array_equal(det.calibration_scores_, np.sort(det.decision_function(X[calibration_rows])))
    again = USFlow(**FAST, n_blocks=1, threshold="conformal", random_state=7).fit(X)
    np.testing.assert_array_equal(again.calibration_scores_, det.calibration_scores_)  # seeded split


def test_a_refit_with_another_threshold_drops_the_calibration():
    det = USFlow(**FAST, n_blocks=1, threshold="conformal").fit(X)
    det.set_params(threshold="contamination").fit(X)
    assert not hasattr(det, "calibration_scores_")
    with pytest.raises(ValueError, match="p_values needs calibration rows held out at fit.*'contamination'"):
        det.p_values(FRESH)


@pytest.mark.parametrize("n_rows", [2, 20, 39])
def test_too_few_rows_is_a_clear_error(n_rows):
    with pytest.raises(DataError, match=rf"threshold='conformal' .*needs at least 40 training rows.*got {n_rows}"):
        USFlow(**FAST, n_blocks=1, threshold="conformal").fit(X[:n_rows])
    USFlow(**FAST, n_blocks=1, threshold="conformal", alpha=0.05).fit(X[:40])  # 20 calibration rows: fine


def test_an_alpha_below_1_over_n_cal_plus_1_warns_and_flags_only_rows_beyond_float_range():
    with pytest.warns(UserWarning, match=r"alpha=0.01 needs at least 99 calibration rows; 50 were held out of 100"):
        det = USFlow(**FAST, n_blocks=1, threshold="conformal", alpha=0.01).fit(X[:100])
    assert det.threshold_ == NO_ALARM and det.labels_.sum() == 0
    Z = FRESH[:5].copy()
    Z[2, 0] = 1e39  # beyond float32: scores +inf, still flagged
    np.testing.assert_array_equal(det.predict(Z), [0, 0, 1, 0, 0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        USFlow(**FAST, n_blocks=1, threshold="conformal", alpha=0.02).fit(X[:100])  # 1/51 < 0.02: finite


def test_the_model_file_must_hold_calibration_scores_that_give_its_threshold(tmp_path):
    det = USFlow(**FAST, n_blocks=1, threshold="conformal", alpha=0.05).fit(X)
    path = det.save(tmp_path / "m.usfad")
    with safe_open(str(path), "pt") as f:
        tensors = {k: f.get_tensor(k).clone() for k in f.keys()}  # noqa: SIM118
        metadata = {k: v for k, v in f.metadata().items() if k not in CHECKSUM_KEYS}

    def rewritten(name, edit_tensors=None, edit_state=None, edit_params=None):
        t, m = dict(tensors), dict(metadata)
        if edit_tensors:
            edit_tensors(t)
        for key, edit in (("state", edit_state), ("params", edit_params)):
            if edit:
                value = json.loads(m[key])
                edit(value)
                m[key] = json.dumps(value)
        return write_model_file(tmp_path / name, t, m)  # fresh checksums: only the field checks can refuse

    with pytest.raises(ModelFileError, match="has no calibration_scores, but threshold='conformal'"):
        load(rewritten("none.usfad", edit_tensors=lambda t: t.pop("calibration_scores")))
    with pytest.raises(ModelFileError, match="holds calibration_scores, but threshold='contamination'"):
        load(rewritten("other.usfad", edit_params=lambda p: p.update(threshold="contamination")))
    with pytest.raises(ModelFileError, match="not the conformal threshold of its calibration_scores"):
        load(rewritten("moved.usfad", edit_state=lambda s: s.update(threshold_=s["threshold_"] + 1)))
    with pytest.raises(ModelFileError, match="not the conformal threshold"):
        load(rewritten("alpha.usfad", edit_params=lambda p: p.update(alpha=0.2)))
    with pytest.raises(ModelFileError, match="not in ascending order"):
        flipped = tensors["calibration_scores"].flip(0)
        load(rewritten("order.usfad", edit_tensors=lambda t: t.update(calibration_scores=flipped)))
    with pytest.raises(ModelFileError, match="calibration_scores holds NaN"):
        bad = tensors["calibration_scores"].clone()
        bad[0] = float("nan")
        load(rewritten("nan.usfad", edit_tensors=lambda t: t.update(calibration_scores=bad)))


def test_usfad_fit_takes_threshold_conformal_and_alpha(tmp_path, capsys):
    data = tmp_path / "data.csv"
    np.savetxt(data, X, delimiter=",", header="a,b,c", comments="")
    model = tmp_path / "m.usfad"
    args = ["fit", str(data), "--epochs", "1", "--threshold", "conformal", "--alpha", "0.05", "--quiet"]
    assert main([*args, "-o", str(model)]) == 0
    det = load(model)
    assert det.threshold == "conformal" and det.alpha == 0.05 and len(det.calibration_scores_) == 99
    assert "(conformal)" in capsys.readouterr().out


# --- images ---------------------------------------------------------------------------
def _image_detector(**params):
    settings = {"image_size": 32, "epochs": 1, "batch_size": 8, "n_blocks": 1, "random_state": 0}
    return ImageDetector("fastflow", "usf", backbone=TinyBackbone(), **{**settings, **params})


def test_the_image_detector_calibrates_on_held_out_training_images(tmp_path):
    images = textured_images(60)
    features = _image_detector().features(images)
    det = _image_detector(threshold="conformal", alpha=0.1).fit_features(features)
    fit_rows, calibration_rows = calibration_split(60, seed=0, alpha=0.1)
    assert len(det.calibration_scores_) == 29 and det.history_.steps == math.ceil(31 / 8)  # trained on the rest
    held_out = det.score_maps_features([f[calibration_rows] for f in features])[0]
    np.testing.assert_array_equal(det.calibration_scores_, np.sort(held_out))
    assert det.threshold_ == conformal_threshold(held_out, 0.1)
    normal, defect = textured_images(6, seed=7), textured_images(6, seed=7, defect=True)
    p = det.p_values(torch.cat([normal, defect]))
    assert ((p > 0) & (p <= 1)).all() and p.min() >= 1 / 30
    scores = det.decision_function(torch.cat([normal, defect]))
    np.testing.assert_array_equal(scores > det.threshold_, p <= 0.1)
    labels = det.predict(torch.cat([normal, defect]))  # labels, as the tabular detectors give them
    assert labels.dtype.kind == "i" and labels.shape == (12,)
    np.testing.assert_array_equal(labels, (p <= 0.1).astype(int))
    restored = ImageDetector.load(det.save(tmp_path / "image.usfad"), backbone=TinyBackbone())
    np.testing.assert_array_equal(restored.calibration_scores_, det.calibration_scores_)
    assert restored.threshold_ == det.threshold_ and restored.alpha == 0.1
    np.testing.assert_array_equal(restored.p_values(normal), det.p_values(normal))
    plain = _image_detector().fit_features(features)  # the default: no threshold, every image trains
    assert not hasattr(plain, "threshold_") and plain.history_.steps == math.ceil(60 / 8)
    with pytest.raises(ValueError, match="p_values needs calibration images"):
        plain.p_values(normal)
    with pytest.raises(ValueError, match="predict needs a threshold: fit with threshold='conformal'"):
        plain.predict(normal)


def test_the_image_detector_refuses_too_few_images_and_warns_when_alpha_is_out_of_reach():
    features = _image_detector().features(textured_images(44))
    with pytest.raises(DataError, match="needs at least 40 training rows.*got 39"):
        _image_detector(threshold="conformal").fit_features([f[:39] for f in features])
    with pytest.warns(UserWarning, match="alpha=0.01 needs at least 99 calibration images; 22 were held out"):
        det = _image_detector(threshold="conformal").fit_features(features)
    assert det.threshold_ == NO_ALARM
    with pytest.raises(ValueError, match="threshold must be one of"):
        _image_detector(threshold="chi2").fit_features(features)


def _wide_gaussian(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mixing = np.random.default_rng(99).normal(size=(100, 100)) / 10
    return rng.normal(size=(n, 100)) @ mixing


def test_a_model_that_memorises_its_rows_says_so_and_conformal_keeps_its_rate():
    # 200 rows of 100 correlated features: the quantile of the training scores flags most fresh
    # normal rows; the held-out validation rows show it at fit, and the conformal threshold holds
    X, fresh = _wide_gaussian(200, 0), _wide_gaussian(4000, 1)
    params = {"epochs": 60, "hidden_features": (16,), "n_blocks": 1, "random_state": 0}
    with pytest.warns(ThresholdWarning, match=r"of the 20 training rows held out .*threshold='conformal'"):
        memorised = USFlow(**params).fit(X)
    assert memorised.predict(fresh).mean() > 2 * 0.1  # what the warning is about: 32% (7 of the 20 held out)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no such warning when the threshold is calibrated on held-out rows
        conformal = USFlow(**params, threshold="conformal", alpha=0.1).fit(X)
    assert conformal.predict(fresh).mean() <= 0.1 + 3 * math.sqrt(0.1 * 0.9 / 60)  # 60 calibration rows


def test_no_memorisation_warning_when_held_out_rows_score_like_training_rows():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(2000, 4)) @ rng.normal(size=(4, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        det = USFlow(epochs=5, hidden_features=(16,), random_state=0).fit(X)
    held_out = det.history_.validation_rows
    assert len(held_out) == 200 and len(np.unique(held_out)) == 200
    assert (det.decision_scores_[held_out] > det.threshold_).mean() < 0.2
