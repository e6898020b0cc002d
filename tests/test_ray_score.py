"""usfad score on Ray Data (usfad.distributed): every row once, the local path's scores, bad rows, resume, the CLI.

One local Ray with 2 CPUs for the module; small generated files (Parquet and CSV, a few
hundred rows each). The checks that need no Ray (one file scored by ``score_file``, the
command line's refusals) run without it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from usfad.cli import main
from usfad.detectors import USFlow
from usfad.distributed import FileTask, completed_record, output_paths, require_ray, score_file, score_files
from usfad.errors import DataError, MissingDependencyError, OutputPathError

COLUMNS = ["f0", "f1", "f2", "f3"]
SIZES = {"a.parquet": 300, "b.parquet": 200, "c.parquet": 250, "d.csv": 220}
CHUNK = 64  # several chunks per file


def _write(path: Path, X: np.ndarray) -> None:
    frame = pd.DataFrame(X, columns=COLUMNS)
    if path.suffix == ".csv":
        with open(path, "w") as f:  # repr: the CSV holds the exact float64 values
            f.write(",".join(COLUMNS) + "\n")
            f.writelines(",".join(repr(float(v)) for v in row) + "\n" for row in X)
    else:
        frame.to_parquet(path)


def _read(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A fitted model (column names f0..f3), a folder of 3 Parquet files and 1 CSV file, and the local path's scores."""
    root = tmp_path_factory.mktemp("ray_score")
    rng = np.random.default_rng(0)
    model = root / "m.usfad"
    train = pd.DataFrame(rng.normal(size=(300, 4)), columns=COLUMNS)
    USFlow(n_blocks=2, hidden_features=(16,), epochs=2, verbose=False).fit(train).save(model)
    data = root / "data"
    data.mkdir()
    for name, n in SIZES.items():
        X = rng.normal(size=(n, 4))
        X[:3] *= 6  # a few anomalies
        _write(data / name, X)
    local = {}
    for name in SIZES:
        out = root / f"local_{name}.csv"
        assert main(["score", str(model), str(data / name), "-o", str(out)]) == 0
        local[name] = pd.read_csv(out)
    return root, model, data, local


@pytest.fixture(scope="module")
def scored(ray_local, setup):
    """The first Ray run over the folder (PyTorch engine, 2 workers): its outputs and report."""
    root, model, data, _ = setup
    out = root / "out"
    run = score_files(model, data, out, workers=2, engine="torch", chunk_size=CHUNK)
    return out, run


def _check_against_local(out_file: Path, input_file: Path, local: pd.DataFrame) -> pd.DataFrame:
    frame = _read(out_file)
    assert list(frame.columns) == ["file", "row", "score", "label"]
    assert (frame["file"] == str(input_file)).all()
    # every row once, in order: the ids are exactly 0..n-1
    assert np.array_equal(frame["row"].to_numpy(), np.arange(len(local)))
    assert np.allclose(frame["score"].to_numpy(), local["score"].to_numpy(), rtol=1e-5, atol=1e-6)
    return frame


def test_every_row_is_scored_once_with_the_local_paths_scores(setup, scored):
    _, _, data, local = setup
    out, run = scored
    assert [f.status for f in run.files] == ["scored"] * 4 and run.engine == "torch"
    assert run.rows == sum(SIZES.values()) and run.rows_scored == run.rows
    for name, n in SIZES.items():
        frame = _check_against_local(out / f"{name}.scores.csv", data / name, local[name])
        assert len(frame) == n
        assert np.array_equal(frame["label"].to_numpy(), local[name]["label"].to_numpy())
    assert run.flagged == sum(int(f["label"].sum()) for f in local.values())
    # one record per output, nothing else left behind (no temporary, partial or stop files)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{n}.scores.csv" for n in SIZES] + [f"{n}.scores.csv.done.json" for n in SIZES]
    )
    assert run.peak_rss_mib and all(m > 50 for m in run.peak_rss_mib.values())
    assert run.ray_init_seconds == 0.0  # the module's Ray was running already


