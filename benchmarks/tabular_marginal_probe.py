"""Probe: does a third density, the product of the features' own (1-D) kernel densities, help the default USFlow?

ECOD, which scores each feature's tails on their own, beats every other model on 8_celeba and
7_Cardiotocography. The product of 1-D Gaussian kernel densities of the standardised features
(Silverman's bandwidth per feature; at most ``--values`` distinct training values per feature as
centres, weighted by their counts) is a density on the same space as the default's two, so its
NLL can join their mean. Reads ``tabular_bandwidth_probe.py --save``'s per-row NLLs (the default's
flow and identity-flow NLLs at scale 1), computes the marginal NLL of the same test rows, and
writes the mean test ROC-AUC over sets of the marginal density alone, of the default, and of
``(1 - m)/2 * flow + (1 - m)/2 * input + m * marginal`` for each weight ``m`` in ``--weights``.

    USFAD_DATA=../shared/data/adbench .venv/bin/python benchmarks/tabular_marginal_probe.py \
        --npz /tmp/bw/npz -o /tmp/marginal.md
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np
from probe_cells import compare_to  # this folder is on sys.path when run
from scipy.special import logsumexp

from usfad.data.adbench import load_dataset
from usfad.data.protocol import protocol_t
from usfad.metrics import roc_auc


def marginal_nll(train: np.ndarray, test: np.ndarray, rng: np.random.Generator, values: int) -> np.ndarray:
    """``-log p(x)`` of each test value under a 1-D Gaussian kernel density of the training values."""
    centres, counts = np.unique(train, return_counts=True)
    if len(centres) > values:
        centres, counts = np.unique(rng.choice(train, values, replace=False), return_counts=True)
    q75, q25 = np.percentile(train, [75, 25])
    spread = min(train.std(), (q75 - q25) / 1.34) if q75 > q25 else train.std()
    h = 0.9 * max(spread, 1e-12) * len(train) ** -0.2  # Silverman's rule
    distinct, where = np.unique(test, return_inverse=True)
    log_p = np.empty(len(distinct))
    for i in range(0, len(distinct), 2000):
        terms = -0.5 * ((distinct[i : i + 2000, None] - centres[None]) / h) ** 2 + np.log(counts)[None]
        log_p[i : i + 2000] = logsumexp(terms, axis=1) - np.log(counts.sum() * h * np.sqrt(2 * np.pi))
    return -log_p[where]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--npz", type=Path, required=True, help="tabular_bandwidth_probe.py's --save folder")
    parser.add_argument("--weights", nargs="+", type=float, default=[0.1, 0.2, 1 / 3])
    parser.add_argument("--values", type=int, default=3000)
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    roc = defaultdict(lambda: defaultdict(list))  # variant -> set -> [roc per seed]
    files = sorted(args.npz.glob("*.npz"))
    for path in files:
        dataset, seed = path.stem.rsplit("_", 1)
        with np.load(path) as npz:  # read once: an npz decompresses on every access
            cell = {key: npz[key] for key in ("y", "scales", "flow", "input")}
        X, y = load_dataset(dataset)
        split = protocol_t(X, y, int(seed))
        train, test = split.X_train.astype(np.float64), split.X_test.astype(np.float64)
        if not np.array_equal(split.y_test, cell["y"]):
            raise SystemExit(f"{path}: its labels are not Protocol T's for {dataset}, seed {seed}")
        mean, scale = train.mean(0), train.std(0)
        scale[scale == 0] = 1.0
        train, test = (train - mean) / scale, (test - mean) / scale
        rng = np.random.default_rng(int(seed))
        marginal = sum(
            marginal_nll(train[:, j], test[:, j], rng, args.values) for j in range(train.shape[1]) if train[:, j].std()
        )
        one = [float(s) for s in cell["scales"]].index(1.0)
        flow, inputs = cell["flow"][one], cell["input"][one]
        for name, score in [
            ("marginal density alone", marginal),
            ("default: mean of flow and input NLLs", 0.5 * (flow + inputs)),
            *[
                (f"mean with the marginal NLL at weight {m:.2f}", (1 - m) / 2 * (flow + inputs) + m * marginal)
                for m in args.weights
            ],
        ]:
            roc[name][dataset].append(roc_auc(cell["y"], score))
        print(dataset, seed, flush=True)
    versus = compare_to(roc, "default: mean of flow and input NLLs")
    n_sets = versus["default: mean of flow and input NLLs"].tie
    lines = [
        f"# A third density: the product of the features' 1-D kernel densities ({len(files)} cells, {n_sets} sets)",
        "",
        "| score | mean ROC-AUC | vs default w/t/l (tie: within 0.001) |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {v.mean:.4f} | {v.win}/{v.tie}/{v.loss} |" for name, v in versus.items()]
    args.output.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
