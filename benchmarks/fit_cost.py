"""Where one USFlow fit spends its time, and how long fits take, before and after a change.

Every case runs in a fresh subprocess with one thread, one after the other in this run, so
that the ratios compare like with like on a shared, noisy machine. ``--threads 1 2`` instead
fits each case with each number of torch threads (and no ``--before``): what a user's
``USFlow().fit``, which takes torch's default (one thread per core), costs against one thread,
on an idle machine or beside other work. ``--before SRC`` names
the ``src`` folder of another checkout (e.g. a ``git worktree`` of the previous commit):
each case then runs with that code too, right after the current code, and the table gives
the ratio. Cases: synthetic 10k x 20 and 100k x 50 rows (a Gaussian mixture), 230 rows of
1000-d (the size of an image-embedding set), and the 512-d MVTec AD bottle embeddings
under Protocol T (seed 42) when ``--data`` holds them; on request (``--cases``), the training
rows of 11_donors and 33_skin (Protocol T, seed 42), the largest tables, whose rows repeat, and
of 8_celeba and 5_campaign, whose columns are mostly binary.

Writes ``OUT.md`` (table and, per case, the profile of the current code grouped by where
the time goes) and ``OUT.csv``.

    git worktree add /tmp/before 2a620b1
    .venv/bin/python benchmarks/fit_cost.py --before /tmp/before/src --data ../shared/data/adbench \\
        -o benchmarks/results/fit_cost
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

CASES = {
    "10k x 20": "synthetic:10000:20",
    "100k x 50": "synthetic:100000:50",
    "230 x 1000": "synthetic:230:1000",
    "MVTec bottle (180 x 512)": "adbench:MVTec-AD_bottle",
}
DEFAULT_CASES = list(CASES)
# on request (--cases): a small table, like most ADBench sets; the largest tables, whose rows repeat
CASES |= {
    "300 x 5": "synthetic:300:5",
    "11_donors (408k x 10)": "adbench:11_donors",
    "33_skin (136k x 3)": "adbench:33_skin",
    # ... and tables with binary columns, which gaussian_weight="auto" scores differently
    "8_celeba (139k x 39)": "adbench:8_celeba",
    "5_campaign (26k x 62)": "adbench:5_campaign",
}

# Run inside the subprocess: fit USFlow() with its defaults, profile it, print one JSON line.
CHILD = r"""
import cProfile, json, pstats, sys, time
import numpy as np, torch
spec, data, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
torch.set_num_threads(threads)
from usfad import USFlow
kind, *rest = spec.split(":")
if kind == "synthetic":
    n, d = int(rest[0]), int(rest[1])
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=3.0, size=(3, d))
    X = centres[rng.integers(0, 3, n)] + rng.normal(size=(n, d)) @ rng.normal(scale=0.3, size=(d, d))
else:
    from usfad.data.adbench import load_dataset
    from usfad.data.protocol import protocol_t
    X = protocol_t(*load_dataset(rest[0], data), 42).X_train
USFlow(epochs=1, max_steps=1).fit(X[:64])  # imports and first-call costs out of the timing
profile = cProfile.Profile()
start = time.perf_counter()
profile.enable()
det = USFlow().fit(X)
profile.disable()
seconds = time.perf_counter() - start
groups = {"backward": ("run_backward",), "optimizer": ("adam", "_fused_adam", "foreach"),
          "LU layers": ("linear.py",),
          "couplings and conditioners": ("coupling.py", "subnets.py", "_nn.linear", "relu"),
          "validation and best weights": ("batched_mean", "clone", "deepcopy")}
stats = pstats.Stats(profile).stats
spent = {g: 0.0 for g in groups}
for (file, _, func), (_, _, tottime, _, _) in stats.items():
    where = f"{file}:{func}"
    for g, keys in groups.items():
        if any(k in where for k in keys):
            spent[g] += tottime
            break
total = sum(v[2] for v in stats.values())
spent["other (Python, data, base density)"] = total - sum(spent.values())
h = det.history_
print(json.dumps({"n": X.shape[0], "d": X.shape[1], "fit_seconds": seconds, "steps": h.steps,
                  "epochs": len(h.train_loss), "ms_per_step": 1000 * seconds / max(h.steps, 1),
                  "profile": {k: v / total for k, v in spent.items()}}))