def test_a_rerun_skips_complete_outputs_and_redoes_a_changed_input_or_a_truncated_output(setup, scored, tmp_path):
    root, model, data, local = setup
    out, _ = scored
    # work on copies (modification times kept), so the other tests see the first run as it was
    data2, out2 = tmp_path / "data", tmp_path / "out"
    shutil.copytree(data, data2)
    shutil.copytree(out, out2)
    mtimes = {p.name: p.stat().st_mtime_ns for p in out2.iterdir()}
    again = score_files(model, data2, out2, workers=2, engine="torch", chunk_size=CHUNK)
    assert [f.status for f in again.files] == ["skipped"] * 4 and again.rows == sum(SIZES.values())
    assert again.flagged == sum(int(f["label"].sum()) for f in local.values())
    assert {p.name: p.stat().st_mtime_ns for p in out2.iterdir()} == mtimes  # nothing rewritten
    # a changed input (other values, same name) and a truncated output are scored again; the rest is skipped
    X = np.random.default_rng(5).normal(size=(120, 4))
    _write(data2 / "d.csv", X)
    truncated = out2 / "b.parquet.scores.csv"
    truncated.write_text(truncated.read_text()[:500])
    third = score_files(model, data2, out2, workers=2, engine="torch", chunk_size=CHUNK)
    assert [f.status for f in third.files] == ["skipped", "scored", "skipped", "scored"]
    assert len(pd.read_csv(out2 / "d.csv.scores.csv")) == 120
    _check_against_local(truncated, data2 / "b.parquet", local["b.parquet"])
    for name in ("a.parquet", "c.parquet"):
        assert (out2 / f"{name}.scores.csv").stat().st_mtime_ns == mtimes[f"{name}.scores.csv"]


def test_a_bad_row_names_its_file_and_line_and_keeps_every_complete_output(setup, scored, tmp_path):
    root, model, data, local = setup
    out, _ = scored
    data2, out2 = tmp_path / "data", tmp_path / "out"
    shutil.copytree(data, data2)
    shutil.copytree(out, out2)  # complete outputs of an earlier run
    mtimes = {p.name: p.stat().st_mtime_ns for p in out2.iterdir()}
    lines = (data / "d.csv").read_text().splitlines(keepends=True)
    lines.insert(151, "0.5,abc,1.0,2.0\n")  # line 152 of the file: data row 150
    (data2 / "z_bad.csv").write_text("".join(lines))
    with pytest.raises(DataError) as caught:
        score_files(model, data2, out2, workers=2, engine="torch", chunk_size=CHUNK)
    message = str(caught.value)
    assert f"{data2 / 'z_bad.csv'}: line 152: column 'f1' holds 'abc', not a number" in message
    partial = out2 / "z_bad.csv.scores.partial.csv"
    assert f"the 150 row(s) before it were written to {partial}" in message
    assert "4 of 5 file(s) are complete and kept" in message and "4 of them from an earlier run" in message
    # the rows before the bad one, scored as the local path scores them; no complete output for that file
    _check_against_local(partial, data2 / "z_bad.csv", local["d.csv"].iloc[:150])
    assert not (out2 / "z_bad.csv.scores.csv").exists()
    assert not (out2 / "z_bad.csv.scores.csv.done.json").exists()
    assert {p.name: p.stat().st_mtime_ns for p in out2.iterdir() if p.name in mtimes} == mtimes
    assert not [p.name for p in out2.iterdir() if p.name.startswith(".")]  # no temporary or stop file left


