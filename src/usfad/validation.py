"""Checks at the boundary: turn user input into a finite float64 matrix or say why not.

- :func:`check_array`: any array-like -> a finite float64 ``(n_samples, n_features)`` matrix;
- :func:`feature_names` and :func:`check_feature_names`: a DataFrame's column names, recorded
  at ``fit`` and compared at scoring (scikit-learn's ``feature_names_in_`` convention);
- :class:`Constraint` and :func:`check_parameters`: hyper-parameters declared once as a table
  of constraints, checked at ``fit``;
- :func:`check_seeds`: the seeds of an experiment grid, checked before its first run.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import DataError


def check_array(
    X: Any, *, n_features: int | None = None, min_samples: int = 1, what: str = "X", fitted: str = "the model"
) -> np.ndarray:
    """Return ``X`` as a C-contiguous float64 array of shape ``(n_samples, n_features)``.

    Raises :class:`DataError` for non-numeric or complex values, a shape other than 2-D,
    fewer than ``min_samples`` rows, no columns, NaN or infinite values, or a feature count
    other than ``n_features`` (the message names ``fitted``, the model expecting them). The
    messages contain scikit-learn's wording (``n_samples=``, ``0 feature(s)``, ``Reshape
    your data``, ``is expecting N features as input``, ``Complex data not supported``).
    """
    if _is_sparse(X):
        raise DataError(
            f"{what} is a sparse matrix ({type(X).__name__}): sparse input is not supported; "
            f"call {what}.toarray() first"
        )
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
    if arr.dtype.kind == "c":  # a cast would silently drop the imaginary parts
        raise DataError(f"{what} has complex values ({arr.dtype}): Complex data not supported; pass real numbers")
    if arr.dtype.kind in "OUSV":
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise DataError(f"{what} has non-numeric values ({exc}); encode them as numbers first") from None
    if arr.ndim != 2:
        hint = (
            f". Reshape your data: {what}.reshape(-1, 1) for a single feature, "
            f"{what}.reshape(1, -1) for a single sample"
            if arr.ndim == 1
            else ""
        )
        raise DataError(f"{what} must be 2-D (n_samples, n_features), got an array of shape {arr.shape}{hint}")
    if arr.shape[0] < min_samples:
        raise DataError(f"{what} needs at least {min_samples} sample(s), got n_samples={arr.shape[0]}")
    if arr.shape[1] == 0:
        raise DataError(f"{what} has 0 feature(s) (shape={arr.shape}) while a minimum of 1 is required.")
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
        raise DataError(f"{what} has {arr.shape[1]} features, but {fitted} is expecting {n_features} features as input")
    return arr


def _is_sparse(X: Any) -> bool:
    if not type(X).__module__.startswith("scipy.sparse"):
        return False
    from scipy import sparse

    return bool(sparse.issparse(X))


# --- column names --------------------------------------------------------------------


def feature_names(X: Any) -> list[str] | None:
    """The column names of a DataFrame ``X`` when all of them are strings, else ``None``.

    scikit-learn's convention: arrays, and frames with integer (or mixed) column labels,
    have no feature names and are taken positionally.
    """
    columns = getattr(X, "columns", None)
    if columns is None or getattr(X, "dtypes", None) is None:
        return None
    names = list(columns)
    if not names or not all(isinstance(c, str) for c in names):
        return None
    return names


def _shown(names: Sequence[str], limit: int = 20) -> str:
    names = list(names)
    return str(names if len(names) <= limit else [*names[:limit], f"... ({len(names)} in all)"])


def check_feature_names(given: Sequence[str] | None, expected: Sequence[str] | None, *, what: str = "X") -> None:
    """Raise :class:`DataError` unless ``given`` column names are ``expected``, in the same order.

    Either being ``None`` (an array, or a model fitted on one) means positional input:
    nothing to compare. The same names in another order are refused, not reordered: a
    silent reorder would hide a pipeline that changed, and a positional score of the
    reordered columns would be silently wrong.
    """
    if given is None or expected is None:
        return
    given, expected = [str(c) for c in given], [str(c) for c in expected]
    if given == expected:
        return
    if sorted(given) == sorted(expected) and len(set(given)) == len(given):
        raise DataError(
            f"{what} has the model's columns in another order: expected {_shown(expected)}, "
            f"got {_shown(given)}; reorder the columns to the expected order (they are never reordered silently)"
        )
    missing = [c for c in expected if c not in given]
    unexpected = [c for c in given if c not in expected]
    detail = "; ".join(
        part
        for part in (
            f"missing {_shown(missing)}" if missing else "",
            f"unexpected {_shown(unexpected)}" if unexpected else "",
        )
        if part
    )
    head = (
        f"{what} has {len(given)} features, but the model is expecting {len(expected)} features as input"
        if len(given) != len(expected)
        else f"{what} does not have the columns the model was fitted with"
    )
    raise DataError(f"{head}: expected {_shown(expected)}, got {_shown(given)}" + (f" ({detail})" if detail else ""))


# --- hyper-parameters --------------------------------------------------------------------


@dataclass(frozen=True)
class Constraint:
    """What one hyper-parameter may be: an integer or a real number in a range, or one of some values.

    ``kind`` is ``"int"`` (``int`` or a NumPy integer; not ``bool``, not ``1.5`` nor ``2.0``),
    ``"real"`` (any finite ``int`` or ``float``; not ``bool``), ``"bool"`` or ``"options"``
    (one of ``options``). ``low`` / ``high`` bound the value (``None``: unbounded), inclusive
    unless ``low_open`` / ``high_open``; ``none`` also allows ``None``, ``auto`` the string
    ``"auto"``.
    """

    kind: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    none: bool = False
    options: tuple[Any, ...] = ()
    auto: bool = False

    def describe(self) -> str:
        if self.kind == "options":
            text = f"one of {self.options}"
        elif self.kind == "bool":
            text = "True or False"
        else:
            text = "an integer" if self.kind == "int" else "a number"
            if self.kind == "real" and self.low is None and self.high is None:
                text = "a finite number"
            elif self.low is not None and self.high is not None:
                text += (
                    f" in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
                )
            elif self.low is not None:
                text += f" {'>' if self.low_open else '>='} {self.low:g}"
            elif self.high is not None:
                text += f" {'<' if self.high_open else '<='} {self.high:g}"
        return text + (" or None" if self.none else "") + (" or 'auto'" if self.auto else "")

    def allows(self, value: Any) -> bool:
        if value is None:
            return self.none
        if isinstance(value, str) and value == "auto" and self.auto:
            return True
        if self.kind == "options":
            return any(value == option and type(value) is type(option) for option in self.options)
        if self.kind == "bool":
            return isinstance(value, bool | np.bool_)
        if isinstance(value, bool | np.bool_):
            return False
        if self.kind == "int" and not isinstance(value, numbers.Integral):
            return False
        if not isinstance(value, numbers.Real) or not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return not (self.high is not None and (value >= self.high if self.high_open else value > self.high))


def check_parameters(params: Mapping[str, Any], constraints: Mapping[str, Constraint]) -> None:
    """Raise ``ValueError`` naming the first parameter of ``params`` that breaks its constraint.

    Parameters without an entry in ``constraints`` are not checked here.
    """
    for name, value in params.items():
        constraint = constraints.get(name)
        if constraint is not None and not constraint.allows(value):
            raise ValueError(f"{name} must be {constraint.describe()}, got {value!r} ({type(value).__name__})")


#: the seeds a split or a model accepts (numpy's and scikit-learn's generators take 32 bits)
SEED_RANGE = (0, 2**32 - 1)


def check_seeds(seeds: Sequence[int]) -> list[int]:
    """``seeds`` as a list of ints, or a ``ValueError`` if there are none or one is outside :data:`SEED_RANGE`."""
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("no seeds given")
    low, high = SEED_RANGE
    if bad := [s for s in seeds if not low <= s <= high]:
        raise ValueError(f"seeds must be integers from {low} to {high}, got {bad}")
    return seeds
