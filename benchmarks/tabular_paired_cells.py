"""One model's cells in two ``usfad bench`` result files, paired: a partial run against a complete one.

Over the sets where both files hold every seed asked for: the mean test ROC-AUC of each (each set's
mean over its seeds), sets won, tied and lost by the second (a tie: within 0.001), the Wilcoxon
signed-rank p over sets; over every (set, seed) both hold: each file's cell-seconds (fit + score).

    .venv/bin/python benchmarks/tabular_paired_cells.py \
        --first benchmarks/results/tabular_all_models/results.jsonl \
        --second benchmarks/results/tabular_kernel_rules/usflow_steps250_partial.jsonl \
        --second-preset default+max_steps=250 -o /tmp/paired.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.stats import wilcoxon


def cells(path: Path, model: str, preset: str) -> dict[tuple[str, int], dict]:
    """``(set, seed) -> row`` of the model's finished cells under ``preset``."""
    rows = (json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return {
        (r["dataset"], r["seed"]): r
        for r in rows
        if r["model"] == model and r["preset"] == preset and r["status"] == "ok"
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--first", type=Path, required=True)
    parser.add_argument("--second", type=Path, required=True)
    parser.add_argument("--model", default="usflow")
    parser.add_argument("--first-preset", default="default")
    parser.add_argument("--second-preset", default="default")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 42])
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    first = cells(args.first, args.model, args.first_preset)
    second = cells(args.second, args.model, args.second_preset)
    common = sorted(set(first) & set(second))
    sets = sorted({s for s, _ in common if all((s, seed) in second and (s, seed) in first for seed in args.seeds)})
    a = np.array([np.mean([first[(s, seed)]["roc_auc"] for seed in args.seeds]) for s in sets])
    b = np.array([np.mean([second[(s, seed)]["roc_auc"] for seed in args.seeds]) for s in sets])
    diff = b - a
    wins, losses = int((diff > 0.001).sum()), int((diff < -0.001).sum())
    p = float(wilcoxon(b, a).pvalue) if np.any(diff != 0) else 1.0

    def cost(rows: dict) -> float:
        return sum(rows[c]["fit_seconds"] + rows[c]["score_seconds"] for c in common)

    lines = [
        f"# {args.model}: `{args.second_preset}` ({args.second}) against `{args.first_preset}` ({args.first})",
        "",
        f"{len(sets)} sets with all of seeds {args.seeds} in both; {len(common)} cells in both.",
        "",
        "| | first | second |",
        "|---|---|---|",
        f"| mean ROC-AUC ({len(sets)} sets) | {a.mean():.4f} | {b.mean():.4f} |",
        f"| second vs first: w/t/l, Wilcoxon p | | {wins}/{len(sets) - wins - losses}/{losses}, {p:.3f} |",
        f"| cell-seconds ({len(common)} cells) | {cost(first):.0f} | {cost(second):.0f} |",
        "",
        "Per set (ROC-AUC, first -> second): " + ", ".join(f"{s} {x:.3f} -> {y:.3f}" for s, x, y in zip(sets, a, b)),
    ]
    args.output.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
