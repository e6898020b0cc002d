"""Fit time and ROC-AUC of the `paper` preset against the `default` preset, side by side.

For each chosen dataset and seed, both presets of one model are fitted in this process,
one right after the other on the same Protocol T split, so that the fit-time ratio
compares like with like on a shared, noisy machine. Writes a CSV and prints a summary.

    .venv/bin/python benchmarks/paper_vs_default.py --data ../shared/data/adbench \
        --datasets 14_glass 42_WBC --seeds 42 -o benchmarks/results/paper_vs_default.csv
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
import torch

from usfad.bench.spec import make_model
from usfad.data.adbench import load_dataset
from usfad.data.protocol import protocol_t
from usfad.metrics import roc_auc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--datasets", nargs="+", required=True)
    parser.add_argument("--seeds", nargs="+", type=int, default=[42])
    parser.add_argument("--model", default="usflow")
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for name in args.datasets:
        X, y = load_dataset(name, args.data)
        for seed in args.seeds:
            split = protocol_t(X, y, seed)
            for preset in ("default", "paper"):
                model = make_model(args.model, preset, n_features=X.shape[1], seed=seed)
                start = time.perf_counter()
                model.fit(split.X_train)
                fit_s = time.perf_counter() - start
                auc = roc_auc(split.y_test, model.decision_function(split.X_test))
                rows.append({"dataset": name, "seed": seed, "preset": preset, "roc_auc": auc, "fit_seconds": fit_s})
                print(f"{name:20s} seed {seed:2d} {preset:7s} ROC-AUC {auc:.3f} fit {fit_s:7.1f} s", flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with open(args.output, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    fit = {p: np.array([r["fit_seconds"] for r in rows if r["preset"] == p]) for p in ("default", "paper")}
    auc = {p: np.array([r["roc_auc"] for r in rows if r["preset"] == p]) for p in ("default", "paper")}
    print(
        f"{len(fit['default'])} cells: total fit paper/default = {fit['paper'].sum() / fit['default'].sum():.2f}, "
        f"median per-cell ratio {np.median(fit['paper'] / fit['default']):.2f}; "
        f"mean ROC-AUC default {auc['default'].mean():.3f}, paper {auc['paper'].mean():.3f}"
    )


if __name__ == "__main__":
    main()
