"""Today's USFlow default against the previous one, each next to the anchors of its own run.

Reads the rows of two benchmark runs (``usfad bench`` result files), keeps the cells
(dataset, seed) that both runs hold for every model compared, and writes one table per
run: mean ROC-AUC and PR-AUC, average rank, win / tie / loss and the Wilcoxon signed-rank
test against KNN, the mean over datasets of the standard deviation over seeds (with two
seeds or more; under Protocol T a seed also redraws the split, so even a deterministic
model such as KNN has one), and cell-seconds per model (fit plus score; a cell stopped at
the time limit counts as the limit). Cell-seconds compare only within one run (same
machine, same load).

    .venv/bin/python benchmarks/tabular_compare.py \\
        --before benchmarks/results/results.jsonl benchmarks/results/usfad_models.jsonl \\
        --after benchmarks/results/tabular_v2/results.jsonl -o benchmarks/results/tabular_v2/compare.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy import stats

MODELS = ("usflow", "nonusflow", "deepsvdd", "knn", "iforest", "ecod")
TIE = 1e-3


def read(paths: list[Path], group: str, presets: tuple[str, ...] = ("default",)) -> dict[tuple[str, str, int], dict]:
    """The rows of ``group`` whose preset label is one of ``presets`` (a later one replaces an earlier)."""
    rows = {}
    for path in paths:
        for line in path.read_text().splitlines():
            r = json.loads(line)
            if r["group"] == group and r["preset"] in presets and r["model"] in MODELS:
                rows[(r["model"], r["dataset"], r["seed"])] = r
    return rows


def summary(rows: dict, models: list[str], cells: list[tuple[str, int]], limit: float, broken: set[str]) -> list[str]:
    def auc(m: str, metric: str = "roc_auc") -> np.ndarray:
        return np.array([rows[(m, d, s)][metric] if rows[(m, d, s)]["status"] == "ok" else np.nan for d, s in cells])

    def seconds(m: str, skip: set[str] = frozenset()) -> float:
        out = 0.0
        for d, s in cells:
            if d in skip:
                continue
            r = rows[(m, d, s)]
            out += limit if r["status"] != "ok" else r["fit_seconds"] + r["score_seconds"]
        return out

    datasets = sorted({d for d, _ in cells} - broken)

    def by_dataset(m: str, metric: str = "roc_auc") -> list[np.ndarray]:  # each dataset's values over its seeds
        a = auc(m, metric)
        return [np.array([a[i] for i, (dd, _) in enumerate(cells) if dd == d]) for d in datasets]

    def per_dataset(m: str, metric: str = "roc_auc") -> np.ndarray:  # mean over seeds, per dataset
        return np.array([np.nanmean(v) for v in by_dataset(m, metric)])

    def seed_std(m: str) -> float:  # mean over datasets of the std over seeds (nan with one seed)
        if len({s for _, s in cells}) < 2:
            return np.nan
        return float(np.nanmean([np.nanstd(v, ddof=1) for v in by_dataset(m)]))

    table = np.column_stack([per_dataset(m) for m in models])
    pr_table = np.column_stack([per_dataset(m, "pr_auc") for m in models])
    ranks = np.nanmean(np.apply_along_axis(lambda r: stats.rankdata(-r), 1, table), axis=0)
    lines = [
        "| model | mean ROC-AUC | mean PR-AUC | avg rank | vs KNN: win / tie / loss | Wilcoxon p vs KNN | seed std "
        "| cell-s | cell-s, accuracy datasets only |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    knn = table[:, models.index("knn")]
    for j, m in enumerate(models):
        diff = table[:, j] - knn
        ok = ~np.isnan(diff)
        wtl = f"{(diff[ok] > TIE).sum()} / {(abs(diff[ok]) <= TIE).sum()} / {(diff[ok] < -TIE).sum()}"
        p = stats.wilcoxon(table[ok, j], knn[ok]).pvalue if m != "knn" and np.any(diff[ok] != 0) else np.nan
        lines.append(
            f"| {m} | {np.nanmean(table[:, j]):.4f} | {np.nanmean(pr_table[:, j]):.4f} | {ranks[j]:.2f} | "
            f"{'-' if m == 'knn' else wtl} | {'-' if np.isnan(p) else f'{p:.3f}'} | "
            f"{'-' if np.isnan(std := seed_std(m)) else f'{std:.4f}'} | {seconds(m):.0f} "
            f"| {seconds(m, broken):.0f} |"
        )
    failed = [f"{m} {d} seed {s}" for m in models for d, s in cells if rows[(m, d, s)]["status"] != "ok"]
    lines += [
        "",
        f"Failed cells (counted at the {limit:.0f} s limit in cell-s): {', '.join(failed) if failed else 'none'}.",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", nargs="+", type=Path, required=True)
    parser.add_argument("--after", nargs="+", type=Path, required=True)
    parser.add_argument("--group", default="Classical")
    parser.add_argument(
        "--after-preset",
        default="default",
        help="preset label of the after run's rows (usfad bench records --param overrides in it, e.g. "
        "'default+input_kernel=True'); rows labelled 'default' (the anchors) are read too",
    )
    parser.add_argument(
        "--before-preset", default="default", help="preset label of the before run's rows (as --after-preset)"
    )
    parser.add_argument("--limit", type=float, default=1800.0, help="seconds charged for a cell stopped at the limit")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--seeds", nargs="+", type=int, help="keep only these seeds")
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    before = read(args.before, args.group, ("default", args.before_preset))
    after = read(args.after, args.group, ("default", args.after_preset))
    models = [m for m in args.models if any(k[0] == m for k in after) and any(k[0] == m for k in before)]
    cells = sorted(
        {(d, s) for (m, d, s) in after} & {(d, s) for (m, d, s) in before},
        key=lambda c: (c[0], c[1]),
    )
    cells = [c for c in cells if all((m, *c) in after and (m, *c) in before for m in models)]
    if args.seeds:
        cells = [c for c in cells if c[1] in args.seeds]
    seeds = sorted({s for _, s in cells})
    # accuracy on the datasets where every model finished every seed in both runs; time on every cell
    broken = {d for rows in (before, after) for m in models for d, s in cells if rows[(m, d, s)]["status"] != "ok"}
    lines = [
        "# USFlow's default, before and after, each next to the anchors of its own run",
        "",
        f"`{' '.join(['benchmarks/tabular_compare.py', *sys.argv[1:]])}`",
        "",
        f"Group {args.group}: {len(cells)} cells held by both runs for every model ({len({d for d, _ in cells})} "
        f"datasets, seeds {seeds}). Per dataset the mean over those seeds; ranks among the models listed; "
        f"ties within {TIE}. Accuracy columns over the datasets where every cell finished in both runs "
        f"(left out: {', '.join(sorted(broken)) or 'none'}).",
        "",
        "## Before ("
        + ("the previous default" if args.before_preset == "default" else args.before_preset)
        + "; its run)",
        "",
        *summary(before, models, cells, args.limit, broken),
        "",
        "## After (" + ("today's default" if args.after_preset == "default" else args.after_preset) + "; its run)",
        "",
        *summary(after, models, cells, args.limit, broken),
        "",
        "Per dataset, USFlow ROC-AUC before -> after (KNN):",
        "",
        "| dataset | before | after | KNN |",
        "|---|---|---|---|",
    ]
    for d in sorted({d for d, _ in cells}, key=lambda x: int(x.split("_")[0]) if x.split("_")[0].isdigit() else 0):
        ss = [s for dd, s in cells if dd == d]
        b = np.mean([before[("usflow", d, s)]["roc_auc"] for s in ss])
        a = np.mean([after[("usflow", d, s)]["roc_auc"] for s in ss])
        k = [after[("knn", d, s)]["roc_auc"] for s in ss if after[("knn", d, s)]["status"] == "ok"]
        lines.append(f"| {d} | {b:.3f} | {a:.3f} | {np.mean(k):.3f} |" if k else f"| {d} | {b:.3f} | {a:.3f} | - |")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
