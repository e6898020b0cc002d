"""Density alignment on Gaussian mixtures whose density is known exactly.

For each dimension ``d`` the data follow a two-component mixture with equal weights:
``N(-1, I)`` and ``N(+1, diag(5, ..., 5, 0.5, ..., 0.5))`` (``-1``/``+1`` on every axis;
the first ``d // 2`` variances 5, the others 0.5), so the true negative log-likelihood of
every sample is available in closed form (:class:`DiagonalGaussianMixture`).

USFlow, NonUSFlow and DeepSVDD are fitted on ``n_train`` samples and evaluated on
``n_eval`` fresh ones. Per model the study reports Pearson, Spearman and Kendall
correlations between the true NLL and the latent distance ``||z - c||`` (``c`` the base
mean of a flow, the centre of Deep SVDD) and, for the flows, between the learned and the
true log-density. A uniformly scaling flow's NLL is an increasing function of its latent
distance, so if it learns the density well its distance ranks samples like the truth; a
non-USF flow's distance ignores its input-dependent log-det, and Deep SVDD has no density.

Models run with their library defaults (what a user gets), except that Deep SVDD's code
has the data's dimension ``d`` like the flows' (so its latent plane is 2-D at ``d = 2``).
"""

from __future__ import annotations

import csv
import math
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import logsumexp

from ..errors import DataError, TrainingDivergedError
from ..metrics import alignment, latent_center, latent_distance
from ..reporting.report import figure_section, quick_note, write_markdown
from ..reporting.tables import markdown_table

DIMS = (2, 8, 32, 128)
MODELS = ("USFlow", "NonUSFlow", "DeepSVDD")
FLOW_MODELS = ("USFlow", "NonUSFlow")
#: ``quick``: a smoke test of the whole pipeline in seconds, not a meaningful result
QUICK_OVERRIDES: dict[str, Any] = {"epochs": 2, "max_steps": 5, "hidden_features": (16, 16)}
CORRELATIONS = ("pearson", "spearman", "kendall")


