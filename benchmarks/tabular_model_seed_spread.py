"""Probe: how much of the seed-to-seed spread is the model's, with the split held fixed?

The grid's ``seed std`` (``usfad bench``, Protocol T) changes the train/test split with the
seed, and the split alone spreads the test ROC-AUC: KNN, which has no randomness of its own,
shows as much spread as the flows. Here the split is fixed by ``--split-seed`` and only the
model's ``random_state`` moves (``--seeds``), so the standard deviation over those seeds is the
model's own: its initialisation, batch order, validation split and kernel centres.

One JSON line per (set, model): the test ROC-AUC of each model seed, their standard deviation
(``ddof=1``) and the fit seconds.

    USFAD_DATA=../shared/data/adbench .venv/bin/python benchmarks/tabular_model_seed_spread.py \\
        --datasets 14_glass 6_cardio --seeds 0 1 2 3 4 --models usflow nonusflow -o /tmp/spread.jsonl
"""

from __future__ import annotations

import time

import numpy as np
import torch
from probe_cells import probe_parser, test_roc, write_row

from usfad import NonUSFlow, USFlow
from usfad.data.adbench import load_dataset
from usfad.data.protocol import protocol_t

MODELS = {"usflow": USFlow, "nonusflow": NonUSFlow}


def main() -> None:
    parser = probe_parser(__doc__.splitlines()[0])
    parser.add_argument("--split-seed", type=int, default=42)
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    for dataset in args.datasets:
        split = protocol_t(*load_dataset(dataset), args.split_seed)
        for name in args.models:
            rocs, seconds = [], []
            for seed in args.seeds:
                start = time.perf_counter()
                det = MODELS[name](random_state=seed).fit(split.X_train)
                seconds.append(round(time.perf_counter() - start, 1))
                rocs.append(test_roc(split, det.decision_function(split.X_test)))
            row = {"dataset": dataset, "model": name, "split_seed": args.split_seed, "seeds": args.seeds}
            row |= {"roc": rocs, "std": round(float(np.std(rocs, ddof=1)), 4), "fit_s": seconds}
            write_row(args.output, row)


if __name__ == "__main__":
    main()
