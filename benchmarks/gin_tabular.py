"""USFlow with GIN couplings against the additive USF and the affine control on ADBench Classical.

Reads the ``usflow_gin`` rows (``usfad bench --models usflow_gin``, preset ``default``) and the
``usflow`` / ``nonusflow`` rows of the main store, keeps the datasets all three have with every
seed, and writes a markdown table: mean ROC-AUC per dataset over the seeds, the mean over the
datasets, and on how many datasets ``usflow_gin`` is at least as good as each of the other two.

    .venv/bin/python benchmarks/gin_tabular.py

(the ``usflow_gin`` rows: the last ``usfad bench`` command of ``benchmarks/tabular.sh``).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent / "results"
MODELS = ("usflow", "usflow_gin", "nonusflow")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gin", type=Path, default=HERE / "usflow_gin_classical.jsonl")
    parser.add_argument("--others", type=Path, default=HERE / "usfad_models.jsonl")
    parser.add_argument("--out", type=Path, default=HERE / "usflow_gin_classical.md")
    args = parser.parse_args()
    scores: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
    failed: dict[str, int] = defaultdict(int)
    for path in (args.gin, args.others):
        for line in path.read_text().splitlines():
            r = json.loads(line)
            if r.get("model") not in MODELS or r.get("preset") != "default" or r.get("group") != "Classical":
                continue
            if r.get("status") != "ok":
                failed[r["model"]] += 1
                continue
            scores[(r["dataset"], r["model"])][r["seed"]] = r["roc_auc"]
    seeds = {s for v in scores.values() for s in v}
    datasets = sorted(
        {d for d, m in scores if m == "usflow_gin"}
        & {d for d, _ in scores if all(set(scores.get((d, m), {})) == seeds for m in MODELS)},
        key=lambda d: int(d.split("_")[0]),
    )
    mean = {(d, m): float(np.mean(list(scores[(d, m)].values()))) for d in datasets for m in MODELS}
    lines = [
        "# USFlow with GIN couplings on ADBench Classical (preset default, Protocol T)",
        "",
        f"{len(datasets)} datasets, seeds {sorted(seeds)}; mean ROC-AUC over the seeds. Failed runs: "
        + ", ".join(f"{m} {failed[m]}" for m in MODELS)
        + ".",
        "",
        "| dataset | usflow | usflow_gin | nonusflow |",
        "|---|---|---|---|",
    ]
    lines += [f"| {d} | " + " | ".join(f"{mean[(d, m)]:.3f}" for m in MODELS) + " |" for d in datasets]
    avg = {m: np.mean([mean[(d, m)] for d in datasets]) for m in MODELS}
    lines += ["| **mean** | " + " | ".join(f"**{avg[m]:.3f}**" for m in MODELS) + " |", ""]
    for other in ("usflow", "nonusflow"):
        wins = sum(mean[(d, "usflow_gin")] >= mean[(d, other)] for d in datasets)
        lines.append(f"- usflow_gin >= {other} on {wins} of {len(datasets)} datasets")
    args.out.write_text("\n".join(lines) + "\n")
    print(args.out.read_text())


if __name__ == "__main__":
    main()
