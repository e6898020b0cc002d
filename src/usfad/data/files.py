"""Tabular files in and scores out: CSV, NPZ and Parquet.

- :func:`read_table` reads a whole file into a float64 matrix (and the labels, if asked);
- :func:`iter_table` reads it in chunks of rows, so that scoring a large file keeps memory
  flat (CSV line by line, Parquet through pyarrow's ``iter_batches``, NPZ by slicing a
  memory map of the ``X`` array when it is stored uncompressed); the chunks carry the
  feature column names, read once from the header (``feature_names``);
- :func:`feature_columns` reads only the header: the names of the feature columns;
- :func:`find_data_files` turns a file, a folder, a glob pattern or a list of them into the
  data files they name (for the commands that read many files);
- :func:`write_scores` writes ``score,label`` rows, chunk by chunk, to a CSV file
  (:func:`write_lines`: any header and lines, atomically, keeping the rows before a bad one).

Formats: ``.csv`` (a header row; every column numeric except the label column), ``.npz``
(array ``X`` of shape ``(n, d)`` and optional labels ``y``), ``.parquet`` / ``.pq``
(numeric columns; needs pyarrow, ``pip install usfad[parquet]``). CSV files are UTF-8 text.
Every problem is a :class:`~usfad.errors.DataError` that names the file (and, in a CSV
file, the line). Missing values are read as NaN (unless ``finite=True``); the models
reject them, Protocol T maps them to 0.
"""

from __future__ import annotations

import glob
import io
import itertools
import os
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from ..outputs import temporary_sibling

FORMATS = {".csv": "csv", ".npz": "npz", ".parquet": "parquet", ".pq": "parquet"}
NPZ_LABEL_KEY = "y"
DEFAULT_CHUNK_SIZE = 65536

PathLike = str | os.PathLike[str]


def _format_of(path: Path) -> str:
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if not path.is_file():
        raise DataError(f"{path}: not a file")
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(
            f"{path}: unknown file type {path.suffix or '(no extension)'!r}; usfad reads {', '.join(FORMATS)}"
        )
    return fmt


# --- column handling shared by CSV and Parquet --------------------------------------


def _split_label(path: Path, columns: list[str], label_column: str | None) -> list[str]:
    """The feature columns: all but ``label_column``, which must exist when given."""
    if label_column is not None and label_column not in columns:
        shown = columns if len(columns) <= 20 else [*columns[:20], "..."]
        raise DataError(f"{path}: no label column {label_column!r}; the columns are {shown}")
    features = [c for c in columns if c != label_column]
    if not features:
        raise DataError(f"{path}: no feature columns (only the label column {label_column!r})")
    return features


def _frame_to_matrix(path: Path, frame: Any, features: list[str], where: str = "") -> np.ndarray:
    import pandas as pd

    if len(frame) == 0:  # a header without rows has no dtypes to check
        return np.empty((0, len(features)))
    bad = [
        str(c)
        for c in features
        if not (pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c]))
    ]
    if bad:
        raise DataError(f"{path}{where}: non-numeric columns {bad}; encode them as numbers or drop them")
    return np.ascontiguousarray(frame[features].to_numpy(dtype=np.float64, na_value=np.nan))


def _labels(path: Path, values: Any, name: str) -> np.ndarray:
    y = np.asarray(values)
    if y.ndim != 1:
        raise DataError(f"{path}: labels {name!r} must be one value per row, got shape {y.shape}")
    if y.dtype.kind not in "biuf":
        raise DataError(f"{path}: labels {name!r} must be numeric (1 = anomaly), got {y.dtype}")
    if y.dtype.kind == "f" and not (np.isfinite(y).all() and np.array_equal(y, np.round(y))):
        raise DataError(f"{path}: labels {name!r} must be whole numbers (0 normal, 1 anomaly)")
    return y.astype(np.int64)


def _field_count_problem(line: str, n_fields: int) -> str | None:
    """Why a CSV line does not have the header's ``n_fields`` fields, or ``None`` when it has."""
    count = line.count(",") + 1
    return None if count == n_fields else f"{count} field(s) where the header has {n_fields}"


def _scan_csv(path: Path, n_fields: int) -> None:
    """Check, line by line, that a CSV file is UTF-8 and every data line has ``n_fields`` fields.

    pandas would read a short line as missing values (a "NaN at row 99" far from the cause)
    and a byte that is not UTF-8 as an error without the file's name.
    """
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(
                    f"{path}: line {number} is not UTF-8 text (byte {raw[exc.start]:#04x} at position {exc.start + 1} "
                    f"of the line); save the file as UTF-8"
                ) from None
            if number > 1 and line.strip():
                problem = _field_count_problem(line, n_fields)
                if problem is not None:
                    raise DataError(f"{path}: line {number}: {problem}")


