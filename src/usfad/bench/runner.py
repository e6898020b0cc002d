"""The benchmark runner: a grid of (dataset, model, seed) cells, each one job.

A job loads its dataset, applies the Protocol T split (:func:`usfad.data.protocol_t`),
fits the model on the normal training part, scores the test part and computes
:func:`usfad.metrics.detection_metrics`. It never raises: an exception, a non-finite loss
(:class:`~usfad.errors.TrainingDivergedError`) or non-finite scores become a row with
``status="failed"`` and the error text, and the grid goes on.

The runner only plans cells, skips those already in the store, hands the rest to an
executor and appends each row as it comes back. Executors differ only in where jobs run:

- :class:`LocalExecutor` (default): ``jobs`` worker processes on this machine, one fresh
  process per cell (forked from a preloaded server, so starting one is cheap), torch and
  BLAS limited to ``threads`` each so that ``jobs x threads`` stays within the cores; the
  time limit kills the process;
- :class:`RayExecutor`: Ray tasks on a local instance or a cluster (``address``); the
  driver ships each dataset's arrays through Ray's object store, so the workers do not
  need the data directory, but they need usfad (and PyOD for the anchors) installed.

The local executor starts processes the way ``multiprocessing`` does: a script that calls
:func:`run_benchmark` must do so under ``if __name__ == "__main__":``.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing as mp
import os
import signal
import socket
import sys
import time
import traceback
import warnings
from collections import Counter, deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import wait as wait_for
from pathlib import Path
from typing import Any

import numpy as np

from ..data.adbench import DatasetInfo, list_datasets, read_npz, select_datasets
from ..data.protocol import SEEDS
from .spec import MissingDependencyError, check_models, check_preset, make_model, model_params, preset_label
from .store import Key, ResultStore

BACKENDS = ("local", "ray")
DEFAULT_GROUP = "Classical"
_MAX_ERROR_CHARS = 4000


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover (macOS, Windows)
        return max(1, os.cpu_count() or 1)


# --- one cell -------------------------------------------------------------------------


@dataclass(frozen=True)
class CellJob:
    """Everything a worker needs to run one cell (picklable, small)."""

    dataset: str
    group: str
    path: str
    model: str
    preset: str  #: the preset asked for (``default`` or ``paper``)
    label: str  #: the preset recorded with the row (see :func:`~usfad.bench.spec.preset_label`)
    seed: int
    overrides: tuple[tuple[str, Any], ...] = ()
    threads: int = 1

    @property
    def key(self) -> Key:
        return (self.group, self.dataset, self.model, self.label, self.seed)

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


def failed_row(job: CellJob, error: str, **extra: Any) -> dict[str, Any]:
    row = job.base_row()
    row.update(extra)
    row.update(status="failed", error=error[-_MAX_ERROR_CHARS:], finished_at=_now(), host=socket.gethostname())
    return row


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _finite_or_none(value: Any) -> float | None:
    return float(value) if value is not None and math.isfinite(float(value)) else None


def run_cell(job: CellJob, data: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, Any]:
    """Run one cell and return its row (never raises on a model's failure)."""
    from ..data.protocol import protocol_t
    from ..metrics import detection_metrics

    row = job.base_row()
    start = time.perf_counter()
    try:
        X, y = data if data is not None else read_npz(job.path)
        split = protocol_t(X, y, job.seed)
        row.update(n_train=int(split.X_train.shape[0]), n_test=int(split.X_test.shape[0]), d=int(X.shape[1]))
        model = make_model(job.model, job.preset, n_features=X.shape[1], seed=job.seed, overrides=dict(job.overrides))
        t0 = time.perf_counter()
        model.fit(split.X_train)
        row["fit_seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        scores = np.asarray(model.decision_function(split.X_test), dtype=np.float64)
        row["score_seconds"] = time.perf_counter() - t0
        if not np.isfinite(scores).all():
            bad = int((~np.isfinite(scores)).sum())
            raise FloatingPointError(f"{bad} of {scores.size} test scores are NaN or infinite")
        metrics = detection_metrics(split.y_test, scores)
        row.update({k: _finite_or_none(v) for k, v in metrics.items()})
        row.update(status="ok", error=None)
    except Exception as exc:
        lines = traceback.format_exception_only(type(exc), exc)
        where = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
        origin = f" (at {where[0].filename}:{where[0].lineno})" if where else ""
        row.update(status="failed", error=("".join(lines).strip() + origin)[-_MAX_ERROR_CHARS:])
    row.update(wall_seconds=time.perf_counter() - start, finished_at=_now(), host=socket.gethostname())
    return row


def limit_threads(threads: int) -> None:
    """Cap torch's and the BLAS/OpenMP pools' threads in this (worker) process."""
    threads = max(1, int(threads))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    import torch

    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):  # already set, or parallel work already started
        torch.set_num_interop_threads(1)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads)
    except ImportError:  # pragma: no cover
        pass


# --- executors ------------------------------------------------------------------------


def _local_worker(job: CellJob, conn: Any) -> None:
    # Ctrl-C reaches the whole process group; the parent decides what to do with workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        limit_threads(job.threads)
        row = run_cell(job)
    except BaseException as exc:  # noqa: BLE001 (report anything, even SystemExit)
        row = failed_row(job, f"{type(exc).__name__}: {exc}")
    conn.send(row)
    conn.close()


def _mp_context() -> Any:
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        # imported once in the server; each cell's process is a cheap fork of it
        ctx.set_forkserver_preload(["usfad.bench.runner", "usfad.metrics", "sklearn.model_selection"])
        return ctx
    return mp.get_context("spawn")  # pragma: no cover


@dataclass
class _Running:
    job: CellJob
    process: Any
    reader: Any
    deadline: float


