"""How many rows search for the kernel centre they lie on, under the rule before session 28 and today's.

A row scored by a kernel base leaves out the centre it lies on (``KernelBase._on_centre``).
Only rows whose largest block term comes within a reach of 0 search for it. Before session 28
the reach read the largest centre's norm for every row; today's (``KernelBase._reach``) also
reads a bound from the row's own norm and takes the smaller. This fits the default
``USFlow`` on each set's training rows (Protocol T, seed 42) and counts, over the distinct
training rows among the first ``--rows``, for each kernel: the rows searched under each rule and
the rows that do lie on a centre (both rules find every one of those; ``benchmarks/same_scores.py``
checks the scores). Writes ``OUT.md``.

    .venv/bin/python benchmarks/kernel_search_probe.py --datasets 16_http 33_skin 5_campaign \\
        -o benchmarks/results/kernel_scoring/search
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch


def searched(base, z: torch.Tensor) -> tuple[int, int, int]:
    """``(rows searched under the rule before, under today's, rows on a centre)`` for ``z``."""
    origin, product, c_norms, _ = base._centre_side()
    s = 0.5 / base.bandwidth**2
    before = today = on = 0
    for start in range(0, z.shape[0], 50):
        rows = z[start : start + 50]
        terms, z_norms = base._block_terms(rows, origin, product)
        best = -terms.amax(1)
        share = base.coincide_share**2
        eps = torch.finfo(z.dtype).eps
        largest = c_norms.max()
        old = s * (
            base.coincide_eps * eps * (z_norms + largest)
            + 2 * share * (1 + rows.pow(2).sum(1) + 2 * (largest + origin.pow(2).sum()))
        )
        before += int((best <= old).sum())
        today += int((best <= base._reach(rows, s, z_norms, c_norms, origin)).sum())
        on += int((base.own_centres(rows) >= 0).sum())
    return before, today, on


def main() -> None:
    from usfad import USFlow
    from usfad.data.adbench import load_dataset
    from usfad.data.protocol import protocol_t

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("USFAD_DATA", "../shared/data/adbench"))
    parser.add_argument("--datasets", nargs="+", default=["16_http", "33_skin", "5_campaign"])
    parser.add_argument("--rows", type=int, default=20_000, help="the first this many training rows are counted")
    parser.add_argument("-o", "--output", type=Path, required=True, help="OUT (writes OUT.md)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    lines = [
        "# Rows that search for the centre they lie on: the rule before session 28 and today's",
        "",
        f"`{' '.join(['benchmarks/kernel_search_probe.py', *sys.argv[1:]])}`: the default `USFlow()` fitted on the "
        f"training rows (Protocol T, seed 42); counted over the distinct rows among the first {args.rows:,}.",
        "",
        "| set | kernel | distinct rows | searched before | searched today | on a centre |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name in args.datasets:
        split = protocol_t(*load_dataset(name, args.data), 42)
        det = USFlow().fit(split.X_train)
        rows = torch.unique(det._validated(split.X_train[: args.rows]), dim=0)
        with torch.no_grad():
            kernels = [("latent", det.model_.base, det.model_.flow(rows)[0]), ("input", det.model_.input_base, rows)]
            for label, base, z in kernels:
                if base is None or not hasattr(base, "bandwidth"):
                    continue
                before, today, on = searched(base, z.float())
                lines.append(f"| {name} | {label} | {len(z):,} | {before:,} | {today:,} | {on:,} |")
                print(lines[-1], flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