@dataclass(frozen=True)
class DiagonalGaussianMixture:
    """``sum_k w_k N(mean_k, diag(var_k))`` on ``R^d``, with exact sampling and log-density."""

    means: np.ndarray  #: ``(k, d)``
    variances: np.ndarray  #: ``(k, d)``
    weights: np.ndarray  #: ``(k,)``, summing to 1

    @property
    def dim(self) -> int:
        return int(self.means.shape[1])

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` independent samples, ``(n, d)`` float64."""
        component = rng.choice(len(self.weights), size=n, p=self.weights)
        noise = rng.standard_normal((n, self.dim))
        return self.means[component] + np.sqrt(self.variances[component]) * noise

    def log_prob(self, X: np.ndarray) -> np.ndarray:
        """``log p(x)`` per row: ``logsumexp_k [log w_k + sum_j log N(x_j; m_kj, v_kj)]``."""
        X = np.asarray(X, dtype=np.float64)
        diff = X[:, None, :] - self.means[None, :, :]  # (n, k, d)
        log_normal = -0.5 * (diff**2 / self.variances + np.log(2 * math.pi * self.variances)).sum(-1)
        return logsumexp(log_normal + np.log(self.weights), axis=1)

    def nll(self, X: np.ndarray) -> np.ndarray:
        return -self.log_prob(X)


def alignment_mixture(d: int) -> DiagonalGaussianMixture:
    """The study's mixture in ``d`` dimensions (see the module docstring)."""
    if d < 1:
        raise ValueError(f"d must be >= 1, got {d}")
    wide = np.where(np.arange(d) < d // 2, 5.0, 0.5)
    return DiagonalGaussianMixture(
        means=np.stack([-np.ones(d), np.ones(d)]),
        variances=np.stack([np.ones(d), wide]),
        weights=np.array([0.5, 0.5]),
    )


# --- what is measured on one fitted model ---------------------------------------------


def learned_log_density(detector: Any, X: np.ndarray) -> np.ndarray:
    """A flow detector's ``log p(x)`` in the data's own coordinates.

    Its scores are the NLL of standardised data; standardising divides by the scale, so
    ``log p(x) = -NLL_std(x) - sum(log scale)``.
    """
    return -detector.decision_function(X) - float(np.log(detector.scaler_scale_).sum())


def log_abs_det_jacobian(detector: Any, X: np.ndarray) -> np.ndarray:
    """``log|det J(x)|`` of the map from ``x`` (original coordinates) to the latent ``z``.

    For a flow, its own log-det; otherwise (Deep SVDD with a code of the data's size) the
    Jacobian from autograd, one backward pass per latent coordinate.
    """
    import torch

    data = detector._to_tensor(np.asarray(X, dtype=np.float64))
    shift = float(np.log(detector.scaler_scale_).sum())
    model = detector.model_
    if hasattr(model, "flow"):
        with torch.no_grad():
            logdet = model.flow(data)[1]
        return logdet.double().cpu().numpy() - shift
    return autograd_log_abs_det(detector._latent, data).cpu().numpy() - shift


def autograd_log_abs_det(fn: Callable[[Any], Any], x: Any) -> Any:
    """``log|det J_fn(x)|`` per sample for a map ``R^d -> R^d`` applied row by row.

    Rows do not interact, so the gradient of ``sum_n fn(x)[n, i]`` is row ``i`` of every
    sample's Jacobian: ``d`` backward passes give them all.
    """
    import torch

    x = x.detach().clone().requires_grad_(True)
    z = fn(x)
    if z.shape[1] != x.shape[1]:
        raise ValueError(f"log|det J| needs a square map; the latent has {z.shape[1]} of {x.shape[1]} dimensions")
    rows = [torch.autograd.grad(z[:, i].sum(), x, retain_graph=True)[0] for i in range(z.shape[1])]
    jac = torch.stack(rows, dim=1).double()  # (n, latent, data)
    return torch.linalg.slogdet(jac)[1].detach()


# --- the study ------------------------------------------------------------------------


@dataclass
class AlignmentRow:
    """One (d, model) result; correlations are NaN when the model failed."""

    d: int
    model: str
    distance: dict[str, float]  #: true NLL vs latent distance
    density: dict[str, float] | None  #: learned vs true log-density (flows only)
    self_spearman: float | None  #: Spearman(model's own NLL, latent distance) (flows only)
    fit_seconds: float
    status: str = "ok"


@dataclass
class AlignmentResult:
    rows: list[AlignmentRow] = field(default_factory=list)
    #: ``{d: {model: (true_nll, latent_distance)}}`` on the evaluation samples
    points: dict[int, dict[str, tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)
    #: ``d = 2`` only: ``{model: (z, true_log_density, logdet, center)}``
    planes: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)


def model_factories(quick: bool = False, device: str = "cpu") -> dict[str, Callable[[int, int], Any]]:
    """``{name: factory(d, seed) -> unfitted detector}`` for the study's three models.

    The flows score with the one Gaussian they trained with (``base="gaussian"``): the paper's
    analysis is about that model, whose latent distance is the distance to one centre (the
    default kernel base's alignment: ``benchmarks/alignment_default.py``)."""
    from ..detectors import DeepSVDD, NonUSFlow, USFlow

    extra = {"device": device, **(QUICK_OVERRIDES if quick else {})}
    flows = {**extra, "base": "gaussian"}
    return {
        "USFlow": lambda d, seed: USFlow(random_state=seed, **flows),
        "NonUSFlow": lambda d, seed: NonUSFlow(random_state=seed, **flows),
        "DeepSVDD": lambda d, seed: DeepSVDD(latent_features=d, random_state=seed, **extra),
    }


def _nan_corr() -> dict[str, float]:
    return dict.fromkeys(CORRELATIONS, float("nan"))


def run_alignment(
    dims: Sequence[int] = DIMS,
    n_train: int = 50_000,
    n_eval: int = 10_000,
    seed: int = 0,
    quick: bool = False,
    device: str = "cpu",
    progress: bool = True,
) -> AlignmentResult:
    """Fit every model on every mixture and measure alignment; see the module docstring.

    The samples of dimension ``d`` come from ``numpy.random.default_rng([seed, d])``, so
    they do not depend on which other dimensions are run.
    """
    from tqdm.auto import tqdm

    dims = [int(d) for d in dims]
    if not dims or min(dims) < 1:
        raise ValueError(f"dims must be positive integers, got {dims}")
    if n_train < 2 or n_eval < 2:
        raise ValueError(f"n_train and n_eval must be >= 2, got {n_train} and {n_eval}")
    factories = model_factories(quick, device)
    result = AlignmentResult(
        settings={"dims": dims, "n_train": n_train, "n_eval": n_eval, "seed": seed, "quick": quick}
    )
    bar = tqdm(total=len(dims) * len(factories), desc="alignment", unit="fit", disable=not progress, file=sys.stderr)
    with bar:
        for d in dims:
            mixture = alignment_mixture(d)
            rng = np.random.default_rng([seed, d])
            X_train, X_eval = mixture.sample(n_train, rng), mixture.sample(n_eval, rng)
            true_nll = mixture.nll(X_eval)
            for model, factory in factories.items():
                bar.set_postfix_str(f"d={d} {model}")
                _measure(result, d, model, factory(d, seed), X_train, X_eval, true_nll)
                bar.update()
    return result


def _measure(
    result: AlignmentResult,
    d: int,
    model: str,
    detector: Any,
    X_train: np.ndarray,
    X_eval: np.ndarray,
    true_nll: np.ndarray,
) -> None:
    is_flow = model in FLOW_MODELS
    start = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            detector.fit(X_train)
        seconds = time.perf_counter() - start
        for w in caught:
            if issubclass(w.category, UserWarning):
                result.notes.append(f"d = {d} / {model}: {w.message}")
        dist = latent_distance(detector, X_eval)
        learned = learned_log_density(detector, X_eval) if is_flow else None
    except (TrainingDivergedError, DataError) as exc:  # a non-finite loss or NaN scores
        result.notes.append(f"d = {d} / {model}: training diverged ({exc})")
        result.rows.append(
            AlignmentRow(
                d, model, _nan_corr(), _nan_corr() if is_flow else None, None, time.perf_counter() - start, "diverged"
            )
        )
        return
    row = AlignmentRow(d, model, alignment(true_nll, dist), None, None, seconds)
    if learned is not None:
        row.density = alignment(learned, -true_nll)
        row.self_spearman = alignment(-learned, dist)["spearman"]
    result.rows.append(row)
    result.points.setdefault(d, {})[model] = (true_nll, dist)
    if d == 2:
        z = detector.latent(X_eval)
        result.planes[model] = (z, -true_nll, log_abs_det_jacobian(detector, X_eval), latent_center(detector))


# --- report ---------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 3) -> str:
    return "" if value is None else ("n/a" if not math.isfinite(value) else f"{value:.{digits}f}")


#: the report's figures, by file stem
CAPTIONS = {
    "alignment_scatter": "True NLL against latent distance, a row per d, a column per model.",
    "latent_plane_d2": "d = 2: evaluation samples in each latent plane, coloured by the true "
    "log-density (top; dashed circles at the 50/90/99 % quantiles of the latent distance) and by "
    "log|det J(x)| (bottom).",
}
TABLE_HEADERS = [
    "d",
    "model",
    "Pearson (NLL, dist)",
    "Spearman (NLL, dist)",
    "Kendall (NLL, dist)",
    "Pearson (log p)",
    "Spearman (log p)",
    "Kendall (log p)",
    "Spearman (own NLL, dist)",
    "fit s",
]


def table_rows(rows: Sequence[AlignmentRow]) -> list[list[str]]:
    out = []
    for r in rows:
        density = r.density or {}
        out.append(
            [
                str(r.d),
                r.model + ("" if r.status == "ok" else f" ({r.status})"),
                *(_fmt(r.distance[k]) for k in CORRELATIONS),
                *(_fmt(density.get(k)) for k in CORRELATIONS),
                _fmt(r.self_spearman, 4),
                f"{r.fit_seconds:.1f}",
            ]
        )
    return out


def write_plots(result: AlignmentResult, out: Path) -> list[Path]:
    from .plots import plot_alignment_scatter, plot_latent_plane

    paths = []
    if result.points:
        paths.append(plot_alignment_scatter(result.points, out / "alignment_scatter.png"))
    if result.planes:
        paths.append(plot_latent_plane(result.planes, out / "latent_plane_d2.png"))
    return paths


def write_csv(result: AlignmentResult, path: Path) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["d", "model", "status", *(f"{k}_distance" for k in CORRELATIONS), *(f"{k}_density" for k in CORRELATIONS)]
            + ["spearman_own_nll_distance", "fit_seconds"]
        )
        for r in result.rows:
            density = r.density or {}
            writer.writerow(
                [r.d, r.model, r.status, *(r.distance[k] for k in CORRELATIONS)]
                + [density.get(k, "") for k in CORRELATIONS]
                + ["" if r.self_spearman is None else r.self_spearman, f"{r.fit_seconds:.3f}"]
            )
    return path


def write_report(result: AlignmentResult, out: str | Path, plots: bool = True) -> Path:
    """Write ``report.md``, ``alignment.csv`` and the figures into ``out``; returns the report's path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    s = result.settings
    figures = write_plots(result, out) if plots else []
    write_csv(result, out / "alignment.csv")
    lines = [
        "# Density alignment study",
        "",
        f"Two-component Gaussian mixtures (equal weights; N(-1, I) and N(+1, diag(5, ..., 5, 0.5, ..., 0.5))) in "
        f"d = {', '.join(map(str, s.get('dims', [])))}; {s.get('n_train')} training and {s.get('n_eval')} fresh "
        f"evaluation samples per d; seed {s.get('seed')}. The true NLL is exact.",
    ]
    lines += quick_note(bool(s.get("quick")))
    lines += [
        "",
        "## Correlations",
        "",
        "*(NLL, dist)*: true NLL of the evaluation samples against the model's latent distance ||z - c|| "
        "(1 = the distance ranks samples exactly like the true density). *(log p)*: the flow's learned "
        "log-density against the true one. *(own NLL, dist)*: the flow's own NLL against its latent distance "
        "(1 for a uniformly scaling flow, whatever it learned).",
        "",
        markdown_table(TABLE_HEADERS, table_rows(result.rows)),
        "",
    ]
    lines += figure_section(figures, CAPTIONS)
    if result.notes:
        lines += ["## Warnings", ""] + [f"- {n}" for n in result.notes] + [""]
    quick = ", ".join(f"{k}={v}" for k, v in QUICK_OVERRIDES.items()) if s.get("quick") else ""
    lines += [
        "## Settings",
        "",
        "- USFlow, NonUSFlow: library defaults" + (f" with {quick}" if quick else ""),
        "- DeepSVDD: library defaults with latent_features = d" + (f", {quick}" if quick else ""),
        "",
    ]
    return write_markdown(lines, out / "report.md")
