"""Training stability: the same models over many seeds on real datasets.

Every (dataset, model, seed) run is a cell of the tabular benchmark
(:class:`usfad.bench.runner.CellJob`: Protocol T, the benchmark's models and presets) that
keeps its loss history, run in this process by the experiment engine
(:mod:`usfad.experiments.engine`). The study reads each run's row as one of :data:`ENDINGS`:

- ``ok``;
- ``diverged``: its loss became non-finite or it produced non-finite scores (the row's
  ``diverged``);
- ``exploded``: it finished, but :func:`~usfad.experiments.health.training_health` finds a
  training or validation loss that rose above the first epoch's by more than
  ``EXPLOSION_FACTOR`` times ``max(1, |first loss|)`` (a heuristic for a blow-up that early
  stopping papered over);
- ``failed``: any other error (reported with its message).

The report gives, per dataset and model, the spread of ROC-AUC over seeds (standard
deviation, min, max), the counts of each ending and the loss curves of every run that
returned a history (a diverged run stops with an error and leaves none).
"""

from __future__ import annotations

import csv
import math
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data.protocol import SEEDS
from ..experiments.engine import SerialExecutor
from ..experiments.health import EXPLOSION_FACTOR, training_health
from ..reporting.report import figure_section, quick_note, write_markdown
from ..reporting.tables import markdown_table, std
from ..validation import check_seeds

DEFAULT_DATASETS = ("4_breastw", "6_cardio", "24_mnist", "25_musk", "38_thyroid")
DEFAULT_MODELS = ("usflow", "nonusflow", "deepsvdd")
#: ``quick``: a smoke test in seconds (applied to the models that take these parameters)
QUICK_OVERRIDES: dict[str, Any] = {"epochs": 2, "max_steps": 5, "hidden_features": (16, 16)}
#: how a run ended, read from its row (see the module docstring)
ENDINGS = ("ok", "diverged", "exploded", "failed")


def ending(row: Mapping[str, Any]) -> str:
    """The :data:`ENDINGS` entry of a cell's row (one that kept its losses)."""
    if row.get("status") != "ok":
        return "diverged" if row.get("diverged") else "failed"
    health = training_health(row.get("train_loss") or [], row.get("val_loss") or [])
    return "exploded" if health.exploded else "ok"


@dataclass
class StabilityRun:
    dataset: str
    model: str
    seed: int
    status: str
    roc_auc: float | None = None
    fit_seconds: float = 0.0
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    error: str | None = None


@dataclass
class StabilityResult:
    runs: list[StabilityRun] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    def aucs(self) -> dict[str, dict[str, list[float]]]:
        """``{dataset: {model: [ROC-AUC of each run that has one]}}``."""
        out: dict[str, dict[str, list[float]]] = {}
        for r in self.runs:
            values = out.setdefault(r.dataset, {}).setdefault(r.model, [])
            if r.roc_auc is not None:
                values.append(r.roc_auc)
        return out

    def curves(self) -> dict[str, dict[str, dict[int, tuple[list[float], list[float]]]]]:
        """``{dataset: {model: {seed: (train_loss, val_loss)}}}`` of runs with a history."""
        out: dict[str, dict[str, dict[int, tuple[list[float], list[float]]]]] = {}
        for r in self.runs:
            if r.train_loss:
                out.setdefault(r.dataset, {}).setdefault(r.model, {})[r.seed] = (r.train_loss, r.val_loss)
        return out


def _model_overrides(name: str, quick: bool, device: str | None) -> dict[str, Any]:
    from ..bench.spec import get_spec

    accepted = get_spec(name).accepted_params()
    wanted = {**(QUICK_OVERRIDES if quick else {}), **({"device": device} if device else {})}
    return {f"{name}.{k}": v for k, v in wanted.items() if k in accepted}


