"""Scoring many files on Ray Data: one output file per input file, resumable, stopped by a bad row.

:func:`score_files` scores a set of CSV, NPZ or Parquet files (a folder, a glob pattern or a
list; :func:`~usfad.data.files.find_data_files`) with a saved tabular detector and writes,
for each input file, one output file of ``file,row,score,label`` rows (CSV or Parquet):
``file`` the input's absolute path, ``row`` the row's index in that file (from 0, blank CSV lines not
counted), ``score`` and ``label`` as ``usfad score`` writes them (label 1 = score above the
model's threshold; no label column for a model without one).

How the work is spread: the list of files to score is a Ray Dataset
(``ray.data.from_items``, one file per block); ``map_batches`` runs it through a pool of
``workers`` actors (one CPU each, one torch or ONNX Runtime thread). Each actor loads the
model once, then scores one file per call, streaming it with
:func:`~usfad.data.files.iter_table` in chunks of ``chunk_size`` rows, so memory per worker
stays flat however large the file. Files are the unit of work, not Ray Data's row blocks:
that keeps every row's index and a bad row's line number exact, and gives one output per
input without a shuffle. Without ``address`` a local Ray is started with
``num_cpus=workers`` (and shut down at the end); with ``address`` the run connects to that
cluster; a Ray already initialised in the process is used as it is. Input, output and model
paths must be visible to every worker (one machine, or a shared file system), and usfad
must be installed on every node.

Engines: ``"onnx"`` scores with ONNX Runtime (the model is exported once, by the driver, and
the graph's bytes are sent to the workers; ``pip install 'usfad[onnx]'``), ``"torch"`` with
the detector's ``decision_function``, as ``usfad score`` does; ``"auto"`` (the default) is
ONNX when onnx and onnxruntime are installed, else PyTorch. ONNX Runtime scores match
PyTorch's within about 1e-6 relative (``benchmarks/results/export_check.md``), so a row
that close to the threshold may get the other label; ``"torch"`` gives ``usfad score``'s
numbers.

Outputs (``output_dir`` mirrors the inputs' folders below their common parent):

- ``NAME.scores.csv`` (or ``.parquet``) for input ``NAME`` (e.g. ``part-0.parquet.scores.csv``),
  written to a hidden temporary file and renamed when the file is scored to its end: an
  output under its final name is always complete;
- ``NAME.scores.csv.done.json`` beside it, written just before that rename: the input's size
  and modification time, the model file's SHA-256, the label column, the rows and the
  output's size. A rerun skips an input whose output and record exist and still match
  (same input file, same model, same label column, output of the recorded size); any
  other input is scored again from its first row and its output replaced. The record,
  not the output's mere presence, is the resume marker, so that a changed input, another
  model or a truncated output is never taken for finished work;
- ``NAME.scores.partial.csv`` (or ``.parquet``): only for an input with a bad row, see below.

Bad rows: a row that :func:`~usfad.data.files.iter_table` refuses (a value that is not a
number, a wrong number of fields, a missing, NaN or infinite value) stops that file. The
rows before it are scored and kept, in order, in ``NAME.scores.partial.csv`` (no partial
file when the bad row is the first row), and no complete output is written for that file.
The whole run then stops starting files: the files already being scored on other workers
are finished (complete outputs), the files not yet started are left unscored, and
:func:`score_files` raises a :class:`~usfad.errors.DataError` naming the file and its line
(CSV, line 1 = the header) or row index (Parquet, NPZ; from 0), how many rows before it were
written and where, and how many files are complete. Complete outputs, including those of
earlier runs, are kept; fix the file and run again to score the rest. A partial file is
removed when its input is later scored to the end.

Ray is optional (``pip install 'usfad[ray]'``): it is imported only when a run starts Ray,
never by ``import usfad``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import resource
import secrets
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .data.files import DEFAULT_CHUNK_SIZE, PathLike, feature_columns, find_data_files, iter_table
from .errors import DataError, MissingDependencyError, OutputPathError
from .outputs import atomic_path, check_output_dir, temporary_sibling
from .validation import check_array, check_feature_names

#: output formats of :func:`score_files`
OUTPUT_FORMATS = ("csv", "parquet")
#: scoring engines of :func:`score_files`
ENGINES = ("auto", "onnx", "torch")
#: the statuses of :class:`FileResult`
STATUSES = ("scored", "skipped", "bad_row", "not_started")

INSTALL_HINT = "pip install 'usfad[ray]'"


def require_ray() -> Any:
    """The ``ray`` module with Ray Data, or a :class:`~usfad.errors.MissingDependencyError` saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401  (Ray Data ships in the ray wheel but needs its extras)
    except ImportError as exc:
        raise MissingDependencyError(
            f"scoring with --backend ray needs Ray Data, which is not installed ({exc}); "
            f"install it with {INSTALL_HINT}, or use --backend local"
        ) from None
    return ray


