"""The result store: one JSON line per result row (a benchmark cell, an image run), appended as
soon as the job ends.

Each row is written with a single ``write`` of one line, then flushed and ``fsync``-ed, so
a crash or Ctrl-C loses at most the row being written. Reading tolerates a truncated last
line (it is dropped, and cut from the file before the next append, so that cell simply
runs again). A cell is identified by :func:`row_key`; the store never holds two rows with
the same key, and a rerun skips the cells already in it. While a run appends, it holds an
exclusive lock on the file, so two runs cannot write to one store.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

try:  # POSIX only; elsewhere the store works without the lock
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

#: the columns of a row, in order (rows may carry more: ``params``, ``host``, ...)
FIELDS = (
    "dataset",
    "group",
    "model",
    "preset",
    "seed",
    "roc_auc",
    "pr_auc",
    "best_f1",
    "fit_seconds",
    "score_seconds",
    "n_train",
    "n_test",
    "d",
    "status",
    "error",
)
KEY_FIELDS = ("group", "dataset", "model", "preset", "seed")

Key = tuple[str, str, str, str, int]


class StoreLockedError(RuntimeError):
    """Another run is appending to the same result file."""


def row_key(row: dict[str, Any]) -> Key:
    """``(group, dataset, model, preset, seed)``: what identifies a cell."""
    return (str(row.get("group") or ""), str(row["dataset"]), str(row["model"]), str(row["preset"]), int(row["seed"]))


def _parse_lines(data: bytes, path: Path) -> tuple[list[dict[str, Any]], int]:
    """Rows of a JSONL byte string and the length of its well-formed prefix."""
    rows: list[dict[str, Any]] = []
    good_end = 0
    start = 0
    while start < len(data):
        end = data.find(b"\n", start)
        complete = end != -1
        line = data[start : end if complete else len(data)]
        try:
            row = json.loads(line) if line.strip() else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            row = None
            if complete:
                warnings.warn(f"{path}: skipping an unreadable line at byte {start}", RuntimeWarning, stacklevel=3)
            # an incomplete last line is the trace of an interrupted write: dropped silently
        if isinstance(row, dict):
            rows.append(row)
            good_end = end + 1 if complete else len(data)
        elif complete:
            good_end = end + 1
        if not complete:
            break
        start = end + 1
    return rows, good_end


def read_results(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every row of a result file (the last row per cell if a file was edited by hand)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no result file at {path}")
    rows, _ = _parse_lines(path.read_bytes(), path)
    latest: dict[Key, dict[str, Any]] = {}
    for row in rows:
        try:
            latest[row_key(row)] = row
        except (KeyError, TypeError, ValueError):
            warnings.warn(
                f"{path}: skipping a row without dataset/model/preset/seed: {row}", RuntimeWarning, stacklevel=2
            )
    return list(latest.values())


class ResultStore:
    """Append-only JSONL store of result rows (see the module docstring)."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)

    def rows(self) -> list[dict[str, Any]]:
        return read_results(self.path) if self.path.is_file() else []

    def keys(self, status: str | None = None) -> set[Key]:
        """Keys of the stored cells (all, or those with the given status)."""
        return {row_key(r) for r in self.rows() if status is None or r.get("status") == status}

    @contextmanager
    def writer(self) -> Iterator[_Writer]:
        """Open for appending: lock, repair a truncated tail, yield a writer."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        handle = open(self.path, "a+b")  # noqa: SIM115 (closed in finally)
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise StoreLockedError(
                        f"another run is writing to {self.path}; wait for it or use --results"
                    ) from None
            if created:
                _fsync_dir(self.path.parent)
            self._repair_tail(handle)
            yield _Writer(handle)
        finally:
            handle.close()  # also releases the lock

    def _repair_tail(self, handle: IO[bytes]) -> None:
        handle.seek(0)
        data = handle.read()
        if not data or data.endswith(b"\n"):
            return
        _, good_end = _parse_lines(data, self.path)
        if good_end == len(data):  # a complete row without its newline
            handle.write(b"\n")
        else:  # an interrupted write: cut it so the next row starts on a clean line
            handle.truncate(good_end)
        handle.flush()
        os.fsync(handle.fileno())

    def discard(self, keys: Iterable[Key]) -> int:
        """Remove the rows with these keys (atomically rewrites the file); returns how many."""
        drop = set(keys)
        if not drop or not self.path.is_file():
            return 0
        with self.writer():  # holds the lock while rewriting
            rows = self.rows()
            kept = [r for r in rows if row_key(r) not in drop]
            tmp = self.path.with_name(self.path.name + ".tmp")
            with open(tmp, "wb") as out:
                out.write(b"".join(_encode(r) for r in kept))
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
            _fsync_dir(self.path.parent)
        return len(rows) - len(kept)


class _Writer:
    def __init__(self, handle: IO[bytes]):
        self._handle = handle

    def append(self, row: dict[str, Any]) -> None:
        """Write one row durably: one write of one line, flush, fsync."""
        row_key(row)  # a row the store could not key would be re-run forever
        self._handle.seek(0, os.SEEK_END)
        self._handle.write(_encode(row))
        self._handle.flush()
        os.fsync(self._handle.fileno())


def _encode(row: dict[str, Any]) -> bytes:
    ordered = {k: row.get(k) for k in FIELDS}
    ordered.update({k: v for k, v in row.items() if k not in ordered})
    return (json.dumps(ordered, allow_nan=False, default=_jsonable) + "\n").encode()


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, tuple | set):
        return list(value)
    return str(value)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover (e.g. Windows)
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)
