"""Image-level and pixel-level metrics for anomaly maps (higher = more anomalous, mask 1 = defect).

- :func:`image_auroc`: ROC-AUC of one score per image against its 0/1 label;
- :func:`pixel_auroc`: ROC-AUC over every pixel of every test image, computed exactly from
  the sorted normal pixels (``P(s_defect > s_normal) + P(tie) / 2``), in ``O(n)`` memory;
- :func:`aupro`: area under the per-region-overlap curve up to a false-positive rate of
  ``fpr_limit`` (0.3), divided by ``fpr_limit`` so that a perfect map scores 1.

PRO at a threshold ``t`` is the mean, over every connected component of the ground-truth
masks (8-connectivity, per image), of the fraction of the component's pixels with score
``>= t``; FPR is the fraction of normal pixels (of all images) with score ``>= t``. The curve
joins the points of every distinct threshold by straight lines (trapezoids), from ``(0, 0)``,
and is cut at ``fpr_limit`` by linear interpolation.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from ..errors import DataError
from ..metrics import roc_auc

_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def image_auroc(labels: Any, scores: Any) -> float:
    """ROC-AUC of the image scores against the 0/1 labels."""
    return roc_auc(labels, scores)


def _masks_and_maps(masks: Any, maps: Any) -> tuple[np.ndarray, np.ndarray]:
    """``bool [N, H, W]`` masks and float ``[N, H, W]`` maps; ``[N, 1, H, W]`` is squeezed."""
    m = np.asarray(masks.detach().cpu() if hasattr(masks, "detach") else masks)
    a = np.asarray(maps.detach().cpu() if hasattr(maps, "detach") else maps)
    if not np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float64)  # float maps keep their precision (float32 maps stay float32: memory)
    if m.ndim == 4 and m.shape[1] == 1:
        m = m[:, 0]
    if a.ndim == 4 and a.shape[1] == 1:
        a = a[:, 0]
    if m.ndim == 2 and a.ndim == 2:  # a single image
        m, a = m[None], a[None]
    if m.shape != a.shape or m.ndim != 3:
        raise DataError(f"masks and anomaly maps must both be [N, H, W]; got {m.shape} and {a.shape}")
    if not np.isfinite(a).all():
        raise DataError("anomaly maps contain NaN or infinite values")
    values = np.unique(m)
    if not np.isin(values, [0, 1]).all():
        raise DataError(f"masks must be 0/1, got values {values[:10]}")
    m = m.astype(bool)
    if not m.any() or m.all():
        raise DataError("masks must contain both defect (1) and normal (0) pixels")
    return m, a


def pixel_auroc(masks: Any, maps: Any) -> float:
    """ROC-AUC over all pixels of all images (``masks`` 0/1 and ``maps`` of the same shape)."""
    m, a = _masks_and_maps(masks, maps)
    normal = a[~m]
    normal.sort()
    defect = a[m]
    below = np.searchsorted(normal, defect, side="left").astype(np.float64)
    below_or_tied = np.searchsorted(normal, defect, side="right").astype(np.float64)
    wins = below.sum() + 0.5 * (below_or_tied - below).sum()
    return float(wins / (normal.size * defect.size))


def _region_weights(m: np.ndarray) -> tuple[np.ndarray, int]:
    """Per defect pixel (in ``m[m]`` order) ``1 / area of its component``, and the number of components."""
    weights = []
    n_regions = 0
    for i in range(len(m)):
        labelled, n = ndimage.label(m[i], structure=_EIGHT_CONNECTED)
        if n:
            inside = labelled[m[i]]  # row-major, as m[m] orders the pixels of image i
            weights.append(1.0 / np.bincount(inside)[inside])
            n_regions += n
    return np.concatenate(weights), n_regions


def pro_curve(masks: Any, maps: Any, fpr_limit: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """``(fpr, pro)`` points of the PRO curve from ``(0, 0)`` until the first FPR above ``fpr_limit``."""
    if not 0 < fpr_limit < 1:
        raise ValueError(f"fpr_limit must be in (0, 1), got {fpr_limit}")
    m, a = _masks_and_maps(masks, maps)
    normal = a[~m]
    normal.sort()
    n0 = normal.size
    defect = a[m]
    order = np.argsort(defect, kind="stable")
    defect = defect[order]
    weights, n_regions = _region_weights(m)
    # above[i] = sum of the weights of the defect pixels at sorted positions >= i
    above = np.concatenate([np.cumsum(weights[order][::-1])[::-1], [0.0]]) / n_regions
    # only thresholds down to the first one whose FPR exceeds the limit matter
    floor = normal[n0 - 1 - int(np.floor(fpr_limit * n0))]
    thresholds = np.unique(np.concatenate([normal[normal >= floor], defect[defect >= floor]]))[::-1]
    fpr = (n0 - np.searchsorted(normal, thresholds, side="left")) / n0
    pro = above[np.searchsorted(defect, thresholds, side="left")]
    return np.concatenate([[0.0], fpr]), np.concatenate([[0.0], pro])


def aupro(masks: Any, maps: Any, fpr_limit: float = 0.3) -> float:
    """Area under the PRO curve for FPR in ``[0, fpr_limit]``, divided by ``fpr_limit`` (1 = perfect)."""
    fpr, pro = pro_curve(masks, maps, fpr_limit)
    j = int(np.argmax(fpr > fpr_limit))  # the curve always ends beyond the limit
    cut = pro[j - 1] + (fpr_limit - fpr[j - 1]) * (pro[j] - pro[j - 1]) / (fpr[j] - fpr[j - 1])
    x = np.append(fpr[:j], fpr_limit)
    y = np.append(pro[:j], cut)
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2) / fpr_limit)


def vision_metrics(
    labels: Any, scores: Any, masks: Any | None = None, maps: Any | None = None, fpr_limit: float = 0.3
) -> dict[str, float]:
    """``image_auroc``, and when masks and maps are given, ``pixel_auroc`` and ``aupro``."""
    out = {"image_auroc": image_auroc(labels, scores)}
    if masks is not None and maps is not None:
        out["pixel_auroc"] = pixel_auroc(masks, maps)
        out["aupro"] = aupro(masks, maps, fpr_limit)
    return out
