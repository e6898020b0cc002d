"""The benchmark: presets, cells, the process-pool and Ray executors, the store, the report."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from helpers import DATA, needs_data
from usfad.bench import report as rep
from usfad.bench.runner import CellJob, plan_jobs, run_benchmark, run_cell
from usfad.bench.spec import (
    DEFAULT_SETTINGS,
    PAPER_SETTINGS,
    check_models,
    make_model,
    model_params,
    parse_override,
    preset_label,
)
from usfad.commands.bench import add_commands
from usfad.data.adbench import select_datasets
from usfad.detectors import NonUSFlow, USFlow
from usfad.errors import TrainingDivergedError
from usfad.experiments.store import ResultStore, StoreLockedError, read_results, row_key

#: a few optimiser steps of a small network: enough to exercise a cell, fast on one core
TINY = {"epochs": 2, "max_steps": 3, "hidden_features": (8, 8), "n_blocks": 2}
SMALL = ["Classical/42_WBC", "Classical/14_glass"]


def _run(results: Path, **kwargs: Any) -> Any:
    options: dict[str, Any] = {
        "models": ["usflow", "iforest"],
        "datasets": SMALL,
        "seeds": [42],
        "overrides": TINY,
        "jobs": 1,
        "progress": False,
    }
    options.update(kwargs)
    return run_benchmark(DATA, results, **options)


# --- presets and models ------------------------------------------------------------------


def test_paper_preset_is_the_authors_settings_for_both_flows() -> None:
    for name in ("usflow", "nonusflow"):
        p = model_params(name, "paper")
        assert p["n_blocks"] == 4 and tuple(p["hidden_features"]) == (256, 256, 256, 256)
        assert (p["lr"], p["batch_size"], p["patience"]) == (1e-4, 64, 5)
        assert p["validation_fraction"] == 0.0  # early stopping on the training loss
    assert model_params("nonusflow", "paper")["clamp"] == 1.9
    # the switch is the only architectural difference between the two flows
    usf, non = dict(PAPER_SETTINGS["usflow"]), dict(PAPER_SETTINGS["nonusflow"])
    non.pop("clamp")
    assert usf == non
    # the default preset is exactly what a user gets from the classes
    assert DEFAULT_SETTINGS["usflow"] == DEFAULT_SETTINGS["nonusflow"] == DEFAULT_SETTINGS["deepsvdd"] == {}
    # the VAE rows differ only in the prior switch
    assert {k: v for k, v in DEFAULT_SETTINGS.items() if k.startswith("vaeflow")} == {
        "vaeflow_usf": {"prior": "usf"},
        "vaeflow_affine": {"prior": "affine"},
        "vaeflow_normal": {"prior": "normal"},
    }
    assert model_params("usflow", "default") == model_params("nonusflow", "default")


def test_make_model_builds_the_right_class_with_the_seed() -> None:
    usf = make_model("usflow", "default", n_features=5, seed=7)
    non = make_model("nonusflow", "paper", n_features=5, seed=7)
    assert isinstance(usf, USFlow) and isinstance(non, NonUSFlow)
    assert usf.random_state == 7 and non.lr == 1e-4
    pytest.importorskip("pyod")
    anchor = make_model("pyod_deepsvdd", "paper", n_features=5, seed=3, overrides={"epochs": 1})
    assert anchor.random_state == 3 and anchor.epochs == 1


def test_overrides_reach_only_models_that_take_them_and_mark_the_label() -> None:
    overrides = {"max_steps": 10, "usflow.lr": 0.01, "device": "cpu"}
    assert model_params("usflow", "default", overrides)["lr"] == 0.01
    assert "lr" not in model_params("nonusflow", "default", overrides)
    assert preset_label("usflow", "default", overrides) == "default+lr=0.01+max_steps=10"
    assert preset_label("usflow", "paper") == "paper"
    assert preset_label("iforest", "paper") == "default"  # anchors have no preset
    assert preset_label("usflow", "default", {"hidden_features": (64, 64)}) == "default+hidden_features=64x64"


def test_bad_models_and_overrides_fail_before_any_cell() -> None:
    with pytest.raises(ValueError, match="unknown model 'usflw'"):
        check_models(["usflw"])
    with pytest.raises(ValueError, match="no parameter"):
        check_models(["usflow"], {"usflow.depth": 3})
    with pytest.raises(ValueError, match="none of the models"):
        check_models(["usflow"], {"depth": 3})


@pytest.mark.parametrize("seeds", [[-1], [0, 2**32]])
def test_bad_seeds_fail_before_any_cell(tmp_path: Path, seeds: list[int]) -> None:
    results = tmp_path / "r.jsonl"
    with pytest.raises(ValueError, match=r"seeds must be integers from 0 to 4294967295, got \["):
        run_benchmark(tmp_path, results, models=["knn"], seeds=seeds)
    assert not results.exists()  # not even an empty result file


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            {"usflow.max_steps": "abc"},
            r"model 'usflow': max_steps must be an integer >= 1 or None or 'auto', got 'abc'",
        ),
        ({"epochs": 1.5}, r"model 'usflow': epochs must be an integer >= 1 or 'auto', got 1.5"),
        ({"usflow.flow": "foo"}, r"model 'usflow': flow must be one of"),
    ],
)
def test_bad_parameter_values_fail_before_any_cell(tmp_path: Path, overrides: dict, message: str) -> None:
    """A value that would fail every cell of a model is refused once, before the grid starts."""
    results = tmp_path / "r.jsonl"
    with pytest.raises(ValueError, match=message):
        run_benchmark(tmp_path, results, models=["usflow", "knn"], seeds=[0], overrides=overrides)
    assert not results.exists()


def test_check_seeds_is_the_one_rule_for_every_grid() -> None:
    from usfad.studies.stability import run_stability
    from usfad.validation import check_seeds

    assert check_seeds([3, "7", 0, 2**32 - 1]) == [3, 7, 0, 2**32 - 1]
    with pytest.raises(ValueError, match="no seeds given"):
        check_seeds([])
    with pytest.raises(ValueError, match=r"got \[-2\]"):
        run_stability(datasets=["14_glass"], models=["usflow"], seeds=[1, -2])


def test_parse_override() -> None:
    assert parse_override("usflow.epochs=5") == ("usflow.epochs", 5)
    assert parse_override("hidden_features=[64, 64]") == ("hidden_features", (64, 64))
    assert parse_override("max_steps=none") == ("max_steps", None)
    assert parse_override("device=cuda") == ("device", "cuda")
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_override("epochs")


# --- one cell ----------------------------------------------------------------------------


def _job(model: str = "usflow", dataset: str = "42_WBC", **overrides: Any) -> CellJob:
    infos = select_datasets([dataset], DATA)
    return plan_jobs(infos, [model], [42], "default", {**TINY, **overrides})[0]


@needs_data
def test_cell_fits_scores_and_is_deterministic() -> None:
    row = run_cell(_job())
    assert row["status"] == "ok", row["error"]
    assert 0 <= row["roc_auc"] <= 1 and 0 <= row["pr_auc"] <= 1 and 0 <= row["best_f1"] <= 1
    assert (row["n_train"], row["n_test"], row["d"]) == (149, 67, 9)  # 70/30 split, anomalies dropped
    assert row["fit_seconds"] > 0 and row["score_seconds"] >= 0
    assert run_cell(_job())["roc_auc"] == row["roc_auc"]


class _Diverging:
    def fit(self, X: np.ndarray) -> Any:
        raise TrainingDivergedError("the training loss became nan at epoch 1, step 1")


class _NaNScores:
    def fit(self, X: np.ndarray) -> Any:
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        return np.full(len(X), np.nan)


@needs_data
@pytest.mark.parametrize(
    ("model", "message"),
    [(_Diverging, "TrainingDivergedError: the training loss became nan"), (_NaNScores, "67 of 67 test scores")],
)
def test_cell_failures_become_rows(monkeypatch: pytest.MonkeyPatch, model: type, message: str) -> None:
    monkeypatch.setattr("usfad.bench.runner.make_model", lambda *a, **k: model())
    row = run_cell(_job())
    assert row["status"] == "failed" and message in row["error"]
    assert row["roc_auc"] is None and row["n_train"] == 149


# --- the grid, the store, resuming ---------------------------------------------------------


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small real grid (2 datasets x usflow, iforest x 1 seed), shared by several tests."""
    if not DATA.is_dir():
        pytest.skip(f"ADBench data not found at {DATA}")
    pytest.importorskip("pyod")
    results = tmp_path_factory.mktemp("grid") / "results.jsonl"
    outcome = _run(results)
    assert (outcome.planned, outcome.skipped, outcome.ok, outcome.failed) == (4, 0, 4, 0)
    return results


