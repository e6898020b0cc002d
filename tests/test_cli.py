import contextlib
import importlib.util

import numpy as np
import pandas as pd
import pytest

from usfad import load
from usfad.cli import main

HAS_PYOD = importlib.util.find_spec("pyod") is not None
HAS_PYARROW = importlib.util.find_spec("pyarrow") is not None
PARQUET = pytest.param(".parquet", marks=pytest.mark.skipif(not HAS_PYARROW, reason="needs pyarrow"))


def _write(path, X, y=None):
    if path.suffix == ".npz":
        np.savez(path, **({"X": X} if y is None else {"X": X, "label": y}))
        return path
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    if y is not None:
        frame["label"] = y
    frame.to_csv(path, index=False) if path.suffix == ".csv" else frame.to_parquet(path, index=False)
    return path


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 3))
    y = np.zeros(80, dtype=int)
    y[:8] = 1
    X[:8] += 6.0
    return X, y


def test_demo_quick_writes_a_report_with_every_model(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--seeds", "42", "--no-progress", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    models = ["USFlow", "NonUSFlow", "DeepSVDD"] + (["IForest", "KNN"] if HAS_PYOD else [])
    report = (out / "report.md").read_text()
    for model in models:
        assert model in printed and f"| {model} |" in report
    for dataset in ["breast_cancer", "wine", "digits", "gmm"]:
        assert dataset in printed and dataset in report
    assert "Density alignment" in report and "Spearman" in report
    for png in ["roc_curves.png", "score_histograms.png", "density_alignment.png"]:
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    results = pd.read_csv(out / "results.csv")
    assert len(results) == 4 * len(models)
    assert results["roc_auc"].between(0, 1).all()


def test_demo_no_plots_writes_no_png(tmp_path):
    out = tmp_path / "demo"
    args = ["demo", "--quick", "--no-progress", "--no-plots", "--datasets", "wine", "--seeds", "1,2", "-o", str(out)]
    assert main(args) == 0
    assert (out / "report.md").exists()
    assert not list(out.glob("*.png"))
    assert set(pd.read_csv(out / "results.csv")["seed"]) == {1, 2}


@pytest.mark.parametrize("suffix", [".csv", ".npz", PARQUET])
def test_fit_then_score_round_trip(tmp_path, data, capsys, suffix):
    X, y = data
    path = _write(tmp_path / f"data{suffix}", X, y)
    model = tmp_path / "model.safetensors"
    rc = main(["fit", str(path), "--model", "usflow", "--label-column", "label", "--epochs", "2", "-o", str(model)])
    assert rc == 0
    assert "72 rows x 3 features (8 anomalous row(s) left out)" in capsys.readouterr().out
    out = tmp_path / "scores.csv"
    rc = main(["score", str(model), str(path), "--label-column", "label", "--chunk-size", "7", "-o", str(out)])
    assert rc == 0
    scores = pd.read_csv(out)
    assert list(scores.columns) == ["score", "label"] and len(scores) == len(X)
    detector = load(model)
    # chunks of 7 rows against one batch: float32 matrix products may round differently
    np.testing.assert_allclose(scores["score"].to_numpy(), detector.decision_function(X), rtol=1e-6)
    np.testing.assert_array_equal(scores["label"].to_numpy(), detector.predict(X))
    # the planted anomalies score higher than the rest
    assert scores["score"][:8].mean() > scores["score"][8:].mean()


def test_score_without_output_prints_a_summary(tmp_path, data, capsys):
    X, _ = data
    path = _write(tmp_path / "data.csv", X)
    model = tmp_path / "m.safetensors"
    assert (
        main(["fit", str(path), "--model", "deepsvdd", "--epochs", "1", "--contamination", "0.2", "-o", str(model)])
        == 0
    )
    capsys.readouterr()
    assert main(["score", str(model), str(path), "--chunk-size", "30"]) == 0
    printed = capsys.readouterr().out
    assert "scored 80 rows with DeepSVDD" in printed and "flagged" in printed


def test_fit_chi2_threshold_for_usflow(tmp_path, data, capsys):
    path = _write(tmp_path / "data.csv", data[0])
    model = tmp_path / "m.safetensors"
    assert main(["fit", str(path), "--epochs", "1", "--threshold", "chi2", "-o", str(model)]) == 0
    assert "(chi2)" in capsys.readouterr().out


def _error(capsys):
    return capsys.readouterr().err.strip()


def test_missing_data_file_fails_with_its_name(tmp_path, capsys):
    rc = main(["fit", str(tmp_path / "absent.csv"), "-o", str(tmp_path / "m.safetensors")])
    assert rc == 1
    err = _error(capsys)
    assert err.startswith("usfad fit: error:") and "absent.csv: no such file" in err
    assert "\n" not in err


def test_missing_model_file_fails(tmp_path, data, capsys):
    path = _write(tmp_path / "data.csv", data[0])
    assert main(["score", str(tmp_path / "absent.safetensors"), str(path)]) == 1
    assert "absent.safetensors" in _error(capsys)


def test_non_numeric_column_is_named(tmp_path, capsys):
    path = tmp_path / "data.csv"
    pd.DataFrame({"x": np.arange(20.0), "city": ["a", "b"] * 10}).to_csv(path, index=False)
    assert main(["fit", str(path), "--epochs", "1", "-o", str(tmp_path / "m.safetensors")]) == 1
    err = _error(capsys)
    assert "data.csv" in err and "non-numeric columns ['city']" in err


def test_wrong_feature_count_at_scoring(tmp_path, data, capsys):
    X, _ = data
    model = tmp_path / "m.safetensors"
    assert main(["fit", str(_write(tmp_path / "train.csv", X)), "--epochs", "1", "-o", str(model)]) == 0
    wide = _write(tmp_path / "wide.csv", np.hstack([X, X[:, :1]]))
    out = tmp_path / "scores.csv"
    assert main(["score", str(model), str(wide), "-o", str(out)]) == 1
    err = _error(capsys)
    assert "wide.csv" in err and "has 4 features, but the model is expecting 3 features as input" in err
    assert not out.exists()


def test_unknown_extension_and_bad_labels(tmp_path, data, capsys):
    path = tmp_path / "data.txt"
    path.write_text("1,2\n")
    assert main(["fit", str(path), "-o", str(tmp_path / "m.safetensors")]) == 1
    assert "unknown file type '.txt'" in _error(capsys)
    X, _ = data
    bad = _write(tmp_path / "bad.csv", X, np.arange(80) % 3)
    assert main(["fit", str(bad), "--label-column", "label", "-o", str(tmp_path / "m.safetensors")]) == 1
    assert "must hold 0 (normal) and 1 (anomaly)" in _error(capsys)


def test_chi2_threshold_needs_a_usf(tmp_path, data, capsys):
    path = _write(tmp_path / "data.csv", data[0])
    args = ["fit", str(path), "--model", "deepsvdd", "--threshold", "chi2", "-o", str(tmp_path / "m.safetensors")]
    assert main(args) == 1
    assert "chi2" in _error(capsys)


def test_fit_on_npz_with_unnamed_labels_trains_on_every_row_and_says_so(tmp_path, data, capsys):
    X, y = data
    path = tmp_path / "data.npz"
    np.savez(path, X=X, y=y)
    assert main(["fit", str(path), "--epochs", "1", "-o", str(tmp_path / "m.safetensors")]) == 0
    printed = capsys.readouterr().out
    assert "--label-column y" in printed and "on 80 rows" in printed
    assert main(["fit", str(path), "--label-column", "y", "--epochs", "1", "-o", str(tmp_path / "m.safetensors")]) == 0
    assert "on 72 rows" in capsys.readouterr().out


def test_fit_flow_switch_on_the_command_line(tmp_path, data, capsys):
    X, _ = data
    csv = _write(tmp_path / "train.csv", X)
    out = tmp_path / "affine.usfad"
    assert (
        main(["fit", str(csv), "--model", "flow", "--flow", "affine", "--epochs", "2", "--quiet", "-o", str(out)]) == 0
    )
    model = load(out)
    assert model.flow_ == "affine" and not model.model_.flow.constant_logdet
    assert main(["fit", str(csv), "--model", "deepsvdd", "--flow", "usf", "-o", str(tmp_path / "x.usfad")]) == 1
    assert "--flow goes with --model flow" in capsys.readouterr().err


def test_fit_names_a_short_row_by_line_even_with_labels(tmp_path, data, capsys):
    X, y = data
    path = _write(tmp_path / "data.csv", X, y)
    lines = path.read_text().splitlines(keepends=True)
    lines[40] = "1.0,2.0\n"  # line 41, among rows labelled 0
    path.write_text("".join(lines))
    for extra in ([], ["--label-column", "label"]):
        assert main(["fit", str(path), *extra, "--epochs", "1", "-o", str(tmp_path / "m.usfad")]) == 1
        assert "data.csv: line 41: 2 field(s) where the header has 4" in _error(capsys)


def test_fit_names_the_line_of_a_missing_value_not_its_row_among_the_normal_rows(tmp_path, data, capsys):
    X, y = data
    X = X.copy()
    X[50, 2] = np.nan  # line 52; row 42 among the 72 rows labelled 0
    path = _write(tmp_path / "data.csv", X, y)
    assert main(["fit", str(path), "--label-column", "label", "--epochs", "1", "-o", str(tmp_path / "m.usfad")]) == 1
    assert "data.csv: line 52: column 'f2' is NaN or missing" in _error(capsys)


def test_fit_names_the_file_and_line_of_a_latin1_byte(tmp_path, capsys):
    path = tmp_path / "latin.csv"
    path.write_bytes(b"a,b,c\n1,2,3\n4,5,6\n7,8,\xe9\n")
    assert main(["fit", str(path), "--epochs", "1", "-o", str(tmp_path / "m.usfad")]) == 1
    assert "latin.csv: line 4 is not UTF-8 text" in _error(capsys)


@pytest.mark.parametrize("suffix", [".csv", ".npz"])
def test_export_check_data_with_nan_names_the_file_and_leaves_no_onnx(tmp_path, data, capsys, suffix):
    pytest.importorskip("onnx")
    X, _ = data
    model = tmp_path / "m.usfad"
    assert main(["fit", str(_write(tmp_path / "train.csv", X)), "--epochs", "1", "--quiet", "-o", str(model)]) == 0
    bad = X.copy()
    bad[3, 1] = np.nan
    check = _write(tmp_path / f"check{suffix}", bad)
    onnx = tmp_path / "m.onnx"
    assert main(["export", str(model), "--check-data", str(check), "-o", str(onnx)]) == 1
    err = _error(capsys)
    assert f"check{suffix}" in err and ("line 5" if suffix == ".csv" else "row 3") in err
    assert not onnx.exists()
    wide = _write(tmp_path / "wide.npz", np.hstack([X, X]))
    assert main(["export", str(model), "--check-data", str(wide), "-o", str(onnx)]) == 1
    assert "wide.npz has 6 features, but the model is expecting 3 features as input" in _error(capsys)
    assert not onnx.exists()


def test_warnings_print_as_one_line_without_python_source(tmp_path, capsys):
    data = tmp_path / "small.csv"
    np.savetxt(data, np.random.default_rng(0).normal(size=(143, 3)), delimiter=",", header="a,b,c", comments="")
    args = ["fit", str(data), "--epochs", "1", "--threshold", "conformal", "--alpha", "0.01", "--quiet"]
    assert main([*args, "-o", str(tmp_path / "m.usfad")]) == 0
    err = capsys.readouterr().err
    assert err.startswith("usfad fit: warning: threshold='conformal' at alpha=0.01 needs 99 calibration rows")
    assert err.count("\n") == 1 and ".py:" not in err


def test_fit_takes_base_components_and_base_for_flow_models_only(tmp_path, capsys):
    data = tmp_path / "two.csv"
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(size=(100, 3)) - 3, rng.normal(size=(100, 3)) + 3])
    np.savetxt(data, X, delimiter=",", header="a,b,c", comments="")
    model = tmp_path / "m.usfad"
    assert main(["fit", str(data), "--base-components", "auto", "--epochs", "1", "--quiet", "-o", str(model)]) == 0
    assert load(model).base_components_ == 8
    assert main(["fit", str(data), "--base", "kernel", "--epochs", "1", "--quiet", "-o", str(model)]) == 0
    assert load(model).kernel_centres_ == 200
    assert main(["fit", str(data), "--gaussian-weight", "0.25", "--epochs", "1", "--quiet", "-o", str(model)]) == 0
    assert load(model).gaussian_weight_ == 0.25
    assert "the flow's Gaussian weighs 0.25 in the score (--gaussian-weight)" in capsys.readouterr().out
    assert main(["fit", str(data), "--epochs", "1", "--quiet", "-o", str(model)]) == 0
    assert "Gaussian weighs" not in capsys.readouterr().out  # no binary column: the kernels alone, nothing to say
    for bad, code, message in [
        (["--base-components", "eight"], 2, "expected 'auto' or a positive integer, got 'eight'"),
        (["--base-components", "2", "--model", "deepsvdd"], 1, "--base-components goes with a flow model"),
        (["--base-components", "2", "--threshold", "chi2"], 1, "threshold='chi2' reads the latent distance"),
        (["--base", "knn"], 2, "argument --base: invalid choice: 'knn'"),
        (["--base", "kernel", "--model", "deepsvdd"], 1, "--base goes with a flow model"),
        (["--base", "kernel", "--threshold", "chi2"], 1, "base='kernel' scores with a kernel density"),
        (["--gaussian-weight", "half"], 2, "expected 'auto' or a number in [0, 1], got 'half'"),
        (["--gaussian-weight", "1.5"], 2, "expected 'auto' or a number in [0, 1], got '1.5'"),
        (["--gaussian-weight", "0.5", "--model", "deepsvdd"], 1, "--gaussian-weight goes with a flow model"),
        (["--gaussian-weight", "0.5", "--threshold", "chi2"], 1, "gaussian_weight weighs the trained base"),
    ]:
        with pytest.raises(SystemExit) if code == 2 else contextlib.nullcontext() as exit_info:
            assert main(["fit", str(data), *bad, "-o", str(tmp_path / "x.usfad")]) == code
        if code == 2:
            assert exit_info.value.code == 2
        assert message in capsys.readouterr().err
        assert not (tmp_path / "x.usfad").exists()


