"""Figures for reports: ROC curves, score histograms, the density-alignment scatter,
anomaly-map overlays of images and one row's feature attributions.

Each function takes plain arrays keyed by dataset (and model), draws one figure with a
panel per dataset and writes it as a PNG (the attribution chart: one row, two panels).
Figures are made with matplotlib's object API and the Agg canvas, never ``pyplot``: nothing
depends on (or changes) the global backend, and no window opens.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: ``{dataset: {model: (y_true, scores)}}``
ScoresByDataset = Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray]]]
#: ``{dataset: {model: (latent_distance, nll, y_true)}}``
AlignmentByDataset = Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]]]

NORMAL_COLOR = "tab:blue"
ANOMALY_COLOR = "tab:red"


def _figure(n_rows: int, n_cols: int, panel: tuple[float, float] = (4.0, 3.2)) -> tuple[Figure, np.ndarray]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(panel[0] * n_cols, panel[1] * n_rows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = np.asarray(fig.subplots(n_rows, n_cols, squeeze=False))
    return fig, axes


def _save(fig: Figure, path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    fig.savefig(path, dpi=100)
    return path


def model_panels(
    results: Mapping[Any, Mapping[str, Any]], panel: tuple[float, float]
) -> tuple[Figure, list[tuple[int, int, Any, str, Axes, Any]]]:
    """A grid with a row per key of ``results`` and a column per model seen in any row.

    Returns the figure and ``(row, col, key, model, ax, value)`` for every present cell;
    the axes of a model missing from a row are hidden.
    """
    models = list(dict.fromkeys(m for by_model in results.values() for m in by_model))
    fig, axes = _figure(len(results), len(models), panel=panel)
    cells = []
    for row, (key, by_model) in enumerate(results.items()):
        for col, model in enumerate(models):
            if model in by_model:
                cells.append((row, col, key, model, axes[row, col], by_model[model]))
            else:
                axes[row, col].set_visible(False)
    return fig, cells


def _grid(n: int, max_cols: int = 4) -> tuple[int, int]:
    cols = min(n, max_cols)
    return math.ceil(n / cols), cols


def plot_roc_curves(results: ScoresByDataset, path: str | os.PathLike[str]) -> Path:
    """One panel per dataset, one ROC curve per model (with its AUC in the legend)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    n_rows, n_cols = _grid(len(results))
    fig, axes = _figure(n_rows, n_cols, panel=(4.0, 3.8))
    for ax, (dataset, by_model) in zip(axes.flat, results.items()):
        for model, (y, scores) in by_model.items():
            fpr, tpr, _ = roc_curve(y, scores)
            ax.plot(fpr, tpr, label=f"{model} ({roc_auc_score(y, scores):.3f})", linewidth=1.4)
        ax.plot([0, 1], [0, 1], color="0.7", linestyle=":", linewidth=1)
        ax.set(title=dataset, xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01))
        ax.legend(fontsize="small", loc="lower right")
    for ax in axes.flat[len(results) :]:
        ax.set_visible(False)
    return _save(fig, path)


def _bin_edges(ax: Axes, scores: np.ndarray, bins: int) -> np.ndarray:
    """Linear bins, or symmetric-log bins (and axis) for heavy-tailed scores.

    NLL scores of far-out anomalies can be orders of magnitude above the normal data's;
    on a linear axis the normal data would fill a single bin.
    """
    from matplotlib.scale import SymmetricalLogTransform

    lo, hi = float(scores.min()), float(scores.max())
    if not hi > lo:
        return np.linspace(lo - 0.5, hi + 0.5, bins + 1)
    q25, q75 = np.percentile(scores, [25, 75])
    iqr = float(q75 - q25)
    if iqr <= 0 or hi - lo < 20 * iqr:
        return np.linspace(lo, hi, bins + 1)
    linthresh = max(iqr, 1e-12)
    transform = SymmetricalLogTransform(base=10, linthresh=linthresh, linscale=1.0)
    ends = transform.transform(np.array([lo, hi]))
    ax.set_xscale("symlog", linthresh=linthresh)
    return transform.inverted().transform(np.linspace(ends[0], ends[1], bins + 1))