def test_grid_rows_have_every_field(grid: Path) -> None:
    rows = read_results(grid)
    assert {(r["dataset"], r["model"]) for r in rows} == {
        (d, m) for d in ("42_WBC", "14_glass") for m in ("usflow", "iforest")
    }
    for row in rows:
        assert row["status"] == "ok" and row["error"] is None
        assert row["preset"] == ("default" if row["model"] == "iforest" else preset_label("usflow", "default", TINY))
        assert all(isinstance(row[k], float) for k in ("roc_auc", "pr_auc", "best_f1", "fit_seconds"))


def test_rerun_skips_finished_cells_and_adds_nothing(grid: Path) -> None:
    before = grid.read_bytes()
    outcome = _run(grid)
    assert (outcome.skipped, outcome.ok, outcome.failed) == (4, 0, 0)
    assert grid.read_bytes() == before


def test_resume_after_a_crash_mid_write(grid: Path, tmp_path: Path) -> None:
    results = tmp_path / "crashed.jsonl"
    lines = grid.read_bytes().splitlines(keepends=True)
    results.write_bytes(b"".join(lines[:2]) + lines[2][:40])  # the third row was being written
    outcome = _run(results)
    assert (outcome.skipped, outcome.ok) == (2, 2)
    rows = read_results(results)
    keys = [row_key(r) for r in rows]
    assert len(rows) == 4 and len(set(keys)) == 4
    assert len(results.read_bytes().splitlines()) == 4  # the fragment was cut, not kept


