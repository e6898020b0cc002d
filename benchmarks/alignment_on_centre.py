"""Does the default USFlow's score rank a set's test rows exactly as its latent distance does?

The score is computed in float32, :func:`usfad.metrics.latent_distance` on a float64 copy of
the kernels. Both leave a row's own kernel out where it lies on a training latent, so they must
agree on which rows do (``KernelBase.coincide_share``). Per set (Protocol T, one seed) this
prints and appends to ``-o`` one JSON line: the Spearman correlation of the two, the number of
test rows whose ranks differ by more than 50 places, how far a training row's latent moves when
it is computed alone rather than with all the training rows (the largest of ``||z_1 - z|| /
sqrt(1 + ||z||^2)`` over the first 600: what ``coincide_share`` must allow), and, with
``--against`` an earlier run's ``--save`` file of the same cell, the largest and the median
change of a row's score.

    PYTHONPATH=<a checkout>/src .venv/bin/python benchmarks/alignment_on_centre.py \\
        --data ../shared/data/adbench --datasets 5_campaign --save /tmp/before.npz -o /tmp/on_centre.jsonl
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from usfad import USFlow
from usfad.data.adbench import load_dataset
from usfad.data.protocol import protocol_t
from usfad.metrics import latent_distance


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/adbench")
    parser.add_argument("--datasets", nargs="+", default=["5_campaign"])
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--save", type=Path, help="npz of the test scores (one set only)")
    parser.add_argument("--against", type=Path, help="an earlier --save of the same cell")
    parser.add_argument("-o", "--output", type=Path, required=True, help="JSON lines, appended")
    args = parser.parse_args()
    torch.set_num_threads(1)
    import usfad

    source = Path(usfad.__file__).resolve().parent
    commit = subprocess.run(["git", "-C", str(source), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    for dataset in args.datasets:
        X, y = load_dataset(dataset, root=args.data)
        split = protocol_t(X, y, args.seed)
        det = USFlow(random_state=args.seed).fit(split.X_train)
        score = det.decision_function(split.X_test)
        distance = latent_distance(det, split.X_test)
        apart = np.abs(stats.rankdata(score) - stats.rankdata(distance)) > 50
        rows = split.X_train[:600]
        together = det.latent(rows)
        alone = np.concatenate([det.latent(rows[i : i + 1]) for i in range(len(rows))])
        shift = np.linalg.norm(alone - together, axis=1) / np.sqrt(1 + (together**2).sum(1))
        row = {
            "dataset": dataset,
            "seed": args.seed,
            "commit": commit.stdout.strip(),
            "gaussian_weight": round(det.gaussian_weight_, 3),
            "spearman": float(stats.spearmanr(score, distance).statistic),
            "rows_over_50_places_apart": int(apart.sum()),
            "test_rows": len(score),
            "latent_shift_alone": float(shift.max()),
        }
        if args.against:
            change = np.abs(score - np.load(args.against)["score"])
            row["max_score_change"] = float(change.max())
            row["median_score_change"] = float(np.median(change))
            row["rows_changed_over_0.01"] = int((change > 0.01).sum())
        if args.save:
            np.savez_compressed(args.save, score=score)
        with open(args.output, "a") as fh:
            fh.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
