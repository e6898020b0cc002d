"""Probe: on binary data the USF's own Gaussian ranks better than its kernels? A check on sets made binary.

``gaussian_weight="auto"`` weighs the flow's NLL under the Gaussian it trained with by the share of
binary columns (``benchmarks/results/tabular_binary/``); the rule was read off the 10 Classical sets
that have binary columns. This probe checks the claim behind it on data that played no part in it:
continuous Classical sets, each column replaced by two indicators, below its training 10th
percentile and above its 90th (the same cuts on the test rows; a median cut would fold an
outlier in either tail in with half the normal rows), so that every column takes two values
(an indicator that holds one value is constant and left out of the share). Per (set, seed) under
Protocol T, one USFlow is fitted with ``gaussian_weight=0.5`` (both scores from one fit) and the
test rows are scored with the weight set to 0 (the kernels alone, the previous default), 1 (the
trained Gaussian alone, what ``"auto"`` gives on such data) and 0.5.

    USFAD_DATA=../shared/data/adbench .venv/bin/python benchmarks/tabular_binarised_probe.py \
        --datasets 6_cardio 14_glass --seeds 0 1 -o /tmp/binarised.jsonl
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import torch
from probe_cells import cells, probe_parser, test_roc, write_row  # this folder is on sys.path when run

from usfad import USFlow
from usfad.data.protocol import Split


def binarised(split: Split) -> Split:
    """``split`` with each column replaced by its indicators of the training rows' lowest and highest tenth."""
    low, high = np.percentile(split.X_train, [10, 90], axis=0)

    def cut(rows: np.ndarray) -> np.ndarray:
        return np.concatenate([rows < low, rows > high], axis=1).astype(np.float64)

    return dataclasses.replace(split, X_train=cut(split.X_train), X_test=cut(split.X_test))


def main() -> None:
    parser = probe_parser(__doc__.splitlines()[0])
    args = parser.parse_args()
    for dataset, seed, raw in cells(args):
        split = binarised(raw)
        start = time.perf_counter()
        det = USFlow(random_state=seed, gaussian_weight=0.5).fit(split.X_train)
        fit_s = time.perf_counter() - start
        roc = {}
        for weight in (0.0, 1.0, 0.5):
            det.model_.trained_weight.fill_(weight)
            roc[str(weight)] = test_roc(split, det.decision_function(split.X_test))
        distinct = len(np.unique(split.X_train, axis=0))
        row = {
            "dataset": dataset,
            "seed": seed,
            "n": len(split.X_train),
            "d": split.X_train.shape[1],
            "binary_share": USFlow.binary_share(torch.as_tensor(split.X_train)),
            "distinct_rows": distinct,
            "fit_s": round(fit_s, 1),
            "kernels": roc["0.0"],
            "gaussian": roc["1.0"],
            "half": roc["0.5"],
        }
        write_row(args.output, row)


if __name__ == "__main__":
    main()
