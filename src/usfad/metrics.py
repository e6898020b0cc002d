"""Detection metrics (higher score = more anomalous, label 1 = anomaly), alignment, and the
latent distance of a fitted detector."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
from scipy import stats
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score


def _check(y_true: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).astype(int).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"y_true has {y.size} entries but scores has {s.size}")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or infinite values")
    if set(np.unique(y)) - {0, 1}:
        raise ValueError("y_true must contain only 0 (normal) and 1 (anomaly)")
    if len(np.unique(y)) < 2:
        raise ValueError("y_true must contain both normal (0) and anomalous (1) samples")
    return y, s


def roc_auc(y_true: Any, scores: Any) -> float:
    y, s = _check(y_true, scores)
    return float(roc_auc_score(y, s))


def pr_auc(y_true: Any, scores: Any) -> float:
    """Average precision (area under the precision-recall curve), in ``[0, 1]``.

    scikit-learn's sum of precision steps can round to just above 1 (1.0000000000000002);
    it is clipped so that a perfect detector reads exactly 1.
    """
    y, s = _check(y_true, scores)
    return float(min(1.0, max(0.0, average_precision_score(y, s))))


def best_f1(y_true: Any, scores: Any) -> float:
    """The best F1 over all thresholds of the precision-recall curve."""
    y, s = _check(y_true, scores)
    precision, recall, _ = precision_recall_curve(y, s)
    denom = precision + recall
    f1 = np.where(denom > 0, 2 * precision * recall / np.where(denom > 0, denom, 1), 0.0)
    return float(f1.max())


def detection_metrics(y_true: Any, scores: Any) -> dict[str, float]:
    """ROC-AUC, PR-AUC and best F1 in one dict."""
    return {"roc_auc": roc_auc(y_true, scores), "pr_auc": pr_auc(y_true, scores), "best_f1": best_f1(y_true, scores)}


def alignment(a: Any, b: Any) -> dict[str, float]:
    """Pearson, Spearman and Kendall correlation between two score vectors."""
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    if x.shape != y.shape or x.size < 2:
        raise ValueError(f"need two vectors of the same length >= 2, got {x.size} and {y.size}")
    return {
        "pearson": float(stats.pearsonr(x, y)[0]),
        "spearman": float(stats.spearmanr(x, y)[0]),
        "kendall": float(stats.kendalltau(x, y)[0]),
    }


def latent_center(detector: Any) -> np.ndarray:
    """``c``: a fitted flow detector's base mean, or a Deep SVDD's centre (float64)."""
    model = detector.model_
    if hasattr(model, "base") and not hasattr(model.base, "center"):
        raise ValueError(
            "a mixture or kernel base (base_components > 1, base='kernel') has no one centre; "
            "latent_distance still applies"
        )
    center = model.base.center if hasattr(model, "base") else model.center
    return center.detach().cpu().double().numpy()


def latent_distance(detector: Any, X: Any) -> np.ndarray:
    """``||z - c||`` per row of ``X``: the distance of its latent ``z = detector.latent(X)``
    from :func:`latent_center` (a USF's NLL is an increasing function of it). On a mixture
    base (``base_components > 1``), the radius at which one standard Gaussian has the
    mixture's density at ``z`` (:meth:`usfad.density.GaussianMixtureBase.sq_distance`): the
    distance to the one mean for one component, and still what a USF's NLL increases with.
    On a kernel base (``base="kernel"``), a soft minimum of the distances to the training
    latents (:meth:`usfad.density.KernelBase.sq_distance`), which a USF's NLL increases with too.

    With an identity flow's kernel beside it (``input_kernel``, the default with a kernel
    base), the score is the mean of two USFs' NLLs, one on the latent ``z``, one on the
    standardised row ``u`` (the identity flow's latent): the distance of the pair,
    ``sqrt(D_z^2 / h_z^2 + D_u^2 / h_u^2)`` with ``D`` each kernel's soft distance and ``h``
    its bandwidth (in bandwidths, not latent units), which a USF's NLL increases with. With the
    trained base beside the kernels (``gaussian_weight_ = w > 0``), ``sqrt((1 - w) K + w
    D_g^2 / s^2)``, with ``K`` the kernels' term in bandwidths (``D_z^2 / h_z^2``, or the mean
    of the pair's two) and ``D_g`` the trained base's distance at scale ``s``: the score is half
    of it squared plus a constant."""
    base = getattr(detector.model_, "base", None)
    if base is not None and not hasattr(base, "center"):  # the base's own formula, on a float64 copy of it
        import torch  # only a fitted flow detector gets here, and it has imported torch already

        z = torch.as_tensor(detector.latent(X), dtype=torch.float64)
        with torch.no_grad():
            sq = copy.deepcopy(base).cpu().double().sq_distance(z).clamp_min(0.0)
            input_base = getattr(detector.model_, "input_base", None)
            trained = getattr(detector.model_, "trained_base", None)
            if input_base is None and trained is None:
                return sq.sqrt().numpy()
            kernels = sq / base.bandwidth.double() ** 2
            if input_base is not None:
                u = detector._validated(X).cpu().double()  # the standardised rows, as the network sees them
                sq_u = copy.deepcopy(input_base).cpu().double().sq_distance(u).clamp_min(0.0)
                kernels = kernels + sq_u / input_base.bandwidth.double() ** 2
                if trained is None:
                    return kernels.sqrt().numpy()
                kernels = kernels / 2  # the kernels' mean NLL is kernels / 2 + const
            w = float(detector.model_.trained_weight)
            on_trained = copy.deepcopy(trained).cpu().double()
            sq_g = on_trained.sq_distance(z).clamp_min(0.0) / on_trained.scale.double() ** 2
            return ((1 - w) * kernels + w * sq_g).sqrt().numpy()
    return np.linalg.norm(detector.latent(X) - latent_center(detector), axis=1)
