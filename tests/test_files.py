import importlib.util

import numpy as np
import pandas as pd
import pytest

from usfad.data.files import iter_table, read_table, write_scores
from usfad.errors import DataError

PARQUET = pytest.param(
    ".parquet",
    marks=pytest.mark.skipif(importlib.util.find_spec("pyarrow") is None, reason="needs pyarrow"),
)


@pytest.fixture
def table():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(53, 4))
    y = (rng.random(53) < 0.2).astype(int)
    return X, y


def _write(path, X, y=None, compressed=False):
    """Write X (and y as column/array 'target') in the format of ``path``'s extension."""
    if path.suffix == ".npz":
        arrays = {"X": X} if y is None else {"X": X, "y": y}
        (np.savez_compressed if compressed else np.savez)(path, **arrays)
        return path
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    if y is not None:
        frame.insert(2, "target", y)  # the label column need not be the last
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path


@pytest.mark.parametrize("suffix", [".csv", PARQUET])
def test_read_table_splits_off_the_label_column(tmp_path, table, suffix):
    X, y = table
    path = _write(tmp_path / f"data{suffix}", X, y)
    got_X, got_y = read_table(path, label_column="target")
    np.testing.assert_allclose(got_X, X, rtol=1e-15)
    np.testing.assert_array_equal(got_y, y)
    assert got_X.dtype == np.float64
    all_X, no_y = read_table(path)
    assert all_X.shape == (53, 5) and no_y is None


@pytest.mark.parametrize("compressed", [False, True])
def test_read_table_npz_returns_X_and_y(tmp_path, table, compressed):
    X, y = table
    path = _write(tmp_path / "data.npz", X, y, compressed=compressed)
    got_X, got_y = read_table(path)
    np.testing.assert_array_equal(got_X, X)
    np.testing.assert_array_equal(got_y, y)
    assert read_table(_write(tmp_path / "x.npz", X))[1] is None


@pytest.mark.parametrize(
    "suffix,compressed",
    [(".csv", False), pytest.param(".parquet", False, marks=PARQUET.marks), (".npz", False), (".npz", True)],
)
@pytest.mark.parametrize("chunk_size", [1, 10, 53, 1000])
def test_iter_table_chunks_concatenate_to_read_table(tmp_path, table, suffix, compressed, chunk_size):
    X, y = table
    path = _write(tmp_path / f"data{suffix}", X, y, compressed=compressed)
    label = "y" if suffix == ".npz" else "target"
    chunks = list(iter_table(path, chunk_size=chunk_size, label_column=label))
    assert all(len(c) <= chunk_size for c in chunks)
    assert all(c.dtype == np.float64 and c.flags.c_contiguous for c in chunks)
    np.testing.assert_array_equal(np.concatenate(chunks), read_table(path, label_column=label)[0])


def test_iter_table_npz_uses_a_memory_map_when_uncompressed(tmp_path, table):
    from usfad.data.files import _npz_array

    path = _write(tmp_path / "data.npz", table[0])
    assert isinstance(_npz_array(path, "X"), np.memmap)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match=r"nope\.csv: no such file"):
        read_table(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="no such file"):
        iter_table(tmp_path / "nope.parquet")


def test_unknown_extension_lists_the_supported_ones(tmp_path):
    path = tmp_path / "data.xlsx"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match=r"data\.xlsx.*unknown file type '\.xlsx'.*\.csv"):
        read_table(path)


@pytest.mark.parametrize("suffix", [".csv", PARQUET])
def test_non_numeric_columns_are_named(tmp_path, suffix):
    frame = pd.DataFrame({"a": [1.0, 2.0], "colour": ["red", "blue"], "b": [3, 4], "when": ["x", "y"]})
    path = tmp_path / f"data{suffix}"
    frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path)
    with pytest.raises(DataError, match=r"non-numeric columns \['colour', 'when'\]"):
        read_table(path)
    with pytest.raises(DataError, match="colour"):
        list(iter_table(path))


