"""Scoring throughput: USFlow (PyTorch and ONNX Runtime) next to PyOD's IForest and KNN.

For d = 10 and d = 100 (Gaussian data; 5,000 training rows, 10,000 rows scored) in one run:
rows/s of ``decision_function`` of a USFlow (default architecture, a few training steps:
speed does not depend on the weights), of the exported USFlow in an ONNX Runtime session,
and of PyOD's IForest and KNN (defaults), each the median of ``--repeats`` timings, and
the ratio to USFlow's PyTorch rows/s. One thread everywhere (``torch.set_num_threads(1)``,
ORT ``intra_op_num_threads=1``, ``n_jobs=1``), so the ratios compare like with like.
Writes ``throughput.csv`` and ``throughput.md`` to ``--out``.

    PYTHONPATH=src .venv/bin/python benchmarks/throughput.py
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch


def median_seconds(fn: Callable[[], object], repeats: int, min_time: float = 0.25) -> float:
    """Median seconds per call of ``fn()`` over ``repeats`` timings, after a warm-up call.

    Each timing loops ``fn`` enough times to last about ``min_time`` seconds, so that fast
    calls are not lost in the noise of a shared machine.
    """
    start = time.perf_counter()
    fn()
    loops = max(1, math.ceil(min_time / max(time.perf_counter() - start, 1e-9)))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(loops):
            fn()
        times.append((time.perf_counter() - start) / loops)
    return statistics.median(times)


def machine_note() -> str:
    return (
        f"Machine: {platform.machine()}, {os.cpu_count()} cores SHARED with other jobs, so absolute figures are "
        "noisy; ratios within one run are what count. One thread per method, medians of repeats."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", nargs="+", type=int, default=[10, 100])
    parser.add_argument("--train", type=int, default=5000)
    parser.add_argument("--rows", type=int, default=10000, help="rows scored per timing")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=50, help="training steps of the USFlow")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from pyod.models.iforest import IForest
    from pyod.models.knn import KNN

    from usfad.detectors import USFlow
    from usfad.export import onnx_session, run_onnx

    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for d in args.dims:
            rng = np.random.default_rng(d)
            X_train, X = rng.normal(size=(args.train, d)), rng.normal(size=(args.rows, d))
            usflow = USFlow(max_steps=args.steps, random_state=0).fit(X_train)
            session = onnx_session(usflow.export_onnx(Path(tmp) / f"usflow_{d}.onnx"), threads=1)
            calls = {
                "USFlow (PyTorch)": partial(usflow.decision_function, X),
                "USFlow (ONNX Runtime)": partial(run_onnx, session, X, batch_size=usflow.score_batch_size),
                "IForest (PyOD)": partial(IForest(n_jobs=1, random_state=0).fit(X_train).decision_function, X),
                "KNN (PyOD)": partial(KNN(n_jobs=1).fit(X_train).decision_function, X),
            }
            rates = {name: args.rows / median_seconds(call, args.repeats) for name, call in calls.items()}
            for name, rate in rates.items():
                row = {
                    "d": d,
                    "method": name,
                    "rows_per_s": round(rate),
                    "ratio_to_usflow_pytorch": round(rate / rates["USFlow (PyTorch)"], 3),
                }
                results.append(row)
                print(row, flush=True)
    with open(args.out / "throughput.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(results[0]))
        writer.writeheader()
        writer.writerows(results)
    lines = [
        "# Scoring throughput (decision_function, rows/s)",
        "",
        f"{args.train} training rows, {args.rows} rows scored per timing, median of {args.repeats}; USFlow with the "
        "default architecture (4 blocks, conditioners 256-256). " + machine_note(),
        "",
        "| d | method | rows/s | ratio to USFlow (PyTorch) |",
        "|---:|---|---:|---:|",
    ]
    lines += [
        f"| {r['d']} | {r['method']} | {r['rows_per_s']:,} | {r['ratio_to_usflow_pytorch']:.2f} |" for r in results
    ]
    (args.out / "throughput.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
