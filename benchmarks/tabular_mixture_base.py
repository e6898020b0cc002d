"""Probe: USFlow with a Gaussian-mixture base density instead of one standard Gaussian.

A uniformly scaling flow maps the data to a latent space where its Jacobian determinant is
the same everywhere; with one Gaussian base every mode of the data has to be pulled into
one blob, and the density bridges the modes (where a nearest-neighbour detector sees empty
space). Here the base is ``sum_k w_k N(mu_k, I)`` with learned means and weights
(``USFlow(base_components=k)``, :class:`usfad.density.GaussianMixtureBase`), trained jointly
with the flow on all the rows. The flow is still a USF, so the score is still a likelihood: ``-log
sum_k w_k N(f(x); mu_k, I) - log|det J|``, a multi-centre Deep SVDD with the flow's
regulariser. One row per (set, seed): for each k the test ROC-AUC, the best validation NLL
(the detector's own validation split, label-free), the fit seconds (one thread, the ks back
to back in one process) and the optimiser steps.

The rows in ``benchmarks/results/tabular_v2/explore/mixture_base_seed*.jsonl`` were written
by this script's first version (``git show e68aa69:benchmarks/tabular_mixture_base.py``), a
subclass whose k = 1 also learned its mean and whose k-means ran on the standardised rows
rather than through the untrained flow.

    .venv/bin/python benchmarks/tabular_mixture_base.py --datasets 19_landsat --seeds 0 --components 1 4 8
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from usfad import USFlow
from usfad.data.adbench import load_dataset
from usfad.data.protocol import protocol_t
from usfad.metrics import detection_metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", required=True)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--components", nargs="+", type=int, default=[1, 4, 8])
    parser.add_argument("--params", default="{}", help="USFlow parameters as JSON")
    parser.add_argument("--tag", default="mixbase")
    args = parser.parse_args()
    torch.set_num_threads(1)
    params = json.loads(args.params)
    for dataset in args.datasets:
        X, y = load_dataset(dataset)
        for seed in args.seeds:
            split = protocol_t(X, y, seed)
            row = {"tag": args.tag, "dataset": dataset, "seed": seed, "n": len(split.X_train)}
            rocs, vals, times, steps = {}, {}, {}, {}
            for k in args.components:
                start = time.perf_counter()
                det = USFlow(base_components=k, random_state=seed, **params).fit(split.X_train)
                rocs[k] = round(detection_metrics(split.y_test, det.decision_function(split.X_test))["roc_auc"], 4)
                vals[k] = round(min(det.history_.val_loss), 4) if det.history_.val_loss else None
                times[k] = round(time.perf_counter() - start, 1)
                steps[k] = det.history_.steps
            print(json.dumps(row | {"roc_per_k": rocs, "val_nll": vals, "t": times, "steps": steps}), flush=True)


if __name__ == "__main__":
    main()
