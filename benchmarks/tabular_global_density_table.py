"""Table: combinations of the global density probe's per-row NLLs, and the rule that weighs them by the binary share.

Reads the npz files ``benchmarks/tabular_global_density_probe.py --save DIR`` wrote (one per
set and seed: the test rows' NLLs under the flow's kernel ``flow``, the identity flow's kernel
``input``, the flow's trained Gaussian ``latent`` and a Ledoit-Wolf Gaussian ``gauss``) and
scores, per cell, the default (the kernels' mean), each density alone, and these
combinations, with ``b`` the binary share of the cell's training rows
(:meth:`usfad.FlowDetector.binary_share`, what ``gaussian_weight="auto"`` reads):

- ``(1 - b) kernels + b latent``: ``gaussian_weight="auto"``;
- ``(1 - b) kernels + b gauss``: the same with the Gaussian of the standardised rows;
- ``b >= 0.5 ? latent : kernels``: a switch instead of a weight;
- ``mean of flow, input and latent`` (or ``gauss``): a third density at a fixed weight.

Each variant is compared with the default over the sets (means over seeds; the report's win /
tie / loss and Wilcoxon test), and the sets where ``b > 0`` on some seed get a row each.

    USFAD_DATA=../shared/data/adbench .venv/bin/python benchmarks/tabular_global_density_table.py \
        --npz /tmp/global/npz -o benchmarks/results/tabular_binary/global_density_table.md
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from probe_cells import compare_to  # this folder is on sys.path when run

from usfad import USFlow
from usfad.data.adbench import load_dataset
from usfad.data.protocol import protocol_t
from usfad.metrics import detection_metrics


def variants(nll: dict[str, np.ndarray], b: float) -> dict[str, np.ndarray]:
    """Every scored combination of one cell's test NLLs, by name."""
    flow, inputs, latent, gauss = nll["flow"], nll["input"], nll["latent"], nll["gauss"]
    kernels = 0.5 * (flow + inputs)
    return {
        "default (the kernels' mean)": kernels,
        "(1 - b) kernels + b latent: gaussian_weight='auto'": (1 - b) * kernels + b * latent,
        "(1 - b) kernels + b gauss": (1 - b) * kernels + b * gauss,
        "b >= 0.5 ? latent : kernels": latent if b >= 0.5 else kernels,
        "mean of flow, input and latent": (flow + inputs + latent) / 3,
        "mean of flow, input and gauss": (flow + inputs + gauss) / 3,
        "flow kernel alone": flow,
        "input kernel alone": inputs,
        "latent Gaussian alone": latent,
        "gauss alone": gauss,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--npz", type=Path, required=True, help="the probe's --save folder")
    parser.add_argument("-o", "--output", type=Path, required=True, help="markdown table")
    args = parser.parse_args()
    roc: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    shares: dict[str, list[float]] = defaultdict(list)
    loaded: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for path in sorted(args.npz.glob("*.npz")):
        dataset, seed = path.stem.rsplit("_", 1)
        if dataset not in loaded:
            loaded.clear()  # one set in memory at a time
            loaded[dataset] = load_dataset(dataset)
        split = protocol_t(*loaded[dataset], int(seed))
        b = USFlow.binary_share(torch.as_tensor(split.X_train))
        shares[dataset].append(b)
        with np.load(path) as saved:  # each array read once: an npz decompresses on every access
            y = saved["y"]
            nll = {name: saved[f"test_{name}"] for name in ("flow", "input", "latent", "gauss")}
        if not np.array_equal(y, split.y_test):
            raise SystemExit(f"{path}: its labels are not Protocol T's test labels at seed {seed}")
        for name, scores in variants(nll, b).items():
            roc[name][dataset].append(detection_metrics(y, scores)["roc_auc"])
    names = list(roc)
    versus = compare_to(roc, names[0])
    seeds = {dataset: len(v) for dataset, v in roc[names[0]].items()}
    lines = [
        f"# The global density probe: {len(seeds)} sets, {sum(seeds.values())} cells",
        "",
        f"Written by `benchmarks/tabular_global_density_table.py --npz {args.npz}`. Test ROC-AUC, each set's mean "
        "over its seeds; `b` is the binary share of a cell's training rows. Against the default: sets won / tied "
        "(within 0.001) / lost, and the two-sided Wilcoxon p over the sets.",
        "",
        "| variant | mean ROC-AUC | vs default w/t/l | p |",
        "|---|---|---|---|",
    ]
    for name in names:
        v = versus[name]
        lines.append(
            f"| {name} | {v.mean:.4f} | " + ("| |" if name == names[0] else f"{v.win}/{v.tie}/{v.loss} | {v.p:.3f} |")
        )
    binary = sorted((d for d in shares if max(shares[d]) > 0), key=lambda d: np.mean(shares[d]))
    short = ["default (the kernels' mean)", "(1 - b) kernels + b latent: gaussian_weight='auto'"]
    short += ["(1 - b) kernels + b gauss", "latent Gaussian alone", "gauss alone"]
    table = pd.DataFrame({name: {d: np.mean(roc[name][d]) for d in binary} for name in short})
    lines += [
        "",
        "Sets with a binary column on some seed (elsewhere `b = 0` and every weighted row equals the default):",
        "",
        "| set | seeds | mean b | default | gaussian_weight='auto' | b gauss | latent alone | gauss alone |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for d in binary:
        values = " | ".join(f"{table.loc[d, name]:.4f}" for name in short)
        lines.append(f"| {d} | {seeds[d]} | {np.mean(shares[d]):.3f} | {values} |")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