# --- where outputs go ---------------------------------------------------------------------


@dataclass(frozen=True)
class FileTask:
    """One input file and the paths of its outputs."""

    input: Path
    output: Path
    partial: Path
    record: Path


def output_paths(inputs: Sequence[PathLike], output_dir: PathLike, output_format: str = "csv") -> list[FileTask]:
    """Where each input's outputs go: below ``output_dir``, mirroring the inputs' folders under their common parent.

    Every path of the tasks is absolute (made so from the working folder, symbolic links kept).
    """
    if output_format not in OUTPUT_FORMATS:
        raise ValueError(f"output_format must be one of {OUTPUT_FORMATS}, got {output_format!r}")
    output_dir = Path(os.path.abspath(output_dir))
    absolute = [Path(os.path.abspath(p)) for p in inputs]  # absolute (workers may run elsewhere), links kept
    root = Path(os.path.commonpath([str(p.parent) for p in absolute])) if absolute else Path(".")
    tasks = []
    for path in absolute:
        folder = output_dir / path.parent.relative_to(root)
        output = folder / f"{path.name}.scores.{output_format}"
        tasks.append(
            FileTask(
                input=path,
                output=output,
                partial=folder / f"{path.name}.scores.partial.{output_format}",
                record=folder / f"{output.name}.done.json",
            )
        )
    return tasks


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _input_identity(path: Path) -> dict[str, Any]:
    stat = path.stat()
    return {"input_size": stat.st_size, "input_mtime_ns": stat.st_mtime_ns}


def completed_record(task: FileTask, model_sha256: str, label_column: str | None) -> dict[str, Any] | None:
    """The record of ``task``'s output when it is complete for this input, model and label column, else ``None``."""
    try:
        record = json.loads(task.record.read_text(encoding="utf-8"))
        matches = (
            record.get("model_sha256") == model_sha256
            and record.get("label_column") == label_column
            and all(record.get(k) == v for k, v in _input_identity(task.input).items())
            and task.output.stat().st_size == record.get("output_size")
        )
        return record if matches and isinstance(record["rows"], int) else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


# --- writing one output ---------------------------------------------------------------------


