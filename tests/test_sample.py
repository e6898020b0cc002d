"""Reservoir sampling (usfad.data.sample), fitting on a sample of files (usfad.fitting) and usfad fit --sample."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from usfad.cli import main
from usfad.data.files import find_data_files
from usfad.data.sample import Reservoir, sample_files
from usfad.errors import DataError
from usfad.fitting import TRAINING_DATA_KEY, training_data
from usfad.loading import load
from usfad.modelfile import read_model_file


def _algorithm_r(n_rows: int, size: int, seed: int) -> np.ndarray:
    """The textbook loop, one row at a time, drawing as Reservoir draws (one uniform per row past ``size``)."""
    rng = np.random.default_rng(seed)
    slots = list(range(min(size, n_rows)))
    for t in range(size, n_rows):
        j = min(int(np.floor(rng.random() * (t + 1))), t)
        if j < size:
            slots[j] = t
    return np.sort(slots)


def _positions(n_rows: int, size: int, seed: int, chunk: int) -> np.ndarray:
    reservoir = Reservoir(size, random_state=seed)
    X = np.arange(n_rows, dtype=np.float64)[:, None]
    for start in range(0, n_rows, chunk):
        reservoir.add(X[start : start + chunk])
    rows, positions = reservoir.sample()
    assert np.array_equal(rows[:, 0], positions)  # each sampled row is the row at its position
    return positions


@pytest.mark.parametrize("chunk", [1, 7, 64, 1000])
def test_vectorised_chunks_draw_exactly_what_the_row_by_row_algorithm_draws(chunk):
    # 1000 rows into 50 slots: within a chunk many rows draw slots, and some draw the same one
    expected = _algorithm_r(1000, 50, seed=3)
    assert np.array_equal(_positions(1000, 50, seed=3, chunk=chunk), expected)


def test_the_same_seed_gives_the_same_sample_and_another_seed_another():
    a = _positions(5000, 100, seed=11, chunk=333)
    assert np.array_equal(a, _positions(5000, 100, seed=11, chunk=333))
    assert not np.array_equal(a, _positions(5000, 100, seed=12, chunk=333))
    assert len(np.unique(a)) == 100 and a.min() >= 0 and a.max() < 5000


def test_every_position_is_equally_likely_chi_square():
    # 3000 samples of 10 out of 100 rows (fixed seeds 0..2999): each row should be drawn 300 times
    n_rows, size, trials = 100, 10, 3000
    counts = np.zeros(n_rows)
    for seed in range(trials):
        counts[_positions(n_rows, size, seed=seed, chunk=17)] += 1
    assert counts.sum() == size * trials
    # inclusion counts: mean n*k/N; a chi-square on them (each count ~ binomial, var 300 * 0.9)
    expected = trials * size / n_rows
    statistic = ((counts - expected) ** 2 / (expected * (1 - size / n_rows))).sum()
    p_value = stats.chi2.sf(statistic, df=n_rows - 1)
    assert p_value > 0.001, (statistic, p_value)
    # the test has power: the same counts with the first 10 rows drawn 30% more often fail it
    biased = counts.copy()
    biased[:10] *= 1.3
    biased_stat = ((biased - expected) ** 2 / (expected * (1 - size / n_rows))).sum()
    assert stats.chi2.sf(biased_stat, df=n_rows - 1) < 0.001


def test_a_large_stream_is_spread_evenly_over_its_length():
    positions = _positions(200_000, 20_000, seed=5, chunk=65536)
    counts, _ = np.histogram(positions, bins=20, range=(0, 200_000))
    assert stats.chisquare(counts).pvalue > 0.001


def test_a_sample_larger_than_the_stream_keeps_every_row_in_order():
    reservoir = Reservoir(500, random_state=0)
    X = np.random.default_rng(0).normal(size=(120, 3))
    reservoir.add(X[:50])
    reservoir.add(X[50:])
    rows, positions = reservoir.sample()
    assert np.array_equal(rows, X) and np.array_equal(positions, np.arange(120))
    assert reservoir.n == 120 and reservoir.seen == 120


def test_bad_sizes_and_chunks_are_refused():
    with pytest.raises(ValueError, match="sample size must be >= 1"):
        Reservoir(0)
    reservoir = Reservoir(3)
    reservoir.add(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="3 columns, the earlier ones 4"):
        reservoir.add(np.zeros((2, 3)))


# --- files --------------------------------------------------------------------------------------


COLUMNS = ["a", "b", "c"]


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """Two Parquet files and one CSV file in a folder (row values = their global position, 3 columns)."""
    folder = tmp_path / "data"
    folder.mkdir()
    X = np.repeat(np.arange(700, dtype=np.float64)[:, None], 3, axis=1) + [0.0, 0.25, 0.5]
    pd.DataFrame(X[:300], columns=COLUMNS).to_parquet(folder / "0.parquet")
    pd.DataFrame(X[300:500], columns=COLUMNS).to_parquet(folder / "1.parquet")
    pd.DataFrame(X[500:], columns=COLUMNS).to_csv(folder / "2.csv", index=False)
    (folder / "_SUCCESS").write_text("")  # not a data file: skipped
    return folder, X


def test_find_data_files_takes_a_folder_a_glob_or_a_list(files, tmp_path):
    folder, _ = files
    names = [p.name for p in find_data_files(folder)]
    assert names == ["0.parquet", "1.parquet", "2.csv"]
    assert [p.name for p in find_data_files(str(folder / "*.parquet"))] == ["0.parquet", "1.parquet"]
    assert [p.name for p in find_data_files([folder / "2.csv", folder, folder / "2.csv"])] == [
        "2.csv",
        "0.parquet",
        "1.parquet",
    ]
    with pytest.raises(DataError, match="no .csv, .npz, .parquet, .pq files match"):
        find_data_files(str(tmp_path / "*.parquet"))
    with pytest.raises(DataError, match="no such file or folder"):
        find_data_files(tmp_path / "missing")


def test_sample_files_reads_every_file_once_and_keeps_rows_whole(files):
    folder, X = files
    sample = sample_files(find_data_files(folder), 100, random_state=1, chunk_size=64)
    assert sample.X.shape == (100, 3) and sample.feature_names == COLUMNS
    assert sample.rows_seen == 700 and [rows for _, rows in sample.files] == [300, 200, 200]
    positions = sample.X[:, 0].astype(int)
    assert np.array_equal(sample.X, X[positions])  # rows come whole, from any of the three files
    assert len(np.unique(positions)) == 100 and positions.max() >= 500
    again = sample_files(find_data_files(folder), 100, random_state=1, chunk_size=1000)
    assert np.array_equal(again.X, sample.X)  # the chunk size does not change the draw
    everything = sample_files(find_data_files(folder), 10_000, random_state=1)
    assert np.array_equal(everything.X, X)


def test_sample_files_names_a_bad_row_and_refuses_other_columns(files):
    folder, _ = files
    with open(folder / "2.csv", "a") as f:
        f.write("1.0,nan,2.0\n")
    with pytest.raises(DataError, match=r"2\.csv: line 202: column 'b' is NaN or missing"):
        sample_files(find_data_files(folder), 10)
    pd.DataFrame(np.zeros((5, 3)), columns=["a", "c", "b"]).to_parquet(folder / "3.parquet")
    with pytest.raises(DataError, match="3.parquet: its feature columns"):
        sample_files([folder / "0.parquet", folder / "3.parquet"], 10)


def test_label_column_leaves_out_the_anomalies(tmp_path):
    X = np.arange(40, dtype=np.float64).reshape(20, 2)
    y = np.array([0, 1] * 10)
    frame = pd.DataFrame(X, columns=["a", "b"]).assign(y=y)
    frame.to_csv(tmp_path / "d.csv", index=False)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    for name in ("d.csv", "d.npz"):
        sample = sample_files([tmp_path / name], 100, label_column="y", chunk_size=3)
        assert np.array_equal(sample.X, X[y == 0]) and sample.anomalies_left_out == 10
    frame.assign(y=2).to_csv(tmp_path / "e.csv", index=False)
    with pytest.raises(DataError, match="must hold 0 \\(normal\\) and 1"):
        sample_files([tmp_path / "e.csv"], 5, label_column="y")


# --- usfad fit --sample -------------------------------------------------------------------------


def test_fit_on_a_sample_of_a_folder_records_the_sample_in_the_model(files, tmp_path, capsys):
    folder, _ = files
    model = tmp_path / "m.usfad"
    code = main(
        ["fit", str(folder), "--sample", "150", "--random-state", "4", "--epochs", "1", "--quiet", "-o", str(model)]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "sample of 150 of 700 rows from 3 file(s)" in out.out
    record = training_data(model)["sample"]
    assert record["sample_size"] == 150 and record["random_state"] == 4 and record["rows_seen"] == 700
    assert [(Path(p).name, n) for p, n in record["files"]] == [("0.parquet", 300), ("1.parquet", 200), ("2.csv", 200)]
    detector = load(model)  # the record does not get in the way of loading
    assert list(detector.feature_names_in_) == COLUMNS and detector.n_features_in_ == 3
    _, metadata = read_model_file(model, "usfad-detector", 1)
    assert json.loads(metadata[TRAINING_DATA_KEY]) == training_data(model)


def test_fit_refuses_a_folder_without_sample_and_a_bad_sample_size(files, tmp_path, capsys):
    folder, _ = files
    assert main(["fit", str(folder), "-o", str(tmp_path / "m.usfad")]) == 1
    assert "pass --sample N" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["fit", str(folder), "--sample", "0", "-o", str(tmp_path / "m.usfad")])
    assert "expected a positive integer, got 0" in capsys.readouterr().err
    assert not (tmp_path / "m.usfad").exists()
