"""Uniform random samples of rows from files larger than memory: reservoir sampling.

- :class:`Reservoir` keeps a uniform random sample of at most ``size`` rows of a stream that
  arrives in chunks: Vitter's Algorithm R, vectorised per chunk (one random number per row
  past the first ``size``, no Python loop over rows). After ``N`` rows every row is in the
  sample with probability ``size / N``, and every set of ``size`` rows is equally likely.
- :func:`sample_files` draws such a sample in one pass over a list of CSV, NPZ or Parquet
  files (streamed with :func:`~usfad.data.files.iter_table`, so memory holds one chunk and
  the sample), and says where it came from (:class:`FileSample`).

The draw depends only on ``random_state`` and the order of the rows, not on how the stream
is cut into chunks: row ``t`` (from 0, counted over all files) past the first ``size`` draws
the ``(t - size)``-th uniform number of the generator, whatever the chunk size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from .files import DEFAULT_CHUNK_SIZE, PathLike, feature_columns, iter_table

__all__ = ["FileSample", "Reservoir", "sample_files"]


class Reservoir:
    """A uniform random sample of at most ``size`` rows of a stream fed by :meth:`add`.

    Algorithm R: the first ``size`` rows fill the sample; row ``t > size`` (from 0) draws
    ``j`` uniformly in ``0..t`` and replaces slot ``j`` when ``j < size``. Within a chunk
    the replacements are applied as that loop would apply them, in row order (when two
    rows of one chunk draw the same slot, the later one stays). ``random_state`` seeds a
    :func:`numpy.random.default_rng` of its own (the global generators are left alone).
    """

    def __init__(self, size: int, random_state: int | None = 0):
        if int(size) < 1:
            raise ValueError(f"the sample size must be >= 1, got {size}")
        self.size = int(size)
        self.random_state = random_state
        self._rng = np.random.default_rng(random_state)
        self._rows: np.ndarray | None = None
        self._positions = np.empty(self.size, dtype=np.int64)
        #: rows offered so far
        self.seen = 0

    def add(self, X: Any) -> None:
        """Offer the rows of ``X`` (a 2-D array; every chunk with the same number of columns)."""
        X = np.asarray(X)
        if X.ndim != 2:
            raise ValueError(f"chunks must be 2-D, got shape {X.shape}")
        if self._rows is None:
            self._rows = np.empty((self.size, X.shape[1]), dtype=X.dtype)
        elif X.shape[1] != self._rows.shape[1]:
            raise ValueError(f"a chunk has {X.shape[1]} columns, the earlier ones {self._rows.shape[1]}")
        m = len(X)
        fill = min(m, max(0, self.size - self.seen))
        if fill:
            self._rows[self.seen : self.seen + fill] = X[:fill]
            self._positions[self.seen : self.seen + fill] = np.arange(self.seen, self.seen + fill)
        if m > fill:
            t = np.arange(self.seen + fill, self.seen + m, dtype=np.int64)  # stream positions of the rest
            j = np.minimum(np.floor(self._rng.random(len(t)) * (t + 1)).astype(np.int64), t)
            hit = np.flatnonzero(j < self.size)
            if len(hit):
                slots = j[hit]
                # the last row of the chunk that draws each slot is the one Algorithm R leaves there
                reversed_slots = slots[::-1]
                unique, first_in_reversed = np.unique(reversed_slots, return_index=True)
                last = hit[len(slots) - 1 - first_in_reversed]  # indices into t
                self._rows[unique] = X[fill + last]
                self._positions[unique] = t[last]
        self.seen += m

    @property
    def n(self) -> int:
        """Rows in the sample: ``min(size, seen)``."""
        return min(self.size, self.seen)

    def sample(self) -> tuple[np.ndarray, np.ndarray]:
        """``(rows, positions)``: the sampled rows in stream order and their positions (from 0)."""
        if self._rows is None:
            return np.empty((0, 0)), np.empty(0, dtype=np.int64)
        order = np.argsort(self._positions[: self.n], kind="stable")
        return self._rows[: self.n][order], self._positions[: self.n][order]


@dataclass
class FileSample:
    """A sample drawn by :func:`sample_files`: the rows and where they came from."""

    #: the sampled rows, float64 ``(n, d)``, in file order
    X: np.ndarray
    #: the feature columns' names (CSV, Parquet) or ``None`` (NPZ)
    feature_names: list[str] | None
    #: the sample size asked for
    size: int
    random_state: int | None
    #: ``(path, rows read)`` of each file, in reading order
    files: list[tuple[str, int]] = field(default_factory=list)
    #: rows offered to the sample (all rows, less those labelled 1 when a label column is given)
    rows_seen: int = 0
    #: rows left out because their label was 1
    anomalies_left_out: int = 0

    def record(self) -> dict[str, Any]:
        """What a model file keeps of the sample (JSON-serialisable)."""
        return {
            "sample_size": int(len(self.X)),
            "sample_requested": self.size,
            "random_state": self.random_state,
            "rows_seen": self.rows_seen,
            "anomalies_left_out": self.anomalies_left_out,
            "files": [[path, rows] for path, rows in self.files],
        }


def _labelled_chunks(path: Path, chunk_size: int, label_column: str) -> tuple[Any, list[str] | None]:
    """``((X, y) chunks, feature names)`` of a file whose ``label_column`` holds 0/1 labels."""
    from .files import FORMATS, _npz_array, _npz_keys, _npz_label_key

    if FORMATS.get(path.suffix.lower()) == "npz":
        key = _npz_label_key(path, _npz_keys(path), label_column)
        labels = _npz_array(path, key)
        chunks = iter_table(path, chunk_size=chunk_size, label_column=label_column, finite=True)

        def npz_pairs() -> Any:
            start = 0
            for X in chunks:
                y = np.asarray(labels[start : start + len(X)])
                if len(y) != len(X):
                    raise DataError(f"{path}: X has more rows than {key!r} has labels")
                start += len(X)
                yield X, y
            if start != len(labels):
                raise DataError(f"{path}: X has {start} rows but {key!r} has {len(labels)} labels")

        return npz_pairs(), None
    columns = feature_columns(path)  # every column: the labels are read as one of them
    assert columns is not None
    features = feature_columns(path, label_column=label_column)
    k = columns.index(label_column)
    keep = [i for i in range(len(columns)) if i != k]
    chunks = iter_table(path, chunk_size=chunk_size, finite=True)
    return ((X[:, keep], X[:, k]) for X in chunks), features


def sample_files(
    paths: Sequence[PathLike],
    size: int,
    *,
    random_state: int | None = 0,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    label_column: str | None = None,
) -> FileSample:
    """A uniform random sample of ``size`` rows from ``paths``, drawn in one pass (:class:`Reservoir`).

    Files are read in the order given, chunk by chunk, with the rules of
    :func:`~usfad.data.files.iter_table` (``finite=True``: a bad row is a
    :class:`~usfad.errors.DataError` naming its file and line or row). Every file must have
    the first file's feature columns, in the same order. With ``label_column`` (a column of
    CSV and Parquet files, an array of NPZ files) only the rows labelled 0 are sampled; a
    label other than 0 or 1 is an error. When the files hold ``size`` rows or fewer, the
    sample is all of them.
    """
    if not paths:
        raise DataError("no data files to sample from")
    reservoir = Reservoir(size, random_state)
    out = FileSample(np.empty((0, 0)), None, int(size), random_state)
    names: list[str] | None = None
    first: Path | None = None
    for raw in paths:
        path = Path(raw)
        if label_column is None:
            chunks = iter_table(path, chunk_size=chunk_size, finite=True)
            pairs: Any = ((X, None) for X in chunks)
            file_names = chunks.feature_names
        else:
            pairs, file_names = _labelled_chunks(path, chunk_size, label_column)
        if first is None:
            first, names = path, file_names
        elif file_names != names:
            raise DataError(
                f"{path}: its feature columns {file_names} are not those of {first} ({names}); "
                f"every file must have the same columns in the same order"
            )
        rows = 0
        for X, y in pairs:
            if reservoir._rows is not None and X.shape[1] != reservoir._rows.shape[1]:
                raise DataError(f"{path}: {X.shape[1]} features, {first} has {reservoir._rows.shape[1]}")
            rows += len(X)
            if y is not None:
                bad = np.flatnonzero((y != 0) & (y != 1))
                if len(bad):
                    raise DataError(
                        f"{path}: label column {label_column!r} must hold 0 (normal) and 1 (anomaly), "
                        f"got {y[bad[0]]!r} (row {rows - len(X) + int(bad[0])}, counting from 0)"
                    )
                out.anomalies_left_out += int((y == 1).sum())
                X = X[y == 0]
            reservoir.add(X)
        out.files.append((str(path), rows))
    out.X, _ = reservoir.sample()
    out.feature_names = names
    out.rows_seen = reservoir.seen
    return out