@needs_data
def test_failing_model_is_recorded_and_the_grid_goes_on(tmp_path: Path) -> None:
    results = tmp_path / "r.jsonl"
    # a valid setting that these data cannot meet (a bad value is refused before the grid starts)
    outcome = _run(results, models=["usflow", "deepsvdd"], overrides={**TINY, "usflow.base_components": 1000})
    assert (outcome.ok, outcome.failed) == (2, 2)
    failed = [r for r in read_results(results) if r["status"] == "failed"]
    assert {r["model"] for r in failed} == {"usflow"}
    assert all("base_components=1000 needs at least 2000 training rows" in r["error"] for r in failed)


@needs_data
def test_time_limit_stops_a_cell_and_retry_failed_runs_it_again(tmp_path: Path) -> None:
    results = tmp_path / "r.jsonl"
    slow = {**TINY, "epochs": 1000, "max_steps": 30}
    kwargs = {"models": ["usflow"], "datasets": ["42_WBC"], "overrides": slow}
    outcome = _run(results, time_limit=0.05, **kwargs)
    assert outcome.failed == 1
    assert "time limit of 0.05 s exceeded" in read_results(results)[0]["error"]
    assert _run(results, **kwargs).skipped == 1  # a failed cell counts as done...
    outcome = _run(results, retry_failed=True, **kwargs)  # ...unless asked to retry
    assert (outcome.skipped, outcome.ok) == (0, 1)
    rows = read_results(results)
    assert len(rows) == 1 and rows[0]["status"] == "ok"
    assert len(results.read_bytes().splitlines()) == 1


