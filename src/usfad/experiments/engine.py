"""The experiment engine: one job gives one result row, run here, in a process pool or on Ray.

A job (:class:`Job`) is a small description of one unit of work: a tabular cell
(:class:`usfad.bench.runner.CellJob`), an image run (:class:`usfad.experiments.image.ImageRun`).
:func:`run_job` runs one and never raises for the job's own failure: every job ends with a
row, and the row's ``status`` is one of :data:`STATUSES`:

- ``ok``: the job ran to the end and its metrics are in the row;
- ``failed``: it did not; ``error`` says why (the exception, its message and where it was
  raised), and ``diverged`` is true when the training diverged: a non-finite loss
  (:class:`~usfad.errors.TrainingDivergedError`) or non-finite scores
  (:class:`~usfad.errors.NonFiniteScoresError`), see :data:`DIVERGED`.

Every row also gets ``wall_seconds`` (the whole job), ``finished_at`` (UTC) and ``host``.
How a finished run's training went (exploded, blew up, jumped) is read from the losses a job
keeps in its row, by :func:`usfad.experiments.health.training_health`.

Executors differ only in where jobs run, and yield rows as jobs end:

- :class:`SerialExecutor`: one after the other in this process;
- :class:`LocalExecutor`: ``jobs`` worker processes on this machine, one fresh process per
  job (forked from a preloaded server, so starting one is cheap), torch and BLAS limited to
  the job's ``threads`` (:func:`limit_threads`); the time limit kills the process. A script
  that uses it must do so under ``if __name__ == "__main__":``;
- :class:`RayExecutor`: Ray tasks on a local instance or a cluster; the driver loads each
  input once (``job.load()``, keyed by ``job.source``) and ships it through Ray's object
  store, so the workers need usfad but not the data files.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing as mp
import os
import signal
import socket
import time
import traceback
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.connection import wait as wait_for
from typing import Any, NamedTuple, Protocol

import numpy as np

from ..errors import MissingDependencyError, NonFiniteScoresError, TrainingDivergedError

#: a row's ``status``: the job produced its metrics, or it did not (see the module docstring)
STATUSES = ("ok", "failed")
#: the failures that mean "the training diverged" (a row's ``diverged``)
DIVERGED = (TrainingDivergedError, NonFiniteScoresError)
#: the longest error text kept in a row (its end: the message and where it was raised)
MAX_ERROR_CHARS = 4000


class Job(Protocol):
    """One unit of work. Jobs sent to another process must be picklable; jobs run on Ray
    also have ``source`` (what ``load()`` reads, the same string for jobs that share it)."""

    threads: int

    @property
    def key(self) -> tuple[Any, ...]:
        """What identifies the job's row in a result store."""
        ...

    def base_row(self) -> dict[str, Any]:
        """The row before the job runs: its identifying columns, metrics ``None``."""
        ...

    def load(self) -> Any:
        """The input the job reads when :meth:`run` gets none."""
        ...

    def run(self, row: dict[str, Any], data: Any = None) -> Any:
        """Do the work, filling ``row``; return what a caller in this process may want besides
        the row (scores, maps), or ``None``. Raise on failure."""
        ...


class JobResult(NamedTuple):
    row: dict[str, Any]
    #: what :meth:`Job.run` returned (``None`` for a failed job)
    output: Any = None