def test_the_cli_scores_a_glob_to_parquet_with_onnx_runtime(setup, ray_local, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    root, model, data, local = setup
    out = tmp_path / "out"
    args = ["score", str(model), str(data / "*.parquet"), "-o", str(out), "--backend", "ray", "--workers", "2"]
    code = main([*args, "--format", "parquet", "--engine", "onnx", "--chunk-size", str(CHUNK)])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "scored on Ray: 3 of 3 file(s) complete" in printed.out and "(onnx, 2 worker(s)" in printed.out
    for name in ("a.parquet", "b.parquet", "c.parquet"):
        _check_against_local(out / f"{name}.scores.parquet", data / name, local[name])


# --- without Ray ---------------------------------------------------------------------------------


def test_score_file_keeps_the_rows_before_a_parquet_nan_and_writes_no_partial_for_a_bad_first_row(tmp_path):
    X = np.arange(40, dtype=np.float64).reshape(10, 4)
    X[6, 2] = np.nan
    _write(tmp_path / "p.parquet", X)
    (task,) = output_paths([tmp_path / "p.parquet"], tmp_path / "out", "parquet")
    task.output.parent.mkdir()
    result = score_file(
        task, lambda A: A.sum(axis=1), n_features=4, threshold=50.0, output_format="parquet", chunk_size=4
    )
    assert result["status"] == "bad_row" and result["rows"] == 6
    assert "p.parquet: row 6 (counting from 0): feature 2 is NaN or missing" in result["message"]
    frame = pd.read_parquet(task.partial)
    assert frame["row"].tolist() == list(range(6)) and frame["score"].tolist() == X[:6].sum(axis=1).tolist()
    assert frame["label"].tolist() == (X[:6].sum(axis=1) > 50).astype(int).tolist()
    assert not task.output.exists() and not task.record.exists()
    # the first row bad: nothing to keep, and the partial file of the run before goes
    X[0, 0] = np.inf
    _write(tmp_path / "p.parquet", X)
    result = score_file(task, lambda A: A.sum(axis=1), n_features=4, threshold=None, output_format="parquet")
    assert result["rows"] == 0 and "no row of this file was scored" in result["message"]
    assert not task.partial.exists() and list(task.output.parent.iterdir()) == []


def test_a_record_that_does_not_match_is_not_complete(tmp_path):
    X = np.ones((5, 4))
    _write(tmp_path / "x.csv", X)
    (task,) = output_paths([tmp_path / "x.csv"], tmp_path / "out")
    task.output.parent.mkdir()
    record = {"model_sha256": "abc"}
    score_file(task, lambda A: A.sum(axis=1), n_features=4, threshold=1.0, record=record)
    assert completed_record(task, "abc", None)["rows"] == 5
    assert completed_record(task, "another model", None) is None
    assert completed_record(task, "abc", "f0") is None  # another label column
    os.utime(tmp_path / "x.csv", ns=(1, 1))  # the input changed
    assert completed_record(task, "abc", None) is None


def test_outputs_mirror_the_input_folders():
    tasks = output_paths([Path("/d/x/a.csv"), Path("/d/y/a.csv")], "/o", "parquet")
    assert [str(t.output) for t in tasks] == ["/o/x/a.csv.scores.parquet", "/o/y/a.csv.scores.parquet"]
    assert isinstance(tasks[0], FileTask) and str(tasks[0].partial) == "/o/x/a.csv.scores.partial.parquet"


def test_the_cli_refuses_before_any_work(setup, tmp_path, capsys):
    root, model, data, _ = setup

    def error(*args: str) -> str:
        assert main(["score", str(model), *args]) == 1
        return capsys.readouterr().err

    ray = ["--backend", "ray"]
    assert "no .csv, .npz, .parquet, .pq files match" in error(str(tmp_path / "*.csv"), "-o", str(tmp_path / "o"), *ray)
    assert "holds the input file" in error(str(data), "-o", str(data), *ray)
    assert "holds the input file" in error(str(data), "-o", str(root), *ray)
    assert "--address goes with --backend ray" in error(str(data / "a.parquet"), "--address", "ray://h:10001")
    assert "give the output folder with -o OUT_DIR" in error(str(data), *ray)
    with pytest.raises(SystemExit):
        main(["score", str(model), str(data), "-o", str(tmp_path / "o"), *ray, "--workers", "0"])
    assert "--workers: expected a positive integer, got 0" in capsys.readouterr().err
    with pytest.raises(ValueError, match="workers must be >= 1"):
        score_files(model, data, tmp_path / "o", workers=0)
    with pytest.raises(OutputPathError, match="holds the input file"):
        score_files(model, data, data)
    assert not (tmp_path / "o").exists()


def test_a_missing_ray_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'usfad\[ray\]'"):
        require_ray()


def test_importing_usfad_does_not_import_ray():
    code = (
        "import sys, usfad, usfad.distributed, usfad.fitting, usfad.cli; usfad.cli.build_parser(); "
        "sys.exit('ray' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
