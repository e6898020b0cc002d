"""The tabular benchmark grid: (dataset, model, seed) cells, each one job of the experiment engine.

A cell (:class:`CellJob`) loads its dataset, applies the Protocol T split
(:func:`usfad.data.protocol_t`), fits the model on the normal training part, scores the test
part and computes :func:`usfad.metrics.detection_metrics`. It runs as a job of
:mod:`usfad.experiments.engine`, so it never raises: an exception, a non-finite loss or
non-finite scores become a row with ``status="failed"``, the error text and ``diverged``
(see the engine's docstring), and the grid goes on. With ``keep_losses`` the row also keeps
the model's per-epoch ``train_loss`` and ``val_loss`` (the stability study reads them with
:func:`usfad.experiments.health.training_health`).

The grid only plans cells, skips those already in the store
(:class:`usfad.experiments.store.ResultStore`), hands the rest to an executor and appends
each row as it comes back: :class:`~usfad.experiments.engine.LocalExecutor` (default; a
script that calls :func:`run_benchmark` must do so under ``if __name__ == "__main__":``) or
:class:`~usfad.experiments.engine.RayExecutor` (the driver ships each dataset's arrays, so
the workers need usfad, and PyOD for the anchors, but not the data directory).
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data.adbench import DatasetInfo, list_datasets, read_npz, select_datasets
from ..data.protocol import SEEDS
from ..errors import ThresholdWarning
from ..experiments.engine import (
    LocalExecutor,
    RayExecutor,
    available_cores,
    check_finite_scores,
    finite_or_none,
    limit_threads,
    run_job,
)
from ..experiments.store import Key, ResultStore
from ..validation import check_seeds
from .spec import check_models, check_preset, make_model, model_params, preset_label

BACKENDS = ("local", "ray")
DEFAULT_GROUP = "Classical"
#: what each cell's worker process imports once, before its first cell
PRELOAD = ("usfad.bench.runner", "usfad.metrics", "sklearn.model_selection")


# --- one cell -------------------------------------------------------------------------


@dataclass(frozen=True)
class CellJob:
    """Everything a worker needs to run one cell (picklable, small): a job of
    :mod:`usfad.experiments.engine`."""

    dataset: str
    group: str
    path: str
    model: str
    preset: str  #: the preset asked for (``default`` or ``paper``)
    label: str  #: the preset recorded with the row (see :func:`~usfad.bench.spec.preset_label`)
    seed: int
    overrides: tuple[tuple[str, Any], ...] = ()
    threads: int = 1
    keep_losses: bool = False  #: keep the model's per-epoch losses in the row

    @property
    def key(self) -> Key:
        return (self.group, self.dataset, self.model, self.label, self.seed)

    @property
    def source(self) -> str:
        return self.path

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        return read_npz(self.path)

    def base_row(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "group": self.group,
            "model": self.model,
            "preset": self.label,
            "seed": self.seed,
            "roc_auc": None,
            "pr_auc": None,
            "best_f1": None,
            "fit_seconds": None,
            "score_seconds": None,
            "n_train": None,
            "n_test": None,
            "d": None,
            "status": "failed",
            "error": None,
            "params": model_params(self.model, self.preset, dict(self.overrides)),
            "threads": self.threads,
        }

    def run(self, row: dict[str, Any], data: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        from ..data.protocol import protocol_t
        from ..metrics import detection_metrics

        X, y = data if data is not None else self.load()
        split = protocol_t(X, y, self.seed)
        row.update(n_train=int(split.X_train.shape[0]), n_test=int(split.X_test.shape[0]), d=int(X.shape[1]))
        model = make_model(
            self.model, self.preset, n_features=X.shape[1], seed=self.seed, overrides=dict(self.overrides)
        )
        t0 = time.perf_counter()
        try:
            with warnings.catch_warnings():  # the grid ranks by scores; it never uses threshold_
                warnings.simplefilter("ignore", ThresholdWarning)
                model.fit(split.X_train)
        finally:
            if self.keep_losses:
                _keep_losses(row, model)
        row["fit_seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        scores = model.decision_function(split.X_test)
        row["score_seconds"] = time.perf_counter() - t0
        scores = check_finite_scores(scores)
        metrics = detection_metrics(split.y_test, scores)
        row.update({k: finite_or_none(v) for k, v in metrics.items()})


def _keep_losses(row: dict[str, Any], model: Any) -> None:
    history = getattr(model, "history_", None)
    if history is not None:
        row["train_loss"] = [float(v) for v in history.train_loss]
        row["val_loss"] = [float(v) for v in history.val_loss]


def run_cell(job: CellJob, data: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, Any]:
    """Run one cell in this process and return its row (never raises on a model's failure)."""
    return run_job(job, data).row


# --- the grid -------------------------------------------------------------------------


@dataclass
class BenchResult:
    """What a run did: cells planned, skipped (already stored) and run, and their outcome."""

    planned: int
    skipped: int
    ok: int = 0
    failed: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    results: Path | None = None


def plan_jobs(
    datasets: Sequence[DatasetInfo],
    models: Sequence[str],
    seeds: Sequence[int],
    preset: str = "default",
    overrides: Mapping[str, Any] | None = None,
    threads: int = 1,
    keep_losses: bool = False,
) -> list[CellJob]:
    """Every cell of the grid, dataset-major (one dataset's cells run close together).

    Anchors ignore the preset (their label is ``default``), so cells that coincide are
    planned once.
    """
    items = tuple(sorted((overrides or {}).items()))
    jobs: dict[Key, CellJob] = {}
    for info in datasets:
        for seed in seeds:
            for model in models:
                job = CellJob(
                    dataset=info.name,
                    group=info.group,
                    path=str(info.path),
                    model=model,
                    preset=preset,
                    label=preset_label(model, preset, overrides),
                    seed=int(seed),
                    overrides=items,
                    threads=threads,
                    keep_losses=keep_losses,
                )
                jobs.setdefault(job.key, job)
    return list(jobs.values())


def run_benchmark(
    data: str | os.PathLike[str] | None,
    results: str | os.PathLike[str],
    *,
    models: Sequence[str],
    datasets: Sequence[str] | None = None,
    seeds: Sequence[int] = SEEDS,
    preset: str = "default",
    overrides: Mapping[str, Any] | None = None,
    jobs: int | None = None,
    threads: int | None = None,
    backend: str = "local",
    address: str | None = None,
    time_limit: float | None = None,
    retry_failed: bool = False,
    progress: bool = True,
) -> BenchResult:
    """Run the grid ``datasets x models x seeds``, appending one row per cell to ``results``.

    ``datasets`` are names, group names or globs (see
    :func:`usfad.data.adbench.select_datasets`); by default the ``Classical`` group, or
    every dataset when the directory has no such group. Cells already in ``results`` are
    skipped (failed ones too, unless ``retry_failed``: their rows are then removed and the
    cells run again). ``jobs`` defaults to the number
    of cores divided by ``threads`` (local) or the cluster's CPUs divided by ``threads``
    (Ray). ``threads`` (torch and BLAS threads per cell) defaults to 1: the models here are
    small, and on a loaded machine a single thread per cell is fastest, while several
    OpenMP threads per cell spin against each other.
    """
    from tqdm.auto import tqdm

    check_preset(preset)
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if address is not None and backend != "ray":
        raise ValueError("address is only used with backend='ray'")
    if time_limit is not None and not time_limit > 0:
        raise ValueError(f"time_limit must be > 0 seconds, got {time_limit}")
    if jobs is not None and jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    seeds = check_seeds(list(dict.fromkeys(seeds)))
    models = check_models(models, overrides)
    if not datasets:  # the Classical group if there is one, else every dataset found
        groups = {info.group for info in list_datasets(data)}
        datasets = [DEFAULT_GROUP] if DEFAULT_GROUP in groups else sorted(groups)
    infos = select_datasets(datasets, data)
    cores = available_cores()
    threads = 1 if threads is None else int(threads)
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    if backend == "local":
        jobs = max(1, cores // threads) if jobs is None else jobs
        if jobs * threads > cores:
            warnings.warn(
                f"{jobs} jobs x {threads} threads exceed the {cores} cores here: cells will slow each other down",
                RuntimeWarning,
                stacklevel=2,
            )
    planned = plan_jobs(infos, models, seeds, preset, overrides, threads)

    store = ResultStore(results)
    if retry_failed:
        store.discard(store.keys("failed") & {job.key for job in planned})
    done = store.keys()
    todo = [job for job in planned if job.key not in done]
    outcome = BenchResult(planned=len(planned), skipped=len(planned) - len(todo), results=store.path)
    if not todo:
        return outcome

    if backend == "local":
        executor: LocalExecutor | RayExecutor = LocalExecutor(jobs=jobs or 1, time_limit=time_limit, preload=PRELOAD)
    else:
        executor = RayExecutor(address=address, jobs=jobs, time_limit=time_limit, threads=threads)
    start = time.perf_counter()
    with (
        store.writer() as writer,
        tqdm(total=len(todo), desc="usfad bench", unit="cell", disable=not progress, file=sys.stderr) as bar,
    ):
        for row in executor.run(todo):
            writer.append(row)
            outcome.rows.append(row)
            if row.get("status") == "ok":
                outcome.ok += 1
            else:
                outcome.failed += 1
            bar.set_postfix_str(f"ok={outcome.ok} failed={outcome.failed} last={row['model']}/{row['dataset']}")
            bar.update(1)
    outcome.seconds = time.perf_counter() - start
    return outcome


__all__ = [
    "BACKENDS",
    "BenchResult",
    "CellJob",
    "LocalExecutor",
    "RayExecutor",
    "available_cores",
    "limit_threads",
    "plan_jobs",
    "run_benchmark",
    "run_cell",
]  # the executors and available_cores are usfad.experiments.engine's, re-exported