def plot_score_histograms(results: ScoresByDataset, path: str | os.PathLike[str], bins: int = 30) -> Path:
    """A grid (dataset x model) of score histograms, normal versus anomalous test samples.

    Heavy-tailed scores get a symmetric-log axis, so both groups stay visible.
    """
    fig, cells = model_panels(results, panel=(3.0, 2.3))
    for row, col, dataset, model, ax, value in cells:
        y, scores = (np.asarray(a) for a in value)
        edges = _bin_edges(ax, scores, bins)
        for label, color, name in ((0, NORMAL_COLOR, "normal"), (1, ANOMALY_COLOR, "anomaly")):
            group = scores[y == label]
            # share of the group per bin (not a density: log bins have unequal widths)
            weights = np.full(group.shape, 1.0 / max(group.size, 1))
            ax.hist(group, bins=edges, weights=weights, alpha=0.6, color=color, label=name)
        ax.set_yticks([])
        ax.tick_params(which="both", labelsize="x-small")
        if row == 0:
            ax.set_title(model, fontsize="medium")
        if col == 0:
            ax.set_ylabel(dataset)
        if row == 0 and col == 0:
            ax.legend(fontsize="x-small")
    fig.suptitle("anomaly scores on test data (higher = more anomalous)")
    return _save(fig, path)


def plot_density_alignment(results: AlignmentByDataset, path: str | os.PathLike[str]) -> Path:
    """NLL against latent distance ``||f(x) - c||``, a row per dataset, a column per model.

    Axes are logarithmic (symmetric-log for the NLL, which may be negative). For a
    uniformly scaling flow the points lie on one increasing curve (NLL is a function of the
    distance); for a flow with input-dependent log-det they form a cloud. The Spearman
    correlation is printed in each panel's title.
    """
    from scipy import stats

    fig, cells = model_panels(results, panel=(3.8, 3.0))
    for row, col, dataset, model, ax, value in cells:
        dist, nll, y = (np.asarray(a) for a in value)
        rho = float(stats.spearmanr(dist, nll)[0])
        for label, color, name in ((0, NORMAL_COLOR, "normal"), (1, ANOMALY_COLOR, "anomaly")):
            ax.scatter(dist[y == label], nll[y == label], s=6, alpha=0.6, color=color, label=name, linewidths=0)
        # Log axes: anomalies lie orders of magnitude out, the normal data's cloud near 1.
        ax.set_xscale("log")
        lo, hi = float(nll.min()), float(nll.max())
        if lo > 0:
            ax.set_yscale("log")
            ax.set_ylim(lo / 1.25, hi * 1.25)
        else:  # an NLL can be negative: symmetric log, linear near 0
            ax.set_yscale("symlog", linthresh=max(1.0, float(np.percentile(np.abs(nll), 5))))
            ax.set_ylim(lo - 0.25 * abs(lo) - 1.0, hi + 0.25 * abs(hi) + 1.0)
        ax.set_title(f"{dataset}: {model}\nSpearman {rho:.4f}", fontsize="medium")
        ax.set_xlabel("latent distance ||f(x) - c||")
        ax.set_ylabel("NLL")
        ax.tick_params(which="both", labelsize="x-small")
        if row == 0 and col == 0:
            ax.legend(fontsize="x-small", markerscale=2)
    return _save(fig, path)


