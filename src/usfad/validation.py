"""Checks at the boundary: turn user input into a finite float64 matrix or say why not."""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import DataError


def check_array(X: Any, *, n_features: int | None = None, min_samples: int = 1, what: str = "X") -> np.ndarray:
    """Return ``X`` as a C-contiguous float64 array of shape ``(n_samples, n_features)``.

    Raises :class:`DataError` for non-numeric columns, a shape other than 2-D, fewer than
    ``min_samples`` rows, NaN or infinite values, or a feature count other than
    ``n_features``.
    """
    columns = getattr(X, "columns", None)
    dtypes = getattr(X, "dtypes", None)
    if columns is not None and dtypes is not None:  # a pandas DataFrame
        from pandas.api.types import is_bool_dtype, is_numeric_dtype

        bad = [str(c) for c, t in zip(columns, dtypes) if not (is_numeric_dtype(t) or is_bool_dtype(t))]
        if bad:
            raise DataError(f"{what} has non-numeric columns {bad}; encode them as numbers first")
    try:
        arr = np.asarray(X)
    except Exception as exc:  # ragged lists and similar
        raise DataError(f"{what} could not be read as an array: {exc}") from None
    if arr.dtype.kind in "OUSV" or arr.dtype.kind == "c":
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise DataError(f"{what} has non-numeric values ({exc}); encode them as numbers first") from None
    if arr.ndim != 2:
        hint = " (use X.reshape(-1, 1) for a single feature)" if arr.ndim == 1 else ""
        raise DataError(f"{what} must be 2-D (n_samples, n_features), got an array of shape {arr.shape}{hint}")
    if arr.shape[0] < min_samples:
        raise DataError(f"{what} needs at least {min_samples} sample(s), got {arr.shape[0]}")
    if arr.shape[1] == 0:
        raise DataError(f"{what} has no features (shape {arr.shape})")
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    finite = np.isfinite(arr)
    if not finite.all():
        rows, cols = np.nonzero(~finite)
        kind = "NaN" if np.isnan(arr[rows[0], cols[0]]) else "infinite"
        raise DataError(
            f"{what} contains {len(rows)} NaN or infinite value(s); the first is {kind} at row {rows[0]}, "
            f"column {cols[0]}. Impute or drop them first"
        )
    if n_features is not None and arr.shape[1] != n_features:
        raise DataError(f"{what} has {arr.shape[1]} features, but the model was fitted with {n_features}")
    return arr
