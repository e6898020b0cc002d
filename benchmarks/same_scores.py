"""Does a change that should only make USFlow faster leave its scores as they were?

Fits the default ``USFlow(random_state=seed)`` under Protocol T on a few ADBench sets, once with
this checkout's code and once with ``--before SRC`` (the ``src`` folder of another checkout, e.g.
a ``git worktree`` of the previous commit), each in its own process with one thread, and
writes per (set, seed) the largest relative difference of the test scores and of the training
rows' scores (``decision_scores_``), both kernels' bandwidths, the test ROC-AUC of each, and
the seconds each code took to fit and to score the test rows, to ``OUT.md``.

    git worktree add /tmp/before 272f804
    .venv/bin/python benchmarks/same_scores.py --before /tmp/before/src --data ../shared/data/adbench \\
        -o benchmarks/results/same_scores_cheaper
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

CELLS = [("7_Cardiotocography", 1), ("6_cardio", 0), ("2_annthyroid", 42), ("22_magic.gamma", 0), ("8_celeba", 0)]

# Run inside the subprocess: fit each cell, save the test scores and the kernels' bandwidths.
CHILD = r"""
import json, sys, time
import numpy as np, torch
torch.set_num_threads(1)
from usfad import USFlow
from usfad.data.adbench import load_dataset
from usfad.data.protocol import protocol_t
from usfad.metrics import detection_metrics
cells, data, out = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
saved = {}
for name, seed in cells:
    split = protocol_t(*load_dataset(name, data), seed)
    start = time.perf_counter()
    det = USFlow(random_state=seed).fit(split.X_train)
    fitted = time.perf_counter()
    scores = det.decision_function(split.X_test)
    saved[f"{name}/{seed}/seconds"] = np.array([fitted - start, time.perf_counter() - fitted])
    saved[f"{name}/{seed}/scores"] = scores
    saved[f"{name}/{seed}/train_scores"] = det.decision_scores_
    bases = (det.model_.base, det.model_.input_base)  # no kernel (every column binary): NaN
    saved[f"{name}/{seed}/bandwidths"] = np.array([float(getattr(base, "bandwidth", "nan")) for base in bases])
    saved[f"{name}/{seed}/roc"] = np.array(detection_metrics(split.y_test, scores)["roc_auc"])
np.savez(out, **saved)
"""


def run(src: Path, cells: list[tuple[str, int]], data: str, out: Path) -> dict:
    import numpy as np

    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-c", CHILD, json.dumps(cells), data, str(out)], env=env, check=True)
    with np.load(out) as saved:
        return {key: saved[key] for key in saved.files}


def main() -> None:
    import numpy as np

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="src folder of the code to compare with")
    parser.add_argument("--data", default=os.environ.get("USFAD_DATA", "../shared/data/adbench"))
    parser.add_argument("--cells", nargs="+", help="SET:SEED pairs (default: 5 cells, small to 139k rows)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="OUT (writes OUT.md)")
    args = parser.parse_args()
    cells = [(c.split(":")[0], int(c.split(":")[1])) for c in args.cells] if args.cells else CELLS
    here = Path(__file__).resolve().parents[1] / "src"
    args.output.parent.mkdir(parents=True, exist_ok=True)
    after = run(here, cells, args.data, args.output.with_suffix(".after.npz"))
    before = run(args.before, cells, args.data, args.output.with_suffix(".before.npz"))
    lines = [
        "# The same scores before and after",
        "",
        f"`{' '.join(['benchmarks/same_scores.py', *sys.argv[1:]])}`: the default `USFlow(random_state=seed)`, "
        "Protocol T, one thread, each code in its own process (after first, then before, one cell after another). "
        f"Load average (1 min) at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores.",
        "",
        "| set | seed | max relative score difference: test rows | training rows | bandwidths before (latent, "
        "input) | after | ROC-AUC before | after | fit s before | after | score s before | after |",
        "|---|---:|---:|---:|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, seed in cells:
        key = f"{name}/{seed}"
        diffs = []
        for scores in ("scores", "train_scores"):
            a, b = before[f"{key}/{scores}"], after[f"{key}/{scores}"]
            diffs.append(f"{float(np.max(np.abs(a - b) / np.maximum(np.abs(a), 1.0))):.2e}")
        bw = [", ".join(f"{h:.6g}" for h in run_[f"{key}/bandwidths"]) for run_ in (before, after)]
        (fit_b, score_b), (fit_a, score_a) = before[f"{key}/seconds"], after[f"{key}/seconds"]
        lines.append(
            f"| {name} | {seed} | {diffs[0]} | {diffs[1]} | {bw[0]} | {bw[1]} | "
            f"{float(before[f'{key}/roc']):.6f} | {float(after[f'{key}/roc']):.6f} | "
            f"{fit_b:.1f} | {fit_a:.1f} | {score_b:.1f} | {score_a:.1f} |"
        )
    for suffix in (".after.npz", ".before.npz"):
        args.output.with_suffix(suffix).unlink()
    args.output.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