def write_overlay(
    path: str | os.PathLike[str],
    image: np.ndarray,
    amap: np.ndarray,
    vmin: float,
    vmax: float,
    mask: np.ndarray | None = None,
    title: str | None = None,
) -> Path:
    """Save ``image`` ``[H, W, 3]`` in [0, 1] with ``amap`` ``[H, W]`` blended on top (jet, range
    ``vmin``..``vmax``), the ``mask`` (if any) outlined in white and ``title`` (if any) above."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    h, w = image.shape[:2]
    scale = max(1.0, 420 / max(h, w))  # small images are shown larger, so the title fits
    pad = 24 if title else 0  # pixels above the image for the title
    fig = Figure(figsize=(w * scale / 100, (h * scale + pad) / 100), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, h * scale / (h * scale + pad)))
    ax.imshow(image)
    ax.imshow(amap, cmap="jet", alpha=0.45, vmin=vmin, vmax=vmax if vmax > vmin else vmin + 1)
    if mask is not None and mask.any():
        ax.contour(mask, levels=[0.5], colors="white", linewidths=1.0)
    ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=7, y=0.995, va="top")
    fig.savefig(path)
    return Path(path)


def plot_attributions(
    path: str | os.PathLike[str],
    attributions: np.ndarray,
    values: np.ndarray,
    names: Sequence[str],
    mean: np.ndarray,
    scale: np.ndarray,
    title: str | None = None,
    max_features: int = 12,
) -> Path:
    """One row's attributions as horizontal bars, beside each feature's value and normal range.

    Left: the attributions (red: the feature raises the score, blue: it lowers it) of the
    ``max_features`` features with the largest ``|attribution|``, largest first. Right: each
    value in training standard deviations from the training mean (``(value - mean) /
    scale``), over the normal range ``mean +- 2 sd`` (shaded), labelled with the raw value and
    range; a value beyond the axis is an arrow head at its edge.
    """
    attributions = np.asarray(attributions, dtype=np.float64)
    values, mean, scale = (np.asarray(a, dtype=np.float64) for a in (values, mean, scale))
    shown = np.argsort(-np.abs(attributions), kind="stable")[:max_features]
    shown = shown[np.argsort(-attributions[shown], kind="stable")]
    fig, axes = _figure(1, 2, panel=(4.2, 0.8 + 0.32 * len(shown)))
    bars, ranges = axes[0, 0], axes[0, 1]
    rows = np.arange(len(shown))[::-1]  # the first shown at the top
    a = attributions[shown]
    bars.barh(rows, a, color=np.where(a >= 0, ANOMALY_COLOR, NORMAL_COLOR), height=0.7)
    bars.axvline(0, color="black", lw=0.8)
    bars.set_yticks(rows, [str(names[j]) for j in shown], fontsize="small")
    bars.set_xlabel("attribution (score units)", fontsize="small")
    bars.set_title("what raises the score", fontsize="small")
    with np.errstate(over="ignore", invalid="ignore"):
        z = (values[shown] - mean[shown]) / scale[shown]
    limit = max(4.0, min(float(np.nanmax(np.abs(z), initial=0.0)) * 1.1, 12.0))
    ranges.axvspan(-2, 2, color="0.88", zorder=0)
    ranges.axvline(0, color="0.6", lw=0.8, zorder=1)
    color = np.where(np.abs(z) > 2, ANOMALY_COLOR, "black")
    edge = 0.97 * limit  # values beyond the axis: an arrow head at its edge
    for marker, where in (("o", np.abs(z) <= edge), (">", z > edge), ("<", z < -edge)):
        ranges.scatter(np.clip(z[where], -edge, edge), rows[where], c=color[where], marker=marker, s=22, zorder=2)
    for row, j in zip(rows, shown):
        lo, hi = mean[j] - 2 * scale[j], mean[j] + 2 * scale[j]
        ranges.annotate(
            f"{values[j]:.4g}  (normal {lo:.3g} to {hi:.3g})",
            (-limit, row),
            xytext=(2, 5),
            textcoords="offset points",
            fontsize="x-small",
            color="0.3",
        )
    ranges.set_xlim(-limit, limit)
    ranges.set_ylim(bars.get_ylim())
    ranges.set_yticks(rows, [""] * len(rows))
    ranges.set_xlabel("value, sd from the training mean (shaded: mean +- 2 sd)", fontsize="small")
    ranges.set_title("the value and its normal range", fontsize="small")
    if title:
        fig.suptitle(title, fontsize="small")
    return _save(fig, path)
