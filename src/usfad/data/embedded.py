"""Small demo datasets that ship with scikit-learn or are generated: nothing is downloaded.

Every loader returns ``(X, y)``: ``X`` float64 of shape ``(n, d)``, ``y`` int with
1 = anomaly, and takes one keyword, ``random_state``, so that :data:`EMBEDDED` can call
them all alike. Loaders that subsample or generate data use it; the others ignore it.

- ``breast_cancer``: Wisconsin diagnostic breast cancer; malignant tumours are anomalies.
- ``wine``: one cultivar is normal, the other two are anomalies, subsampled to
  ``anomaly_ratio`` (10%) of the normal count.
- ``digits``: one handwritten digit is normal, the other nine are anomalies, subsampled
  the same way.
- ``gmm``: two Gaussian clusters of normal data and outliers planted in the empty space
  around them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import DataError

Loader = Callable[..., tuple[np.ndarray, np.ndarray]]


def _one_vs_rest(
    X: np.ndarray, target: np.ndarray, normal_class: int, anomaly_ratio: float, random_state: int
) -> tuple[np.ndarray, np.ndarray]:
    """Keep class ``normal_class`` as normal data and a seeded sample of the rest as anomalies."""
    classes = np.unique(target)
    if normal_class not in classes:
        raise DataError(f"normal_class must be one of {classes.tolist()}, got {normal_class}")
    if not 0 < anomaly_ratio <= 1:
        raise DataError(f"anomaly_ratio must be in (0, 1], got {anomaly_ratio}")
    normal = np.flatnonzero(target == normal_class)
    others = np.flatnonzero(target != normal_class)
    n_anomalies = min(len(others), max(2, int(round(anomaly_ratio * len(normal)))))
    rng = np.random.default_rng(random_state)
    anomalies = np.sort(rng.choice(others, size=n_anomalies, replace=False))
    idx = np.concatenate([normal, anomalies])
    y = np.concatenate([np.zeros(len(normal), dtype=int), np.ones(n_anomalies, dtype=int)])
    return np.ascontiguousarray(X[idx], dtype=np.float64), y


def load_breast_cancer(*, random_state: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """569 x 30; 212 malignant (label 1). Deterministic: ``random_state`` is unused."""
    from sklearn.datasets import load_breast_cancer as sk_load

    data = sk_load()
    # scikit-learn codes malignant as 0 and benign as 1.
    return np.asarray(data.data, dtype=np.float64), (data.target == 0).astype(int)


def load_wine(
    *, normal_class: int = 1, anomaly_ratio: float = 0.1, random_state: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """13 features; cultivar ``normal_class`` (71 samples for the default 1) + ~10% anomalies."""
    from sklearn.datasets import load_wine as sk_load

    data = sk_load()
    return _one_vs_rest(data.data, data.target, normal_class, anomaly_ratio, random_state)


def load_digits(
    *, normal_class: int = 0, anomaly_ratio: float = 0.1, random_state: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """8x8 images as 64 features; digit ``normal_class`` (178 samples for 0) + ~10% other digits."""
    from sklearn.datasets import load_digits as sk_load

    data = sk_load()
    return _one_vs_rest(data.data, data.target, normal_class, anomaly_ratio, random_state)


def load_gmm(
    *, n_normal: int = 1000, n_outliers: int = 50, n_features: int = 4, random_state: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Two correlated Gaussian clusters plus uniform outliers at least 4 sigma from both.

    The clusters have random covariances (standard deviations between 0.5 and 1) and
    centres 6 apart along a random direction; outliers are drawn uniformly from the box
    around the clusters and rejected until their Mahalanobis distance to each cluster
    exceeds 4, so they are genuine anomalies, not tail samples.
    """
    if n_normal < 2 or n_outliers < 1 or n_features < 1:
        raise DataError(
            f"need n_normal >= 2, n_outliers >= 1, n_features >= 1; got {n_normal}, {n_outliers}, {n_features}"
        )
    rng = np.random.default_rng(random_state)
    direction = rng.normal(size=n_features)
    direction /= np.linalg.norm(direction)
    centers = np.stack([-3.0 * direction, 3.0 * direction])
    chols = []
    for _ in range(2):
        q, _r = np.linalg.qr(rng.normal(size=(n_features, n_features)))
        chols.append(q * rng.uniform(0.5, 1.0, size=n_features))  # covariance q diag(s^2) q^T
    component = rng.random(n_normal) < 0.5
    normal = np.where(
        component[:, None],
        centers[0] + rng.normal(size=(n_normal, n_features)) @ chols[0].T,
        centers[1] + rng.normal(size=(n_normal, n_features)) @ chols[1].T,
    )
    lo, hi = normal.min(0) - 2.0, normal.max(0) + 2.0
    precisions = [np.linalg.inv(c @ c.T) for c in chols]
    outliers = np.empty((0, n_features))
    while len(outliers) < n_outliers:
        cand = rng.uniform(lo, hi, size=(4 * n_outliers, n_features))
        maha = [np.einsum("ij,jk,ik->i", cand - m, p, cand - m) for m, p in zip(centers, precisions)]
        outliers = np.concatenate([outliers, cand[(maha[0] > 16.0) & (maha[1] > 16.0)]])
    X = np.concatenate([normal, outliers[:n_outliers]])
    y = np.concatenate([np.zeros(n_normal, dtype=int), np.ones(n_outliers, dtype=int)])
    order = rng.permutation(len(y))
    return np.ascontiguousarray(X[order]), y[order]


EMBEDDED: dict[str, Loader] = {
    "breast_cancer": load_breast_cancer,
    "wine": load_wine,
    "digits": load_digits,
    "gmm": load_gmm,
}


def load_embedded(name: str, *, random_state: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Load an embedded dataset by name (a key of :data:`EMBEDDED`)."""
    try:
        loader = EMBEDDED[name]
    except KeyError:
        raise DataError(f"unknown embedded dataset {name!r}; choose one of {sorted(EMBEDDED)}") from None
    return loader(random_state=random_state)