def _csv_line_of_row(path: Path, row: int) -> int:
    """The line number (line 1 = the header) of data row ``row`` (from 0; blank lines skipped)."""
    with open(path, "rb") as f:
        f.readline()
        seen = -1
        for number, raw in enumerate(f, start=2):
            if raw.strip():
                seen += 1
                if seen == row:
                    return number
    raise ValueError(f"{path} has no data row {row}")


def _read_csv_header(path: Path) -> list[str]:
    import pandas as pd

    try:
        return [str(c) for c in pd.read_csv(path, nrows=0).columns]
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty") from None
    except pd.errors.ParserError as exc:
        raise DataError(f"{path}: not a readable CSV file ({exc})") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: the header is not UTF-8 text ({exc}); save the file as UTF-8") from None


def _parquet_file(path: Path) -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(f"{path}: reading Parquet needs pyarrow; pip install 'usfad[parquet]'") from None
    try:
        return pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid and friends
        raise DataError(f"{path}: not a readable Parquet file ({exc})") from None


def _parquet_columns(pf: Any) -> list[str]:
    """The data columns of a Parquet file: every column but the index pandas stored with the
    frame (``__index_level_0__`` or a named index, listed in the file's pandas metadata)."""
    schema = pf.schema_arrow
    index = (schema.pandas_metadata or {}).get("index_columns", [])
    stored_index = {name for name in index if isinstance(name, str)}  # a RangeIndex is stored as a dict, no column
    return [name for name in schema.names if name not in stored_index]


def _check_parquet_types(path: Path, schema: Any, features: list[str]) -> None:
    import pyarrow.types as pat

    bad = [
        c
        for c in features
        if not (
            pat.is_integer(schema.field(c).type)
            or pat.is_floating(schema.field(c).type)
            or pat.is_boolean(schema.field(c).type)
            or pat.is_decimal(schema.field(c).type)
        )
    ]
    if bad:
        raise DataError(f"{path}: non-numeric columns {bad}; encode them as numbers or drop them")


# --- NPZ ----------------------------------------------------------------------------


def _npz_keys(path: Path) -> list[str]:
    try:
        with zipfile.ZipFile(path) as zf:
            return [n[: -len(".npy")] for n in zf.namelist() if n.endswith(".npy")]
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from None


def _npz_array(path: Path, key: str) -> np.ndarray:
    """Array ``key`` of an .npz file: a read-only memory map when stored uncompressed."""
    name = f"{key}.npy"
    try:
        with zipfile.ZipFile(path) as zf:
            info = zf.getinfo(name)
            if info.compress_type == zipfile.ZIP_STORED:
                mapped = _memmap_member(path, info)
                if mapped is not None:
                    return mapped
            with zf.open(info) as member:
                return np.lib.format.read_array(member, allow_pickle=False)
    except (zipfile.BadZipFile, OSError, ValueError, KeyError) as exc:
        raise DataError(f"{path}: array {key!r} could not be read ({exc})") from None


def _memmap_member(path: Path, info: zipfile.ZipInfo) -> np.ndarray | None:
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)
        if local[:4] != b"PK\x03\x04":
            return None
        name_len = int.from_bytes(local[26:28], "little")
        extra_len = int.from_bytes(local[28:30], "little")
        f.seek(info.header_offset + 30 + name_len + extra_len)
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            return None
        if dtype.hasobject or 0 in shape:
            return None
        return np.memmap(path, dtype=dtype, mode="r", offset=f.tell(), shape=shape, order="F" if fortran else "C")


def _npz_label_key(path: Path, keys: list[str], label_column: str | None) -> str | None:
    if label_column is not None:
        if label_column not in keys:
            raise DataError(f"{path}: no label array {label_column!r}; the arrays are {keys}")
        return label_column
    return NPZ_LABEL_KEY if NPZ_LABEL_KEY in keys else None


def _npz_features(path: Path) -> np.ndarray:
    keys = _npz_keys(path)
    if "X" not in keys:
        raise DataError(f"{path}: no array 'X' in this .npz (it holds {keys}); save the features as X=...")
    X = _npz_array(path, "X")
    if X.ndim != 2:
        raise DataError(f"{path}: X must be 2-D (n_samples, n_features), got shape {X.shape}")
    if X.dtype.kind not in "biuf":
        raise DataError(f"{path}: X must be numeric, got dtype {X.dtype}")
    return X


# --- public API ---------------------------------------------------------------------


