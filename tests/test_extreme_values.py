"""Values at any finite scale: beyond float32 a row scores +inf and is flagged; standardisation never overflows."""

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from usfad import DeepSVDD, DeepSVDDVAE, NonUSFlow, USFlow, VAEFlow
from usfad.cli import main

BIG = np.finfo(np.float64).max
FAST = {"epochs": 1, "hidden_features": (8,), "batch_size": 32}
MODELS = [
    pytest.param(lambda: USFlow(**FAST, n_blocks=1), id="usflow"),
    pytest.param(lambda: NonUSFlow(**FAST, n_blocks=1), id="nonusflow"),
    pytest.param(lambda: DeepSVDD(**FAST, latent_features=2), id="deepsvdd"),
    pytest.param(lambda: VAEFlow(**FAST, n_blocks=1), id="vaeflow"),
    pytest.param(lambda: DeepSVDDVAE(**FAST), id="deepsvddvae"),
]
X = np.random.default_rng(0).normal(size=(300, 3))


@pytest.mark.parametrize("make", MODELS)
@pytest.mark.parametrize("value", [1e39, -1e39, 3e38, 1e20, 1e300])
def test_a_row_beyond_float32_scores_plus_inf_and_is_flagged(make, value):
    det = make().fit(X)
    Z = X[:10].copy()
    Z[4, 1] = value
    scores = det.decision_function(Z)
    assert scores[4] == BIG  # +inf, reported as the largest finite float64
    assert det.predict(Z)[4] == 1
    np.testing.assert_array_equal(det.predict_proba(Z)[4], [0.0, 1.0])
    others = np.delete(np.arange(10), 4)
    # neighbours unaffected (to float32 rounding: a batch of 9 rows may take another BLAS kernel than one of 10)
    np.testing.assert_allclose(scores[others], det.decision_function(Z[others]), rtol=1e-6, atol=0)
    graph = det.scoring_module()  # the exported graph decides the same way
    with torch.no_grad():
        np.testing.assert_allclose(graph(torch.as_tensor(Z)).numpy(), scores, rtol=1e-5)


def _lines(frame):
    return frame.to_csv(index=False)


@pytest.mark.parametrize("chunk", [None, 64])
def test_usfad_score_scores_every_row_around_a_value_beyond_float32(tmp_path, capsys, chunk):
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    train = tmp_path / "train.csv"
    frame.to_csv(train, index=False)
    model = tmp_path / "m.usfad"
    assert main(["fit", str(train), "--epochs", "1", "--quiet", "-o", str(model)]) == 0
    bad = frame.copy()
    bad.loc[199, "b"] = 1e39  # CSV line 201
    data = tmp_path / "data.csv"
    data.write_text(_lines(bad))
    assert data.read_text().splitlines()[200].split(",")[1] == "1e+39"
    chunking = [] if chunk is None else ["--chunk-size", str(chunk)]
    assert main(["score", str(model), str(data), *chunking, "-o", str(tmp_path / "s.csv")]) == 0
    assert main(["score", str(model), str(train), *chunking, "-o", str(tmp_path / "clean.csv")]) == 0
    capsys.readouterr()
    got, clean = pd.read_csv(tmp_path / "s.csv"), pd.read_csv(tmp_path / "clean.csv")
    assert len(got) == 300
    assert got.score[199] == BIG and got.label[199] == 1
    keep = np.arange(300) != 199
    np.testing.assert_allclose(got.score[keep], clean.score[keep], rtol=1e-6, atol=0)  # float32 rounding, as above


@pytest.fixture(scope="module")
def unit_scale():
    rng = np.random.default_rng(1)
    train = rng.normal(size=(400, 4))
    fresh = rng.normal(size=(50, 4))
    fresh[0] = 10.0  # a 10-sigma outlier
    return train, fresh, USFlow(epochs=3).fit(train)


@pytest.mark.parametrize("scale", [1e-13, 1e-150, 1e154, 1e300])
def test_standardisation_survives_any_finite_scale(unit_scale, scale):
    train, fresh, reference = unit_scale
    det = USFlow(epochs=3).fit(train * scale)
    assert np.isfinite(det.scaler_scale_).all() and (det.scaler_scale_ > 0).all()
    scores = det.decision_function(fresh * scale)
    assert det.predict(fresh * scale)[0] == 1
    assert scores[0] == scores.max()
    assert stats.spearmanr(scores, reference.decision_function(fresh))[0] > 0.99


def test_constant_columns_are_relative_to_their_own_magnitude_and_named():
    rng = np.random.default_rng(2)
    frame = pd.DataFrame(
        {
            "tiny": rng.normal(size=100) * 1e-20,  # small but varying: a real feature
            "flat": 1e6 + rng.normal(size=100) * 1e-9,  # varies by 1e-15 of its size: constant
            "zero": np.zeros(100),
            "x": rng.normal(size=100),
        }
    )
    with pytest.warns(UserWarning, match=r"2 constant column\(s\) \['flat', 'zero'\]") as record:
        det = USFlow(**FAST, n_blocks=1).fit(frame)
    assert len(record) == 1
    assert det.scaler_scale_[0] == pytest.approx(1e-20, rel=0.2)
    assert np.isfinite(det.decision_function(frame)).all()


def test_more_features_than_rows_warns():
    with pytest.warns(UserWarning, match=r"more features \(20\) than rows \(10\)"):
        USFlow(**FAST, n_blocks=1).fit(np.random.default_rng(0).normal(size=(10, 20)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        USFlow(**FAST, n_blocks=1).fit(np.random.default_rng(0).normal(size=(20, 10)))
