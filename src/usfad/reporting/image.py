"""The image benchmark's tables (``usfad image bench``'s ``results.md``), from its rows.

Rows are grouped per (dataset, head, flow) (:func:`group_runs`); a group's cells
(:func:`run_cells`) count its runs, the diverged ones (``diverged``: a non-finite loss or
scores), and, over the finished runs that kept their per-epoch losses, those that blew up or
jumped and the largest rise of any run's loss above its best so far, all read by
:func:`usfad.experiments.health.training_health`; then the metrics as mean ± std over seeds
(:func:`usfad.reporting.tables.mean_std`) and the training CPU seconds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ..experiments.health import training_health
from ..flows import FLOWS, is_usf
from ..vision.heads import HEADS
from .tables import markdown_table, mean_std

Group = tuple[str, str, str]  # (dataset, head, flow)
#: the metrics of an image run's row, and their column labels
METRIC_LABELS = {"image_auroc": "image AUROC", "pixel_auroc": "pixel AUROC", "aupro": "AUPRO"}


def group_runs(rows: Iterable[dict[str, Any]]) -> dict[Group, list[dict[str, Any]]]:
    """Rows per (dataset, head, flow): datasets in order of appearance, then heads and flows in
    their canonical order (:data:`~usfad.vision.heads.HEADS`, :data:`~usfad.flows.FLOWS`)."""
    rows = list(rows)
    groups: dict[Group, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["head"], r["flow"]), []).append(r)
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    order = sorted(groups, key=lambda k: (datasets.index(k[0]), HEADS.index(k[1]), FLOWS.index(k[2])))
    return {k: groups[k] for k in order}


def finished_runs(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows with ``status`` ``ok``."""
    return [r for r in rows if r.get("status") == "ok"]


def run_cells(group: list[dict[str, Any]]) -> dict[str, str]:
    """Table cells for one group of runs, by column name: ``runs``, ``diverged``, ``blew up``,
    ``jumped``, ``largest rise`` (see the module docstring), the metrics of
    :data:`METRIC_LABELS` and ``train CPU s``. A count needing the per-epoch losses is ``-``
    when no finished row kept them (rows written before they were kept: unknown, not zero)."""
    ok = finished_runs(group)
    health = [training_health(r["train_loss"]) for r in ok if r.get("train_loss")]
    cells = {
        "runs": str(len(group)),
        "diverged": str(sum(bool(r.get("diverged")) for r in group)),
        "blew up": str(sum(h.blew_up for h in health)) if health else "-",
        "jumped": str(sum(h.jumped for h in health)) if health else "-",
        "largest rise": f"{max(h.largest_rise for h in health):.2g}" if health else "-",
    }
    cells.update({label: mean_std([r.get(key) for r in ok]) for key, label in METRIC_LABELS.items()})
    # CPU time, not wall time: it does not depend on how many runs shared the machine
    cells["train CPU s"] = mean_std([r.get("fit_cpu_seconds") for r in ok], 1)
    return cells


def _table_lines(groups: dict[Group, list[dict[str, Any]]], with_dataset: bool) -> list[str]:
    cols = ["runs", "diverged", "blew up", "largest rise", *METRIC_LABELS.values(), "train CPU s"]
    head_cols = ["dataset", "model", "flow"] if with_dataset else ["model", "flow"]
    rows = []
    for (dataset, head, flow), group in groups.items():
        cells = run_cells(group)
        rows.append([dataset, head, flow][-len(head_cols) :] + [cells[c] for c in cols])
    return markdown_table(head_cols + cols, rows).split("\n")


def _summary_lines(groups: dict[Group, list[dict[str, Any]]]) -> list[str]:
    """Per (model, flow): image AUROC averaged over datasets (each the mean over its seeds), and for
    a USF head, on how many datasets it is at least as high as the affine head."""
    mean: dict[Group, float] = {}
    for key, group in groups.items():
        vals = [r.get("image_auroc") for r in finished_runs(group)]
        vals = [v for v in vals if v is not None and math.isfinite(v)]
        mean[key] = float(np.mean(vals)) if vals else math.nan
    rows = []
    heads = sorted({(h, f) for _, h, f in mean}, key=lambda k: (HEADS.index(k[0]), FLOWS.index(k[1])))
    for head, flow in heads:
        per = {d: v for (d, h, f), v in mean.items() if (h, f) == (head, flow) and math.isfinite(v)}
        versus = "-"
        if is_usf(flow):
            pairs = [(v, mean.get((d, head, "affine"), math.nan)) for d, v in per.items()]
            pairs = [(u, a) for u, a in pairs if math.isfinite(a)]
            versus = f"{sum(u >= a for u, a in pairs)} of {len(pairs)}" if pairs else "-"
        avg = f"{np.mean(list(per.values())):.3f}" if per else "-"
        rows.append([head, flow, str(len(per)), avg, versus])
    headers = ["model", "flow", "datasets", "mean image AUROC", "datasets with this USF >= affine"]
    return markdown_table(headers, rows).split("\n")


def write_bench_table(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """Markdown table: one row per (model, flow) with the cells of :func:`run_cells` (for several
    datasets one row per (dataset, model, flow), then the mean image AUROC over the datasets);
    then the failed runs with their errors."""
    path = Path(path)
    groups = group_runs(rows)
    several = len({dataset for dataset, _, _ in groups}) > 1
    lines = _table_lines(groups, several)
    if several:
        lines += ["", "Over the datasets (image AUROC):", "", *_summary_lines(groups)]
    failed = [r for r in rows if r.get("status") != "ok"]
    if failed:
        lines += ["", "Failed runs:", ""]
        lines += [f"- {r['dataset']} {r['model']} seed {r['seed']}: {r.get('error')}" for r in failed]
    path.write_text("\n".join(lines) + "\n")
    return path


__all__ = ["METRIC_LABELS", "finished_runs", "group_runs", "run_cells", "write_bench_table"]
