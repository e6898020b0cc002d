"""Probe: in which input space should the kernel density (and the flow) see tabular rows?

``tabular_latent_metric.py`` found that a kernel density of the z-scores themselves (no flow)
and the default USFlow's kernel of its latents are complementary: the z-score kernel wins on
6_cardio, 7_Cardiotocography, 19_landsat, 30_satellite, 43_WDBC; the latent kernel on skewed or
discrete data (5_campaign, 22_magic.gamma, 17_InternetAds). A flow Gaussianises the marginals
(what helps skewed data) but also whitens the correlations (what hurts landsat). A per-feature
quantile transform to normal scores (scikit-learn's ``QuantileTransformer``, fitted on the
training rows) does the first without the second.

Per (set, seed), every score a kernel density over at most ``--centres`` training rows with
the bandwidth (and widths) chosen as the default USFlow chooses them (leave-one-out among multiples of the
median 5-NN distance, :meth:`usfad.FlowDetector.build_kernel`), test ROC-AUC of:

- ``zscore``: the z-scores (the kernel of a USF whose flow is the identity);
- ``quantile``: the quantile-normal scores;
- ``quantile_flow``: the default USFlow fitted on the quantile-normal scores (its own kernel);
- ``default``: the default USFlow on the raw rows (for reference, fitted in this run).

    USFAD_DATA=../shared/data/adbench .venv/bin/python benchmarks/tabular_input_space.py \
        --datasets 6_cardio 19_landsat -o /tmp/space.jsonl
"""

from __future__ import annotations

import time
from functools import partial

import numpy as np
import torch
from probe_cells import cells, probe_parser, test_roc, write_row
from sklearn.preprocessing import QuantileTransformer

from usfad import USFlow


def kernel_scores(train: np.ndarray, test: np.ndarray, centres: int, seed: int) -> np.ndarray:
    """NLL of ``test`` under a kernel density of (at most ``centres``) rows of ``train``."""
    generator = torch.Generator().manual_seed(seed)
    rows = torch.arange(len(train))
    if len(train) > centres:
        rows = torch.randperm(len(train), generator=generator)[:centres].sort().values
    c = torch.as_tensor(train[rows.numpy()], dtype=torch.float32)
    base = USFlow().build_kernel(c, generator)
    with torch.no_grad():
        return -base.log_prob(torch.as_tensor(test, dtype=torch.float32)).numpy()


def main() -> None:
    parser = probe_parser(__doc__.splitlines()[0])
    parser.add_argument("--centres", type=int, default=2000)
    parser.add_argument("--no-flow", action="store_true", help="kernel densities only (no USFlow fits)")
    args = parser.parse_args()
    for dataset, seed, split in cells(args):
        train, test = split.X_train.astype(np.float64), split.X_test.astype(np.float64)
        mean, scale = train.mean(0), train.std(0)
        scale[scale == 0] = 1.0
        qt = QuantileTransformer(
            output_distribution="normal", n_quantiles=min(1000, len(train)), subsample=100_000, random_state=seed
        ).fit(train)
        q_train, q_test = qt.transform(train), qt.transform(test)

        roc = partial(test_roc, split)  # test ROC-AUC of scores

        row = {"dataset": dataset, "seed": seed, "n": len(train), "d": train.shape[1]}
        start = time.perf_counter()
        row["zscore"] = roc(kernel_scores((train - mean) / scale, (test - mean) / scale, args.centres, seed))
        row["quantile"] = roc(kernel_scores(q_train, q_test, args.centres, seed))
        row["kde_s"] = round(time.perf_counter() - start, 1)
        if not args.no_flow:
            start = time.perf_counter()
            row["quantile_flow"] = roc(USFlow(random_state=seed).fit(q_train).decision_function(q_test))
            row["quantile_flow_s"] = round(time.perf_counter() - start, 1)
            row["default"] = roc(USFlow(random_state=seed).fit(train).decision_function(test))
        write_row(args.output, row)


if __name__ == "__main__":
    main()
