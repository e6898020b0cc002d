"""Column names are recorded at fit and checked at scoring: reordered or renamed columns are refused."""

import re

import numpy as np
import pandas as pd
import pytest

from usfad import DeepSVDD, USFlow, load
from usfad.cli import main
from usfad.data.files import feature_columns, iter_table
from usfad.errors import DataError

FAST = {"epochs": 1, "hidden_features": (8,), "n_blocks": 1, "batch_size": 32}
NAMES = ["a", "b", "c"]
X = np.random.default_rng(0).normal(size=(60, 3))
FRAME = pd.DataFrame(X, columns=NAMES)


@pytest.fixture(scope="module")
def fitted():
    return USFlow(**FAST).fit(FRAME)


def test_fit_on_a_frame_records_feature_names_in_(fitted):
    assert list(fitted.feature_names_in_) == NAMES
    assert fitted.feature_names_in_.dtype == object


@pytest.mark.parametrize(
    "X_fit",
    [
        pytest.param(X, id="array"),
        pytest.param(pd.DataFrame(X), id="integer-column-labels"),
        pytest.param(pd.DataFrame(X, columns=["a", 1, "c"]), id="mixed-column-labels"),
    ],
)
def test_no_feature_names_without_string_column_names(X_fit):
    det = USFlow(**FAST).fit(FRAME)
    det.fit(X_fit)  # a refit on positional input forgets the old names
    assert not hasattr(det, "feature_names_in_")


@pytest.mark.parametrize("method", ["decision_function", "predict", "score_samples", "predict_proba", "latent"])
def test_same_names_in_another_order_are_refused_with_both_lists(fitted, method):
    with pytest.raises(DataError, match=r"another order: expected \['a', 'b', 'c'\], got \['c', 'a', 'b'\]; reorder"):
        getattr(fitted, method)(FRAME[["c", "a", "b"]])


@pytest.mark.parametrize(
    ("columns", "detail"),
    [
        (["a", "b", "x"], r"missing \['c'\]; unexpected \['x'\]"),
        (["a", "b"], r"missing \['c'\]"),
        (["a", "b", "c", "d"], r"unexpected \['d'\]"),
    ],
)
def test_other_names_are_refused_with_what_is_missing_and_unexpected(fitted, columns, detail):
    frame = pd.DataFrame(np.zeros((4, len(columns))), columns=columns)
    with pytest.raises(DataError, match=rf"expected \['a', 'b', 'c'\], got .*{detail}"):
        fitted.decision_function(frame)


def test_arrays_stay_positional(fitted):
    np.testing.assert_array_equal(fitted.decision_function(X), fitted.decision_function(FRAME))
    unnamed = USFlow(**FAST).fit(X)
    np.testing.assert_array_equal(
        unnamed.decision_function(FRAME[["c", "a", "b"]]), unnamed.decision_function(X[:, [2, 0, 1]])
    )


def test_feature_names_survive_save_and_load(fitted, tmp_path):
    det = load(fitted.save(tmp_path / "m.usfad"))
    assert list(det.feature_names_in_) == NAMES
    with pytest.raises(DataError, match="another order"):
        det.predict(FRAME[["b", "a", "c"]])
    unnamed = load(DeepSVDD(epochs=1, hidden_features=(8,), latent_features=2).fit(X).save(tmp_path / "u.usfad"))
    assert not hasattr(unnamed, "feature_names_in_")


def _write(path, frame):
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path


@pytest.fixture(scope="module")
def cli_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("names")
    train = _write(folder / "train.csv", FRAME.assign(y=0))
    path = folder / "m.usfad"
    assert main(["fit", str(train), "--label-column", "y", "--epochs", "1", "--quiet", "-o", str(path)]) == 0
    return path


def test_usfad_fit_saves_the_header_names_without_the_label_column(cli_model):
    assert list(load(cli_model).feature_names_in_) == NAMES


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
@pytest.mark.parametrize(
    ("columns", "message"),
    [
        (["c", "a", "b"], r"another order: expected \['a', 'b', 'c'\], got \['c', 'a', 'b'\]; reorder"),
        (["a", "b", "z"], r"expected \['a', 'b', 'c'\], got \['a', 'b', 'z'\] \(missing \['c'\]; unexpected \['z'\]\)"),
    ],
)
def test_usfad_score_refuses_other_columns_before_scoring(cli_model, tmp_path, capsys, suffix, columns, message):
    pytest.importorskip("pyarrow")
    data = _write(tmp_path / f"data{suffix}", FRAME.set_axis(columns, axis=1))
    out = tmp_path / "scores.csv"
    assert main(["score", str(cli_model), str(data), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert str(data) in err and "no row was scored" in err
    assert re.search(message, err), err
    assert not out.exists()


def test_usfad_score_with_the_same_columns_and_npz_positional(cli_model, tmp_path, capsys):
    same = _write(tmp_path / "same.csv", FRAME)
    assert main(["score", str(cli_model), str(same), "-o", str(tmp_path / "s.csv")]) == 0
    npz = tmp_path / "data.npz"
    np.savez(npz, X=X)
    assert main(["score", str(cli_model), str(npz), "-o", str(tmp_path / "n.csv")]) == 0
    np.testing.assert_array_equal(pd.read_csv(tmp_path / "s.csv").score, pd.read_csv(tmp_path / "n.csv").score)


def test_iter_table_reads_the_names_from_the_header_only(tmp_path):
    path = tmp_path / "big.csv"
    path.write_text("a,y,b\n1,0,2\n" + "3,0,4\n" * 10 + "not,a,number\n")
    chunks = iter_table(path, chunk_size=1, label_column="y")
    assert chunks.feature_names == ["a", "b"]
    np.testing.assert_array_equal(next(chunks), [[1.0, 2.0]])  # the bad line far below is not read yet
    assert feature_columns(path, label_column="y") == ["a", "b"]
    npz = tmp_path / "x.npz"
    np.savez(npz, X=X)
    assert iter_table(npz).feature_names is None and feature_columns(npz) is None
