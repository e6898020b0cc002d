"""Protocol T (BENCHMARK.md): the one-class split every tabular comparison uses.

1. stratified 70/30 split with ``random_state=seed``;
2. anomalies dropped from the training part;
3. ``StandardScaler`` fitted on the training part and applied to both; non-finite values
   become 0 after scaling (constant columns stay 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from ..errors import DataError

SEEDS = (42, 0, 1, 2, 3)


@dataclass
class Split:
    X_train: np.ndarray  #: normal training samples, scaled
    X_test: np.ndarray  #: test samples, scaled
    y_test: np.ndarray  #: 1 = anomaly


def protocol_t(X: np.ndarray, y: np.ndarray, seed: int, test_size: float = 0.3) -> Split:
    """Split, drop training anomalies, scale on train; see the module docstring."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y).astype(int).ravel()
    if X.ndim != 2 or X.shape[0] != y.shape[0]:
        raise DataError(f"X must be (n, d) with one label per row, got X {X.shape} and y {y.shape}")
    if set(np.unique(y)) - {0, 1} or len(np.unique(y)) < 2:
        raise DataError("y must contain both 0 (normal) and 1 (anomaly) labels and nothing else")
    idx = np.arange(X.shape[0])
    train_idx, test_idx = train_test_split(idx, test_size=test_size, stratify=y, random_state=seed)
    train_idx = train_idx[y[train_idx] == 0]
    with np.errstate(all="ignore"):
        X_train_raw = np.where(np.isfinite(X[train_idx]), X[train_idx], np.nan)
        scaler = StandardScaler().fit(np.nan_to_num(X_train_raw))
        X_train = np.nan_to_num(scaler.transform(X[train_idx]), nan=0.0, posinf=0.0, neginf=0.0)
        X_test = np.nan_to_num(scaler.transform(X[test_idx]), nan=0.0, posinf=0.0, neginf=0.0)
    return Split(X_train, X_test, y[test_idx])
