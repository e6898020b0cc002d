"""``usfad report``: tables, tests and plots from a result file.

Per dataset, each model's score is the mean over its successful seeds. From those:

- mean and median per model over the datasets it has (``n`` says how many);
- average rank (1 = best, ties share the mean rank) over the datasets every model has;
- win/tie/loss of the reference model (``usflow``) against each other model, a tie being a
  difference of at most ``tie_tolerance`` in the per-dataset mean;
- the Wilcoxon signed-rank test (two-sided, scipy) of the reference against the control
  (``nonusflow``) over the datasets both have;
- stability: the standard deviation over seeds per dataset (sample std, needs >= 2 seeds);
- time: fit and score seconds per model, and the fit-time ratio between presets of the
  same model on the cells both ran;
- every failed cell with its error.

A model run under a preset other than ``default`` appears as ``model:preset`` (for
example ``usflow:paper``) unless the report is restricted to one preset.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ..experiments.store import read_results
from ..reporting.tables import DDOF, markdown_table
from .spec import ANCHOR_MODELS, MODELS

METRICS = ("roc_auc", "pr_auc", "best_f1")
METRIC_NAMES = {"roc_auc": "ROC-AUC", "pr_auc": "PR-AUC", "best_f1": "best F1"}
PLOTS = ("average_rank.png", "usf_vs_nonusf.png", "stability.png", "time_per_model.png")


def _source_names(results: ResultSource) -> str:
    if isinstance(results, str | os.PathLike):
        return f"`{Path(results).name}`"
    items = list(results)
    if items and all(isinstance(item, str | os.PathLike) for item in items):
        return ", ".join(f"`{Path(item).name}`" for item in items)
    return "rows given in memory"


# --- tables -----------------------------------------------------------------------------


def method_label(model: str, preset: str) -> str:
    """``model`` for the default preset, ``model:preset`` otherwise."""
    return model if preset == "default" else f"{model}:{preset}"


def _natural(name: str) -> tuple[str, int, str]:
    group, _, stem = name.rpartition("/")
    match = re.match(r"(\d+)_", stem)
    return (group, int(match.group(1)) if match else 10**9, stem.lower())


ResultSource = Sequence[dict[str, Any]] | str | os.PathLike[str] | Sequence[str | os.PathLike[str]]


def _read_sources(source: ResultSource) -> list[dict[str, Any]]:
    """Rows from one result file, several (a later file's row wins for the same cell), or rows."""
    if isinstance(source, str | os.PathLike):
        return list(read_results(source))
    items = list(source)
    if items and all(isinstance(item, str | os.PathLike) for item in items):
        cells: dict[tuple[Any, ...], dict[str, Any]] = {}
        for path in items:
            for row in read_results(path):
                key = (row.get("group"), row.get("dataset"), row.get("model"), row.get("preset"), row.get("seed"))
                cells[key] = row
        return list(cells.values())
    return items


def results_frame(rows: ResultSource, preset: str | None = None, group: str | None = None) -> pd.DataFrame:
    """Rows as a DataFrame with a ``method`` column (and ``ds``, a unique dataset name).

    ``preset`` keeps only the usfad models' rows of that preset (and the anchors' rows),
    and labels methods by model name alone.
    """
    df = pd.DataFrame(_read_sources(rows))
    if df.empty:
        raise ValueError("the result file holds no rows")
    for col in ("group", "error", "fit_seconds", "score_seconds", "wall_seconds", *METRICS):
        if col not in df:
            df[col] = None
    df["group"] = df["group"].fillna("")
    if group is not None:
        df = df[df["group"] == group]
        if df.empty:
            raise ValueError(f"no rows of dataset group {group!r}")
    for col in ("fit_seconds", "score_seconds", "wall_seconds", *METRICS):
        df[col] = pd.to_numeric(df[col], errors="coerce")
    df["preset"] = df["preset"].astype(str)
    if preset is not None:
        df = df[(df["preset"] == preset) | df["model"].isin(ANCHOR_MODELS)]
        if df.empty:
            raise ValueError(f"no rows with preset {preset!r}")
        df = df.assign(method=df["model"])
    else:
        df = df.assign(method=[method_label(m, p) for m, p in zip(df["model"], df["preset"])])
    groups_per_name = df.groupby("dataset")["group"].nunique()
    ambiguous = set(groups_per_name[groups_per_name > 1].index)
    df = df.assign(ds=[f"{g}/{d}" if d in ambiguous else d for g, d in zip(df["group"], df["dataset"])])
    return df.reset_index(drop=True)


def method_order(methods: Sequence[str]) -> list[str]:
    """Registry order (usfad models, then anchors), presets after their model, others last."""
    registry = list(MODELS)

    def key(label: str) -> tuple[int, str]:
        model = label.split(":")[0]
        return (registry.index(model) if model in registry else len(registry), label)

    return sorted(set(methods), key=key)


def per_dataset(df: pd.DataFrame, metric: str = "roc_auc", how: str = "mean") -> pd.DataFrame:
    """Datasets x methods: the ``how`` (``mean`` or ``std``) over seeds of successful cells."""
    ok = df[df["status"] == "ok"]
    if how == "std":
        table = ok.groupby(["ds", "method"])[metric].std(ddof=DDOF).unstack("method")
    else:
        table = ok.groupby(["ds", "method"])[metric].mean().unstack("method")
    table = table.reindex(columns=method_order(table.columns))
    return table.reindex(sorted(table.index, key=_natural))


def average_ranks(table: pd.DataFrame) -> tuple[pd.Series, int]:
    """Mean rank per method (1 = best, higher score better) over the complete rows."""
    complete = table.dropna(axis=0, how="any")
    if complete.empty:
        return pd.Series(np.nan, index=table.columns), 0
    ranks = complete.rank(axis=1, ascending=False, method="average")
    return ranks.mean(axis=0), len(complete)


def win_tie_loss(table: pd.DataFrame, reference: str, tie_tolerance: float = 1e-3) -> pd.DataFrame:
    """Per other method: datasets where ``reference`` is better, within tolerance, worse."""
    out = []
    for other in table.columns:
        if other == reference:
            continue
        pair = table[[reference, other]].dropna()
        diff = pair[reference] - pair[other]
        out.append(
            {
                "method": other,
                "win": int((diff > tie_tolerance).sum()),
                "tie": int((diff.abs() <= tie_tolerance).sum()),
                "loss": int((diff < -tie_tolerance).sum()),
                "n": len(pair),
            }
        )
    return pd.DataFrame(out, columns=["method", "win", "tie", "loss", "n"]).set_index("method")


@dataclass
class WilcoxonResult:
    a: str
    b: str
    n: int  #: paired datasets
    statistic: float
    p_value: float
    mean_diff: float  #: mean of a - b
    median_diff: float
    note: str = ""


def wilcoxon_test(table: pd.DataFrame, a: str, b: str) -> WilcoxonResult:
    """Two-sided Wilcoxon signed-rank test of ``a`` against ``b`` over paired datasets."""
    pair = table[[a, b]].dropna()
    diff = (pair[a] - pair[b]).to_numpy(dtype=np.float64)
    n = len(diff)
    mean_diff = float(diff.mean()) if n else math.nan
    median_diff = float(np.median(diff)) if n else math.nan
    if n < 2:
        return WilcoxonResult(a, b, n, math.nan, math.nan, mean_diff, median_diff, "fewer than 2 paired datasets")
    if np.all(diff == 0):
        return WilcoxonResult(a, b, n, math.nan, 1.0, mean_diff, median_diff, "all differences are zero")
    res = stats.wilcoxon(pair[a].to_numpy(), pair[b].to_numpy(), zero_method="wilcox", alternative="two-sided")
    return WilcoxonResult(a, b, n, float(res.statistic), float(res.pvalue), mean_diff, median_diff)


def resolve_method(methods: Sequence[str], name: str) -> str | None:
    """``name`` itself, or the single ``name:preset`` label among ``methods``."""
    if name in methods:
        return name
    candidates = [m for m in methods if m.split(":")[0] == name]
    return candidates[0] if len(candidates) == 1 else None


def time_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per method: cells, total and per-cell fit/score seconds (successful cells)."""
    ok = df[df["status"] == "ok"]
    grouped = ok.groupby("method")
    table = pd.DataFrame(
        {
            "cells": grouped.size(),
            "fit_s_total": grouped["fit_seconds"].sum(),
            "score_s_total": grouped["score_seconds"].sum(),
            "fit_s_mean": grouped["fit_seconds"].mean(),
            "fit_s_max": grouped["fit_seconds"].max(),
        }
    )
    return table.reindex(method_order(table.index))


def preset_fit_ratios(df: pd.DataFrame) -> pd.DataFrame:
    """Fit-time ratio of each non-default preset to ``default`` per model, on shared cells."""
    ok = df[df["status"] == "ok"]
    out = []
    for model, rows in ok.groupby("model"):
        base = rows[rows["preset"] == "default"].set_index(["group", "dataset", "seed"])["fit_seconds"]
        for preset, other in rows[rows["preset"] != "default"].groupby("preset"):
            other = other.set_index(["group", "dataset", "seed"])["fit_seconds"]
            shared = base.index.intersection(other.index)
            if len(shared) and base[shared].sum() > 0:
                ratio = float(other[shared].sum() / base[shared].sum())
                out.append({"model": model, "preset": preset, "cells": len(shared), "fit_time_ratio": ratio})
    return pd.DataFrame(out, columns=["model", "preset", "cells", "fit_time_ratio"])


def summary_table(df: pd.DataFrame, metric: str = "roc_auc") -> tuple[pd.DataFrame, int]:
    """Per method: datasets, mean, median, average rank, other metrics' means, stability, cells."""
    table = per_dataset(df, metric)
    ranks, n_ranked = average_ranks(table)
    std = per_dataset(df, metric, how="std")
    counts = df.groupby(["method", "status"]).size().unstack("status", fill_value=0)
    summary = pd.DataFrame(
        {
            "datasets": table.notna().sum(),
            f"mean {METRIC_NAMES[metric]}": table.mean(),
            f"median {METRIC_NAMES[metric]}": table.median(),
            "avg rank": ranks,
        }
    )
    for other in METRICS:
        if other != metric:
            summary[f"mean {METRIC_NAMES[other]}"] = per_dataset(df, other).mean()
    summary["mean seed std"] = std.mean() if not std.empty else np.nan
    summary["cells ok"] = counts.get("ok", pd.Series(dtype=int)).reindex(summary.index).fillna(0).astype(int)
    summary["cells failed"] = counts.get("failed", pd.Series(dtype=int)).reindex(summary.index).fillna(0).astype(int)
    return summary.reindex(method_order(summary.index)), n_ranked


# --- markdown ---------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool | np.bool_):
        return str(value)
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return f"{value:.{digits}f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def frame_table(table: pd.DataFrame, index_name: str = "", digits: int = 3, bold_max: bool = False) -> str:
    """``table`` as a :func:`usfad.reporting.tables.markdown_table`: the index first (headed
    ``index_name``), floats with ``digits`` decimals, ``–`` for a missing value, each row's
    largest number in bold with ``bold_max``."""
    numeric = table.select_dtypes("number")
    row_max = numeric.max(axis=1) if bold_max and not numeric.empty else None
    rows = []
    for idx, *values in table.itertuples(name=None):  # column-wise: ints stay ints
        best = row_max.loc[idx] if row_max is not None else None
        cells = []
        for value in values:
            text = _fmt(value, digits)
            if best is not None and not pd.isna(best) and value == best:
                text = f"**{text}**"
            cells.append(text)
        rows.append([_fmt(idx), *cells])
    return markdown_table([index_name, *(str(c) for c in table.columns)], rows)


def _last_line(error: Any) -> str:
    lines = error.strip().splitlines() if isinstance(error, str) else []
    return lines[0][:200] if lines else ""


# --- plots ------------------------------------------------------------------------------


def _figure(width: float = 6.0, height: float = 4.0) -> Any:
    from matplotlib.figure import Figure  # no pyplot: no global backend, Agg when saving

    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def plot_average_rank(ranks: pd.Series, n_datasets: int, path: Path) -> None:
    ranks = ranks.dropna().sort_values()
    fig = _figure(6, 0.45 * max(len(ranks), 2) + 1)
    ax = fig.subplots()
    ax.barh(list(ranks.index)[::-1], list(ranks.values)[::-1], color="tab:blue")
    for y, v in enumerate(list(ranks.values)[::-1]):
        ax.text(v, y, f" {v:.2f}", va="center", fontsize=8)
    ax.set_xlabel(f"average rank over {n_datasets} datasets (1 = best)")
    ax.set_xlim(0, max(len(ranks), 1) + 0.5)
    fig.savefig(path)


def plot_pair(table: pd.DataFrame, a: str, b: str, metric: str, path: Path) -> None:
    pair = table[[a, b]].dropna()
    fig = _figure(5, 5)
    ax = fig.subplots()
    lo = float(min(pair.min().min(), 0.5)) if len(pair) else 0.0
    ax.plot([lo, 1], [lo, 1], color="grey", lw=1, ls="--")
    ax.scatter(pair[b], pair[a], s=18, color="tab:red")
    for name, row in pair.iterrows():
        ax.annotate(str(name).split("/")[-1], (row[b], row[a]), fontsize=6, alpha=0.7)
    name = METRIC_NAMES[metric]
    ax.set_xlabel(f"{b} {name}")
    ax.set_ylabel(f"{a} {name}")
    ax.set_title(f"per dataset (mean over seeds); above the diagonal: {a} better")
    ax.title.set_fontsize(8)
    fig.savefig(path)


def plot_stability(std: pd.DataFrame, metric: str, path: Path) -> None:
    cols = [c for c in std.columns if std[c].notna().any()]
    fig = _figure(max(5, 0.9 * len(cols) + 2), 4)
    ax = fig.subplots()
    if cols:
        ax.boxplot([std[c].dropna().to_numpy() for c in cols])
        ax.set_xticks(range(1, len(cols) + 1), cols)
    else:
        ax.text(0.5, 0.5, "needs >= 2 seeds per dataset", ha="center", transform=ax.transAxes)
    ax.set_ylabel(f"std of {METRIC_NAMES[metric]} over seeds, per dataset")
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    fig.savefig(path)


def plot_time(df: pd.DataFrame, path: Path) -> None:
    ok = df[df["status"] == "ok"]
    methods = method_order(ok["method"].unique())
    total = ok["fit_seconds"] + ok["score_seconds"]
    data = [total[ok["method"] == m].dropna() for m in methods]
    fig = _figure(max(5, 0.9 * len(methods) + 2), 4)
    ax = fig.subplots()
    if methods:
        ax.boxplot([np.maximum(d.to_numpy(), 1e-3) for d in data])
        ax.set_xticks(range(1, len(methods) + 1), methods)
        ax.set_yscale("log")
    ax.set_ylabel("fit + score seconds per cell")
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    fig.savefig(path)


# --- the report -------------------------------------------------------------------------


def write_report(
    results: ResultSource,
    outdir: str | os.PathLike[str],
    *,
    reference: str = "usflow",
    control: str = "nonusflow",
    preset: str | None = None,
    group: str | None = None,
    metric: str = "roc_auc",
    tie_tolerance: float = 1e-3,
) -> Path:
    """Write ``report.md``, ``per_dataset_<metric>.csv`` and the PNG plots to ``outdir``."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    df = results_frame(results, preset=preset, group=group)
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    name = METRIC_NAMES[metric]
    table = per_dataset(df, metric)
    std = per_dataset(df, metric, how="std")
    summary, n_ranked = summary_table(df, metric)
    ranks, _ = average_ranks(table)
    methods = list(table.columns)
    ref = resolve_method(methods, reference)
    ctl = resolve_method(methods, control)
    seeds = sorted(int(s) for s in df["seed"].unique())

    md = [
        "# usfad benchmark report",
        "",
        f"Source: {_source_names(results)}: {len(df)} cells, {df['ds'].nunique()} datasets, seeds {seeds}; "
        f"{int((df['status'] == 'ok').sum())} ok, {int((df['status'] != 'ok').sum())} failed. "
        f"Scores per dataset are means over seeds; {name} unless said otherwise.",
        "",
        "## Summary per model",
        "",
        f"Average rank over the {n_ranked} datasets every model has (1 = best); means and medians over each "
        "model's own datasets (`datasets` column). `mean seed std`: the mean over datasets of the standard "
        "deviation over seeds (lower = more stable).",
        "",
        frame_table(summary, "model"),
        "",
    ]
    if ref is not None:
        wtl = win_tie_loss(table, ref, tie_tolerance)
        md += [
            f"## {ref}: win / tie / loss",
            "",
            f"Datasets where {ref}'s mean {name} is higher / within {tie_tolerance:g} / lower.",
            "",
            frame_table(wtl, "against"),
            "",
        ]
    if ref is not None and ctl is not None:
        w = wilcoxon_test(table, ref, ctl)
        if math.isnan(w.p_value):
            verdict = f"not computed: {w.note}"
        else:
            verdict = f"p = {w.p_value:.4g}" + (f" ({w.note})" if w.note else "")
        md += [
            f"## Wilcoxon signed-rank test: {ref} vs {ctl}",
            "",
            f"Two-sided, over {w.n} paired datasets: statistic {_fmt(w.statistic, 1)}, {verdict}; "
            f"mean difference {_fmt(w.mean_diff, 4)}, median difference {_fmt(w.median_diff, 4)} "
            f"({ref} minus {ctl}).",
            "",
        ]
    md += [
        f"## Per dataset: {name} (mean over seeds; best in bold)",
        "",
        frame_table(table, "dataset", bold_max=True),
        "",
    ]
    if metric != "pr_auc":
        md += ["## Per dataset: PR-AUC", "", frame_table(per_dataset(df, "pr_auc"), "dataset", bold_max=True), ""]
    md += [
        f"## Stability: standard deviation of {name} over seeds",
        "",
        frame_table(std, "dataset", digits=4) if len(seeds) > 1 else "Only one seed: no spread to report.",
        "",
        "## Time",
        "",
        "Seconds of successful cells; compare within this run only (same machine, same load).",
        "",
        frame_table(time_table(df), "model", digits=2),
        "",
    ]
    ratios = preset_fit_ratios(df) if preset is None else pd.DataFrame()
    if not ratios.empty:
        md += [
            "Fit-time ratio of each preset to `default`, on the cells both ran:",
            "",
            frame_table(ratios.set_index("model"), "model", digits=2),
            "",
        ]
    failed = df[df["status"] != "ok"]
    md += ["## Failures", ""]
    if failed.empty:
        md += ["None.", ""]
    else:
        rows = failed.sort_values(["method", "ds", "seed"])
        listing = pd.DataFrame(
            {
                "model": rows["method"].to_numpy(),
                "seed": rows["seed"].astype(int).to_numpy(),
                "error": [_last_line(e) for e in rows["error"]],
            },
            index=rows["ds"].to_numpy(),
        )
        md += [frame_table(listing, "dataset"), ""]
    md += [
        "## Plots",
        "",
        "![average rank](average_rank.png)",
        "",
        f"![{ref} vs {ctl}](usf_vs_nonusf.png)" if ref and ctl else "(no USF vs non-USF plot: a model is missing)",
        "",
        "![stability](stability.png)",
        "",
        "![time per model](time_per_model.png)",
        "",
    ]

    plot_average_rank(ranks, n_ranked, out / "average_rank.png")
    if ref is not None and ctl is not None:
        plot_pair(table, ref, ctl, metric, out / "usf_vs_nonusf.png")
    plot_stability(std, metric, out / "stability.png")
    plot_time(df, out / "time_per_model.png")
    table.to_csv(out / f"per_dataset_{metric}.csv", float_format="%.6f")
    report = out / "report.md"
    report.write_text("\n".join(md))
    return report