def _csv_field(text: str) -> str:
    """``text`` as one CSV field (quoted when it holds a comma, a quote or a line break)."""
    if any(c in text for c in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text


class _CsvWriter:
    def __init__(self, path: Path, name: str, labelled: bool):
        self._f = open(path, "w", encoding="utf-8", newline="")  # noqa: SIM115  (closed by close())
        self._f.write("file,row,score,label\n" if labelled else "file,row,score\n")
        self._name = _csv_field(name)

    def write(self, start: int, scores: np.ndarray, labels: np.ndarray | None) -> None:
        rows = range(start, start + len(scores))
        name = self._name
        if labels is None:
            self._f.writelines(f"{name},{r},{s:.17g}\n" for r, s in zip(rows, scores.tolist()))
        else:  # %.17g keeps every bit of a float64, as usfad score writes it
            self._f.writelines(
                f"{name},{r},{s:.17g},{lab}\n" for r, s, lab in zip(rows, scores.tolist(), labels.tolist())
            )

    def close(self) -> None:
        self._f.close()


class _ParquetWriter:
    def __init__(self, path: Path, name: str, labelled: bool):
        import pyarrow as pa
        import pyarrow.parquet as pq

        self._pa = pa
        fields = [("file", pa.string()), ("row", pa.int64()), ("score", pa.float64())]
        if labelled:
            fields.append(("label", pa.int64()))
        self._schema = pa.schema(fields)
        self._writer = pq.ParquetWriter(path, self._schema)
        self._name = name

    def write(self, start: int, scores: np.ndarray, labels: np.ndarray | None) -> None:
        pa = self._pa
        columns = [
            pa.repeat(pa.scalar(self._name, pa.string()), len(scores)),
            pa.array(np.arange(start, start + len(scores), dtype=np.int64)),
            pa.array(scores, pa.float64()),
        ]
        if labels is not None:
            columns.append(pa.array(labels.astype(np.int64)))
        self._writer.write_table(pa.Table.from_arrays(columns, schema=self._schema))

    def close(self) -> None:
        self._writer.close()


WRITERS = {"csv": _CsvWriter, "parquet": _ParquetWriter}


def stopped_message(exc: DataError, rows: int, partial: Path) -> str:
    """The bad row's problem, then what happened to the rows before it (as ``usfad score`` says it)."""
    if rows == 0:
        return f"{exc}; no row of this file was scored (no partial output)"
    return f"{exc}; the {rows} row(s) before it were written to {partial} (stopped there)"


def score_file(
    task: FileTask,
    scorer: Callable[[np.ndarray], np.ndarray],
    *,
    n_features: int,
    threshold: float | None,
    output_format: str = "csv",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    label_column: str | None = None,
    record: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Score one file into its outputs (what each worker runs; see the module docstring).

    ``scorer`` maps a float64 ``(n, n_features)`` chunk to ``n`` float64 scores. Returns a
    dict with ``status`` (``"scored"`` or ``"bad_row"``), ``rows`` (written: all, or those
    before the bad row), ``flagged``, ``message`` (the bad row's, else empty) and
    ``seconds``. Any other failure leaves no file behind and propagates.
    """
    start_time = time.perf_counter()
    task.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(task.output)
    writer = WRITERS[output_format](tmp, str(task.input), threshold is not None)
    rows = flagged = 0
    status, message = "scored", ""
    try:
        try:
            identity = _input_identity(task.input)
            chunks = iter_table(task.input, chunk_size=chunk_size, label_column=label_column, finite=True)
            for chunk in chunks:
                X = check_array(
                    chunk, n_features=n_features, what=f"{task.input} (rows {rows}-{rows + len(chunk) - 1})"
                )
                scores = np.asarray(scorer(X), dtype=np.float64)
                labels = None if threshold is None else (scores > threshold).astype(np.int64)
                writer.write(rows, scores, labels)
                rows += len(scores)
                flagged += 0 if labels is None else int(labels.sum())
        except DataError as exc:
            status, message = "bad_row", stopped_message(exc, rows, task.partial)
        writer.close()
        if status == "bad_row":
            # an output of this input from an earlier run (another model or an older version of the
            # file: it would have been skipped otherwise) is stale now: it goes, with its record
            task.record.unlink(missing_ok=True)
            task.output.unlink(missing_ok=True)
            if rows:
                os.replace(tmp, task.partial)
            else:
                tmp.unlink(missing_ok=True)
                task.partial.unlink(missing_ok=True)
        else:
            info = {
                "input": str(task.input),
                **identity,
                **(record or {}),
                "label_column": label_column,
                "rows": rows,
                "flagged": flagged,
                "output_size": tmp.stat().st_size,
            }
            with atomic_path(task.record) as record_tmp:
                record_tmp.write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
            os.replace(tmp, task.output)  # the output's final name appears last: complete by construction
            task.partial.unlink(missing_ok=True)
    except BaseException:
        with contextlib.suppress(Exception):
            writer.close()
        tmp.unlink(missing_ok=True)
        raise
    return {
        "status": status,
        "rows": rows,
        "flagged": flagged,
        "message": message,
        "seconds": time.perf_counter() - start_time,
    }


# --- the workers ----------------------------------------------------------------------------


def _onnx_bytes(detector: Any) -> bytes:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        detector.export_onnx(path)
        return path.read_bytes()


def _onnx_available() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))


class FileScorer:
    """A Ray Data worker (a callable class for ``map_batches``): loads the model once, scores a file per call.

    Each row of a batch holds the paths of a :class:`FileTask`; each result row says what
    happened to it (``status``, ``rows``, ``flagged``, ``message``, ``seconds``) and on which
    worker (``pid``, ``peak_rss_mib``: the worker process's peak resident memory so far,
    ``started``: when the file was started, ``time.time()``). A file that starts after
    ``stop_file`` exists is not scored (``not_started``).
    """

    def __init__(
        self,
        model: str,
        onnx_graph: bytes | None,
        output_format: str,
        chunk_size: int,
        label_column: str | None,
        record: dict[str, Any],
        stop_file: str,
    ):
        start = time.perf_counter()
        import torch

        torch.set_num_threads(1)  # one CPU per worker
        from .detectors import load

        detector = load(model)
        self.n_features = int(detector.n_features_in_)
        threshold = getattr(detector, "threshold_", None)
        self.threshold = None if threshold is None else float(threshold)
        if onnx_graph is not None:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            session = ort.InferenceSession(onnx_graph, sess_options=options, providers=["CPUExecutionProvider"])
            self.scorer: Callable[[np.ndarray], np.ndarray] = lambda X: session.run(None, {"X": X})[0]
        else:
            self.scorer = detector.decision_function
        self.output_format = output_format
        self.chunk_size = chunk_size
        self.label_column = label_column
        self.record = record
        self.stop_file = Path(stop_file)
        self.load_seconds = time.perf_counter() - start

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out: dict[str, list[Any]] = {k: [] for k in RESULT_COLUMNS}
        for i in range(len(batch["input"])):
            task = FileTask(*(Path(str(batch[k][i])) for k in ("input", "output", "partial", "record")))
            started = time.time()
            if self.stop_file.exists():
                result = {"status": "not_started", "rows": 0, "flagged": 0, "message": "", "seconds": 0.0}
            else:
                result = score_file(
                    task,
                    self.scorer,
                    n_features=self.n_features,
                    threshold=self.threshold,
                    output_format=self.output_format,
                    chunk_size=self.chunk_size,
                    label_column=self.label_column,
                    record=self.record,
                )
            result.update(
                input=str(task.input),
                pid=os.getpid(),
                peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # KiB on Linux
                started=started,
                load_seconds=self.load_seconds,
            )
            for k in RESULT_COLUMNS:
                out[k].append(result[k])
        return {k: np.asarray(v) for k, v in out.items()}


RESULT_COLUMNS = (
    "input",
    "status",
    "rows",
    "flagged",
    "message",
    "seconds",
    "pid",
    "peak_rss_mib",
    "started",
    "load_seconds",
)


# --- the run --------------------------------------------------------------------------------


@dataclass
class FileResult:
    """What happened to one input file (``status`` one of :data:`STATUSES`)."""

    input: str
    output: str
    status: str
    rows: int = 0
    flagged: int = 0
    message: str = ""
    seconds: float = 0.0
    pid: int | None = None


@dataclass
class ScoreRun:
    """What :func:`score_files` did: every file's outcome, and where the time went."""

    files: list[FileResult]
    engine: str
    workers: int
    output_dir: str
    #: seconds ``ray.init`` took (0 when Ray was already running or nothing was left to score)
    ray_init_seconds: float = 0.0
    #: seconds from the start of the Ray Data run to the first file starting on a worker
    #: (the actors' start: a Python process each, imports, the model loaded)
    first_file_seconds: float = 0.0
    #: seconds the ONNX export took on the driver
    export_seconds: float = 0.0
    #: seconds of the whole call
    wall_seconds: float = 0.0
    #: seconds each worker spent loading the model (pid -> seconds)
    load_seconds: dict[int, float] = field(default_factory=dict)
    #: peak resident memory of each worker process, MiB (pid -> MiB)
    peak_rss_mib: dict[int, float] = field(default_factory=dict)

    def count(self, status: str) -> int:
        return sum(f.status == status for f in self.files)

    @property
    def rows(self) -> int:
        """Rows in complete outputs (scored now or skipped as complete)."""
        return sum(f.rows for f in self.files if f.status in ("scored", "skipped"))

    @property
    def rows_scored(self) -> int:
        """Rows scored by this run (complete files and the rows before a bad one)."""
        return sum(f.rows for f in self.files if f.status in ("scored", "bad_row"))

    @property
    def flagged(self) -> int:
        return sum(f.flagged for f in self.files if f.status in ("scored", "skipped"))

    def summary(self) -> str:
        done = self.count("scored") + self.count("skipped")
        skipped = f" ({self.count('skipped')} already complete, skipped)" if self.count("skipped") else ""
        share = f" ({self.flagged / self.rows:.1%})" if self.rows else ""
        return (
            f"{done} of {len(self.files)} file(s) complete{skipped}: {self.rows} rows, {self.flagged} flagged{share}; "
            f"outputs in {self.output_dir} ({self.engine}, {self.workers} worker(s), {self.wall_seconds:.1f} s)"
        )


def prepare(
    model: PathLike,
    sources: PathLike | Sequence[PathLike],
    output_dir: PathLike,
    *,
    output_format: str = "csv",
    label_column: str | None = None,
) -> tuple[list[FileTask], Any]:
    """The files to score and the loaded detector, every check that needs no Ray done.

    Refuses (before anything is scored): no data files (:class:`~usfad.errors.DataError`), an
    output folder that is the model or an input, or that holds an input file at any depth
    (:class:`~usfad.errors.OutputPathError`; outputs there could be read back as inputs),
    an output that is itself an input, and an input whose feature columns are not the
    model's (same names in the same order; read from each header).
    """
    from .detectors import load

    if output_format not in OUTPUT_FORMATS:
        raise ValueError(f"output_format must be one of {OUTPUT_FORMATS}, got {output_format!r}")
    inputs = find_data_files(sources)
    out = Path(output_dir)
    out_resolved = out.resolve()
    for path in inputs:
        if path.resolve().is_relative_to(out_resolved):
            raise OutputPathError(
                f"the output folder {out} holds the input file {path}: outputs written there could be read as "
                f"inputs by a later run; choose a folder outside the inputs"
            )
    check_output_dir(out, inputs=[model, *inputs])
    tasks = output_paths(inputs, out, output_format)
    taken = {p.resolve() for p in inputs}
    for task in tasks:
        if task.output.resolve() in taken or task.partial.resolve() in taken:
            raise OutputPathError(f"the output {task.output} would replace an input file; choose another folder")
    detector = load(model)
    expected = getattr(detector, "feature_names_in_", None)
    for path in inputs:
        check_feature_names(feature_columns(path, label_column=label_column), expected, what=str(path))
    return tasks, detector


def score_files(
    model: PathLike,
    sources: PathLike | Sequence[PathLike],
    output_dir: PathLike,
    *,
    output_format: str = "csv",
    workers: int | None = None,
    address: str | None = None,
    engine: str = "auto",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    label_column: str | None = None,
    on_result: Callable[[FileResult], None] | None = None,
) -> ScoreRun:
    """Score every row of ``sources`` with the detector in ``model`` on Ray Data; one output per input.

    See the module docstring for the outputs, resuming and bad rows. ``workers``: the
    actor pool's size (and, without ``address``, the local Ray's ``num_cpus``); default:
    this machine's CPUs, or the cluster's. ``engine``: one of :data:`ENGINES`.
    ``on_result`` is called with each file's :class:`FileResult` as it arrives. Returns a
    :class:`ScoreRun`; a bad row raises :class:`~usfad.errors.DataError` after the files in
    flight are finished.
    """
    start = time.perf_counter()
    if workers is not None and int(workers) < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    ray = require_ray()
    tasks, detector = prepare(model, sources, output_dir, output_format=output_format, label_column=label_column)
    job = _Job(
        model=str(Path(model).resolve()),
        model_sha256=_file_sha256(Path(model)),
        output_format=output_format,
        chunk_size=int(chunk_size),
        label_column=label_column,
        on_result=on_result,
    )
    results: dict[Path, FileResult] = {}
    todo = []
    for task in tasks:
        record = completed_record(task, job.model_sha256, label_column)
        if record is None:
            todo.append(task)
        else:
            results[task.input] = FileResult(
                str(task.input), str(task.output), "skipped", rows=record["rows"], flagged=int(record.get("flagged", 0))
            )
            job.report(results[task.input])
    if engine == "auto":
        engine = "onnx" if _onnx_available() else "torch"
    run = ScoreRun([], engine, int(workers or 0), str(output_dir))
    if todo:
        if engine == "onnx":
            export_start = time.perf_counter()
            job.onnx_graph = _onnx_bytes(detector)
            run.export_seconds = time.perf_counter() - export_start
        _run_on_ray(ray, run, job, todo, results, address)
    run.files = [results[t.input] for t in tasks]
    run.wall_seconds = time.perf_counter() - start
    bad = [f for f in run.files if f.status == "bad_row"]
    if bad:
        complete = run.count("scored") + run.count("skipped")
        earlier = f", {run.count('skipped')} of them from an earlier run" if run.count("skipped") else ""
        others = "; ".join(f.message for f in bad[1:])
        raise DataError(
            f"{bad[0].message}. {complete} of {len(run.files)} file(s) are complete and kept in {output_dir}"
            f"{earlier}; {run.count('not_started')} not started"
            + (f"; other bad rows: {others}" if others else "")
            + "; fix the data and run again: complete outputs are skipped"
        )
    return run


@dataclass
class _Job:
    """The settings every worker gets, and the driver's callback."""

    model: str
    model_sha256: str
    output_format: str
    chunk_size: int
    label_column: str | None
    on_result: Callable[[FileResult], None] | None = None
    onnx_graph: bytes | None = None

    def report(self, result: FileResult) -> None:
        if self.on_result is not None:
            self.on_result(result)


def _run_on_ray(
    ray: Any, run: ScoreRun, job: _Job, todo: list[FileTask], results: dict[Path, FileResult], address: str | None
) -> None:
    started_here = not ray.is_initialized()
    if started_here:
        init_start = time.perf_counter()
        options: dict[str, Any] = {
            "include_dashboard": False,
            "log_to_driver": False,
            "logging_level": logging.WARNING,
        }
        if address is None:
            options["num_cpus"] = run.workers or os.cpu_count() or 1
        ray.init(address=address, **options)
        run.ray_init_seconds = time.perf_counter() - init_start
    stop_file = Path(run.output_dir) / f".usfad-stop.{os.getpid()}.{secrets.token_hex(4)}"
    try:
        if not run.workers:
            run.workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        with warnings.catch_warnings():  # Ray Data sets its own deprecated options when it makes its context
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"ray\.")
            context = ray.data.DataContext.get_current()
            saved = (context.enable_progress_bars, context.enable_operator_progress_bars)
            context.enable_progress_bars = context.enable_operator_progress_bars = False
            data_logger = logging.getLogger("ray.data")
            saved_level = data_logger.level
            data_logger.setLevel(logging.ERROR)  # no plan, progress and statistics lines: the caller reports
            try:
                _stream(ray, run, job, todo, results, stop_file)
            finally:
                context.enable_progress_bars, context.enable_operator_progress_bars = saved
                data_logger.setLevel(saved_level)
    finally:
        stop_file.unlink(missing_ok=True)
        if started_here:
            ray.shutdown()


def _stream(
    ray: Any, run: ScoreRun, job: _Job, todo: list[FileTask], results: dict[Path, FileResult], stop_file: Path
) -> None:
    from . import __version__

    items = [
        {"input": str(t.input), "output": str(t.output), "partial": str(t.partial), "record": str(t.record)}
        for t in todo
    ]
    by_input = {str(t.input): t for t in todo}
    dataset = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
        FileScorer,
        fn_constructor_kwargs={
            "model": job.model,
            "onnx_graph": job.onnx_graph,
            "output_format": job.output_format,
            "chunk_size": job.chunk_size,
            "label_column": job.label_column,
            "record": {"model_sha256": job.model_sha256, "engine": run.engine, "usfad": __version__},
            "stop_file": str(stop_file.resolve()),
        },
        batch_size=1,
        batch_format="numpy",
        # a fixed pool; each actor holds one file at a time, so a worker that is free takes the next file
        compute=ray.data.ActorPoolStrategy(size=min(run.workers, len(items)), max_tasks_in_flight_per_actor=1),
        num_cpus=1,
    )
    stream_start = time.time()
    first_start = None
    for row in _rows(dataset):
        task = by_input[str(row["input"])]
        pid = int(row["pid"])
        result = FileResult(
            str(task.input),
            str(task.output),
            str(row["status"]),
            rows=int(row["rows"]),
            flagged=int(row["flagged"]),
            message=str(row["message"]),
            seconds=float(row["seconds"]),
            pid=pid,
        )
        results[task.input] = result
        run.peak_rss_mib[pid] = max(run.peak_rss_mib.get(pid, 0.0), float(row["peak_rss_mib"]))
        run.load_seconds[pid] = float(row["load_seconds"])
        if result.status != "not_started":
            first_start = min(first_start or np.inf, float(row["started"]))
        if result.status == "bad_row":
            stop_file.touch()  # the workers start no more files
        job.report(result)
    if first_start is not None:
        run.first_file_seconds = max(0.0, first_start - stream_start)
    missing = [t for t in todo if t.input not in results]
    if missing:  # Ray Data lost a row: never report a file as done that was not
        raise RuntimeError(f"Ray Data returned no result for {len(missing)} file(s), e.g. {missing[0].input}")


def _rows(dataset: Any) -> Iterable[dict[str, Any]]:
    for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
        for i in range(len(batch["input"])):
            yield {k: batch[k][i] for k in batch}
