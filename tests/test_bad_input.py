"""Every documented bad input gets an error that names the problem."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from usfad import DeepSVDD, NonUSFlow, USFlow
from usfad.errors import DataError, TrainingDivergedError

FAST = {"epochs": 2, "hidden_features": (8,), "n_blocks": 1, "batch_size": 32}
MODELS = [
    pytest.param(lambda: USFlow(**FAST), id="usflow"),
    pytest.param(lambda: NonUSFlow(**FAST), id="nonusflow"),
    pytest.param(lambda: DeepSVDD(epochs=2, hidden_features=(8,), latent_features=2), id="deepsvdd"),
]
GOOD = np.random.default_rng(0).normal(size=(40, 3))


@pytest.mark.parametrize("make", MODELS)
@pytest.mark.parametrize(
    ("X", "message"),
    [
        (np.array([[1.0, np.nan, 0.0]] * 5), "NaN or infinite value.*row 0, column 1"),
        (np.array([[1.0, 2.0, np.inf]] * 5), "NaN or infinite"),
        (np.arange(5.0), "must be 2-D.*reshape"),
        (np.zeros((0, 3)), "at least 2 sample"),
        (np.zeros((1, 3)), "at least 2 sample"),
        (np.zeros((4, 0)), "no features"),
        (np.array([["a", "b"], ["c", "d"]]), "non-numeric"),
        (pd.DataFrame({"x": [1.0, 2.0, 3.0], "colour": ["r", "g", "b"]}), r"non-numeric columns \['colour'\]"),
        ([[1.0, 2.0], [3.0]], "could not be read"),
    ],
)
def test_fit_rejects_bad_data(make, X, message):
    with pytest.raises(DataError, match=message):
        make().fit(X)


@pytest.mark.parametrize("make", MODELS)
def test_scoring_rejects_bad_data(make):
    det = make().fit(GOOD)
    with pytest.raises(DataError, match="has 2 features, but the model was fitted with 3"):
        det.decision_function(GOOD[:, :2])
    with pytest.raises(DataError, match="NaN"):
        det.predict(np.where(GOOD > 1.5, np.nan, GOOD))
    with pytest.raises(DataError, match="2-D"):
        det.decision_function(GOOD[0])
    with pytest.raises(DataError, match="at least 1 sample"):
        det.decision_function(np.zeros((0, 3)))


def test_scoring_before_fit_says_so():
    with pytest.raises(RuntimeError, match="not fitted yet"):
        USFlow().decision_function(GOOD)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"contamination": 0.7}, "contamination"),
        ({"threshold": "otsu"}, "threshold must be one of"),
        ({"alpha": 0.0}, "alpha"),
        ({"epochs": 0}, "epochs"),
        ({"lr": -1.0}, "lr"),
        ({"flow": "nice"}, "flow must be one of"),
    ],
)
def test_invalid_hyper_parameters_are_named(params, message):
    from usfad import FlowDetector

    with pytest.raises(ValueError, match=message):
        FlowDetector(**{**FAST, **params}).fit(GOOD)


def test_non_finite_training_loss_stops_with_a_clear_error():
    huge = np.random.default_rng(0).normal(size=(50, 3)) * 1e20  # squares overflow float32
    with pytest.raises(TrainingDivergedError, match="training loss became"):
        USFlow(**FAST, standardize=False).fit(huge)


def test_constant_columns_are_fine():
    X = np.column_stack([GOOD, np.full(len(GOOD), 7.0)])
    det = USFlow(**FAST).fit(X)
    assert np.isfinite(det.decision_function(X)).all()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.integers(2, 40).flatmap(
        lambda n: st.integers(1, 6).flatmap(
            lambda d: arrays(np.float64, (n, d), elements=st.floats(-1e3, 1e3, allow_nan=False, width=32))
        )
    ),
    kind=st.sampled_from(["usflow", "nonusflow", "deepsvdd"]),
)
@pytest.mark.filterwarnings("ignore::usfad.errors.RepresentationCollapseWarning")  # constant data may collapse
def test_fit_and_score_on_random_shapes_and_values(data, kind):
    make = {
        "usflow": lambda: USFlow(**FAST),
        "nonusflow": lambda: NonUSFlow(**FAST),
        "deepsvdd": lambda: DeepSVDD(epochs=2, hidden_features=(8,), latent_features=2),
    }[kind]
    det = make().fit(data)
    scores = det.decision_function(data)
    assert scores.shape == (len(data),)
    assert np.isfinite(scores).all()
    assert set(np.unique(det.predict(data))) <= {0, 1}
    assert det.labels_.shape == (len(data),)