def test_csv_value_turning_non_numeric_late_is_reported_with_its_line(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("a,b\n" + "".join(f"{i},{i}\n" for i in range(10)) + "1,oops\n")
    chunks = iter_table(path, chunk_size=4)
    with pytest.raises(DataError, match=r"line 12: column 'b' holds 'oops', not a number"):
        list(chunks)


def test_empty_files_are_rejected(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="empty"):
        read_table(empty)
    header_only = tmp_path / "header.csv"
    header_only.write_text("a,b\n")
    with pytest.raises(DataError, match="no data rows"):
        read_table(header_only)
    with pytest.raises(DataError, match="no data rows"):
        iter_table(header_only)
    np.savez(tmp_path / "empty.npz", X=np.empty((0, 3)))
    with pytest.raises(DataError, match="no data rows"):
        read_table(tmp_path / "empty.npz")


def test_missing_label_column_lists_the_columns(tmp_path, table):
    path = _write(tmp_path / "data.csv", *table)
    with pytest.raises(DataError, match=r"no label column 'label'.*'target'"):
        read_table(path, label_column="label")


def test_npz_without_X_says_what_it_holds(tmp_path):
    np.savez(tmp_path / "data.npz", features=np.ones((3, 2)))
    with pytest.raises(DataError, match=r"no array 'X'.*features"):
        read_table(tmp_path / "data.npz")


def test_missing_values_are_read_as_nan(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("a,b\n1,\n2,3\n")
    X, _ = read_table(path)
    assert np.isnan(X[0, 1]) and X[1, 1] == 3


def test_write_scores_round_trips_exactly(tmp_path):
    scores = np.random.default_rng(0).normal(size=25) * 1e3
    labels = (scores > 0).astype(int)
    path = tmp_path / "scores.csv"
    n = write_scores(path, [(scores[:10], labels[:10]), (scores[10:], labels[10:])])
    assert n == 25
    frame = pd.read_csv(path)
    assert list(frame.columns) == ["score", "label"]
    np.testing.assert_array_equal(frame["score"].to_numpy(), scores)
    np.testing.assert_array_equal(frame["label"].to_numpy(), labels)


def test_write_scores_keeps_the_rows_before_a_bad_input_row(tmp_path):
    def chunks():
        yield np.arange(3.0), np.zeros(3)
        raise DataError("bad row")

    path = tmp_path / "scores.csv"
    with pytest.raises(DataError):
        write_scores(path, chunks())
    assert list(tmp_path.iterdir()) == [path]
    np.testing.assert_array_equal(pd.read_csv(path)["score"].to_numpy(), [0.0, 1.0, 2.0])


def test_write_scores_leaves_no_file_when_something_else_fails(tmp_path):
    def chunks():
        yield np.zeros(3), np.zeros(3)
        raise RuntimeError("not a data problem")

    path = tmp_path / "scores.csv"
    with pytest.raises(RuntimeError):
        write_scores(path, chunks())
    assert list(tmp_path.iterdir()) == []


def test_malformed_csv_rows_are_reported_with_the_file(tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text("a,b\n" + "1,2\n" * 10 + "1,2,3,4\n")
    with pytest.raises(DataError, match=r"ragged\.csv: line 12: 4 field\(s\) where the header has 2"):
        read_table(path)
    with pytest.raises(DataError, match=r"ragged\.csv: line 12: 4 field\(s\) where the header has 2"):
        list(iter_table(path, chunk_size=4))


def test_read_table_names_a_short_row_by_line_and_field_count(tmp_path):
    path = tmp_path / "short.csv"
    path.write_text("a,b,c\n" + "1,2,3\n" * 98 + "1,2\n" + "1,2,3\n")  # line 100
    with pytest.raises(DataError, match=r"short\.csv: line 100: 2 field\(s\) where the header has 3"):
        read_table(path)


def test_read_table_names_a_byte_that_is_not_utf8(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"a,b\n1,2\n3,\xe9\n")
    with pytest.raises(DataError, match=r"latin1\.csv: line 3 is not UTF-8 text \(byte 0xe9"):
        read_table(path)
    path.write_bytes(b"a,\xe9\n1,2\n")
    with pytest.raises(DataError, match=r"latin1\.csv: the header is not UTF-8"):
        read_table(path)


@pytest.mark.parametrize(
    ("suffix", "where"),
    [
        (".csv", r"line 9: column 'f1' is NaN or missing"),  # blank lines count in the line numbers
        (".npz", r"row 5 \(counting from 0\): feature 1 is NaN or missing"),
        pytest.param(
            ".parquet",
            r"row 5 \(counting from 0\): column 'f1' is NaN or missing",
            marks=PARQUET.marks,
        ),
    ],
)
def test_read_table_finite_names_the_first_missing_value(tmp_path, table, suffix, where):
    X, y = table
    X = X.copy()
    X[5, 1] = np.nan
    path = _write(tmp_path / f"data{suffix}", X, y)
    if suffix == ".csv":
        lines = path.read_text().splitlines(keepends=True)
        path.write_text("".join(lines[:2] + ["\n", "\n"] + lines[2:]))
    label = "target" if suffix != ".npz" else None
    assert np.isnan(read_table(path, label_column=label)[0][5, 1])  # without finite: NaN, as before
    with pytest.raises(DataError, match=rf"data{suffix}: {where}"):
        read_table(path, label_column=label, finite=True)


@pytest.mark.parametrize("index", ["unnamed", "named"])
def test_a_parquet_files_stored_pandas_index_is_not_a_feature(tmp_path, index):
    pytest.importorskip("pyarrow")
    from usfad.data.files import feature_columns

    frame = pd.DataFrame(np.arange(12.0).reshape(4, 3), columns=["a", "b", "c"], index=[10, 11, 12, 13])
    if index == "named":
        frame.index.name = "id"
    path = tmp_path / "x.parquet"
    frame.to_parquet(path)  # pandas stores the index as a column ("__index_level_0__" or "id")
    assert feature_columns(path) == ["a", "b", "c"]
    X, _ = read_table(path)
    assert np.array_equal(X, frame.to_numpy())
    assert np.array_equal(np.vstack(list(iter_table(path, chunk_size=3))), frame.to_numpy())
