"""Table: how much of the grid's seed-to-seed spread is the model's own, per set.

Reads the rows of ``tabular_model_seed_spread.py`` (the split fixed, only the model's seed moving)
and a ``usfad bench`` result file (Protocol T: the seed moves the split and the model together),
and writes, for every set the probe holds for each of ``--models``, the standard deviation of the
test ROC-AUC over seeds both ways. KNN has no randomness of its own, so its grid spread is the
split's alone.

    .venv/bin/python benchmarks/tabular_seed_spread_table.py \\
        --spread benchmarks/results/tabular_all_models/probes/model_seed_spread.jsonl \\
        --grid benchmarks/results/tabular_all_models/results.jsonl \\
        -o benchmarks/results/tabular_all_models/seed_spread.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from usfad.bench.report import results_frame
from usfad.reporting.tables import markdown_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spread", type=Path, required=True, help="rows of tabular_model_seed_spread.py")
    parser.add_argument("--grid", type=Path, required=True, help="a usfad bench result file")
    parser.add_argument("--models", nargs="+", default=["usflow", "nonusflow"])
    parser.add_argument("--anchor", default="knn", help="a grid model without randomness of its own")
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()

    own: dict[str, dict[str, float]] = {}
    for line in args.spread.read_text().splitlines():
        row = json.loads(line)
        own.setdefault(row["dataset"], {})[row["model"]] = row["std"]
    sets = [d for d, models in own.items() if all(m in models for m in args.models)]
    grid = results_frame([args.grid])
    grid = grid[grid["status"] == "ok"].groupby(["dataset", "model"])["roc_auc"].std()  # ddof=1 over seeds

    columns = [*(f"{m}, own" for m in args.models), *(f"{m}, grid" for m in [*args.models, args.anchor])]
    values = [[own[d][m] for m in args.models] + [grid.get((d, m), np.nan) for m in [*args.models, args.anchor]]
              for d in sets]  # fmt: skip
    rows = [[d, *(f"{v:.4f}" for v in vals)] for d, vals in zip(sets, values, strict=True)]
    rows.append(["**mean**", *(f"**{v:.4f}**" for v in np.nanmean(np.array(values, dtype=float), axis=0))])
    split_seed = json.loads(args.spread.read_text().splitlines()[0])["split_seed"]
    text = (
        "# Seed spread: the model's own against the grid's\n\n"
        f"`own`: the standard deviation of the test ROC-AUC over model seeds with the split fixed (split seed "
        f"{split_seed}; `{args.spread.name}`). `grid`: over the seeds of `{args.grid.name}` (Protocol T: each seed "
        f"draws another split and another model). {len(sets)} sets, those the probe holds for "
        f"{' and '.join(args.models)}. {args.anchor} has no randomness of its own: its grid spread is the split's.\n\n"
        + markdown_table(["dataset", *columns], rows)
        + "\n"
    )
    args.output.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
