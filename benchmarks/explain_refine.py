"""Explanations on a kernel base: what refining the rows the quadrature misses costs and buys.

A correlated Gaussian (20 features, 5,000 training rows; 2,000 test rows, half of them with
their first two features shifted by 5), the default ``USFlow(random_state=0)`` (a kernel base),
one thread. ``explain`` from the mean with the refinement as shipped
(``usfad.explain.REFINE_FACTORS``, ``REFINE_RTOL``), with a looser tolerance, and without it;
timed against ``decision_function`` on the same rows in the same run. The residual is the
quadrature's, relative to each row's score difference, before it is spread.

    .venv/bin/python benchmarks/explain_refine.py     # writes benchmarks/results/explanations_kernel/refine.md
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

import usfad.explain as explain
from usfad import USFlow

OUT = Path(__file__).parent / "results" / "explanations_kernel" / "refine.md"


def main() -> None:
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    mix = rng.normal(size=(20, 20)) / np.sqrt(20)
    X = rng.normal(size=(5000, 20)) @ mix.T
    T = rng.normal(size=(2000, 20)) @ mix.T
    T[:1000, :2] += 5
    det = USFlow(random_state=0).fit(X)
    det.decision_function(T)  # warm-up
    start = time.perf_counter()
    det.decision_function(T)
    scoring = time.perf_counter() - start
    shipped = (explain.REFINE_FACTORS, explain.REFINE_RTOL)
    lines = [
        "# Refining a kernel base's explanations where the quadrature misses",
        "",
        "Written by `benchmarks/explain_refine.py` (its docstring has the set-up). "
        f"`decision_function` on the 2,000 rows: {scoring:.3f} s.",
        "",
        "| refinement | explain s | x decision_function | residual: median | 99th percentile | max |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, factors, rtol in (
        (f"as shipped: x{shipped[0]} where above {shipped[1]:g}", *shipped),
        (f"looser: where above {shipped[1] * 10:g}", shipped[0], shipped[1] * 10),
        ("none (8 points for every row)", (), shipped[1]),
    ):
        explain.REFINE_FACTORS, explain.REFINE_RTOL = factors, rtol
        start = time.perf_counter()
        out = det.explanation(T)
        seconds = time.perf_counter() - start
        diff = np.abs(out.scores - out.baseline_scores)
        rel = np.abs(out.residual[diff > 0]) / diff[diff > 0]
        lines.append(
            f"| {label} | {seconds:.2f} | {seconds / scoring:.0f} | {np.median(rel):.1e} | "
            f"{np.percentile(rel, 99):.1e} | {rel.max():.1e} |"
        )
    explain.REFINE_FACTORS, explain.REFINE_RTOL = shipped
    OUT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
