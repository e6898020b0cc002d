"""``usfad demo``: Protocol T on the embedded datasets, a table and a report folder.

Runs USFlow, NonUSFlow and DeepSVDD (and PyOD's IForest and KNN when PyOD is installed)
on every embedded dataset (:mod:`usfad.data.embedded`) with one set of hyper-parameters,
prints ROC-AUC, PR-AUC and fit time per cell, and writes ``report.md``, ``results.csv`` and
three figures: ROC curves, score histograms and NLL against latent distance for the two
flows, which shows density alignment (a curve for the USF, a cloud for the non-USF).

The settings are sized for a short run on a laptop CPU (the run prints its fit times);
they are demo settings, not the benchmark's (see ``usfad bench``).
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data.embedded import EMBEDDED, load_embedded
from ..data.protocol import SEEDS, protocol_t
from ..metrics import alignment, detection_metrics
from ..outputs import check_output_dir
from ..reporting.tables import markdown_table, mean_std, text_table

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
class DemoResult:
    """Everything a demo run produces: metrics per cell and what the figures need."""

    cells: list[Cell] = field(default_factory=list)
    #: first seed's test scores, ``{dataset: {model: (y, scores)}}``
    scores: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)
    #: first seed's flows on test data, ``{dataset: {model: (distance, nll, y)}}``
    latent: dict[str, dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]] = field(default_factory=dict)
    #: Spearman(NLL, latent distance) per dataset, model and seed
    spearman: dict[str, dict[str, list[float]]] = field(default_factory=dict)
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


def _latent_distance(detector: Any, X: np.ndarray) -> np.ndarray:
    z = detector.latent(X)
    center = detector.model_.base.center.detach().cpu().double().numpy()
    return np.linalg.norm(z - center, axis=1)


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
                        if issubclass(w.category, UserWarning):  # e.g. DeepSVDD's collapse warning
                            result.notes.append(f"{dataset} / {model} / seed {seed}: {w.message}")
                    metrics = detection_metrics(split.y_test, scores)
                    result.cells.append(Cell(dataset, model, seed, **metrics, fit_seconds=seconds))
                    if seed == seeds[0]:
                        result.scores.setdefault(dataset, {})[model] = (split.y_test, scores)
                    if model in ALIGNED_MODELS:
                        dist = _latent_distance(detector, split.X_test)
                        rho = alignment(scores, dist)["spearman"]
                        result.spearman.setdefault(dataset, {}).setdefault(model, []).append(rho)
                        if seed == seeds[0]:
                            result.latent.setdefault(dataset, {})[model] = (dist, scores, split.y_test)
                    bar.update()


# --- tables -------------------------------------------------------------------------


def summary_rows(cells: list[Cell]) -> list[list[str]]:
    """``[dataset, model, ROC-AUC, PR-AUC, fit s]`` per (dataset, model), mean over seeds."""
    groups: dict[tuple[str, str], list[Cell]] = {}
    for c in cells:
        groups.setdefault((c.dataset, c.model), []).append(c)
    return [
        [
            dataset,
            model,
            mean_std([c.roc_auc for c in g]),
            mean_std([c.pr_auc for c in g]),
            f"{np.mean([c.fit_seconds for c in g]):.2f}",
        ]
        for (dataset, model), g in groups.items()
    ]


def model_mean_rows(cells: list[Cell]) -> list[list[str]]:
    """``[model, mean ROC-AUC, mean PR-AUC, total fit s]`` over datasets (and seeds)."""
    models = list(dict.fromkeys(c.model for c in cells))
    rows = []
    for model in models:
        mine = [c for c in cells if c.model == model]
        datasets = list(dict.fromkeys(c.dataset for c in mine))
        roc = np.mean([np.mean([c.roc_auc for c in mine if c.dataset == d]) for d in datasets])
        pr = np.mean([np.mean([c.pr_auc for c in mine if c.dataset == d]) for d in datasets])
        rows.append([model, f"{roc:.3f}", f"{pr:.3f}", f"{sum(c.fit_seconds for c in mine):.1f}"])
    return rows


TABLE_HEADERS = ["dataset", "model", "ROC-AUC", "PR-AUC", "fit s"]


# --- report -------------------------------------------------------------------------


def write_report(result: DemoResult, out: Path, seeds: list[int], quick: bool, plots: list[str]) -> Path:
    lines = [
        "# usfad demo",
        "",
        f"Protocol T (stratified 70/30 split, training anomalies dropped, scaling fitted on the training part) "
        f"on the embedded datasets; seeds {', '.join(map(str, seeds))}; higher score = more anomalous.",
    ]
    if quick:
        lines += ["", "**Quick run**: models trained for a handful of steps; the numbers mean nothing."]
    lines += [
        "",
        "## Results per dataset",
        "",
        "Mean over seeds (± sample standard deviation when there are several); fit time in seconds.",
        "",
        markdown_table(TABLE_HEADERS, summary_rows(result.cells)),
        "",
        "## Mean per model",
        "",
        "ROC-AUC and PR-AUC averaged over datasets; fit time summed over all cells.",
        "",
        markdown_table(["model", "mean ROC-AUC", "mean PR-AUC", "total fit s"], model_mean_rows(result.cells)),
        "",
        "## Density alignment",
        "",
        "Spearman rank correlation between a flow's NLL and its latent distance ||f(x) - c|| on test data. "
        "A uniformly scaling flow has log|det J| constant, so NLL is an increasing function of the distance "
        "and the correlation is 1 (up to float32 rounding); the non-USF control's log-det varies with x, "
        "so its two rankings disagree (unless it stayed close to its initialisation, e.g. when early "
        "stopping ends training after a few epochs on a small dataset).",
        "",
    ]
    aligned = [m for m in ALIGNED_MODELS if any(m in v for v in result.spearman.values())]
    rows = [[d, *(mean_std(v.get(m, [float("nan")]), 4) for m in aligned)] for d, v in result.spearman.items()]
    lines += [markdown_table(["dataset", *aligned], rows), ""]
    if plots:
        lines += ["## Figures", ""]
        lines += [f"![{Path(p).stem}]({Path(p).name})" for p in plots]
        lines += [""]
    if result.notes:
        lines += ["## Warnings", ""] + [f"- {n}" for n in result.notes] + [""]
    lines += ["## Settings", "", "The same for every dataset.", ""]
    lines += [f"- flows (USFlow, NonUSFlow): `{_settings(FLOW_SETTINGS, quick)}`"]
    lines += [f"- DeepSVDD: `{_settings(SVDD_SETTINGS, quick)}`"]
    lines += ["- IForest, KNN (PyOD): library defaults", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _settings(base: dict[str, Any], quick: bool) -> str:
    merged = {**base, **(QUICK_OVERRIDES if quick else {})}
    return ", ".join(f"{k}={v}" for k, v in merged.items()) or "library defaults"


def write_results_csv(cells: list[Cell], path: Path) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["dataset", "model", "seed", "roc_auc", "pr_auc", "best_f1", "fit_seconds"])
        for c in cells:
            writer.writerow(
                [
                    c.dataset,
                    c.model,
                    c.seed,
                    f"{c.roc_auc:.6f}",
                    f"{c.pr_auc:.6f}",
                    f"{c.best_f1:.6f}",
                    f"{c.fit_seconds:.4f}",
                ]
            )
    return path


def write_plots(result: DemoResult, out: Path) -> list[str]:
    from ..plots import plot_density_alignment, plot_roc_curves, plot_score_histograms

    paths = [
        plot_roc_curves(result.scores, out / "roc_curves.png"),
        plot_score_histograms(result.scores, out / "score_histograms.png"),
    ]
    if result.latent:
        paths.append(plot_density_alignment(result.latent, out / "density_alignment.png"))
    return [str(p) for p in paths]


# --- command line -------------------------------------------------------------------


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one seed")
    return values


def _dataset_list(text: str) -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [n for n in names if n not in EMBEDDED]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown dataset(s) {unknown}; choose from {', '.join(EMBEDDED)}")
    return names


def run(args: argparse.Namespace) -> int:
    out = check_output_dir(args.output)
    start = time.perf_counter()
    result = run_demo(args.datasets, args.seeds, quick=args.quick, progress=not args.no_progress)
    print(text_table(TABLE_HEADERS, summary_rows(result.cells)))
    print()
    print(text_table(["model", "mean ROC-AUC", "mean PR-AUC", "total fit s"], model_mean_rows(result.cells)))
    plots = [] if args.no_plots else write_plots(result, out)
    write_results_csv(result.cells, out / "results.csv")
    report = write_report(result, out, args.seeds, args.quick, plots)
    print(f"\nreport written to {report} ({time.perf_counter() - start:.0f} s)")
    return 0


def add_commands(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "demo",
        help="run USFlow, NonUSFlow, DeepSVDD and anchors on embedded datasets and write a report",
        description="Run Protocol T on the embedded datasets (breast cancer, wine, digits, a Gaussian mixture) "
        "for USFlow, NonUSFlow, DeepSVDD and, when PyOD is installed, IForest and KNN; print a table and write "
        "a report folder with report.md, results.csv and figures.",
    )
    p.add_argument("-o", "--output", default="usfad-demo", metavar="DIR", help="report folder (default: usfad-demo)")
    p.add_argument(
        "--seeds",
        type=_int_list,
        default=list(SEEDS),
        metavar="S[,S...]",
        help="Protocol T seeds (default: 42,0,1,2,3)",
    )
    p.add_argument(
        "--datasets",
        type=_dataset_list,
        default=list(EMBEDDED),
        metavar="NAME[,NAME...]",
        help=f"embedded datasets to run (default: all of {', '.join(EMBEDDED)})",
    )
    p.add_argument("--quick", action="store_true", help="train for a few steps only: a smoke test in seconds")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)
