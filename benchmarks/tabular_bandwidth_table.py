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
from scipy.stats import wilcoxon

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
    default = roc[(1.0, 1.0, 0.5)]
    sets = sorted(default)
    base = np.array([np.mean(default[s]) for s in sets])
    rows = []
    for variant, per_set in roc.items():
        if sorted(per_set) != sets:
            continue
        means = np.array([np.mean(per_set[s]) for s in sets])
        diff = means - base
        wins, losses = int((diff > 0.001).sum()), int((diff < -0.001).sum())
        p = float(wilcoxon(means, base).pvalue) if np.any(diff != 0) else 1.0
        rows.append((float(means.mean()), variant, wins, len(sets) - wins - losses, losses, p))
    rows.sort(key=lambda r: -r[0])
    shown = [r for r in rows if r[1] == (1.0, 1.0, 0.5)] + [r for r in rows if r[1] != (1.0, 1.0, 0.5)][: args.top]
    lines = [
        f"# Bandwidth scales and weights ({len(files)} cells, {len(sets)} sets)",
        "",
        "| flow kernel's scale | input kernel's scale | flow NLL's weight | mean ROC-AUC | vs default w/t/l"
        " | Wilcoxon p |",
        "|---|---|---|---|---|---|",
    ]
    for mean, (sf, si, w), wins, ties, losses, p in shown:
        lines.append(f"| {sf:g} | {si:g} | {w:g} | {mean:.4f} | {wins}/{ties}/{losses} | {p:.3f} |")
    args.output.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