def feature_columns(path: PathLike, *, label_column: str | None = None) -> list[str] | None:
    """The feature column names of a CSV or Parquet file (all but ``label_column``), read from
    its header only; ``None`` for NPZ files, whose ``X`` has no column names."""
    path = Path(path)
    fmt = _format_of(path)
    if fmt == "csv":
        return _split_label(path, _read_csv_header(path), label_column)
    if fmt == "parquet":
        return _split_label(path, _parquet_columns(_parquet_file(path)), label_column)
    return None


def find_data_files(sources: PathLike | Sequence[PathLike]) -> list[Path]:
    """The data files that ``sources`` name, in order, each once.

    ``sources``: one path or a list of them; each is a file (any name: its type is checked
    when it is read), a folder (the CSV, NPZ and Parquet files directly inside it, sorted by
    name; hidden files and other types, e.g. a ``_SUCCESS`` marker, are skipped) or a glob
    pattern (``*``, ``?``, ``[``; ``**`` crosses folders; the CSV, NPZ and Parquet files it
    matches, sorted). A file named twice counts once. A path that does not exist, or a
    folder or pattern without data files, is a :class:`DataError`.
    """
    items = [sources] if isinstance(sources, str | os.PathLike) else list(sources)
    if not items:
        raise DataError("no data files given")
    found: list[Path] = []
    seen: set[Path] = set()

    def data_file(p: Path) -> bool:
        return p.is_file() and not p.name.startswith(".") and p.suffix.lower() in FORMATS

    for item in items:
        text = os.fspath(item)
        path = Path(text)
        if path.is_dir():
            matches = sorted(p for p in path.iterdir() if data_file(p))
            if not matches:
                raise DataError(f"{path}: no {', '.join(FORMATS)} files in this folder")
        elif path.exists():
            matches = [path]
        elif any(c in text for c in "*?["):
            matches = sorted(p for p in map(Path, glob.glob(text, recursive=True)) if data_file(p))
            if not matches:
                raise DataError(f"{text}: no {', '.join(FORMATS)} files match this pattern")
        else:
            raise DataError(f"{path}: no such file or folder")
        for match in matches:
            key = match.resolve()
            if key not in seen:
                seen.add(key)
                found.append(match)
    return found


