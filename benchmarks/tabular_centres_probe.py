"""Probe: how many training rows should the default USFlow's kernels keep as centres?

Until session 21 the default kept at most 2,000 seeded training rows as the centres of both
kernels (the flow's latents and the z-scores, ``input_kernel="auto"``); it now keeps
``USFlow.kernel_centres_for`` (up to 20,000; 40,000 since session 29). KNN reads every training row, and on 1_ALOI it
led USFlow by 0.09 ROC-AUC at 2,000. Four modes, each
per (set, seed) under Protocol T, test ROC-AUC:

- ``zscore``: the z-score kernel alone (the identity flow's, as in
  ``tabular_input_space.py``) with each of ``--centres`` rows;
- ``both``: the default USFlow with ``USFlow.kernel_max_centres`` set to each of
  ``--centres`` (both kernels; the flow trains the same way whatever the cap);
- ``input``: one default USFlow, then its z-score kernel rebuilt on each of
  ``--centres`` seeded rows (the flow's kernel keeps the default's);
- ``rebuild``: as ``input``, and the flow's kernel rebuilt on the same rows' latents (what
  ``both`` measures, without a fit per cap).

    USFAD_DATA=../shared/data/adbench .venv/bin/python benchmarks/tabular_centres_probe.py \\
        --mode input --datasets 2_annthyroid 1_ALOI --centres 5000 10000 -o /tmp/centres.jsonl
"""

from __future__ import annotations

import time
from functools import partial

import numpy as np
import torch
from probe_cells import cells, probe_parser, test_roc, write_row
from tabular_input_space import kernel_scores

from usfad import USFlow


def rows_of(n: int, keep: int, generator: torch.Generator) -> torch.Tensor:
    """``keep`` seeded row indices of ``n`` (sorted), or all of them."""
    return torch.randperm(n, generator=generator)[:keep].sort().values if n > keep else torch.arange(n)


def main() -> None:
    parser = probe_parser(__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("zscore", "both", "input", "rebuild"), required=True)
    parser.add_argument("--centres", nargs="+", type=int, default=[2000, 10000])
    args = parser.parse_args()
    default_cap = USFlow.kernel_max_centres
    for dataset, seed, split in cells(args):
        roc = partial(test_roc, split)  # test ROC-AUC of scores

        row: dict = {"dataset": dataset, "seed": seed, "mode": args.mode, "n": len(split.X_train)}
        if args.mode == "zscore":
            train, test = split.X_train.astype(np.float64), split.X_test.astype(np.float64)
            mean, scale = train.mean(0), train.std(0)
            scale[scale == 0] = 1.0
            for m in args.centres:
                start = time.perf_counter()
                row[str(m)] = roc(kernel_scores((train - mean) / scale, (test - mean) / scale, m, seed))
                row[f"{m}_s"] = round(time.perf_counter() - start, 1)
        elif args.mode == "both":
            for m in args.centres:
                USFlow.kernel_max_centres = m
                start = time.perf_counter()
                det = USFlow(random_state=seed).fit(split.X_train)
                row[f"{m}_fit_s"] = round(time.perf_counter() - start, 1)
                start = time.perf_counter()
                row[str(m)] = roc(det.decision_function(split.X_test))
                row[f"{m}_score_s"] = round(time.perf_counter() - start, 1)
            USFlow.kernel_max_centres = default_cap
        else:
            det = USFlow(random_state=seed).fit(split.X_train)
            row["default"] = roc(det.decision_function(split.X_test))
            z = torch.as_tensor((split.X_train - det.scaler_mean_) / det.scaler_scale_, dtype=torch.float32)
            for m in args.centres:
                generator = torch.Generator().manual_seed(0)
                centres = z[rows_of(len(z), m, generator)]
                det.model_.input_base = det.build_kernel(centres, generator)
                if args.mode == "rebuild":  # the flow's kernel on the same rows' latents
                    with torch.no_grad():
                        latents = torch.cat([det.model_.flow(part)[0] for part in centres.split(4096)])
                    det.model_.base = det.build_kernel(latents, generator)
                start = time.perf_counter()
                row[str(m)] = roc(det.decision_function(split.X_test))
                row[f"{m}_score_s"] = round(time.perf_counter() - start, 1)
        write_row(args.output, row)


if __name__ == "__main__":
    main()
