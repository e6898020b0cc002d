"""The demo's run (``usfad demo``): Protocol T on the embedded datasets, every model, every seed.

Runs USFlow, NonUSFlow and DeepSVDD (and PyOD's IForest and KNN when PyOD is installed) on
every embedded dataset (:mod:`usfad.data.embedded`) with one set of hyper-parameters, and
keeps what the demo's report needs (:mod:`usfad.reporting.demo`): ROC-AUC, PR-AUC, best F1
and fit time per cell, the first seed's test scores, and for the two flows the latent
distance beside the NLL (density alignment: a curve for the USF, a cloud for the non-USF), and
USFlow's attributions of each dataset's top-scoring test row.

The settings are sized for a short run on a laptop CPU; they are demo settings, not the
benchmark's (:mod:`usfad.bench`). Unlike the benchmark grids, the demo is one short
in-process loop that keeps every cell's arrays for its figures and stops at the first error
(a demo that fails should say so, not report a table of failures), so it does not run its
cells as jobs of :mod:`usfad.experiments.engine`.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..data.embedded import load_embedded
from ..data.protocol import protocol_t
from ..errors import ThresholdWarning
from ..metrics import alignment, detection_metrics, latent_distance

#: The demo shows what a user gets: every model runs with its library defaults, the same
#: for every dataset (no per-dataset tuning).
FLOW_SETTINGS: dict[str, Any] = {}
SVDD_SETTINGS: dict[str, Any] = {}
#: ``--quick``: a smoke test of the whole pipeline, not a meaningful comparison
QUICK_OVERRIDES: dict[str, Any] = {"epochs": 2, "max_steps": 5, "hidden_features": (16, 16)}

ALIGNED_MODELS = ("USFlow", "NonUSFlow")

Factory = Callable[[int], Any]


@dataclass
class Cell:
    """One (dataset, model, seed) result."""

    dataset: str
    model: str
    seed: int
    roc_auc: float
    pr_auc: float
    best_f1: float
    fit_seconds: float


@dataclass
class Explained:
    """A detector's attributions (:meth:`~usfad.detectors.base.BaseDetector.explain`, from the
    training mean) of a dataset's top-scoring test rows, with what their figure shows."""

    rows: np.ndarray  #: indices into the test split, highest score first
    labels: np.ndarray  #: their true labels (1 = anomaly)
    scores: np.ndarray
    values: np.ndarray  #: ``(rows, features)``, as scored
    attributions: np.ndarray  #: ``(rows, features)``
    mean: np.ndarray  #: the detector's scaler
    scale: np.ndarray


#: test rows explained per dataset (the highest scores of USFlow, first seed)
EXPLAINED_ROWS = 1


def explain_top(detector: Any, X: np.ndarray, y: np.ndarray, scores: np.ndarray, n: int = EXPLAINED_ROWS) -> Explained:
    """The attributions of the ``n`` highest-scoring rows of ``X``."""
    rows = np.argsort(-scores, kind="stable")[:n]
    return Explained(
        rows, y[rows], scores[rows], X[rows], detector.explain(X[rows]), detector.scaler_mean_, detector.scaler_scale_
    )


