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
from pathlib import Path

import numpy as np
from probe_cells import compare_to  # this folder is on sys.path when run

from usfad.experiments.store import read_results


def cells(path: Path, model: str, preset: str) -> dict[tuple[str, int], dict]:
    """``(set, seed) -> row`` of the model's finished cells under ``preset``."""
    return {
        (r["dataset"], r["seed"]): r
        for r in read_results(path)
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
    roc = {
        name: {s: [rows[(s, seed)]["roc_auc"] for seed in args.seeds] for s in sets}
        for name, rows in (("first", first), ("second", second))
    }
    versus = compare_to(roc, "first")
    a, b = versus["first"], versus["second"]

    def cost(rows: dict) -> float:
        return sum(rows[c]["fit_seconds"] + rows[c]["score_seconds"] for c in common)

    lines = [
        f"# {args.model}: `{args.second_preset}` ({args.second}) against `{args.first_preset}` ({args.first})",
        "",
        f"{len(sets)} sets with all of seeds {args.seeds} in both; {len(common)} cells in both.",
        "",
        "| | first | second |",
        "|---|---|---|",
        f"| mean ROC-AUC ({len(sets)} sets) | {a.mean:.4f} | {b.mean:.4f} |",
        f"| second vs first: w/t/l, Wilcoxon p | | {b.win}/{b.tie}/{b.loss}, {b.p:.3f} |",
        f"| cell-seconds ({len(common)} cells) | {cost(first):.0f} | {cost(second):.0f} |",
        "",
        "Per set (ROC-AUC, first -> second): "
        + ", ".join(f"{s} {np.mean(roc['first'][s]):.3f} -> {np.mean(roc['second'][s]):.3f}" for s in sets),
    ]
    args.output.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
