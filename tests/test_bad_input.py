"""Every documented bad input gets an error that names the problem."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from usfad import DeepSVDD, DeepSVDDVAE, NonUSFlow, USFlow, VAEFlow
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
        (np.zeros((4, 0)), r"0 feature\(s\) \(shape=\(4, 0\)\)"),
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
    with pytest.raises(DataError, match=f"has 2 features, but {type(det).__name__} is expecting 3 features as input"):
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
        ({"epochs": 1.5}, r"epochs must be an integer >= 1 or 'auto', got 1\.5 \(float\)"),
        ({"batch_size": 1.5}, r"batch_size must be an integer >= 1, got 1\.5 \(float\)"),
        ({"n_blocks": 1.5}, r"n_blocks must be an integer >= 0, got 1\.5 \(float\)"),
        ({"alpha": None}, r"alpha must be a number in \(0, 1\), got None"),
        ({"max_steps": 0}, r"max_steps must be an integer >= 1 or None or 'auto', got 0"),
        ({"max_steps": 2.5}, r"max_steps must be an integer >= 1 or None or 'auto', got 2\.5"),
        ({"contamination": "0.1"}, r"contamination must be a number in \(0, 0\.5\], got '0\.1' \(str\)"),
        ({"lr": float("nan")}, r"lr must be a number > 0, got nan"),
        ({"random_state": 1.5}, r"random_state must be an integer or None, got 1\.5"),
        ({"verbose": "yes"}, r"verbose must be True or False, got 'yes'"),
        ({"epochs": True}, r"epochs must be an integer >= 1 or 'auto', got True \(bool\)"),
    ],
)
def test_invalid_hyper_parameters_are_named(params, message):
    from usfad import FlowDetector

    with pytest.raises(ValueError, match=message):
        FlowDetector(**{**FAST, **params}).fit(GOOD)


@pytest.mark.parametrize(
    ("make", "params", "message"),
    [
        (DeepSVDD, {"epochs": 1.5}, r"epochs must be an integer >= 1, got 1\.5"),
        (DeepSVDD, {"latent_features": None}, r"latent_features must be an integer >= 1 for DeepSVDD, got None"),
        (DeepSVDD, {"nu": 0.0}, r"nu must be a number in \(0, 1\]"),
        (VAEFlow, {"n_blocks": 1.5}, r"n_blocks must be an integer >= 0, got 1\.5"),
        (VAEFlow, {"latent_features": 0}, r"latent_features must be an integer >= 1 or None, got 0"),
        (DeepSVDDVAE, {"batch_size": 1.5}, r"batch_size must be an integer >= 1, got 1\.5"),
    ],
)
def test_the_parameter_table_applies_to_every_detector_with_that_parameter(make, params, message):
    with pytest.raises(ValueError, match=message):
        make(**params).fit(GOOD)


def test_max_steps_none_means_no_cap():
    det = USFlow(**{**FAST, "epochs": 3}, max_steps=None, validation_fraction=0.0).fit(GOOD)
    assert det.history_.steps == 3 * 2  # 40 rows, batches of 32: 2 steps per epoch, all 3 epochs


def test_max_steps_caps_the_steps():
    assert USFlow(**{**FAST, "epochs": 3}, max_steps=1).fit(GOOD).history_.steps == 1


@pytest.mark.parametrize("kind", ["csr_matrix", "csc_matrix", "coo_array"])
def test_sparse_input_has_its_own_message(kind):
    from scipy import sparse

    X = getattr(sparse, kind)(GOOD)
    with pytest.raises(DataError, match=r"sparse input is not supported; call X\.toarray\(\) first"):
        USFlow(**FAST).fit(X)
    det = USFlow(**FAST).fit(GOOD)
    with pytest.raises(DataError, match="sparse input is not supported"):
        det.decision_function(X)


def test_pr_auc_never_reads_above_one():
    from sklearn.metrics import average_precision_score

    from usfad.metrics import detection_metrics, pr_auc

    y = np.array([1] * 42 + [0] * 4)
    scores = np.random.default_rng(0).uniform(size=46) + y  # every anomaly above every normal row
    assert average_precision_score(y, scores) > 1.0  # scikit-learn's rounding
    assert pr_auc(y, scores) == 1.0
    assert detection_metrics(y, scores)["pr_auc"] == 1.0


def test_non_finite_training_loss_stops_with_a_clear_error():
    huge = np.random.default_rng(0).normal(size=(50, 3)) * 1e20  # squares overflow float32
    with pytest.raises(TrainingDivergedError, match="training loss became"):
        USFlow(**FAST, standardize=False).fit(huge)


def test_constant_columns_are_fine():
    X = np.column_stack([GOOD, np.full(len(GOOD), 7.0)])
    with pytest.warns(UserWarning, match=r"constant column\(s\) \[3\]"):
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
@pytest.mark.filterwarnings("ignore:X has:UserWarning")  # constant columns, more features than rows
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