def now() -> str:
    """The current UTC time, ISO 8601, to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def describe_error(exc: BaseException) -> str:
    """``Type: message (at file:line)`` of an exception, cut to its last :data:`MAX_ERROR_CHARS`."""
    lines = traceback.format_exception_only(type(exc), exc)
    where = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    origin = f" (at {where[0].filename}:{where[0].lineno})" if where else ""
    return ("".join(lines).strip() + origin)[-MAX_ERROR_CHARS:]


def _finish(row: dict[str, Any], start: float | None = None) -> dict[str, Any]:
    if start is not None:
        row["wall_seconds"] = time.perf_counter() - start
    row.update(finished_at=now(), host=socket.gethostname())
    return row


def failed_row(job: Job, error: str, **extra: Any) -> dict[str, Any]:
    """The row of a job that did not run to the end for a reason outside it (a time limit,
    a dead worker), with ``error``."""
    row = job.base_row()
    row.update(extra)
    row.update(status="failed", error=error[-MAX_ERROR_CHARS:], diverged=False)
    return _finish(row)


def run_job(job: Job, data: Any = None) -> JobResult:
    """Run one job in this process: its row (``ok`` or ``failed``, never an exception for the
    job's own failure) and its output."""
    row = job.base_row()
    row.update(status="failed", error=None, diverged=False)
    start = time.perf_counter()
    output = None
    try:
        output = job.run(row, data)
        row.update(status="ok", error=None)
    except Exception as exc:  # a failed job is a result; the grid goes on
        row.update(status="failed", error=describe_error(exc), diverged=isinstance(exc, DIVERGED))
    return JobResult(_finish(row, start), output)


def check_finite_scores(scores: Any) -> np.ndarray:
    """``scores`` as float64, or :class:`~usfad.errors.NonFiniteScoresError` naming how many
    are NaN or infinite."""
    scores = np.asarray(scores, dtype=np.float64)
    if not np.isfinite(scores).all():
        bad = int((~np.isfinite(scores)).sum())
        raise NonFiniteScoresError(f"{bad} of {scores.size} test scores are NaN or infinite")
    return scores


def finite_or_none(value: Any) -> float | None:
    """``float(value)``, or ``None`` for ``None``, NaN or infinity (JSON has no NaN)."""
    return float(value) if value is not None and math.isfinite(float(value)) else None


def available_cores() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover (macOS, Windows)
        return max(1, os.cpu_count() or 1)


def idle_cores() -> int:
    """The cores that other work leaves idle: :func:`available_cores` less the 1-minute load
    average, rounded, and at least one (all of them where there is no load average)."""
    cores = available_cores()
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # pragma: no cover (Windows)
        return cores
    return max(1, min(cores, cores - round(load)))


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


class SerialExecutor:
    """Run jobs one after the other in this process, each input loaded once (by ``source``)
    while the jobs that read it run; threads are left as the caller set them."""

    def run(self, jobs: Iterable[Job]) -> Iterator[dict[str, Any]]:
        loaded: tuple[Any, Any] = (None, None)
        for job in jobs:
            source = getattr(job, "source", None)
            if source is None:
                yield run_job(job).row
                continue
            if loaded[0] != source:
                loaded = (None, None)  # let the previous input go before reading the next
                try:
                    loaded = (source, job.load())
                except Exception as exc:
                    yield failed_row(job, describe_error(exc))
                    continue
            yield run_job(job, loaded[1]).row


def _local_worker(job: Job, conn: Any) -> None:
    # Ctrl-C reaches the whole process group; the parent decides what to do with workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        limit_threads(job.threads)
        row = run_job(job).row
    except BaseException as exc:  # noqa: BLE001 (report anything, even SystemExit)
        row = failed_row(job, f"{type(exc).__name__}: {exc}")
    conn.send(row)
    conn.close()


def _mp_context(preload: Sequence[str]) -> Any:
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        # imported once in the server; each job's process is a cheap fork of it
        ctx.set_forkserver_preload([__name__, *preload])
        return ctx
    return mp.get_context("spawn")  # pragma: no cover


@dataclass
class _Running:
    job: Job
    process: Any
    reader: Any
    deadline: float


class LocalExecutor:
    """Run jobs in ``jobs`` worker processes on this machine (one process per job).

    ``preload``: modules the process server imports once, so that each job's process starts
    with them (the modules its jobs need).
    """

    def __init__(self, jobs: int = 1, time_limit: float | None = None, preload: Sequence[str] = ()):
        if jobs < 1:
            raise ValueError(f"jobs must be >= 1, got {jobs}")
        self.jobs = jobs
        self.time_limit = time_limit
        self.preload = tuple(preload)

    def run(self, jobs: Sequence[Job]) -> Iterator[dict[str, Any]]:
        ctx = _mp_context(self.preload)
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


def _ray_job(job: Job, data: Any) -> dict[str, Any]:
    limit_threads(job.threads)
    return run_job(job, data).row


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

    def run(self, jobs: Sequence[Job]) -> Iterator[dict[str, Any]]:
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

    def _run(self, ray: Any, jobs: list[Any]) -> Iterator[dict[str, Any]]:
        remote = ray.remote(num_cpus=self.threads, max_retries=0)(_ray_job)
        capacity = self.jobs or max(1, int(ray.cluster_resources().get("CPU", 1) // self.threads))
        uses = Counter(job.source for job in jobs)
        refs: dict[str, Any] = {}
        pending = deque(jobs)
        inflight: dict[Any, tuple[Any, float]] = {}
        limit = math.inf if self.time_limit is None else self.time_limit
        try:
            while pending or inflight:
                while pending and len(inflight) < capacity:
                    job = pending.popleft()
                    if job.source not in refs:
                        try:
                            refs[job.source] = ray.put(job.load())
                        except Exception as exc:
                            uses[job.source] -= 1
                            yield failed_row(job, f"{type(exc).__name__}: {exc}")
                            continue
                    ref = remote.remote(job, refs[job.source])
                    inflight[ref] = (job, time.monotonic() + limit)
                    uses[job.source] -= 1
                    if uses[job.source] == 0:
                        refs.pop(job.source)  # the tasks keep it alive as long as they need it
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
                now_ = time.monotonic()
                for ref in [ref for ref, (_, deadline) in inflight.items() if deadline <= now_]:
                    job, _ = inflight.pop(ref)
                    ray.cancel(ref, force=True)
                    yield failed_row(job, f"time limit of {self.time_limit:g} s exceeded; the task was cancelled")
        finally:
            for ref in inflight:
                ray.cancel(ref, force=True)


__all__ = [
    "DIVERGED",
    "STATUSES",
    "Job",
    "JobResult",
    "LocalExecutor",
    "RayExecutor",
    "SerialExecutor",
    "available_cores",
    "check_finite_scores",
    "describe_error",
    "failed_row",
    "finite_or_none",
    "limit_threads",
    "run_job",
]
