"""Nothing the user gave is overwritten, nothing is lost late: issue 19's data-loss reproductions."""

import os
import shutil

import numpy as np
import pandas as pd
import pytest

from usfad import USFlow, load
from usfad.cli import main
from usfad.errors import OutputPathError
from usfad.outputs import atomic_path, check_output_dir, check_output_file


@pytest.fixture
def csv(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "in.csv"
    pd.DataFrame(rng.normal(size=(60, 3)), columns=["a", "b", "c"]).to_csv(path, index=False)
    return path


@pytest.fixture
def model(tmp_path, csv):
    path = tmp_path / "model.usfad"
    assert main(["fit", str(csv), "--epochs", "1", "--quiet", "-o", str(path)]) == 0
    return path


def _unchanged(path, before):
    assert path.read_bytes() == before, f"{path} was modified"


@pytest.mark.parametrize(
    "argv, victim",
    [
        (["score", "{model}", "{csv}", "-o", "{csv}"], "csv"),
        (["score", "{model}", "{csv}", "-o", "{model}"], "model"),
        (["fit", "{csv}", "--epochs", "1", "-o", "{csv}"], "csv"),
        (["export", "{model}", "-o", "{model}"], "model"),
        (["export", "{model}", "--check-data", "{csv}", "-o", "{csv}"], "csv"),
    ],
)
def test_an_output_that_is_an_input_is_refused_and_the_input_kept(argv, victim, csv, model, capsys):
    paths = {"csv": csv, "model": model}
    before = paths[victim].read_bytes()
    assert main([a.format(**paths) for a in argv]) == 1
    err = capsys.readouterr().err
    assert "is the input file" in err
    _unchanged(paths[victim], before)


def test_the_same_file_under_another_name_is_refused(tmp_path, csv, model, capsys):
    link = tmp_path / "alias.csv"
    os.link(csv, link)  # same inode, another path
    before = csv.read_bytes()
    assert main(["score", str(model), str(csv), "-o", str(link)]) == 1
    assert "is the input file" in capsys.readouterr().err
    _unchanged(csv, before)
    relative = os.path.relpath(csv)
    assert main(["score", str(model), relative, "-o", str(csv.parent / ".." / csv.parent.name / csv.name)]) == 1


@pytest.mark.parametrize("where", ["missing_dir", "existing_dir"])
def test_fit_checks_its_output_before_training(tmp_path, csv, where, capsys, monkeypatch):
    out = tmp_path / "missing" / "m.usfad" if where == "missing_dir" else tmp_path
    trained = []
    monkeypatch.setattr(USFlow, "fit", lambda self, X, y=None: trained.append(1) or self)
    assert main(["fit", str(csv), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    if where == "missing_dir":
        assert "does not exist" in err
    else:  # and names a file there that would do
        assert f"is a folder; give a file name (e.g. {tmp_path / 'model.usfad'})" in err
    assert not trained, "training ran although the model could not have been saved"


def test_score_into_a_folder_is_refused_before_scoring(tmp_path, csv, model, capsys, monkeypatch):
    scored = []
    monkeypatch.setattr(USFlow, "decision_function", lambda self, X: scored.append(1))
    assert main(["score", str(model), str(csv), "-o", str(tmp_path)]) == 1
    assert f"is a folder; give a file name (e.g. {tmp_path / 'scores.csv'})" in capsys.readouterr().err
    assert not scored


@pytest.mark.parametrize(
    "command", [["study", "stability"], ["bench", "--results", "{out}.jsonl"], ["image", "bench", "{tmp}"]]
)
def test_bad_seeds_are_refused_before_any_output_is_made(tmp_path, command, capsys):
    out = tmp_path / "out"
    argv = [a.format(out=out, tmp=tmp_path) for a in command]
    if command[0] != "bench":
        argv += ["-o", str(out)]
    assert main([*argv, "--seeds", "1", "-1"]) != 0
    assert "seeds must be integers from 0 to 4294967295, got [-1]" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no folder, no result file


def test_a_failed_export_check_file_leaves_no_onnx_file(tmp_path, model, capsys):
    pytest.importorskip("onnxruntime")
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b,c\n1,2,3\n1,nan,3\n")
    out = tmp_path / "m.onnx"
    assert main(["export", str(model), "--check-data", str(bad), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert str(bad) in err and "line 3" in err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_loaded_detector_does_not_depend_on_its_file(tmp_path, csv, model):
    X = pd.read_csv(csv).to_numpy()
    det = load(model)
    expected = det.decision_function(X), det.predict(X)
    other = tmp_path / "other.usfad"
    USFlow(epochs=1, random_state=5).fit(X * 10 + 3).save(other)
    shutil.copyfile(other, model)  # overwrite the file in place (same inode)
    np.testing.assert_array_equal(det.decision_function(X), expected[0])
    np.testing.assert_array_equal(det.predict(X), expected[1])
    with open(model, "r+b") as f:
        f.truncate(64)
    assert np.isfinite(det.scaler_scale_).all()  # a memory map of the truncated file would end the process here
    np.testing.assert_array_equal(det.decision_function(X), expected[0])


def test_atomic_path_leaves_the_target_alone_on_failure(tmp_path):
    target = tmp_path / "t.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["t.txt"]
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new" and os.listdir(tmp_path) == ["t.txt"]


def test_output_checks_name_the_problem(tmp_path):
    f = tmp_path / "f.txt"
    f.write_text("x")
    with pytest.raises(OutputPathError, match="existing file"):
        check_output_dir(f)
    with pytest.raises(OutputPathError, match="is a folder"):
        check_output_file(tmp_path)
    with pytest.raises(OutputPathError, match="is not a folder"):
        check_output_file(f / "x.csv")
    assert check_output_file(tmp_path / "new.csv", inputs=[f, None]) == tmp_path / "new.csv"
    assert check_output_dir(tmp_path / "a" / "b").is_dir()


def test_check_output_dir_without_creating_checks_the_same(tmp_path):
    f = tmp_path / "f.txt"
    f.write_text("x")
    assert check_output_dir(tmp_path / "a" / "b", create=False) == tmp_path / "a" / "b"
    assert not (tmp_path / "a").exists()
    with pytest.raises(OutputPathError, match="existing file"):
        check_output_dir(f, create=False)
    with pytest.raises(OutputPathError, match="is not a folder"):
        check_output_dir(f / "sub", create=False)
    with pytest.raises(OutputPathError, match="is the input"):
        check_output_dir(f, inputs=[f], create=False)


def test_report_on_a_missing_result_file_leaves_no_folder(tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["report", str(tmp_path / "missing.jsonl"), "-o", str(out)]) == 1
    assert "no result file at" in capsys.readouterr().err
    assert not out.exists(), "a refused report left an empty folder behind"
