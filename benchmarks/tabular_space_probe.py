"""Probe: can held-out likelihood pick the space the default USFlow's kernel should measure in?

The default scores with the mean NLL of two kernel densities over the same training rows: of
the flow's latents and of the z-scores (``input_kernel="auto"``). Per set, one of the two alone
is often better (19_landsat and 7_Cardiotocography: the z-scores; 22_magic.gamma and
39_vertebral: the latents). Session 17 found that the centres' leave-one-out likelihood picks the
latents everywhere, but the flow had trained on those centres. Here a seeded fifth of the
training rows is held out of everything (the flow's training and both kernels' centres), and
each density's mean log-likelihood of those rows (both are densities of the standardised rows,
so the two are comparable) picks the space.

Per (set, seed) under Protocol T, test ROC-AUC of: the default USFlow fitted on all training
rows (``full``), and of the one fitted on four fifths: its mean NLL (``mean``), each kernel
alone (``latent``, ``input``), the one with the higher held-out likelihood (``picked``); and the
two held-out log-likelihoods.

    USFAD_DATA=../shared/data/adbench .venv/bin/python benchmarks/tabular_space_probe.py \\
        --datasets 19_landsat 22_magic.gamma --seeds 0 -o /tmp/space.jsonl
"""

from __future__ import annotations

import time
from functools import partial

import numpy as np
import torch
from probe_cells import cells, probe_parser, test_roc, write_row

from usfad import USFlow


def kernel_nlls(det: USFlow, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The latent kernel's and the z-score kernel's NLLs of raw rows ``X`` (each a density of
    the standardised rows)."""
    u = torch.as_tensor((X - det.scaler_mean_) / det.scaler_scale_, dtype=torch.float32)
    latent, inputs = [], []
    with torch.no_grad():
        for start in range(0, len(u), 1024):
            batch = u[start : start + 1024]
            z, logdet = det.model_.flow(batch)
            latent.append(-(det.model_.base.log_prob(z) + logdet))
            inputs.append(-det.model_.input_base.log_prob(batch))
    return torch.cat(latent).double().numpy(), torch.cat(inputs).double().numpy()


def main() -> None:
    parser = probe_parser(__doc__.splitlines()[0])
    parser.add_argument("--held-out", type=float, default=0.2)
    parser.add_argument("--no-full", action="store_true", help="skip the fit on all training rows")
    args = parser.parse_args()
    for dataset, seed, split in cells(args):
        roc = partial(test_roc, split)  # test ROC-AUC of scores

        row: dict = {"dataset": dataset, "seed": seed, "n": len(split.X_train), "d": split.X_train.shape[1]}
        if not args.no_full:
            row["full"] = roc(USFlow(random_state=seed).fit(split.X_train).decision_function(split.X_test))
        order = np.random.default_rng(seed).permutation(len(split.X_train))
        held = order[: int(round(args.held_out * len(order)))]
        kept = np.sort(order[len(held) :])
        start = time.perf_counter()
        det = USFlow(random_state=seed).fit(split.X_train[kept])
        row["fit_s"] = round(time.perf_counter() - start, 1)
        held_latent, held_input = kernel_nlls(det, split.X_train[held])
        test_latent, test_input = kernel_nlls(det, split.X_test)
        row["ll_latent"] = round(float(-held_latent.mean()), 4)
        row["ll_input"] = round(float(-held_input.mean()), 4)
        row["mean"] = roc(test_latent + test_input)
        row["latent"] = roc(test_latent)
        row["input"] = roc(test_input)
        row["picked"] = row["latent"] if row["ll_latent"] >= row["ll_input"] else row["input"]
        write_row(args.output, row)


if __name__ == "__main__":
    main()
