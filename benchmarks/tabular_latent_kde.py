"""Probe: USFlow's latent space with a kernel density base instead of one standard Gaussian.

A USF's density is ``p(x) = p_Z(f(x)) |det J_f|`` with ``|det J_f|`` the same for every
``x``, so any base density ``p_Z`` on the latent gives a likelihood that ranks rows exactly as
``p_Z`` ranks their latents. One Gaussian (the default) ranks by the distance to one centre;
a kernel density estimate over the training rows' latents,
``p_Z(z) = (1/M) sum_i N(z; f(x_i), h^2 I)``, ranks by the (soft) distance to the nearest
training latents: nearest-neighbour detection in the flow's Gaussianised coordinates, while
the score stays a normalised likelihood. The flow is the default USFlow, trained as usual;
only the base is swapped after training (``M`` at most ``--centres`` training latents).

Per (set, seed): the default's ROC-AUC; for each bandwidth ``h`` (a multiple of the median
distance from a training latent to its 5th nearest other training latent, so one grid fits
every width) the test ROC-AUC, the leave-one-out log-likelihood of the training latents and
the held-out log-likelihood of the detector's validation rows against the other training
rows (label-free: the rules that would choose ``h``); the ROC-AUC of the 5th-neighbour
distance in the latent space and in the standardised input space (KNN's own score).

    .venv/bin/python benchmarks/tabular_latent_kde.py --datasets 14_glass 19_landsat --seeds 0
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch

from usfad import USFlow
from usfad.data.adbench import load_dataset
from usfad.data.protocol import protocol_t
from usfad.metrics import detection_metrics


def sq_dists(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances, ``(len(a), len(b))``, float64."""
    return torch.cdist(a, b).pow(2)


def kth_distance(queries: torch.Tensor, centres: torch.Tensor, k: int, exclude_self: bool) -> torch.Tensor:
    out = []
    for chunk in queries.split(2048):
        d = torch.cdist(chunk, centres)
        kk = k + 1 if exclude_self else k
        out.append(d.topk(kk, dim=1, largest=False).values[:, -1])
    return torch.cat(out)


def kde_log_density(queries: torch.Tensor, centres: torch.Tensor, h: float, exclude_self: bool = False) -> torch.Tensor:
    """``log (1/M) sum_i N(q; c_i, h^2 I)`` per query (``exclude_self``: queries are the centres, leave one out)."""
    d = centres.shape[1]
    m = centres.shape[0] - (1 if exclude_self else 0)
    const = -math.log(m) - d * math.log(h) - 0.5 * d * math.log(2 * math.pi)
    out = []
    start = 0
    for chunk in queries.split(2048):
        logits = -0.5 * sq_dists(chunk, centres) / h**2
        if exclude_self:
            rows = torch.arange(chunk.shape[0])
            logits[rows, start + rows] = -math.inf
        out.append(torch.logsumexp(logits, dim=1) + const)
        start += chunk.shape[0]
    return torch.cat(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", required=True)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--centres", type=int, default=4000, help="at most this many training latents as centres")
    parser.add_argument("--params", default="{}", help="USFlow parameters as JSON")
    parser.add_argument("--multiples", nargs="+", type=float, default=[0.125, 0.25, 0.5, 1.0, 2.0])
    parser.add_argument("--tag", default="latent-kde")
    args = parser.parse_args()
    torch.set_num_threads(1)
    params = json.loads(args.params)
    for dataset in args.datasets:
        X, y = load_dataset(dataset)
        for seed in args.seeds:
            split = protocol_t(X, y, seed)
            start = time.perf_counter()
            det = USFlow(random_state=seed, **params).fit(split.X_train)
            fit_s = time.perf_counter() - start
            row = {"tag": args.tag, "dataset": dataset, "seed": seed, "n": len(split.X_train), "d": X.shape[1]}
            row["default"] = round(detection_metrics(split.y_test, det.decision_function(split.X_test))["roc_auc"], 4)
            rng = np.random.default_rng(seed)
            train_idx = np.arange(len(split.X_train))
            if len(train_idx) > args.centres:
                train_idx = np.sort(rng.choice(train_idx, args.centres, replace=False))
            start = time.perf_counter()
            z_train = torch.as_tensor(det.latent(split.X_train[train_idx]), dtype=torch.float64)
            z_test = torch.as_tensor(det.latent(split.X_test), dtype=torch.float64)
            k5 = kth_distance(z_train, z_train, 5, exclude_self=True)
            scale = float(k5.median())
            val_rows = det.history_.validation_rows
            fit_rows = np.setdiff1d(np.arange(len(split.X_train)), val_rows)[: args.centres]
            z_fit = torch.as_tensor(det.latent(split.X_train[fit_rows]), dtype=torch.float64)
            z_val = torch.as_tensor(det.latent(split.X_train[val_rows]), dtype=torch.float64)
            rocs, loo, held = {}, {}, {}
            for mult in args.multiples:
                h = mult * scale
                score = -kde_log_density(z_test, z_train, h).numpy()
                rocs[mult] = round(detection_metrics(split.y_test, score)["roc_auc"], 4)
                loo[mult] = round(float(kde_log_density(z_train, z_train, h, exclude_self=True).mean()), 3)
                if len(val_rows):
                    held[mult] = round(float(kde_log_density(z_val, z_fit, h).mean()), 3)
            row["kde_roc"] = rocs
            row["kde_loo"] = loo
            row["kde_val"] = held
            if held:
                row["kde_val_chosen"] = max(held, key=held.get)
            row["h_unit"] = round(scale, 4)
            chosen = max(loo, key=loo.get)
            row["kde_chosen"] = chosen
            row["kde_chosen_roc"] = rocs[chosen]
            latent_knn = kth_distance(z_test, z_train, 5, exclude_self=False).numpy()
            row["latent_knn"] = round(detection_metrics(split.y_test, latent_knn)["roc_auc"], 4)
            mu, sd = split.X_train.mean(0), split.X_train.std(0) + 1e-12
            x_tr = torch.as_tensor((split.X_train[train_idx] - mu) / sd, dtype=torch.float64)
            x_te = torch.as_tensor((split.X_test - mu) / sd, dtype=torch.float64)
            input_knn = kth_distance(x_te, x_tr, 5, exclude_self=False).numpy()
            row["input_knn"] = round(detection_metrics(split.y_test, input_knn)["roc_auc"], 4)
            row["fit_s"] = round(fit_s, 1)
            row["kde_s"] = round(time.perf_counter() - start, 1)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
