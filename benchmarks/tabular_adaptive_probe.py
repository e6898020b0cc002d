"""Probe: kernels whose bandwidth adapts to each centre's neighbourhood (sample-point KDE).

The default USFlow scores with the mean NLL of two fixed-bandwidth kernel densities over the
same (at most 2,000) training rows: of the flow's latents and of the z-scores. KNN, which
still leads on the large low-dimensional sets (1_ALOI, 19_landsat, 30_satellite, 33_skin),
reads each row's own neighbourhood scale. A sample-point kernel density does the same and
stays a normalised density: ``(1/M) sum_i N(c_i, (h l_i)^2 I)`` with ``l_i = (r_i /
median r) ** beta`` clipped to ``[1/clip, clip]``, ``r_i`` a centre's distance to its 5th
nearest other centre, ``h`` picked as the default picks it (the multiple of the median
``r`` with the best leave-one-out likelihood of the centres). ``beta = 0`` is the default.

Per (set, seed) under Protocol T, one default USFlow is fitted; its two kernels are then
rebuilt as each of ``--variants`` says (:func:`variant_nll`) and the test ROC-AUC of the combined NLL is
recorded, and of each kernel alone. Reads only training rows to choose anything.

    USFAD_DATA=../shared/data/adbench .venv/bin/python benchmarks/tabular_adaptive_probe.py \\
        --datasets 6_cardio 19_landsat --variants 0:4 1:4 1:d sel:d -o /tmp/adaptive.jsonl
"""

from __future__ import annotations

import math
import time
from functools import partial

import numpy as np
import torch
from probe_cells import cells, probe_parser, test_roc, write_row

from usfad import USFlow


def log_density(
    centres: torch.Tensor, widths: torch.Tensor, queries: torch.Tensor, leave_out_self: bool = False
) -> torch.Tensor:
    """``log (1/M') sum_i N(q; c_i, w_i^2 I)`` per query, float64, in blocks. ``leave_out_self``:
    queries are the centres themselves, each without its own kernel."""
    d = centres.shape[1]
    out = []
    log_norm = -d * widths.log() - 0.5 * d * math.log(2 * math.pi)
    inv = 0.5 / widths**2
    step = max(1, (1 << 20) // len(centres))
    for start in range(0, len(queries), step):
        q = queries[start : start + step]
        sq = torch.cdist(q, centres).pow(2)
        terms = log_norm[None] - sq * inv[None]
        if leave_out_self:
            idx = torch.arange(start, start + len(q))
            terms[torch.arange(len(q)), idx] = -math.inf
        out.append(torch.logsumexp(terms, 1) - math.log(len(centres) - leave_out_self))
    return torch.cat(out)


def adaptive_nll(centres: np.ndarray, queries: np.ndarray, beta: float, clip: float, generator: torch.Generator):
    """NLL of ``queries`` under the sample-point kernel density on ``centres`` with ``beta``;
    also the bandwidth's multiple of the unit and the centres' best leave-one-out log-likelihood."""
    c = torch.as_tensor(centres, dtype=torch.float64)
    q = torch.as_tensor(queries, dtype=torch.float64)
    picked = torch.arange(len(c))
    if len(c) > USFlow.kernel_selection_rows:
        picked = torch.randperm(len(c), generator=generator)[: USFlow.kernel_selection_rows]
    dist = torch.cdist(c, c)
    r = dist.topk(min(6, len(c)), dim=1, largest=False).values[:, -1]
    unit = float(r[picked].median())
    unit = unit if unit > 0 else 1.0
    local = (r.clamp_min(1e-12) / unit) ** beta if beta else torch.ones_like(r)
    local = local.clamp(1.0 / clip, clip)
    best, best_h = -math.inf, unit
    for multiple in USFlow.kernel_multiples:
        held = float(log_density(c, multiple * unit * local, c, leave_out_self=True)[picked].mean())
        if held > best:
            best, best_h = held, multiple * unit
    return -log_density(c, best_h * local, q).numpy(), best_h / unit, best


def variant_nll(centres: np.ndarray, queries: np.ndarray, variant: str, seed: int, clip_nats: float):
    """``variant`` is ``BETA:CLIP``: BETA a number, or ``sel`` (the one of 0, 0.5, 1 whose
    centres' leave-one-out likelihood is highest); CLIP a number, or ``d`` (``min(4,
    exp(clip_nats / d))``: the kernels' log-weights spread by at most that many nats)."""
    beta, clip = variant.split(":")
    d = centres.shape[1]
    clip_value = min(4.0, math.exp(clip_nats / d)) if clip == "d" else float(clip)
    betas = [0.0, 0.5, 1.0] if beta == "sel" else [float(beta)]
    fits = [adaptive_nll(centres, queries, b, clip_value, torch.Generator().manual_seed(seed)) for b in betas]
    best = max(range(len(fits)), key=lambda i: fits[i][2])
    return fits[best][0], [betas[best], round(fits[best][1], 4), round(clip_value, 3)]


def main() -> None:
    parser = probe_parser(__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=["0:4", "0.5:4", "1:4"], help="BETA:CLIP (variant_nll)")
    parser.add_argument("--clip-nats", type=float, default=32.0)
    args = parser.parse_args()
    for dataset, seed, split in cells(args):
        roc = partial(test_roc, split)  # test ROC-AUC of scores

        start = time.perf_counter()
        det = USFlow(random_state=seed).fit(split.X_train)
        row: dict = {"dataset": dataset, "seed": seed, "n": len(split.X_train), "d": split.X_train.shape[1]}
        row["fit_s"] = round(time.perf_counter() - start, 1)
        row["default"] = roc(det.decision_function(split.X_test))
        ztrain = (split.X_train - det.scaler_mean_) / det.scaler_scale_
        ztest = (split.X_test - det.scaler_mean_) / det.scaler_scale_
        generator = torch.Generator().manual_seed(seed)
        rows = torch.arange(len(ztrain))
        keep = det.kernel_centres_for(*ztrain.shape)
        if len(ztrain) > keep:
            rows = torch.randperm(len(ztrain), generator=generator)[:keep].sort().values
        rows = rows.numpy()
        with torch.no_grad():
            lat_train = det.model_.flow(torch.as_tensor(ztrain[rows], dtype=torch.float32))[0].double().numpy()
            lat_test = det.model_.flow(torch.as_tensor(ztest, dtype=torch.float32))[0].double().numpy()
        for variant in args.variants:
            start = time.perf_counter()
            latent, lm = variant_nll(lat_train, lat_test, variant, seed, args.clip_nats)
            inputs, im = variant_nll(ztrain[rows], ztest, variant, seed, args.clip_nats)
            key = "b" + variant
            row[key] = roc(latent + inputs)
            row[key + "_latent"] = roc(latent)
            row[key + "_input"] = roc(inputs)
            row[key + "_mult"] = [lm, im]
            row[key + "_s"] = round(time.perf_counter() - start, 1)
        write_row(args.output, row)


if __name__ == "__main__":
    main()
