"""Probe: USFlow with a Gaussian-mixture base density instead of one standard Gaussian.

A uniformly scaling flow maps the data to a latent space where its Jacobian determinant is
the same everywhere; with one Gaussian base every mode of the data has to be pulled into
one blob, and the density bridges the modes (where a nearest-neighbour detector sees empty
space). Here the base is ``sum_k w_k N(mu_k, I)`` with learned means and weights (means
started at k-means centres of the standardised training rows), trained jointly with the
flow on all the rows. The flow is still a USF, so the score is still a likelihood: ``-log
sum_k w_k N(f(x); mu_k, I) - log|det J|``, a multi-centre Deep SVDD with the flow's
regulariser. One row per (set, seed, k): test ROC-AUC and the best validation NLL (the
detector's own validation split, label-free).

    .venv/bin/python benchmarks/tabular_mixture_base.py --datasets 19_landsat --seeds 0 --components 1 4 8
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch
from torch import nn

from usfad import USFlow
from usfad.data.adbench import load_dataset
from usfad.data.protocol import protocol_t
from usfad.detectors.flow import FlowModel
from usfad.metrics import detection_metrics


class MixtureBase(nn.Module):
    """``sum_k softmax(logits)_k N(mu_k, I)`` in ``d`` dimensions (learned ``mu``, ``logits``)."""

    def __init__(self, means: torch.Tensor):
        super().__init__()
        self.means = nn.Parameter(means.clone())
        self.logits = nn.Parameter(torch.zeros(means.shape[0]))
        self.register_buffer("scale", torch.tensor(1.0))

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        sq = torch.cdist(z, self.means).pow(2)  # (batch, k)
        log_w = torch.log_softmax(self.logits, 0)
        return torch.logsumexp(log_w - 0.5 * sq, dim=1) - 0.5 * z.shape[1] * math.log(2 * math.pi)


class MixtureUSFlow(USFlow):
    """USFlow whose base is a :class:`MixtureBase` of ``components`` Gaussians (probe only)."""

    def __init__(self, components: int = 1, centres: np.ndarray | None = None, **params):
        super().__init__(**params)
        self.components = components
        self.centres = centres

    def _build_model(self, n_features: int) -> FlowModel:
        model = super()._build_model(n_features)
        model.base = MixtureBase(torch.as_tensor(self.centres, dtype=torch.float32))
        return model


def centres(X_train: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k-means centres of the z-scored training rows (k = 1: the origin)."""
    from sklearn.cluster import KMeans

    mean, scale = X_train.mean(0), X_train.std(0)
    scale[scale == 0] = 1.0
    U = (X_train - mean) / scale
    if k == 1:
        return np.zeros((1, U.shape[1]))
    return KMeans(k, n_init=4, random_state=seed).fit(U).cluster_centers_


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
            rocs, vals, times = {}, {}, {}
            for k in args.components:
                start = time.perf_counter()
                det = MixtureUSFlow(k, centres(split.X_train, k, seed), random_state=seed, **params)
                det.fit(split.X_train)
                rocs[k] = round(detection_metrics(split.y_test, det.decision_function(split.X_test))["roc_auc"], 4)
                vals[k] = round(min(det.history_.val_loss), 4) if det.history_.val_loss else None
                times[k] = round(time.perf_counter() - start, 1)
            print(json.dumps(row | {"roc_per_k": rocs, "val_nll": vals, "t": times}), flush=True)


if __name__ == "__main__":
    main()
