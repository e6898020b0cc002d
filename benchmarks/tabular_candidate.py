"""A candidate USFlow setting against the default and KNN, over the cells all three hold.

Reads ``usfad bench`` result files: the candidate's rows (a ``--param`` run, so its preset
label is not ``default``) and a reference run holding the default USFlow and KNN. Per
dataset the mean ROC-AUC over the seeds all three have, then: the mean over datasets,
win / tie / loss per dataset (ties within 0.001) and the Wilcoxon signed-rank p of each
pair, the same per (dataset, seed) cell, and fit + score seconds per model. Seconds of the
candidate come from its own run: compare them with the reference's only when both ran on
the same machine under the same load (the page says when they were written).

    .venv/bin/python benchmarks/tabular_candidate.py \\
        --candidate benchmarks/results/tabular_v2/explore/ep1000_p50_5seeds.jsonl \\
        --reference benchmarks/results/tabular_v2/explore/default_small_5seeds.jsonl \\
        -o benchmarks/results/tabular_v2/explore/ep1000_p50_5seeds.md
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy import stats

TIE = 1e-3


def read(path: Path, model: str, preset: str | None) -> dict[tuple[str, int], dict]:
    """``(dataset, seed) -> row`` of ``model`` (``preset``: only rows with that label; None: any)."""
    rows = {}
    for line in path.read_text().splitlines():
        r = json.loads(line)
        if r["model"] == model and r["status"] == "ok" and (preset is None or r["preset"] == preset):
            rows[(r["dataset"], r["seed"])] = r
    return rows


def wtl(a: np.ndarray, b: np.ndarray) -> str:
    diff = a - b
    p = stats.wilcoxon(a, b).pvalue if np.any(np.abs(diff) > 0) else 1.0
    return f"{int((diff > TIE).sum())} / {int((np.abs(diff) <= TIE).sum())} / {int((diff < -TIE).sum())} (p = {p:.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidate", type=Path, required=True, help="bench rows of the candidate USFlow")
    parser.add_argument("--reference", type=Path, required=True, help="bench rows of the default USFlow and KNN")
    parser.add_argument(
        "--model", default="usflow", help="the candidate's model name, in its rows and in the reference's (the default)"
    )
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()

    runs = {
        "candidate": read(args.candidate, args.model, None),
        "default": read(args.reference, args.model, "default"),
        "knn": read(args.reference, "knn", None),
    }
    cells = sorted(set.intersection(*(set(r) for r in runs.values())))
    if not cells:
        raise SystemExit("no (dataset, seed) cell is held by the candidate, the default and KNN")
    labels = sorted({r["preset"] for r in runs["candidate"].values()})
    seeds = sorted({s for _, s in cells})
    by_set: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for cell in cells:
        by_set[cell[0]].append(cell)
    names = sorted(by_set, key=lambda d: (runs["default"][by_set[d][0]]["n_train"], d))

    def auc(run: str, keys: list[tuple[str, int]]) -> np.ndarray:
        return np.array([runs[run][k]["roc_auc"] for k in keys])

    per_set = {run: np.array([auc(run, by_set[d]).mean() for d in names]) for run in runs}
    per_cell = {run: auc(run, cells) for run in runs}
    seconds = {run: sum(runs[run][k]["fit_seconds"] + runs[run][k]["score_seconds"] for k in cells) for run in runs}
    written = {
        "candidate": sorted(r["finished_at"] for r in runs["candidate"].values()),
        "reference": sorted(r["finished_at"] for run in ("default", "knn") for r in runs[run].values()),
    }
    lines = [
        f"# {args.model} {', '.join(labels)} against the default {args.model} and KNN",
        "",
        f"`benchmarks/tabular_candidate.py --candidate {args.candidate} --reference {args.reference}`",
        "",
        f"{len(cells)} cells: {len(names)} datasets x seeds {seeds} (the cells all three runs hold). Candidate rows "
        f"written {written['candidate'][0]} to {written['candidate'][-1]}; default and KNN rows "
        f"{written['reference'][0]} to {written['reference'][-1]}.",
        "",
        "| | candidate | default | KNN |",
        "|---|---:|---:|---:|",
        "| mean ROC-AUC over datasets | " + " | ".join(f"{per_set[r].mean():.4f}" for r in runs) + " |",
        "| fit + score seconds | " + " | ".join(f"{seconds[r]:.0f}" for r in runs) + " |",
        "",
        "| comparison | per dataset: win / tie / loss (Wilcoxon p) | per cell |",
        "|---|---|---|",
    ]
    for a, b in (("candidate", "default"), ("candidate", "knn"), ("default", "knn")):
        lines.append(f"| {a} vs {b} | {wtl(per_set[a], per_set[b])} | {wtl(per_cell[a], per_cell[b])} |")
    lines += [
        "",
        "Per dataset (mean over seeds; sorted by training rows):",
        "",
        "| dataset | n_train | d | candidate | default | KNN | candidate - default | candidate s / default s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for i, d in enumerate(names):
        first = runs["default"][by_set[d][0]]

        def secs(run: str, d: str = d) -> float:
            return sum(runs[run][k]["fit_seconds"] + runs[run][k]["score_seconds"] for k in by_set[d])

        lines.append(
            f"| {d} | {first['n_train']} | {first['d']} | {per_set['candidate'][i]:.4f} | {per_set['default'][i]:.4f} "
            f"| {per_set['knn'][i]:.4f} | {per_set['candidate'][i] - per_set['default'][i]:+.4f} "
            f"| {secs('candidate') / secs('default'):.1f} |"
        )
    args.output.write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:16]))


if __name__ == "__main__":
    main()