@pytest.fixture
def torch_threads():
    """Give the test's torch threads back to the suite (one, see conftest) whatever the command set."""
    import torch

    yield torch
    torch.set_num_threads(1)


def test_fit_score_and_explain_run_on_the_threads_asked_for_and_on_the_idle_cores_by_default(
    tmp_path, data, torch_threads, monkeypatch
):
    import os

    X, _ = data
    path, model = _write(tmp_path / "train.csv", X), tmp_path / "m.usfad"
    monkeypatch.setattr("usfad.experiments.engine.available_cores", lambda: 4)
    monkeypatch.setattr(os, "getloadavg", lambda: (2.6, 0.0, 0.0))  # about 3 of the 4 cores busy
    torch_threads.set_num_threads(2)
    assert main(["fit", str(path), "--epochs", "1", "--quiet", "-o", str(model)]) == 0
    assert torch_threads.get_num_threads() == 1
    assert main(["score", str(model), str(path), "--threads", "3"]) == 0
    assert torch_threads.get_num_threads() == 3
    monkeypatch.setattr(os, "getloadavg", lambda: (9.0, 0.0, 0.0))  # more work than cores: still one thread
    assert main(["explain", str(model), str(path), "--quiet", "-o", str(tmp_path / "e.csv")]) == 0
    assert torch_threads.get_num_threads() == 1


@pytest.mark.parametrize("load, idle", [(0.0, 4), (0.4, 4), (1.6, 2), (3.5, 1), (12.0, 1)])
def test_idle_cores_are_the_cores_less_the_load_average_and_at_least_one(monkeypatch, load, idle):
    import os

    from usfad.experiments import engine

    monkeypatch.setattr(engine, "available_cores", lambda: 4)
    monkeypatch.setattr(os, "getloadavg", lambda: (load, 0.0, 0.0))
    assert engine.idle_cores() == idle


@pytest.mark.parametrize("command", ["fit", "score", "explain"])
@pytest.mark.parametrize("bad", ["0", "1.5", "all"])
def test_threads_must_be_auto_or_a_positive_integer(tmp_path, capsys, command, bad):
    args = {"fit": ["fit", "d.csv"], "score": ["score", "m.usfad", "d.csv"], "explain": ["explain", "m.usfad", "d.csv"]}
    with pytest.raises(SystemExit) as stop:
        main([*args[command], "--threads", bad, "-o", str(tmp_path / "out")])
    assert stop.value.code == 2
    assert f"--threads: expected 'auto' or a positive integer, got '{bad}'" in capsys.readouterr().err
