"""The demo's tables, report folder and figures (``usfad demo``), from a
:class:`usfad.experiments.demo.DemoResult`."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from ..experiments.demo import ALIGNED_MODELS, FLOW_SETTINGS, QUICK_OVERRIDES, SVDD_SETTINGS, Cell, DemoResult
from .report import quick_note, write_markdown
from .tables import markdown_table, mean_std


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
MODEL_HEADERS = ["model", "mean ROC-AUC", "mean PR-AUC", "total fit s"]


def write_report(result: DemoResult, out: Path, seeds: list[int], quick: bool, plots: list[str]) -> Path:
    lines = [
        "# usfad demo",
        "",
        f"Protocol T (stratified 70/30 split, training anomalies dropped, scaling fitted on the training part) "
        f"on the embedded datasets; seeds {', '.join(map(str, seeds))}; higher score = more anomalous.",
    ]
    lines += quick_note(quick)
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
        markdown_table(MODEL_HEADERS, model_mean_rows(result.cells)),
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
    return write_markdown(lines, out / "report.md")


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
    from ..plots import plot_attributions, plot_density_alignment, plot_roc_curves, plot_score_histograms

    paths = [
        plot_roc_curves(result.scores, out / "roc_curves.png"),
        plot_score_histograms(result.scores, out / "score_histograms.png"),
    ]
    if result.latent:
        paths.append(plot_density_alignment(result.latent, out / "density_alignment.png"))
    for dataset, e in result.explanations.items():  # USFlow's top-scoring test rows: which features
        names = [f"x{j}" for j in range(e.values.shape[1])]
        for rank, (row, label, score, values, attributions) in enumerate(
            zip(e.rows, e.labels, e.scores, e.values, e.attributions)
        ):
            kind = "an anomaly" if label else "a normal row"
            title = (
                f"{dataset}: USFlow's top-scoring test row {row} ({kind}), score {score:.4g}; "
                f"attributions from the training mean, summing to {attributions.sum():.4g}"
            )
            path = out / f"explain_{dataset}{'' if rank == 0 else f'_{rank + 1}'}.png"
            paths.append(plot_attributions(path, attributions, values, names, e.mean, e.scale, title=title))
    return [str(p) for p in paths]


__all__ = [
    "MODEL_HEADERS",
    "TABLE_HEADERS",
    "model_mean_rows",
    "summary_rows",
    "write_plots",
    "write_report",
    "write_results_csv",
]