def test_default_datasets_are_every_dataset_of_a_folder_without_classical(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for name in ("1_x", "2_y"):
        np.savez(tmp_path / f"{name}.npz", X=rng.normal(size=(40, 3)), y=np.array([0] * 36 + [1] * 4))
    results = tmp_path / "r.jsonl"
    options: dict[str, Any] = {"seeds": [0], "overrides": {"max_steps": 3}, "jobs": 1, "progress": False}
    outcome = run_benchmark(tmp_path, results, models=["deepsvdd"], **options)
    assert (outcome.planned, outcome.ok) == (2, 2)
    assert sorted(r["dataset"] for r in read_results(results)) == ["1_x", "2_y"]


def test_store_tolerates_truncation_and_locks(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "sub" / "r.jsonl")
    row = {"dataset": "a", "group": "g", "model": "m", "preset": "default", "seed": 1, "status": "ok"}
    with store.writer() as writer:
        writer.append(row)
        with pytest.raises(StoreLockedError, match="another run"), store.writer():
            pass
    store.path.write_bytes(store.path.read_bytes() + b'{"dataset": "b", "gro')
    assert [r["dataset"] for r in store.rows()] == ["a"]
    with store.writer() as writer:
        writer.append({**row, "dataset": "b"})
    assert [json.loads(line)["dataset"] for line in store.path.read_bytes().splitlines()] == ["a", "b"]
    # a complete row that lost only its newline is kept
    store.path.write_bytes(store.path.read_bytes().rstrip(b"\n"))
    with store.writer() as writer:
        writer.append({**row, "dataset": "c"})
    assert [r["dataset"] for r in store.rows()] == ["a", "b", "c"]
    assert store.discard({row_key({**row, "dataset": "b"})}) == 1
    assert [r["dataset"] for r in store.rows()] == ["a", "c"]


@needs_data
def test_ray_backend_runs_the_same_cells(tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    results = tmp_path / "ray.jsonl"
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        outcome = _run(results, backend="ray", models=["usflow", "deepsvdd"], datasets=["42_WBC"])
    finally:
        ray.shutdown()
    assert (outcome.ok, outcome.failed) == (2, 0)
    local = run_cell(_job("usflow"))
    by_model = {r["model"]: r for r in read_results(results)}
    assert by_model["usflow"]["roc_auc"] == local["roc_auc"]  # same split, same seed, same score


# --- the report ----------------------------------------------------------------------------


def test_average_ranks_on_a_hand_made_table() -> None:
    table = pd.DataFrame(
        {"a": [0.9, 0.8, 0.7, 0.5], "b": [0.8, 0.8, 0.9, np.nan], "c": [0.7, 0.6, 0.8, 0.6]},
        index=["d1", "d2", "d3", "d4"],
    )
    ranks, n = rep.average_ranks(table)
    assert n == 3  # d4 lacks b
    # d1: a1 b2 c3; d2: a1.5 b1.5 c3; d3: a3 b1 c2
    assert ranks.to_dict() == pytest.approx({"a": 5.5 / 3, "b": 4.5 / 3, "c": 8 / 3})


def test_win_tie_loss_on_a_hand_made_table() -> None:
    table = pd.DataFrame({"usflow": [0.9, 0.8, 0.7, 0.6], "knn": [0.8, 0.8005, 0.9, np.nan]})
    wtl = rep.win_tie_loss(table, "usflow", tie_tolerance=1e-3)
    assert wtl.loc["knn"].to_dict() == {"win": 1, "tie": 1, "loss": 1, "n": 3}


def test_wilcoxon_on_a_hand_made_table() -> None:
    a = np.array([0.90, 0.81, 0.72, 0.64, 0.55, 0.46])
    table = pd.DataFrame({"usflow": a, "nonusflow": a - np.array([0.01, 0.02, 0.03, 0.04, 0.05, 0.06])})
    w = rep.wilcoxon_test(table, "usflow", "nonusflow")
    # all six differences positive: W- = 0, exact two-sided p = 2 / 2**6
    assert (w.n, w.statistic) == (6, 0.0)
    assert w.p_value == pytest.approx(2 / 64)
    assert w.mean_diff == pytest.approx(0.035)
    b = np.array([0.5, 0.52, 0.47, 0.61, 0.58, 0.49, 0.7])
    c = np.array([0.55, 0.5, 0.49, 0.6, 0.52, 0.41, 0.72])
    mixed = rep.wilcoxon_test(pd.DataFrame({"x": b, "y": c}), "x", "y")
    assert mixed.p_value == pytest.approx(stats.wilcoxon(b, c).pvalue)
    same = rep.wilcoxon_test(pd.DataFrame({"x": [0.5, 0.6], "y": [0.5, 0.6]}), "x", "y")
    assert same.p_value == 1.0 and "zero" in same.note
    assert math.isnan(rep.wilcoxon_test(pd.DataFrame({"x": [0.5], "y": [0.4]}), "x", "y").p_value)


def _fake_rows() -> list[dict[str, Any]]:
    """Three models x four datasets x two seeds, one failed cell, no training needed."""
    rng = np.random.default_rng(0)
    rows = []
    for i, dataset in enumerate(["1_a", "2_b", "10_c", "3_d"]):
        for seed in (42, 0):
            for model, base in (("usflow", 0.85), ("nonusflow", 0.8), ("knn", 0.75)):
                failed = model == "knn" and dataset == "3_d" and seed == 0
                auc = None if failed else float(base + 0.02 * i + rng.normal(0, 0.01))
                rows.append(
                    {
                        "dataset": dataset,
                        "group": "Classical",
                        "model": model,
                        "preset": "default",
                        "seed": seed,
                        "roc_auc": auc,
                        "pr_auc": None if failed else auc - 0.3,
                        "best_f1": None if failed else auc - 0.2,
                        "fit_seconds": None if failed else 1.0 + i,
                        "score_seconds": None if failed else 0.01,
                        "status": "failed" if failed else "ok",
                        "error": "ValueError: boom\n  more" if failed else None,
                    }
                )
    return rows


def test_report_tables_from_hand_made_rows(tmp_path: Path) -> None:
    results = tmp_path / "r.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in _fake_rows()))
    path = rep.write_report(results, tmp_path / "out")
    text = path.read_text()
    for section in ("Summary per model", "win / tie / loss", "Wilcoxon signed-rank test: usflow vs nonusflow"):
        assert section in text
    assert "| 3_d | knn | 0 | ValueError: boom |" in text  # the failure, first line of its error
    df = rep.results_frame(results)
    table = rep.per_dataset(df)
    assert list(table.index) == ["1_a", "2_b", "3_d", "10_c"]  # natural order
    assert list(table.columns) == ["usflow", "nonusflow", "knn"]  # registry order
    summary, n_ranked = rep.summary_table(df)
    assert n_ranked == 4 and summary.loc["usflow", "avg rank"] == 1.0
    assert summary.loc["knn", "cells failed"] == 1
    assert summary.loc["usflow", "mean seed std"] == pytest.approx(rep.per_dataset(df, how="std")["usflow"].mean())
    for name in rep.PLOTS:
        assert (tmp_path / "out" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_labels_presets_and_compares_their_fit_times() -> None:
    rows = _fake_rows()
    paper = [{**r, "preset": "paper", "fit_seconds": 10 * r["fit_seconds"]} for r in rows if r["model"] == "usflow"]
    df = rep.results_frame(rows + paper)
    assert set(df["method"]) == {"usflow", "usflow:paper", "nonusflow", "knn"}
    ratios = rep.preset_fit_ratios(df)
    assert ratios.loc[0, "fit_time_ratio"] == pytest.approx(10.0)
    only_paper = rep.results_frame(rows + paper, preset="paper")
    assert set(only_paper["method"]) == {"usflow", "knn"}  # anchors are kept with any preset


def test_cli_bench_and_report(grid: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="usfad")
    add_commands(parser.add_subparsers(dest="command"))
    results = tmp_path / "cli.jsonl"
    results.write_bytes(grid.read_bytes())  # everything done already: the command only checks
    params = [f"--param={k}={json.dumps(list(v) if isinstance(v, tuple) else v)}" for k, v in TINY.items()]
    argv = ["bench", "--data", str(DATA), "--datasets", *SMALL, "--models", "usflow,iforest", "--seeds", "42"]
    args = parser.parse_args([*argv, *params, "--results", str(results), "--jobs", "1", "--no-progress"])
    assert args.func(args) == 0
    assert "4 cells planned, 4 already in" in capsys.readouterr().out
    args = parser.parse_args(["report", str(results), "-o", str(tmp_path / "rep")])
    assert args.func(args) == 0
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "14_glass" in text and "iforest" in text
    args = parser.parse_args(["bench", "--show-presets"])
    assert args.func(args) == 0 and "paper" in capsys.readouterr().out


def test_report_merges_several_result_files(tmp_path) -> None:
    import json

    def row(model, seed, auc):
        return {"dataset": "d1", "group": "G", "model": model, "preset": "default", "seed": seed,
                "roc_auc": auc, "pr_auc": auc, "best_f1": auc, "status": "ok"}  # fmt: skip

    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_text("\n".join(json.dumps(r) for r in [row("usflow", 0, 0.5), row("usflow", 1, 0.7)]) + "\n")
    second.write_text("\n".join(json.dumps(r) for r in [row("usflow", 1, 0.9), row("knn", 0, 0.6)]) + "\n")
    df = rep.results_frame([first, second])
    assert len(df) == 3  # the cell (usflow, seed 1) is in both files: the later file's row wins
    assert sorted(df.loc[df["model"] == "usflow", "roc_auc"]) == [0.5, 0.9]


def test_report_keeps_one_dataset_group_when_asked() -> None:
    rows = [
        {"dataset": "a", "group": "Classical", "model": "usflow", "preset": "default", "seed": 0, "roc_auc": 0.9,
         "status": "ok"},
        {"dataset": "b", "group": "CV", "model": "usflow", "preset": "default", "seed": 0, "roc_auc": 0.8,
         "status": "ok"},
    ]  # fmt: skip
    assert list(rep.results_frame(rows, group="Classical")["dataset"]) == ["a"]
    with pytest.raises(ValueError, match="no rows of dataset group 'NLP'"):
        rep.results_frame(rows, group="NLP")
