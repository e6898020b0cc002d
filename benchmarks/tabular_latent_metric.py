"""Probe: in which space should the kernel base measure neighbourhoods, and can held-out likelihood tell?

The default USFlow scores with a kernel density over its training latents (``base="kernel"``),
nearest-neighbour detection in the flow's coordinates. A flow trained to Gaussianise the data
also whitens it: directions of small variance are stretched to unit variance. On sets whose
anomalies show in the large-variance directions (``19_landsat``, ``30_satellite``) that stretch
hurts: the 5-NN distance of the latents ranks worse than KNN's 5-NN distance of the z-scores.

Per (set, seed), the default USFlow is fitted and three kernel densities of the standardised
rows ``u`` are compared, each over at most ``--centres`` training rows, with the bandwidth a
multiple (``--multiples``) of the median 5-NN distance among the centres in that space:

- ``latent``: an isotropic kernel on the latents ``z = f(u)`` (the default's density, up to the
  bandwidth rule): ``log p(u) = log kde(z) + log|det J|``;
- ``linear``: an isotropic kernel on ``y = z A``, ``A`` the least-squares map from the latents
  back to the z-scores (a kernel in the latent space whose metric is the input's, to first
  order): ``log p(u) = log kde(y) + log|det A| + log|det J|``;
- ``input``: an isotropic kernel on ``u`` itself (a USF whose flow is the identity; KNN's space).

For each, the test ROC-AUC at every multiple, the mean leave-one-out log-likelihood of the
centres (a label-free criterion, comparable across the three since every one is a density of
``u``), and the ROC-AUC of the (space, multiple) that criterion picks. Then two combinations
of ``latent`` and ``input`` (each at its own picked multiple): the mean of their NLLs
(``mean_nll``) and the NLL of their even mixture (``mixture_nll``).

    .venv/bin/python benchmarks/tabular_latent_metric.py --datasets 19_landsat 17_InternetAds --seeds 0
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch

# the kernel density and the k-th neighbour distance of the first probe (this folder is on sys.path when run)
from tabular_latent_kde import kde_log_density, kth_distance

from usfad import USFlow
from usfad.data.adbench import load_dataset
from usfad.data.protocol import protocol_t
from usfad.metrics import detection_metrics


def knn_unit(centres: torch.Tensor) -> float:
    """The median distance from a centre to its 5th nearest other centre."""
    return float(kth_distance(centres, centres, 5, exclude_self=True).median()) or 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", required=True)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--centres", type=int, default=2000, help="at most this many training rows as centres")
    parser.add_argument("--multiples", nargs="+", type=float, default=[1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0])
    parser.add_argument("--params", default="{}", help="USFlow parameters as JSON")
    args = parser.parse_args()
    torch.set_num_threads(1)
    params = json.loads(args.params)
    for dataset in args.datasets:
        X, y = load_dataset(dataset)
        for seed in args.seeds:
            split = protocol_t(X, y, seed)
            start = time.perf_counter()
            det = USFlow(random_state=seed, **params).fit(split.X_train)
            row = {"dataset": dataset, "seed": seed, "n": len(split.X_train), "d": X.shape[1]}
            row["default"] = round(detection_metrics(split.y_test, det.decision_function(split.X_test))["roc_auc"], 4)
            row["fit_s"] = round(time.perf_counter() - start, 1)
            rng = np.random.default_rng(seed)
            rows = np.arange(len(split.X_train))
            if len(rows) > args.centres:
                rows = np.sort(rng.choice(rows, args.centres, replace=False))

            u_c, u_t = (
                torch.as_tensor((a - det.scaler_mean_) / det.scaler_scale_, dtype=torch.float64)
                for a in (split.X_train[rows], split.X_test)
            )
            with torch.no_grad():
                z_c, logdet = det.model_.flow(u_c.float())
                z_t, _ = det.model_.flow(u_t.float())
            z_c, z_t, logdet = z_c.double(), z_t.double(), float(logdet.double().mean())
            A = torch.linalg.lstsq(z_c, u_c).solution  # latents back to z-scores
            spaces = {
                "latent": (z_c, z_t, logdet),
                "linear": (z_c @ A, z_t @ A, logdet + float(torch.linalg.slogdet(A)[1])),
                "input": (u_c, u_t, 0.0),
            }
            best, picked_nll = (-math.inf, None), {}
            for name, (c, t, offset) in spaces.items():
                unit = knn_unit(c)
                rocs, loo = {}, {}
                for mult in args.multiples:
                    h = mult * unit
                    score = -kde_log_density(t, c, h).numpy()
                    rocs[mult] = round(detection_metrics(split.y_test, score)["roc_auc"], 4)
                    loo[mult] = round(float(kde_log_density(c, c, h, exclude_self=True).mean()) + offset, 3)
                    if loo[mult] > best[0]:
                        best = (loo[mult], (name, mult, rocs[mult]))
                mult = max(loo, key=loo.get)
                row[name] = {"roc": rocs, "loo": loo, "picked_roc": rocs[mult]}
                picked_nll[name] = -kde_log_density(t, c, mult * unit).numpy() - offset
            row["picked"] = best[1]
            pair = np.stack([picked_nll["latent"], picked_nll["input"]])
            row["mean_nll"] = round(detection_metrics(split.y_test, pair.mean(0))["roc_auc"], 4)
            mixture = -np.logaddexp(-pair[0], -pair[1]) + math.log(2)
            row["mixture_nll"] = round(detection_metrics(split.y_test, mixture)["roc_auc"], 4)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
