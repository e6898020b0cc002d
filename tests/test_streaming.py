"""usfad score on files with a bad row: its line is named, the rows before it are kept."""

import numpy as np
import pandas as pd
import pytest

from usfad.cli import main
from usfad.detectors import USFlow

N_ROWS, BAD_ROW, CHUNK = 50, 37, 16  # the bad row sits inside the third chunk


def assert_same_scores(streamed, whole):
    """The scores of a chunked pass against one pass over every row: the same rows in the same order, to a few
    float32 ulps (a chunk of 2 rows and a batch of 50 can take different BLAS kernels for the kernel base's
    row-by-centre product, and the rounding of a matrix product depends on them)."""
    assert streamed.shape == whole.shape
    np.testing.assert_allclose(streamed, whole, rtol=1e-6, atol=0)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N_ROWS, 3))
    detector = USFlow(n_blocks=2, hidden_features=(16,), epochs=1).fit(X)
    path = detector.save(tmp_path_factory.mktemp("model") / "m.safetensors")
    return detector, path, X


def _csv_lines(X):
    return ["a,b,c\n"] + [",".join(repr(float(v)) for v in row) + "\n" for row in X]


def _score(capsys, model_path, data, out):
    code = main(["score", str(model_path), str(data), "--chunk-size", str(CHUNK), "-o", str(out)])
    return code, capsys.readouterr().err


BAD_LINES = {
    "non-numeric": ("1.0,abc,2.0\n", "column 'b' holds 'abc', not a number"),
    "too many fields": ("1.0,2.0,3.0,4.0\n", "4 field(s) where the header has 3"),
    "too few fields": ("1.0,2.0\n", "2 field(s) where the header has 3"),
    "NaN": ("1.0,nan,2.0\n", "column 'b' is NaN or missing"),
    "empty value": ("1.0,,2.0\n", "column 'b' is NaN or missing"),
    "infinite": ("1.0,2.0,inf\n", "column 'c' is infinite"),
}


@pytest.mark.parametrize("kind", sorted(BAD_LINES))
def test_bad_csv_row_is_named_by_line_and_earlier_rows_are_written_in_order(kind, model, tmp_path, capsys):
    detector, model_path, X = model
    bad_line, reason = BAD_LINES[kind]
    lines = _csv_lines(X)
    lines.insert(1 + BAD_ROW, bad_line)  # data row BAD_ROW is line BAD_ROW + 2 (line 1: header)
    data = tmp_path / "data.csv"
    data.write_text("".join(lines))
    out = tmp_path / "scores.csv"
    code, err = _score(capsys, model_path, data, out)
    assert code == 1
    assert f"data.csv: line {BAD_ROW + 2}: {reason}" in err
    assert f"the {BAD_ROW} row(s) before it were written to {out}" in err
    scores = pd.read_csv(out)
    assert len(scores) == BAD_ROW
    assert_same_scores(scores["score"].to_numpy(), detector.decision_function(X[:BAD_ROW]))
    np.testing.assert_array_equal(scores["label"].to_numpy(), detector.predict(X[:BAD_ROW]))


def test_line_numbers_count_skipped_blank_lines(model, tmp_path, capsys):
    detector, model_path, X = model
    lines = _csv_lines(X[:20])
    lines.insert(5, "\n")  # a blank line 6: skipped, but it is a line of the file
    lines.insert(15, "1,x,3\n")  # line 16, the 14th data row
    data = tmp_path / "data.csv"
    data.write_text("".join(lines))
    code, err = _score(capsys, model_path, data, tmp_path / "scores.csv")
    assert code == 1 and "line 16: column 'b' holds 'x'" in err and "the 13 row(s) before it" in err


def test_bad_first_row_writes_nothing_and_says_so(model, tmp_path, capsys):
    _, model_path, X = model
    lines = _csv_lines(X)
    lines.insert(1, "1,2\n")
    data = tmp_path / "data.csv"
    data.write_text("".join(lines))
    out = tmp_path / "scores.csv"
    code, err = _score(capsys, model_path, data, out)
    assert code == 1 and "line 2: 2 field(s)" in err and "no row was scored" in err
    assert not out.exists()


def test_npz_row_with_nan_is_named_by_index_and_earlier_rows_are_written(model, tmp_path, capsys):
    detector, model_path, X = model
    bad = X.copy()
    bad[BAD_ROW, 1] = np.nan
    data = tmp_path / "data.npz"
    np.savez(data, X=bad)
    out = tmp_path / "scores.csv"
    code, err = _score(capsys, model_path, data, out)
    assert code == 1 and f"row {BAD_ROW} (counting from 0): feature 1 is NaN" in err
    assert_same_scores(pd.read_csv(out)["score"].to_numpy(), detector.decision_function(X[:BAD_ROW]))


def test_clean_csv_gives_one_score_per_row_in_order_across_chunks(model, tmp_path, capsys):
    detector, model_path, X = model
    data = tmp_path / "data.csv"
    data.write_text("".join(_csv_lines(X)))
    out = tmp_path / "scores.csv"
    code, _ = _score(capsys, model_path, data, out)
    assert code == 0
    assert_same_scores(pd.read_csv(out)["score"].to_numpy(), detector.decision_function(X))
