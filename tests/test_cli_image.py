"""``usfad image fit | predict | bench`` end to end on a tiny generated MVTec-layout category."""

import csv
import json

import pytest
import torch

from usfad.cli import main
from usfad.vision.data import make_synthetic_dataset
from vision_standin import fake_fashion_mnist


@pytest.fixture(autouse=True)
def _one_thread():
    """Small tensors: one torch thread is faster, and fair to a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


FAST = ["--weights", "none", "--image-size", "64", "--epochs", "1", "--n-blocks", "1", "--batch-size", "8"]


@pytest.fixture(scope="module")
def category(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "tiles"
    return make_synthetic_dataset(root, n_train=8, n_test_good=3, n_test_defect=3, image_size=64, seed=0)


def test_fit_then_predict_writes_an_overlay_per_image_and_the_scores(category, tmp_path, capsys):
    model = tmp_path / "model.usfad"
    assert (
        main(["image", "fit", str(category), "--model", "uflow", "--flow", "usf", *FAST, "--quiet", "-o", str(model)])
        == 0
    )
    assert "fitted uflow (usf)" in capsys.readouterr().out
    out = tmp_path / "pred"
    one_file = next((category / "test" / "good").iterdir())
    assert main(["image", "predict", str(model), str(category / "test"), str(one_file), "-o", str(out)]) == 0
    with open(out / "scores.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 6 + 1
    assert len({r["overlay"] for r in rows}) == len(rows)  # a repeated file gets its own overlay name
    for r in rows:
        assert float(r["score"]) == float(r["score"])  # a number, not NaN
        assert (out / r["overlay"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fit_with_a_conformal_threshold_then_predict_writes_labels_and_p_values(tmp_path, capsys):
    from usfad.vision.detector import ImageDetector

    root = make_synthetic_dataset(tmp_path / "tiles", n_train=50, n_test_good=2, n_test_defect=2, image_size=32, seed=1)
    model = tmp_path / "model.usfad"
    small = ["--weights", "none", "--image-size", "32", "--epochs", "1", "--n-blocks", "1", "--quiet"]
    assert main(["image", "fit", str(root), *small, "--alpha", "0.1", "-o", str(model)]) == 1
    assert "--alpha sets the false-alarm rate of --threshold conformal" in capsys.readouterr().err
    assert not model.exists()
    assert (
        main(["image", "fit", str(root), *small, "--threshold", "conformal", "--alpha", "0.1", "-o", str(model)]) == 0
    )
    assert "conformal at alpha 0.1 from 19 held-out training images" in capsys.readouterr().out
    detector = ImageDetector.load(model)
    assert main(["image", "predict", str(model), str(root / "test"), "-o", str(tmp_path / "pred")]) == 0
    assert "image(s) flagged at alpha 0.1" in capsys.readouterr().out
    with open(tmp_path / "pred" / "scores.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4
    for r in rows:
        assert int(r["label"]) == int(float(r["score"]) > detector.threshold_)
        assert 0 < float(r["p_value"]) <= 1


def test_fit_keeps_the_maps_setting_and_predict_can_override_it(category, tmp_path):
    from usfad.vision.detector import ImageDetector

    model = tmp_path / "model.usfad"
    args = ["image", "fit", str(category), "--flow", "affine", "--maps", "density", *FAST, "--quiet", "-o", str(model)]
    assert main(args) == 0
    assert ImageDetector.load(model).maps == "density"
    one_file = next((category / "test" / "good").iterdir())
    scores = {}
    for maps in ("density", "published"):
        assert main(["image", "predict", str(model), str(one_file), "--maps", maps, "-o", str(tmp_path / maps)]) == 0
        with open(tmp_path / maps / "scores.csv") as handle:
            scores[maps] = float(next(csv.DictReader(handle))["score"])
    assert scores["density"] != scores["published"]  # predict --maps overrides the model's setting


def test_predict_refuses_a_missing_image(category, tmp_path, capsys):
    model = tmp_path / "model.usfad"
    assert main(["image", "fit", str(category), "--model", "fastflow", *FAST, "--quiet", "-o", str(model)]) == 0
    assert main(["image", "predict", str(model), str(tmp_path / "nope.png"), "-o", str(tmp_path / "p")]) == 1
    assert "no image file or folder" in capsys.readouterr().err


def test_bench_runs_every_cell_once_and_resumes(category, tmp_path, capsys):
    out = tmp_path / "bench"
    args = ["image", "bench", str(category), "--models", "fastflow", "cflow", "--flows", "usf", "affine"]
    args += ["--seeds", "0", *FAST, "--no-progress", "-o", str(out)]
    assert main(args) == 0
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(r["model"] for r in rows) == ["cflow-affine", "cflow-usf", "fastflow-affine", "fastflow-usf"]
    for r in rows:
        assert r["status"] == "ok" and r["diverged"] is False
        for key in ("image_auroc", "pixel_auroc", "aupro"):
            assert 0.0 <= r[key] <= 1.0
        assert r["fit_seconds"] > 0
        assert len(r["train_loss"]) == r["epochs"] == 1 and r["train_loss"][-1] == r["final_loss"]
    table = (out / "results.md").read_text()
    assert "| fastflow | usf | 1 | 0 |" in table and "| cflow | affine | 1 | 0 |" in table
    assert len(list(out.glob("*.png"))) == 4 * 3  # best and worst defect, worst normal per (model, flow)
    capsys.readouterr()
    assert main(args) == 0
    assert "4 runs planned, 4 already in" in capsys.readouterr().out
    assert len((out / "results.jsonl").read_text().splitlines()) == 4


def test_image_without_subcommand_prints_help(capsys):
    assert main(["image"]) == 2
    assert "fit" in capsys.readouterr().out


def test_bench_records_a_diverged_run_and_goes_on(category, tmp_path, monkeypatch, capsys):
    from usfad.errors import TrainingDivergedError
    from usfad.vision.detector import ImageDetector

    fit_features = ImageDetector.fit_features

    def diverge_for_affine(self, features):
        if self.flow == "affine":
            raise TrainingDivergedError("fastflow (affine): the training loss became nan at epoch 1, step 3")
        return fit_features(self, features)

    monkeypatch.setattr(ImageDetector, "fit_features", diverge_for_affine)
    out = tmp_path / "bench"
    args = ["image", "bench", str(category), "--models", "fastflow", "--flows", "usf", "affine", "--seeds", "0"]
    assert main([*args, *FAST, "--no-progress", "--no-overlays", "-o", str(out)]) == 0
    rows = {r["model"]: r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())}
    assert rows["fastflow-affine"]["diverged"] is True and rows["fastflow-affine"]["status"] == "failed"
    assert rows["fastflow-usf"]["diverged"] is False and rows["fastflow-usf"]["image_auroc"] is not None
    assert "| fastflow | affine | 1 | 1 |" in (out / "results.md").read_text()
    assert not list(out.glob("*.png"))


def test_bench_on_fashion_mnist_runs_one_dataset_per_normal_class_with_image_metrics_only(tmp_path, capsys):
    root = fake_fashion_mnist(tmp_path / "fashion_mnist", n_train=30, n_test=20)
    out = tmp_path / "bench"
    args = ["image", "bench", str(root), "--models", "fastflow", "--flows", "usf", "affine", "--seeds", "0", *FAST]
    assert main([*args, "--normal-class", "2", "5", "--no-progress", "--no-overlays", "-o", str(out)]) == 0
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted((r["dataset"], r["flow"]) for r in rows) == [
        ("fashion_mnist-2", "affine"),
        ("fashion_mnist-2", "usf"),
        ("fashion_mnist-5", "affine"),
        ("fashion_mnist-5", "usf"),
    ]
    for r in rows:
        assert r["status"] == "ok" and r["n_train"] == 3 and r["n_test"] == 20  # the class's images; all test images
        assert 0.0 <= r["image_auroc"] <= 1.0 and r.get("pixel_auroc") is None
    table = (out / "results.md").read_text()
    assert "| fashion_mnist-5 | fastflow | affine | 1 | 0 |" in table
    usf, affine = ({r["dataset"]: r["image_auroc"] for r in rows if r["flow"] == f} for f in ("usf", "affine"))
    wins = sum(usf[d] >= affine[d] for d in usf)
    mean = (usf["fashion_mnist-2"] + usf["fashion_mnist-5"]) / 2
    assert f"| fastflow | usf | 2 | {mean:.3f} | {wins} of 2 |" in table
    capsys.readouterr()
    assert main([*args, "--no-progress", "-o", str(out)]) == 1
    assert "--normal-class" in capsys.readouterr().err


def test_bench_refuses_a_normal_class_for_an_image_folder(category, tmp_path, capsys):
    args = ["image", "bench", str(category), "--normal-class", "1", *FAST, "--no-progress", "-o", str(tmp_path)]
    assert main(args) == 1
    assert "is for Fashion-MNIST" in capsys.readouterr().err


def test_the_table_counts_runs_whose_loss_blew_up_but_stayed_finite(tmp_path):
    from usfad.experiments.health import training_health
    from usfad.reporting.image import write_bench_table

    base = {"dataset": "d", "head": "cflow", "status": "ok", "diverged": False, "image_auroc": 0.8}
    rows = [
        {**base, "flow": "affine", "seed": 0, "train_loss": [1.9, 1.0, 8.7e4]},  # thrown off, still finite
        {**base, "flow": "affine", "seed": 1, "train_loss": [1.9, 1.0, 1.5]},  # noisy, not a blow-up
        {**base, "flow": "affine", "seed": 2, "train_loss": [6.5e11, 8.9e4, 1.8e4]},  # falling, never settled
        {**base, "flow": "usf", "seed": 0, "train_loss": [1.9, 1.0, 0.5]},
        {**base, "flow": "usf", "seed": 1},  # a row written before losses were kept
        {**base, "head": "uflow", "flow": "usf", "seed": 0},
    ]
    health = [training_health(r.get("train_loss", [])) for r in rows]
    assert [h.blew_up for h in health] == [True, False, True, False, False, False]
    assert [h.largest_rise for h in health[:4]] == pytest.approx([8.7e4 - 1.0, 0.5, 0.0, 0.0])
    table = write_bench_table(rows, tmp_path / "t.md").read_text()
    assert "| cflow | affine | 3 | 0 | 2 | 8.7e+04 |" in table and "| cflow | usf | 2 | 0 | 0 | 0 |" in table
    assert "| uflow | usf | 1 | 0 | - | - |" in table  # not known, not zero
