"""Figures of the studies: alignment scatter, latent plane, loss curves, ROC-AUC spread.

Same conventions as :mod:`usfad.plots`: matplotlib's object API on the Agg canvas (no
``pyplot``, no global backend), one PNG per function, plain arrays in.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..plots import _figure, _grid, _save, model_panels

if TYPE_CHECKING:
    from matplotlib.axes import Axes

#: points drawn per scatter panel (a random subset beyond that: the figure stays legible)
MAX_POINTS = 3000
#: latent-distance quantiles at which the latent-plane figure draws circles
CIRCLE_QUANTILES = (0.5, 0.9, 0.99)


def _subset(n: int, max_points: int = MAX_POINTS) -> np.ndarray:
    if n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).choice(n, size=max_points, replace=False))


def plot_alignment_scatter(
    points: Mapping[int, Mapping[str, tuple[np.ndarray, np.ndarray]]], path: str | os.PathLike[str]
) -> Path:
    """True NLL against latent distance: a row per dimension ``d``, a column per model.

    ``points[d][model] = (true_nll, latent_distance)``. Perfect density alignment is one
    increasing curve; the Spearman correlation is in each panel's title.
    """
    from scipy import stats

    fig, cells = model_panels(points, panel=(3.6, 3.0))
    for _, _, d, model, ax, value in cells:
        nll, dist = (np.asarray(a, dtype=np.float64) for a in value)
        ok = np.isfinite(nll) & np.isfinite(dist)
        if ok.sum() < 2:
            ax.text(0.5, 0.5, "no result", ha="center", va="center", transform=ax.transAxes)
            ax.set_title(f"d = {d}: {model}", fontsize="medium")
            continue
        nll, dist = nll[ok], dist[ok]
        rho = float(stats.spearmanr(nll, dist)[0])
        keep = _subset(nll.size)
        ax.scatter(nll[keep], dist[keep], s=4, alpha=0.4, linewidths=0)
        ax.set_title(f"d = {d}: {model}\nSpearman {rho:.3f}", fontsize="medium")
        ax.set_xlabel("true NLL")
        ax.set_ylabel("latent distance ||z - c||")
        ax.tick_params(which="both", labelsize="x-small")
    return _save(fig, path)


def _color_range(values: np.ndarray) -> tuple[float, float]:
    """Colour limits; a constant (up to rounding) gets a unit-wide range around it.

    Without this, float rounding in a constant log-det would be stretched over the whole
    colour map and look like variation.
    """
    lo, hi = float(np.min(values)), float(np.max(values))
    if hi - lo < 1e-3 * max(1.0, abs(lo)):
        mid = 0.5 * (lo + hi)
        return mid - 0.5, mid + 0.5
    return lo, hi


def _latent_panel(
    ax: Axes, z: np.ndarray, color: np.ndarray, label: str, center: np.ndarray | None, title: str
) -> None:
    keep = _subset(z.shape[0])
    vmin, vmax = _color_range(color)
    sc = ax.scatter(z[keep, 0], z[keep, 1], c=color[keep], s=4, cmap="viridis", vmin=vmin, vmax=vmax, linewidths=0)
    ax.figure.colorbar(sc, ax=ax, label=label, shrink=0.85)
    if center is not None:
        from matplotlib.patches import Circle

        dist = np.linalg.norm(z - center, axis=1)
        for q in CIRCLE_QUANTILES:
            radius = float(np.quantile(dist, q))
            ax.add_patch(Circle(tuple(center), radius, fill=False, color="tab:red", linewidth=1.0, linestyle="--"))
        ax.plot(*center, marker="+", color="tab:red")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_title(title, fontsize="medium")
    ax.set_xlabel("z1")
    ax.set_ylabel("z2")
    ax.tick_params(which="both", labelsize="x-small")


def plot_latent_plane(
    planes: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]],
    path: str | os.PathLike[str],
) -> Path:
    """The 2-D latent plane of each model, coloured twice.

    ``planes[model] = (z, true_log_density, logdet, center)`` with ``z`` of shape
    ``(n, 2)``. Top row: colour = true log-density of ``x``, dashed circles around the
    centre at the 50/90/99 % quantiles of the latent distance (for a density-aligned model
    the colour is constant along each circle). Bottom row: colour = ``log|det J(x)|`` of
    the map ``x -> z`` (one colour for a uniformly scaling flow); ``None`` leaves it empty.
    """
    models = list(planes)
    fig, axes = _figure(2, len(models), panel=(4.2, 3.6))
    for col, model in enumerate(models):
        z, logp, logdet, center = planes[model]
        _latent_panel(axes[0, col], z, logp, "true log-density", center, f"{model}: true density")
        if logdet is None:
            axes[1, col].set_visible(False)
            continue
        span = float(np.ptp(logdet))
        title = f"{model}: log|det J(x)|" + (f"\nconstant ({float(np.mean(logdet)):.3f})" if span < 1e-3 else "")
        _latent_panel(axes[1, col], z, logdet, "log|det J(x)|", None, title)
    return _save(fig, path)


def _maybe_symlog(ax: Axes, values: Sequence[float]) -> None:
    finite = np.asarray([v for v in values if np.isfinite(v)])
    if finite.size < 2:
        return
    lo, hi = float(finite.min()), float(finite.max())
    q25, q75 = np.percentile(finite, [25, 75])
    iqr = float(q75 - q25)
    if iqr > 0 and hi - lo > 50 * iqr:  # a spike would flatten every other curve
        ax.set_yscale("symlog", linthresh=max(iqr, 1e-6))


def plot_loss_curves(
    curves: Mapping[str, Mapping[str, Mapping[int, tuple[Sequence[float], Sequence[float]]]]],
    path: str | os.PathLike[str],
) -> Path:
    """Loss per epoch: a row per dataset, a column per model, a line per seed.

    ``curves[dataset][model][seed] = (train_loss, val_loss)``; training loss solid,
    validation loss dashed in the same colour. Spiky curves get a symmetric-log axis.
    """
    models = list(dict.fromkeys(m for by_model in curves.values() for m in by_model))
    fig, axes = _figure(max(len(curves), 1), max(len(models), 1), panel=(3.6, 2.8))
    for row, (dataset, by_model) in enumerate(curves.items()):
        for col, model in enumerate(models):
            ax = axes[row, col]
            runs = by_model.get(model, {})
            if not runs:
                ax.set_visible(False)
                continue
            values: list[float] = []
            for i, (seed, (train, val)) in enumerate(runs.items()):
                color = f"C{i % 10}"
                ax.plot(np.arange(1, len(train) + 1), train, color=color, linewidth=1.2, label=f"seed {seed}")
                if len(val):
                    ax.plot(np.arange(1, len(val) + 1), val, color=color, linewidth=1.0, linestyle="--")
                values += list(train) + list(val)
            _maybe_symlog(ax, values)
            ax.set_title(f"{dataset}: {model}", fontsize="medium")
            ax.set_xlabel("epoch")
            ax.set_ylabel("loss")
            ax.tick_params(which="both", labelsize="x-small")
            if row == 0 and col == 0:
                ax.legend(fontsize="x-small")
    return _save(fig, path)


def plot_auc_spread(aucs: Mapping[str, Mapping[str, Sequence[float]]], path: str | os.PathLike[str]) -> Path:
    """ROC-AUC per seed (dots) and its mean (bar) for each model, a panel per dataset."""
    n_rows, n_cols = _grid(max(len(aucs), 1))
    fig, axes = _figure(n_rows, n_cols, panel=(3.8, 3.0))
    for ax, (dataset, by_model) in zip(axes.flat, aucs.items()):
        for x, values in enumerate(by_model.values()):
            v = np.asarray([a for a in values if a is not None and np.isfinite(a)], dtype=np.float64)
            if v.size == 0:
                continue
            jitter = np.linspace(-0.12, 0.12, v.size) if v.size > 1 else np.zeros(1)
            ax.scatter(x + jitter, v, s=14, color=f"C{x % 10}", zorder=3)
            ax.hlines(v.mean(), x - 0.25, x + 0.25, color="black", linewidth=1.5, zorder=4)
        ax.set_xticks(range(len(by_model)), list(by_model), rotation=30, ha="right", fontsize="small")
        ax.set_title(dataset, fontsize="medium")
        ax.set_ylabel("ROC-AUC")
        ax.tick_params(axis="y", labelsize="x-small")
    for ax in axes.flat[len(aucs) :]:
        ax.set_visible(False)
    return _save(fig, path)
