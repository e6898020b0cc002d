"""The training noise on the smallest Classical sets: noise=0.2 against noise="auto", 5 seeds.

Reads ``small_sets.jsonl`` (rows of ``usfad bench`` with ``--param usflow.noise=0.2`` and
without) and the previous default's rows, and writes a table of the mean ROC-AUC over seeds
per dataset. Both runs used the code of e3dd20f, whose flows drew their random start in
another order than 2a620b1's: that alone moves these means (see the closing note).

    usfad bench --data ../shared/data/adbench --datasets 15_Hepatitis 45_wine ... --models usflow \\
        --seeds 42 0 1 2 3 --param usflow.noise=0.2 --results benchmarks/results/tabular_v2/small_sets.jsonl
    .venv/bin/python benchmarks/small_sets_noise.py -o benchmarks/results/tabular_v2/small_sets.md
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def rows(path: Path, model: str) -> dict[str, dict[tuple[str, int], float]]:
    out: dict[str, dict[tuple[str, int], float]] = defaultdict(dict)
    for line in path.read_text().splitlines():
        r = json.loads(line)
        if r["model"] == model and r["status"] == "ok":
            out[r["preset"]][(r["dataset"], r["seed"])] = r["roc_auc"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    new = rows(RESULTS / "tabular_v2" / "small_sets.jsonl", "usflow")
    old = rows(RESULTS / "usfad_models.jsonl", "usflow")["default"]
    knn = rows(RESULTS / "results.jsonl", "knn")["default"]
    runs = {"previous default (2a620b1)": old, "noise=0.2": new["default+noise=0.2"], 'noise="auto"': new["default"]}
    keys = sorted(set.intersection(*(set(r) for r in runs.values())) & set(knn))
    datasets = sorted({d for d, _ in keys})
    head = [*runs, "KNN"]
    lines = [
        "# Training noise on the smallest Classical sets",
        "",
        f"`{' '.join(['benchmarks/small_sets_noise.py', *sys.argv[1:]])}`: mean ROC-AUC over the seeds every run has.",
        "",
        "| dataset | seeds | " + " | ".join(head) + " |",
        "|---|---|" + "---|" * len(head),
    ]
    means = defaultdict(list)
    for d in datasets:
        ks = [k for k in keys if k[0] == d]
        cells = []
        for name, table in [*runs.items(), ("KNN", knn)]:
            v = float(np.mean([table[k] for k in ks]))
            means[name].append(v)
            cells.append(f"{v:.3f}")
        lines.append(f"| {d} | {len(ks)} | " + " | ".join(cells) + " |")
    lines.append("| mean | | " + " | ".join(f"{np.mean(means[n]):.3f}" for n in head) + " |")
    args.output.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
