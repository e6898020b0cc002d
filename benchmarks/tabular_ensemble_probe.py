"""Probe: does an ensemble of default USFlows over seeds beat one, and by how much per unit of cost?

Issue 17 names seed ensembles of USFs as a direction: their members differ in initialisation,
batch order, validation split and (above ``kernel_max_centres`` rows) in which training rows are
the kernel's centres. Per (set, seed), ``--members`` default USFlows are fitted on the same
training rows, member ``k`` with ``random_state = seed + 1000 k`` (member 0 is the default
cell of the grid), and the test rows are scored by

- ``single``: member 0 alone (the default);
- ``mean_nll``: the mean of the members' NLLs (the NLL of the geometric mean of their densities,
  up to its normaliser);
- ``mixture_nll``: the NLL of the members' even mixture, ``-log(mean_k p_k(x))``;

each by the first ``k`` members for every ``k`` up to ``--members``, so one run gives the curve.
Fit seconds are kept per member; an ensemble of ``k`` costs their sum (members run one by one).

``--save DIR`` also writes each (set, seed)'s test labels and every member's test NLLs to
``DIR/<set>_<seed>.npz`` (``nll``: members x rows), with one more row: the kernel density of
the z-scores themselves (``zscore_nll``, a USF whose flow is the identity, its bandwidth chosen
as the default chooses it), so that other combinations can be scored without refitting.

    USFAD_DATA=../shared/data/adbench .venv/bin/python benchmarks/tabular_ensemble_probe.py \
        --datasets 6_cardio 19_landsat --seeds 0 --members 3 -o /tmp/ensemble.jsonl
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from probe_cells import cells, probe_parser, test_roc, write_row  # this folder is on sys.path when run
from scipy.special import logsumexp

# the z-score kernel density of the input-space probe
from tabular_input_space import kernel_scores

from usfad import USFlow


def main() -> None:
    parser = probe_parser(__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--params", default="{}", help="USFlow parameters as JSON")
    parser.add_argument("--save", type=Path, help="folder for per-row test NLLs (npz per set and seed)")
    args = parser.parse_args()
    params = json.loads(args.params)
    for dataset, seed, split in cells(args):
        nll, fit_s = [], []
        for k in range(args.members):
            start = time.perf_counter()
            det = USFlow(random_state=seed + 1000 * k, **params).fit(split.X_train)
            nll.append(det.decision_function(split.X_test))
            fit_s.append(round(time.perf_counter() - start, 1))
        nll = np.stack(nll)
        members = range(1, args.members + 1)
        row = {"dataset": dataset, "seed": seed, "n": len(split.X_train), "d": split.X_train.shape[1], "fit_s": fit_s}
        row["member_roc"] = [test_roc(split, s) for s in nll]
        row["mean_nll"] = [test_roc(split, nll[:k].mean(axis=0)) for k in members]
        row["mixture_nll"] = [test_roc(split, -(logsumexp(-nll[:k], axis=0) - np.log(k))) for k in members]
        if args.save:
            train, test = split.X_train.astype(np.float64), split.X_test.astype(np.float64)
            mean, scale = train.mean(0), train.std(0)
            scale[scale == 0] = 1.0
            zscore = kernel_scores((train - mean) / scale, (test - mean) / scale, 2000, seed)
            row["zscore_roc"] = test_roc(split, zscore)
            args.save.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(args.save / f"{dataset}_{seed}.npz", y=split.y_test, nll=nll, zscore_nll=zscore)
        write_row(args.output, row)


if __name__ == "__main__":
    main()
