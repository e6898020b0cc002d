"""The experiment engine: one job gives one row with one status vocabulary, and one reading of
a run's losses (training_health) for every report."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from usfad.errors import DataError, NonFiniteScoresError, TrainingDivergedError
from usfad.experiments.engine import (
    STATUSES,
    JobResult,
    SerialExecutor,
    check_finite_scores,
    failed_row,
    run_job,
)
from usfad.experiments.health import EXPLOSION_FACTOR, JUMP_NATS, training_health
from usfad.studies.stability import ending


@dataclass(frozen=True)
class _Job:
    """A job that raises ``error`` (or returns its data doubled), reading ``source``."""

    name: str
    error: type[Exception] | None = None
    source: str = "a"
    threads: int = 1
    loads: list[str] | None = None

    @property
    def key(self) -> tuple[Any, ...]:
        return (self.name,)

    def base_row(self) -> dict[str, Any]:
        return {"name": self.name, "value": None}

    def load(self) -> int:
        if self.loads is not None:
            self.loads.append(self.source)
        return len(self.source)

    def run(self, row: dict[str, Any], data: Any = None) -> Any:
        if self.error is not None:
            raise self.error("boom")
        row["value"] = data
        return 2 * data


def test_a_finished_job_is_ok_with_its_output_and_timing():
    row, output = run_job(_Job("x"), data=3)
    assert (row["status"], row["error"], row["diverged"], row["value"], output) == ("ok", None, False, 3, 6)
    assert row["wall_seconds"] >= 0 and row["finished_at"] and row["host"]
    assert set(STATUSES) == {"ok", "failed"}


@pytest.mark.parametrize(
    ("error", "diverged"),
    [(TrainingDivergedError, True), (NonFiniteScoresError, True), (DataError, False), (ValueError, False)],
)
def test_a_failing_job_is_a_failed_row_and_only_divergence_sets_diverged(error, diverged):
    result = run_job(_Job("x", error), data=1)
    assert isinstance(result, JobResult) and result.output is None
    assert result.row["status"] == "failed" and result.row["diverged"] is diverged
    assert f"{error.__name__}: boom (at " in result.row["error"] and result.row["value"] is None


def test_failed_row_for_a_job_stopped_from_outside():
    row = failed_row(_Job("x"), "time limit of 1 s exceeded", extra=1)
    assert (row["status"], row["diverged"], row["extra"]) == ("failed", False, 1) and "time limit" in row["error"]


def test_serial_executor_loads_each_source_once_while_its_jobs_run():
    loads: list[str] = []
    jobs = [_Job("1", loads=loads), _Job("2", loads=loads), _Job("3", source="bbb", loads=loads)]
    jobs.append(_Job("4", ValueError, loads=loads))
    rows = list(SerialExecutor().run(jobs))
    assert [r["value"] for r in rows] == [1, 1, 3, None] and [r["status"] for r in rows][-1] == "failed"
    assert loads == ["a", "bbb", "a"]  # once per run of jobs that share a source


def test_non_finite_scores_are_named():
    assert check_finite_scores([1, 2]).dtype == np.float64
    with pytest.raises(NonFiniteScoresError, match="2 of 3 test scores are NaN or infinite"):
        check_finite_scores([1.0, np.nan, np.inf])


def test_training_health_exploded_is_relative_to_the_first_epoch():
    assert not training_health([10.0, 5.0, 4.0], [11.0, 6.0]).exploded
    assert training_health([10.0, 5.0, 500.0]).exploded
    assert training_health([1.0, 0.5], [-3.0, 100.0]).exploded  # 100 > -3 + 10 x max(1, 3)
    assert not training_health([-50.0, -60.0, -40.0]).exploded
    assert training_health([1.0, math.nan]).exploded and not training_health([1.0, math.nan]).finite
    assert not training_health([1e9]).exploded  # one epoch: nothing to compare
    assert EXPLOSION_FACTOR == 10.0


def test_training_health_blew_up_and_largest_rise_are_in_nats():
    assert training_health([1.9, 1.0, 8.7e4]).blew_up  # thrown off, still finite
    assert not training_health([1.9, 1.0, 1.5]).blew_up  # noisy, not a blow-up
    assert training_health([6.5e11, 8.9e4, 1.8e4]).blew_up  # falling, never settled
    assert training_health([1.0, 0.2, 2.2, 0.1]).largest_rise == pytest.approx(2.0)  # a jump it came back from
    assert training_health([1.0, 0.2, 2.2, 0.1]).jumped and not training_health([1.0, 0.5]).jumped
    assert training_health([1.0, float("nan")]).largest_rise == math.inf
    assert not training_health([]).blew_up and training_health([]).largest_rise == 0.0 and JUMP_NATS == 0.1


def test_the_stability_study_reads_a_row_as_one_ending():
    ok = {"status": "ok", "diverged": False, "train_loss": [1.0, 0.5], "val_loss": [1.0, 0.9]}
    assert ending(ok) == "ok"
    assert ending({**ok, "val_loss": [1.0, 50.0]}) == "exploded"
    assert ending({"status": "failed", "diverged": True}) == "diverged"
    assert ending({"status": "failed", "diverged": False}) == "failed"
