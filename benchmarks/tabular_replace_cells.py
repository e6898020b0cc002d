"""A result file holding a base run's cells, except those a newer run holds (a default that changes some sets only).

Each cell is keyed as ``usfad bench`` keys it (group, set, model, preset, seed:
:func:`usfad.experiments.store.row_key`). The output holds every row of ``--base`` whose key
is not in ``--new``, then the rows of ``--new`` (several files: a later file's cell replaces an
earlier one's), and says how many it replaced. A new default
that scores some sets exactly as before needs a new run on the other sets only; the report of
the output then compares all models over all sets (their cell-seconds come from two runs).

    .venv/bin/python benchmarks/tabular_replace_cells.py \
        --base benchmarks/results/tabular_all_models/results.jsonl \
        --new benchmarks/results/tabular_binary/usflow_binary_sets.jsonl \
              benchmarks/results/tabular_binary/usflow_all_binary_sets.jsonl \
              benchmarks/results/tabular_binary/nonusflow_binary_sets.jsonl \
        -o benchmarks/results/tabular_binary/results.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from usfad.experiments.store import read_results, row_key


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, required=True, help="the complete result file")
    parser.add_argument("--new", type=Path, nargs="+", required=True, help="the cells that replace the base's")
    parser.add_argument("-o", "--output", type=Path, required=True, help="a new file (not one of the inputs)")
    args = parser.parse_args()
    if args.output.exists():
        raise SystemExit(f"{args.output} exists; give a new file")
    latest = {row_key(row): row for path in args.new for row in read_results(path)}
    new, keys = list(latest.values()), set(latest)
    base = read_results(args.base)
    kept = [row for row in base if row_key(row) not in keys]
    missing = len(keys) - (len(base) - len(kept))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with open(args.output, "w") as fh:
        for row in kept + new:
            fh.write(json.dumps(row) + "\n")
    print(f"{args.output}: {len(kept)} rows of {args.base}, {len(new)} new ({missing} not in the base)")


if __name__ == "__main__":
    main()
