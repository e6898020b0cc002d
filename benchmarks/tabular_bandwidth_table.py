"""Table of ``tabular_bandwidth_probe.py``'s per-row NLLs: every pair of bandwidth scales (flow's
kernel, identity flow's kernel) and weights between the two NLLs, against the default (both
scales 1, weight 1/2), as mean test ROC-AUC over sets (each set's mean over its seeds), sets
won, tied and lost (a tie: within 0.001) and the Wilcoxon signed-rank p over sets.

    .venv/bin/python benchmarks/tabular_bandwidth_table.py --npz /tmp/bw/npz -o /tmp/bw/table.md
"""

from __future__ import annotations

import argparse
import itertools
from collections import defaultdict
from pathlib import Path

import numpy as np
from probe_cells import compare_to  # this folder is on sys.path when run

from usfad.metrics import roc_auc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--npz", type=Path, required=True)
    parser.add_argument("--weights", nargs="+", type=float, default=[0.25, 0.5, 0.75], help="the flow NLL's weight")
    parser.add_argument("--top", type=int, default=12, help="rows of the table besides the default")
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    roc = defaultdict(lambda: defaultdict(list))  # variant -> set -> [roc per seed]
    files = sorted(args.npz.glob("*.npz"))
    for path in files:
        dataset = path.stem.rsplit("_", 1)[0]
        with np.load(path) as npz:  # read once: an npz decompresses on every access
            cell = {key: npz[key] for key in ("y", "scales", "flow", "input")}
        scales = [float(s) for s in cell["scales"]]
        for (i, sf), (j, si), w in itertools.product(enumerate(scales), enumerate(scales), args.weights):
            score = w * cell["flow"][i] + (1 - w) * cell["input"][j]
            roc[(sf, si, w)][dataset].append(roc_auc(cell["y"], score))
    default = (1.0, 1.0, 0.5)
    versus = compare_to(roc, default)
    ranked = sorted((v for v in versus if v != default), key=lambda v: -versus[v].mean)
    n_sets = versus[default].tie
    lines = [
        f"# Bandwidth scales and weights ({len(files)} cells, {n_sets} sets)",
        "",
        "| flow kernel's scale | input kernel's scale | flow NLL's weight | mean ROC-AUC | vs default w/t/l"
        " | Wilcoxon p |",
        "|---|---|---|---|---|---|",
    ]
    for sf, si, w in [default, *ranked[: args.top]]:
        v = versus[(sf, si, w)]
        lines.append(f"| {sf:g} | {si:g} | {w:g} | {v.mean:.4f} | {v.win}/{v.tie}/{v.loss} | {v.p:.3f} |")
    args.output.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