def _run(row: Mapping[str, Any]) -> StabilityRun:
    """A cell's row as the study keeps it."""
    seconds = row.get("fit_seconds") if row.get("fit_seconds") is not None else row.get("wall_seconds")
    return StabilityRun(
        dataset=row["dataset"],
        model=row["model"],
        seed=int(row["seed"]),
        status=ending(row),
        roc_auc=row.get("roc_auc"),
        fit_seconds=float(seconds or 0.0),
        train_loss=list(row.get("train_loss") or []),
        val_loss=list(row.get("val_loss") or []),
        error=row.get("error"),
    )


def run_stability(
    datasets: Sequence[str] = DEFAULT_DATASETS,
    models: Sequence[str] = DEFAULT_MODELS,
    seeds: Sequence[int] = SEEDS,
    data_dir: str | os.PathLike[str] | None = None,
    preset: str = "default",
    quick: bool = False,
    device: str | None = None,
    progress: bool = True,
) -> StabilityResult:
    """Run every (dataset, model, seed) and collect ROC-AUC, ending and loss history.

    ``datasets`` are names, group names or globs as in
    :func:`usfad.data.adbench.select_datasets`; ``models`` and ``preset`` are the
    benchmark's (:mod:`usfad.bench.spec`); ``data_dir`` defaults to ``$USFAD_DATA``.
    """
    from tqdm.auto import tqdm

    from ..bench.runner import plan_jobs
    from ..bench.spec import check_models, check_preset
    from ..data.adbench import select_datasets

    check_preset(preset)
    seeds = check_seeds(seeds)
    overrides: dict[str, Any] = {}
    for name in models:
        overrides.update(_model_overrides(name, quick, device))
    models = check_models(models, overrides)
    infos = select_datasets(datasets, data_dir)
    result = StabilityResult(
        settings={
            "datasets": [i.qualified_name for i in infos],
            "models": models,
            "seeds": seeds,
            "preset": preset,
            "quick": quick,
            "overrides": {k: v for k, v in overrides.items() if not k.endswith(".device")},
        }
    )
    jobs = plan_jobs(infos, models, seeds, preset, overrides, keep_losses=True)
    # dataset, then model, then seed: each model's seeds side by side in the report
    rank = {str(info.path): i for i, info in enumerate(infos)}
    jobs.sort(key=lambda job: (rank[job.path], models.index(job.model)))
    with tqdm(total=len(jobs), desc="stability", unit="run", disable=not progress, file=sys.stderr) as bar:
        for row in SerialExecutor().run(jobs):
            bar.set_postfix_str(f"{row['dataset']} / {row['model']} / seed {row['seed']}")
            result.runs.append(_run(row))
            bar.update()
    return result


# --- report ---------------------------------------------------------------------------


def _stats(values: Sequence[float]) -> list[str]:
    if not values:
        return ["n/a"] * 4
    v = np.asarray(values, dtype=np.float64)
    spread = std(v)
    return [f"{v.mean():.3f}", "n/a" if math.isnan(spread) else f"{spread:.3f}", f"{v.min():.3f}", f"{v.max():.3f}"]


#: the report's figures, by file stem
CAPTIONS = {
    "auc_spread": "ROC-AUC of each seed (dots) and their mean (bar).",
    "loss_curves": "Loss per epoch, a line per seed: training solid, validation dashed.",
}
TABLE_HEADERS = ["dataset", "model", "runs", "diverged", "exploded", "failed", "ROC-AUC mean", "std", "min", "max"]
MODEL_HEADERS = ["model", "runs", "diverged", "exploded", "failed", "mean ROC-AUC", "mean std over seeds"]


def table_rows(result: StabilityResult) -> list[list[str]]:
    """One row per (dataset, model): endings and the ROC-AUC spread over seeds."""
    groups: dict[tuple[str, str], list[StabilityRun]] = {}
    for r in result.runs:
        groups.setdefault((r.dataset, r.model), []).append(r)
    rows = []
    for (dataset, model), runs in groups.items():
        counts = [sum(r.status == s for r in runs) for s in ("diverged", "exploded", "failed")]
        aucs = [r.roc_auc for r in runs if r.roc_auc is not None]
        rows.append([dataset, model, str(len(runs)), *map(str, counts), *_stats(aucs)])
    return rows