@dataclass
class DemoResult:
    """Everything a demo run produces: metrics per cell and what the figures need."""

    cells: list[Cell] = field(default_factory=list)
    #: first seed's test scores, ``{dataset: {model: (y, scores)}}``
    scores: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)
    #: first seed's flows on test data, ``{dataset: {model: (distance, nll, y)}}``
    latent: dict[str, dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]] = field(default_factory=dict)
    #: Spearman(NLL, latent distance) per dataset, model and seed
    spearman: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    #: first seed's USFlow attributions of each dataset's top-scoring test rows
    explanations: dict[str, Explained] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def model_factories(quick: bool = False) -> dict[str, Factory]:
    """``{name: factory(seed) -> unfitted detector}``; PyOD anchors when importable."""
    from ..detectors import DeepSVDD, NonUSFlow, USFlow

    flow = {**FLOW_SETTINGS, **(QUICK_OVERRIDES if quick else {})}
    svdd = {**SVDD_SETTINGS, **(QUICK_OVERRIDES if quick else {})}
    factories: dict[str, Factory] = {
        "USFlow": lambda seed: USFlow(random_state=seed, **flow),
        "NonUSFlow": lambda seed: NonUSFlow(random_state=seed, **flow),
        "DeepSVDD": lambda seed: DeepSVDD(random_state=seed, **svdd),
    }
    try:
        from pyod.models.iforest import IForest
        from pyod.models.knn import KNN
    except ImportError:
        return factories
    factories["IForest"] = lambda seed: IForest(random_state=seed)
    factories["KNN"] = lambda seed: KNN()
    return factories


def run_demo(datasets: list[str], seeds: list[int], quick: bool = False, progress: bool = True) -> DemoResult:
    """Fit and score every (dataset, model, seed) cell under Protocol T."""
    import torch

    factories = model_factories(quick)
    result = DemoResult()
    # The demo's networks are small, so a second thread gains little; when other processes
    # compete for the cores, spinning worker threads make every step many times slower.
    # One thread keeps the run short everywhere.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _run_cells(result, factories, datasets, seeds, progress)
    finally:
        torch.set_num_threads(threads)
    return result


def _run_cells(
    result: DemoResult, factories: dict[str, Factory], datasets: list[str], seeds: list[int], progress: bool
) -> None:
    from tqdm.auto import tqdm

    data = {name: load_embedded(name) for name in datasets}
    n_cells = len(datasets) * len(factories) * len(seeds)
    with tqdm(total=n_cells, desc="usfad demo", unit="cell", disable=not progress, file=sys.stderr) as bar:
        for dataset, (X, y) in data.items():
            for seed in seeds:
                split = protocol_t(X, y, seed)
                for model, factory in factories.items():
                    bar.set_postfix_str(f"{dataset} / {model} / seed {seed}")
                    detector = factory(seed)
                    with warnings.catch_warnings(record=True) as caught:
                        warnings.simplefilter("always")
                        start = time.perf_counter()
                        detector.fit(split.X_train)
                        seconds = time.perf_counter() - start
                        scores = np.asarray(detector.decision_function(split.X_test), dtype=np.float64)
                    for w in caught:
                        # e.g. DeepSVDD's collapse warning; not ThresholdWarning: the demo ranks, it never thresholds
                        if issubclass(w.category, UserWarning) and not issubclass(w.category, ThresholdWarning):
                            result.notes.append(f"{dataset} / {model} / seed {seed}: {w.message}")
                    metrics = detection_metrics(split.y_test, scores)
                    result.cells.append(Cell(dataset, model, seed, **metrics, fit_seconds=seconds))
                    if seed == seeds[0]:
                        result.scores.setdefault(dataset, {})[model] = (split.y_test, scores)
                    if model in ALIGNED_MODELS:
                        dist = latent_distance(detector, split.X_test)
                        rho = alignment(scores, dist)["spearman"]
                        result.spearman.setdefault(dataset, {}).setdefault(model, []).append(rho)
                        if seed == seeds[0]:
                            result.latent.setdefault(dataset, {})[model] = (dist, scores, split.y_test)
                    if model == "USFlow" and seed == seeds[0]:
                        result.explanations[dataset] = explain_top(detector, split.X_test, split.y_test, scores)
                    bar.update()


__all__ = [
    "ALIGNED_MODELS",
    "FLOW_SETTINGS",
    "QUICK_OVERRIDES",
    "SVDD_SETTINGS",
    "Cell",
    "DemoResult",
    "EXPLAINED_ROWS",
    "Explained",
    "explain_top",
    "model_factories",
    "run_demo",
]