"""


def run_case(src: Path, spec: str, data: str, threads: int = 1) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, spec, data, str(threads)], env=env, capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="src folder of the code to compare with")
    parser.add_argument("--data", default=os.environ.get("USFAD_DATA", "../shared/data/adbench"))
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=DEFAULT_CASES)
    parser.add_argument(
        "--threads", type=int, nargs="+", metavar="N", help="compare these numbers of torch threads (no --before)"
    )
    parser.add_argument("-o", "--output", type=Path, required=True, help="OUT (writes OUT.md and OUT.csv)")
    args = parser.parse_args()
    if args.threads and (args.before or min(args.threads) < 1):
        parser.error("--threads takes positive counts and compares the current code alone (no --before)")
    here = Path(__file__).resolve().parents[1] / "src"
    runs = [(f"{n} thread{'s' * (n > 1)}", here, n) for n in args.threads] if args.threads else [("after", here, 1)]
    if args.before:
        runs.append(("before", args.before, 1))
    rows = []
    load_start = os.getloadavg()[0]
    for case in args.cases:
        spec = CASES[case]
        if spec.startswith("adbench") and not Path(args.data).exists():
            continue
        for label, src, threads in runs:
            row = {"case": case, "code": label, "threads": threads, **run_case(src, spec, args.data, threads)}
            rows.append(row)
            print(
                f"{case:26s} {label:6s} fit {row['fit_seconds']:7.1f} s, {row['steps']} steps, "
                f"{row['ms_per_step']:.1f} ms/step",
                flush=True,
            )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with open(args.output.with_suffix(".csv"), "w", newline="") as f:
        fields = ["case", "code", "threads", "n", "d", "fit_seconds", "steps", "epochs", "ms_per_step"]
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows({k: r[k] for k in writer.fieldnames} for r in rows)
    lines = [
        "# One USFlow fit: time and where it goes",
        "",
        f"`{shlex.join(['benchmarks/fit_cost.py', *sys.argv[1:]])}`; "
        + ("torch threads as given" if args.threads else "one thread")
        + ", each fit in its own process, default parameters (`USFlow()`). Load average (1 min) at the start and "
        f"the end of the run: {load_start:.1f} and {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; above the "
        "core count other work shared the machine and the absolute times are inflated (the compared fits of a case "
        "ran back to back).",
        "",
    ]
    cell = lambda r: "" if r is None else f"{r['fit_seconds']:.1f} ({r['steps']})"  # noqa: E731
    if args.threads:
        first = runs[0][0]
        lines += [
            "| case | "
            + " | ".join(f"{label}: fit s (steps)" for label, _, _ in runs)
            + " | "
            + " | ".join(f"{label} / {first}" for label, _, _ in runs[1:])
            + " |",
            "|---|" + "---|" * (2 * len(runs) - 1),
        ]
    else:
        lines += ["| case | before: fit s (steps) | after: fit s (steps) | after / before |", "|---|---|---|---|"]
    for case in dict.fromkeys(r["case"] for r in rows):
        got = {r["code"]: r for r in rows if r["case"] == case}
        if args.threads:
            base = got[runs[0][0]]["fit_seconds"]
            ratios = [f"{got[label]['fit_seconds'] / base:.2f}" for label, _, _ in runs[1:]]
            lines.append(f"| {case} | " + " | ".join([*(cell(got[label]) for label, _, _ in runs), *ratios]) + " |")
            continue
        a, b = got.get("after"), got.get("before")
        ratio = f"{a['fit_seconds'] / b['fit_seconds']:.2f}" if a and b else ""
        lines.append(f"| {case} | {cell(b)} | {cell(a)} | {ratio} |")
    lines += ["", "Share of profiled time by where it is spent (cProfile, own time of each function):", ""]
    groups = list(rows[0]["profile"])
    lines += ["| case | code | " + " | ".join(groups) + " |", "|---|---|" + "---|" * len(groups)]
    for r in rows:
        shares = " | ".join(f"{100 * r['profile'][g]:.0f}%" for g in groups)
        lines.append(f"| {r['case']} | {r['code']} | {shares} |")
    args.output.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"written {args.output.with_suffix('.md')}")


if __name__ == "__main__":
    main()