def model_rows(result: StabilityResult) -> list[list[str]]:
    """One row per model over every dataset: total endings, mean ROC-AUC, mean spread."""
    aucs = result.aucs()
    rows = []
    for model in dict.fromkeys(r.model for r in result.runs):
        runs = [r for r in result.runs if r.model == model]
        counts = [sum(r.status == s for r in runs) for s in ("diverged", "exploded", "failed")]
        per_dataset = [v[model] for v in aucs.values() if v.get(model)]
        mean = f"{np.mean([np.mean(v) for v in per_dataset]):.3f}" if per_dataset else "n/a"
        spreads = [s for s in (std(v) for v in per_dataset) if not math.isnan(s)]
        spread = f"{np.mean(spreads):.3f}" if spreads else "n/a"
        rows.append([model, str(len(runs)), *map(str, counts), mean, spread])
    return rows


def write_csv(result: StabilityResult, path: Path) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["dataset", "model", "seed", "status", "roc_auc", "fit_seconds", "epochs", "error"])
        for r in result.runs:
            auc = "" if r.roc_auc is None else f"{r.roc_auc:.6f}"
            writer.writerow(
                [r.dataset, r.model, r.seed, r.status, auc, f"{r.fit_seconds:.3f}", len(r.train_loss), r.error or ""]
            )
    return path


def write_plots(result: StabilityResult, out: Path) -> list[Path]:
    from .plots import plot_auc_spread, plot_loss_curves

    paths = []
    if any(result.aucs().values()):
        paths.append(plot_auc_spread(result.aucs(), out / "auc_spread.png"))
    curves = result.curves()
    if curves:
        paths.append(plot_loss_curves(curves, out / "loss_curves.png"))
    return paths


def write_report(result: StabilityResult, out: str | Path, plots: bool = True) -> Path:
    """Write ``report.md``, ``runs.csv`` and the figures into ``out``; returns the report's path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    s = result.settings
    figures = write_plots(result, out) if plots else []
    write_csv(result, out / "runs.csv")
    lines = [
        "# Training stability study",
        "",
        f"Protocol T on {', '.join(s.get('datasets', []))}; seeds {', '.join(map(str, s.get('seeds', [])))}; "
        f"preset `{s.get('preset')}`.",
    ]
    lines += quick_note(bool(s.get("quick")))
    lines += [
        "",
        "A run *diverged* when its loss became non-finite (or its scores NaN), *exploded* when it finished but a "
        f"training or validation loss rose above the first epoch's by more than {EXPLOSION_FACTOR:g} x "
        "max(1, |first loss|), *failed* on any other error. ROC-AUC statistics are over the runs that produced "
        "scores (std = sample standard deviation over seeds, n/a for one seed; *mean std over seeds* averages it "
        "over the datasets with two seeds or more).",
        "",
        "## Per model",
        "",
        markdown_table(MODEL_HEADERS, model_rows(result)),
        "",
        "## Per dataset and model",
        "",
        markdown_table(TABLE_HEADERS, table_rows(result)),
        "",
    ]
    lines += figure_section(figures, CAPTIONS)
    problems = [r for r in result.runs if r.error]
    if problems:
        lines += ["## Errors", ""]
        lines += [f"- {r.dataset} / {r.model} / seed {r.seed} ({r.status}): {r.error}" for r in problems]
        lines += [""]
    overrides = ", ".join(f"{k}={v}" for k, v in s.get("overrides", {}).items())
    lines += ["## Settings", "", f"- preset `{s.get('preset')}`" + (f", overrides {overrides}" if overrides else "")]
    lines += [""]
    return write_markdown(lines, out / "report.md")