def read_table(
    path: PathLike, *, label_column: str | None = None, finite: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a whole file as ``(X, y)``: ``X`` float64 ``(n, d)``, ``y`` int labels or ``None``.

    ``label_column`` names the column (CSV, Parquet) or array (NPZ) holding the labels: it
    is removed from ``X`` and returned as ``y``. For NPZ files an array ``y`` is returned
    as labels even when ``label_column`` is not given; CSV and Parquet files without
    ``label_column`` return ``y = None`` and every column is a feature.

    A CSV line with another number of fields than the header, or a byte that is not UTF-8,
    is a :class:`DataError` naming its line. With ``finite=True`` so is the first missing,
    NaN or infinite feature (its line in a CSV file, its row index from 0 otherwise).
    """
    path = Path(path)
    fmt = _format_of(path)
    if fmt == "csv":
        import pandas as pd

        columns = _read_csv_header(path)
        features = _split_label(path, columns, label_column)
        _scan_csv(path, len(columns))
        try:
            frame = pd.read_csv(path)
        except pd.errors.ParserError as exc:
            raise DataError(f"{path}: not a readable CSV file ({exc})") from None
        X = _frame_to_matrix(path, frame, features)
        y = _labels(path, frame[label_column].to_numpy(), label_column) if label_column is not None else None
    elif fmt == "parquet":
        pf = _parquet_file(path)
        features = _split_label(path, _parquet_columns(pf), label_column)
        _check_parquet_types(path, pf.schema_arrow, features)
        frame = pf.read().to_pandas()
        X = _frame_to_matrix(path, frame, features)
        y = _labels(path, frame[label_column].to_numpy(), label_column) if label_column is not None else None
    else:
        X = np.array(_npz_features(path), dtype=np.float64, order="C")
        key = _npz_label_key(path, _npz_keys(path), label_column)
        y = _labels(path, _npz_array(path, key), key) if key is not None else None
        if y is not None and len(y) != len(X):
            raise DataError(f"{path}: X has {len(X)} rows but {key!r} has {len(y)} labels")
    if X.shape[0] == 0:
        raise DataError(f"{path}: no data rows")
    bad = _first_non_finite(X) if finite else None
    if bad is not None:
        row, col, kind = bad
        if fmt == "csv":
            raise DataError(f"{path}: line {_csv_line_of_row(path, row)}: column {features[col]!r} is {kind}")
        name = f"column {features[col]!r}" if fmt == "parquet" else f"feature {col}"
        raise DataError(f"{path}: row {row} (counting from 0): {name} is {kind}")
    return X, y


class TableChunks(Iterator[np.ndarray]):
    """The chunks :func:`iter_table` yields, with the file's feature column names.

    ``feature_names``: the names of the feature columns from the header (CSV, Parquet), in
    file order, or ``None`` (NPZ).
    """

    def __init__(self, chunks: Iterator[np.ndarray], feature_names: list[str] | None):
        self._chunks = chunks
        self.feature_names = feature_names

    def __next__(self) -> np.ndarray:
        return next(self._chunks)


def iter_table(
    path: PathLike, *, chunk_size: int = DEFAULT_CHUNK_SIZE, label_column: str | None = None, finite: bool = False
) -> TableChunks:
    """Yield the feature matrix of ``path`` in float64 chunks of at most ``chunk_size`` rows.

    The label column (or NPZ array), if named, is left out; rows come in file order. The
    returned iterator's ``feature_names`` are the feature columns' names (read once, from
    the header; ``None`` for NPZ).
    Raises :class:`DataError` before the first chunk for a missing or unreadable file, a
    missing label column, non-numeric columns (Parquet, NPZ) or a file without rows.

    A bad row further down (CSV: a line with another number of fields than the header,
    or a feature that is not a number; with ``finite=True``, any format: a missing, NaN
    or infinite feature) ends the stream: the rows before it are yielded first, then a
    :class:`DataError` names it by its LINE NUMBER in the file (CSV; line 1 is the
    header) or its row index (NPZ, Parquet; from 0). CSV files hold one row per line
    (no line breaks inside quoted fields); blank lines are skipped.
    """
    if int(chunk_size) < 1:
        raise DataError(f"chunk_size must be >= 1, got {chunk_size}")
    path = Path(path)
    fmt = _format_of(path)
    features: list[str] | None = None
    if fmt == "csv":
        columns = _read_csv_header(path)
        features = _split_label(path, columns, label_column)
        chunks = _iter_csv(path, int(chunk_size), columns, features, finite)
    elif fmt == "parquet":
        pf = _parquet_file(path)
        features = _split_label(path, _parquet_columns(pf), label_column)
        _check_parquet_types(path, pf.schema_arrow, features)
        chunks = _checked(path, _iter_parquet(path, pf, int(chunk_size), features), finite)
    else:
        chunks = _checked(path, _iter_npz(path, int(chunk_size), label_column), finite)
    # Pull the first chunk now so that an empty or broken file fails at the call.
    first = next(chunks, None)
    if first is None:
        raise DataError(f"{path}: no data rows")
    return TableChunks(_prepend(first, chunks), features)


def _prepend(first: np.ndarray, rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    yield first
    yield from rest


def _first_non_finite(X: np.ndarray) -> tuple[int, int, str] | None:
    """``(row, column, "NaN or missing" | "infinite")`` of the first non-finite value, or ``None``."""
    finite = np.isfinite(X)
    if finite.all():
        return None
    row = int(np.argmin(finite.all(axis=1)))
    col = int(np.argmin(finite[row]))
    return row, col, "NaN or missing" if np.isnan(X[row, col]) else "infinite"


def _checked(path: Path, chunks: Iterator[np.ndarray], finite: bool) -> Iterator[np.ndarray]:
    """NPZ and Parquet chunks, cut at the first non-finite row when ``finite``."""
    start = 0
    for X in chunks:
        bad = _first_non_finite(X) if finite else None
        if bad is not None:
            row, col, kind = bad
            if row:
                yield X[:row]
            raise DataError(f"{path}: row {start + row} (counting from 0): feature {col} is {kind}")
        yield X
        start += len(X)


def _iter_csv(
    path: Path, chunk_size: int, columns: list[str], features: list[str], finite: bool
) -> Iterator[np.ndarray]:
    """CSV chunks read line by line, so that a bad row is known by its line number."""
    n_fields = len(columns)
    with open(path, encoding="utf-8", errors="replace") as f:
        f.readline()  # the header, read by pandas above
        next_line = 2
        while True:
            raw = list(itertools.islice(f, chunk_size))
            if not raw:
                return
            numbers = range(next_line, next_line + len(raw))
            next_line += len(raw)
            kept = [i for i, line in enumerate(raw) if line.strip()]
            lines = [raw[i] for i in kept]
            line_of = [numbers[i] for i in kept]
            # Field counts: a wrong count ends the chunk there (pandas would fail on the whole chunk).
            bad: tuple[int, str] | None = None
            for i, line in enumerate(lines):
                problem = _field_count_problem(line, n_fields)
                if problem is not None:
                    bad = (i, problem)
                    break
            good = lines if bad is None else lines[: bad[0]]
            X, problem = _csv_matrix(path, good, columns, features, finite)
            if problem is not None and (bad is None or problem[0] < bad[0]):
                bad = problem
            if bad is not None:
                row, reason = bad
                if row:
                    yield X[:row]
                raise DataError(f"{path}: line {line_of[row]}: {reason}")
            if len(X):
                yield X


def _csv_matrix(
    path: Path, lines: list[str], columns: list[str], features: list[str], finite: bool
) -> tuple[np.ndarray, tuple[int, str] | None]:
    """Parse CSV lines (each with the header's field count) into a float64 matrix.

    Returns the matrix and ``(row, reason)`` of the first row holding a feature that is
    not a number (or, with ``finite``, NaN, missing or infinite), else ``None``; the rows
    before that one are correct in the matrix.
    """
    import pandas as pd

    if not lines:
        return np.empty((0, len(features))), None
    try:
        frame = pd.read_csv(io.StringIO("".join(lines)), header=None, names=columns, index_col=False)
    except pd.errors.ParserError as exc:  # e.g. an unbalanced quote
        raise DataError(f"{path}: not a readable CSV file ({exc})") from None
    X = np.empty((len(frame), len(features)))
    first: tuple[int, str] | None = None
    for j, c in enumerate(features):
        col = frame[c]
        if not (pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)):
            numeric = pd.to_numeric(col, errors="coerce")
            wrong = np.flatnonzero(numeric.isna().to_numpy() & col.notna().to_numpy())
            if len(wrong) and (first is None or wrong[0] < first[0]):
                first = (int(wrong[0]), f"column {c!r} holds {col.iloc[wrong[0]]!r}, not a number")
            col = numeric
        X[:, j] = col.to_numpy(dtype=np.float64, na_value=np.nan)
    if finite:
        bad = _first_non_finite(X if first is None else X[: first[0]])
        if bad is not None:
            row, j, kind = bad
            first = (row, f"column {features[j]!r} is {kind}")
    return X, first


def _iter_parquet(path: Path, pf: Any, chunk_size: int, features: list[str]) -> Iterator[np.ndarray]:
    for batch in pf.iter_batches(batch_size=chunk_size, columns=features):
        if batch.num_rows:
            yield _frame_to_matrix(path, batch.to_pandas(), features)


def _iter_npz(path: Path, chunk_size: int, label_column: str | None) -> Iterator[np.ndarray]:
    # The labels are never read: X is a separate array, so there is nothing to drop.
    if label_column is not None:
        _npz_label_key(path, _npz_keys(path), label_column)
    X = _npz_features(path)
    for start in range(0, X.shape[0], chunk_size):
        yield np.array(X[start : start + chunk_size], dtype=np.float64, order="C")


def write_scores(path: PathLike, chunks: Iterable[tuple[np.ndarray, np.ndarray]]) -> int:
    """Write ``score,label`` rows from ``(scores, labels)`` chunks; returns the row count.

    Written as :func:`write_lines` writes (atomically; a :class:`DataError` from ``chunks``
    keeps the rows before it).
    """

    def lines(scores: np.ndarray, labels: np.ndarray) -> list[str]:
        scores = np.asarray(scores, dtype=np.float64).ravel()
        labels = np.asarray(labels).astype(np.int64).ravel()
        if scores.shape != labels.shape:
            raise ValueError(f"{scores.size} scores but {labels.size} labels in one chunk")
        # %.17g keeps every bit of a float64: the file round-trips exactly.
        return [f"{s:.17g},{lab}\n" for s, lab in zip(scores.tolist(), labels.tolist())]

    return write_lines(path, "score,label\n", (lines(scores, labels) for scores, labels in chunks))


def write_lines(path: PathLike, header: str, chunks: Iterable[Sequence[str]]) -> int:
    """Write ``header`` then the CSV lines of each chunk (each line ending in a newline); returns the line count.

    Lines go to a temporary file that is renamed to ``path`` at the end. When ``chunks``
    raises a :class:`DataError` (a bad input row) the lines written so far are kept: the
    file is flushed, closed and renamed to ``path`` before the error propagates, so every
    row handled before the bad one is there, in order. A failure before the first line, or
    any other failure, leaves no file.
    """
    path = Path(path)
    tmp = temporary_sibling(path)
    n = 0
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(header)
            for lines in chunks:
                f.writelines(lines)
                n += len(lines)
        os.replace(tmp, path)
    except DataError:
        if n:
            os.replace(tmp, path)
        else:
            tmp.unlink(missing_ok=True)
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return n
