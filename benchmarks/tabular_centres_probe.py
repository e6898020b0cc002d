"""Probe: how many training rows should the default USFlow's kernels keep as centres?

The default keeps at most ``USFlow.kernel_max_centres`` (2,000) seeded training rows as the
centres of both kernels (the flow's latents and the z-scores, ``input_kernel="auto"``). KNN
reads every training row, and on 1_ALOI it leads USFlow by 0.09 ROC-AUC. Three modes, each
per (set, seed) under Protocol T, test ROC-AUC:

- ``zscore``: the z-score kernel alone (the identity flow's, as in
  ``tabular_input_space.py``) with each of ``--centres`` rows;
- ``both``: the default USFlow with ``USFlow.kernel_max_centres`` set to each of
  ``--centres`` (both kernels; the flow trains the same way whatever the cap);
- ``input``: one default USFlow (2,000 centres), then its z-score kernel rebuilt on each of
  ``--centres`` seeded rows (the flow's kernel keeps 2,000);
- ``rebuild``: as ``input``, and the flow's kernel rebuilt on the same rows' latents (what
  ``both`` measures, without a fit per cap).

    USFAD_DATA=../shared/data/adbench .venv/bin/python benchmarks/tabular_centres_probe.py \\
        --mode input --datasets 2_annthyroid 1_ALOI --centres 5000 10000 -o /tmp/centres.jsonl
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from tabular_input_space import kernel_scores

from usfad import USFlow
from usfad.data.adbench import load_dataset
from usfad.data.protocol import protocol_t
from usfad.metrics import detection_metrics


def rows_of(n: int, keep: int, generator: torch.Generator) -> torch.Tensor:
    """``keep`` seeded row indices of ``n`` (sorted), or all of them."""
    return torch.randperm(n, generator=generator)[:keep].sort().values if n > keep else torch.arange(n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("zscore", "both", "input", "rebuild"), required=True)
    parser.add_argument("--datasets", nargs="+", required=True)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--centres", nargs="+", type=int, default=[2000, 10000])
    parser.add_argument("-o", "--output", required=True, help="JSON lines, appended")
    args = parser.parse_args()
    torch.set_num_threads(1)
    default_cap = USFlow.kernel_max_centres
    for dataset in args.datasets:
        X, y = load_dataset(dataset)
        for seed in args.seeds:
            split = protocol_t(X, y, seed)

            def roc(scores: np.ndarray, labels: np.ndarray = split.y_test) -> float:
                return round(detection_metrics(labels, scores)["roc_auc"], 4)

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
            with open(args.output, "a") as fh:
                fh.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