class LocalExecutor:
    """Run jobs in ``jobs`` worker processes on this machine (one process per cell)."""

    def __init__(self, jobs: int = 1, time_limit: float | None = None):
        if jobs < 1:
            raise ValueError(f"jobs must be >= 1, got {jobs}")
        self.jobs = jobs
        self.time_limit = time_limit

    def run(self, jobs: Sequence[CellJob]) -> Iterator[dict[str, Any]]:
        ctx = _mp_context()
        pending = deque(jobs)
        running: list[_Running] = []
        try:
            while pending or running:
                while pending and len(running) < self.jobs:
                    job = pending.popleft()
                    reader, writer = ctx.Pipe(duplex=False)
                    process = ctx.Process(target=_local_worker, args=(job, writer), daemon=True)
                    process.start()
                    writer.close()
                    limit = math.inf if self.time_limit is None else self.time_limit
                    running.append(_Running(job, process, reader, time.monotonic() + limit))
                next_deadline = min(r.deadline for r in running)
                timeout = None if math.isinf(next_deadline) else max(0.0, next_deadline - time.monotonic())
                wait_for([r.reader for r in running], timeout)
                still: list[_Running] = []
                for r in running:
                    row = self._collect(r)
                    if row is None:
                        still.append(r)
                    else:
                        yield row
                running = still
        finally:
            for r in running:  # interrupted: leave no orphan behind
                r.process.kill()
                r.process.join()
                r.reader.close()

    def _collect(self, r: _Running) -> dict[str, Any] | None:
        """The finished job's row, a failure row, or None while it is still running."""
        if r.reader.poll():
            try:
                row = r.reader.recv()
            except (EOFError, OSError):
                r.process.join()
                row = failed_row(r.job, f"the worker process died (exit code {r.process.exitcode}) without a result")
            r.process.join()
            r.reader.close()
            return row
        if time.monotonic() >= r.deadline:
            r.process.kill()
            r.process.join()
            r.reader.close()
            return failed_row(r.job, f"time limit of {self.time_limit:g} s exceeded; the cell was stopped")
        return None


def _ray_cell(job: CellJob, data: tuple[np.ndarray, np.ndarray]) -> dict[str, Any]:
    limit_threads(job.threads)
    return run_cell(job, data)


class RayExecutor:
    """Run jobs as Ray tasks (``address`` of a cluster, or a local instance).

    Reuses a Ray already initialised in this process; otherwise connects to ``address``
    (or starts a local instance) and shuts it down at the end. At most ``jobs`` tasks are
    in flight (default: the cluster's CPUs divided by ``threads``); the time limit counts
    from a task's submission and cancels it.
    """

    def __init__(
        self, address: str | None = None, jobs: int | None = None, time_limit: float | None = None, threads: int = 1
    ):
        self.address = address
        self.jobs = jobs
        self.time_limit = time_limit
        self.threads = threads

    def run(self, jobs: Sequence[CellJob]) -> Iterator[dict[str, Any]]:
        try:
            import ray
        except ImportError:
            raise MissingDependencyError(
                "the ray backend needs Ray, which is not installed; install it with `pip install ray` "
                "or use --backend local"
            ) from None
        started_here = not ray.is_initialized()
        if started_here:
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False)
        try:
            yield from self._run(ray, list(jobs))
        finally:
            if started_here:
                ray.shutdown()

    def _run(self, ray: Any, jobs: list[CellJob]) -> Iterator[dict[str, Any]]:
        remote = ray.remote(num_cpus=self.threads, max_retries=0)(_ray_cell)
        capacity = self.jobs or max(1, int(ray.cluster_resources().get("CPU", 1) // self.threads))
        uses = Counter(job.path for job in jobs)
        refs: dict[str, Any] = {}
        pending = deque(jobs)
        inflight: dict[Any, tuple[CellJob, float]] = {}
        limit = math.inf if self.time_limit is None else self.time_limit
        try:
            while pending or inflight:
                while pending and len(inflight) < capacity:
                    job = pending.popleft()
                    if job.path not in refs:
                        try:
                            refs[job.path] = ray.put(read_npz(job.path))
                        except Exception as exc:
                            uses[job.path] -= 1
                            yield failed_row(job, f"{type(exc).__name__}: {exc}")
                            continue
                    ref = remote.remote(job, refs[job.path])
                    inflight[ref] = (job, time.monotonic() + limit)
                    uses[job.path] -= 1
                    if uses[job.path] == 0:
                        refs.pop(job.path)  # the tasks keep it alive as long as they need it
                if not inflight:
                    continue
                next_deadline = min(deadline for _, deadline in inflight.values())
                timeout = None if math.isinf(next_deadline) else max(0.0, next_deadline - time.monotonic())
                done, _ = ray.wait(list(inflight), num_returns=1, timeout=timeout)
                for ref in done:
                    job, _ = inflight.pop(ref)
                    try:
                        yield ray.get(ref)
                    except Exception as exc:
                        yield failed_row(job, f"the Ray task failed: {type(exc).__name__}: {exc}")
                now = time.monotonic()
                for ref in [ref for ref, (_, deadline) in inflight.items() if deadline <= now]:
                    job, _ = inflight.pop(ref)
                    ray.cancel(ref, force=True)
                    yield failed_row(job, f"time limit of {self.time_limit:g} s exceeded; the task was cancelled")
        finally:
            for ref in inflight:
                ray.cancel(ref, force=True)


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
    seeds = [int(s) for s in dict.fromkeys(seeds)]
    if not seeds:
        raise ValueError("no seeds given")
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
        executor: LocalExecutor | RayExecutor = LocalExecutor(jobs=jobs or 1, time_limit=time_limit)
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
    "plan_jobs",
    "run_benchmark",
    "run_cell",
]
