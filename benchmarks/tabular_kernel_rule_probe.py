"""Probe: other rules for the default USFlow's two kernels, on the same trained flow.

The kernels are built after training (:meth:`usfad.FlowDetector._set_kernel_base`) from class
attributes of the detector: ``kernel_neighbours`` (the ``k`` of each centre's ``k``-th nearest
neighbour distance, which sets the widths and the bandwidths' unit), ``kernel_local_powers``,
``kernel_local_clip``, ``kernel_multiples``, ``kernel_max_centres``. Per (set, seed) one default USFlow
is fitted (``random_state = seed``, the grid's cell); then for each variant (a JSON object of
those attributes; ``{}`` is the default rebuilt, whose centres differ from the fit's only where
the training rows are more than the centres) both kernels are rebuilt from the training rows
and the test rows scored. Each output row holds the test ROC-AUC of the fitted model
(``fitted``) and of every variant (``variants``, in the order given).

    USFAD_DATA=../shared/data/adbench .venv/bin/python benchmarks/tabular_kernel_rule_probe.py \
        --datasets 6_cardio --variants '{}' '{"kernel_neighbours": 10}' -o /tmp/rules.jsonl
"""

from __future__ import annotations

import json
import time

import torch
from probe_cells import cells, probe_parser, test_roc, write_row  # this folder is on sys.path when run

from usfad import USFlow


def main() -> None:
    parser = probe_parser(__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", required=True, help="JSON objects of kernel attributes")
    args = parser.parse_args()
    variants = [json.loads(v) for v in args.variants]
    for dataset, seed, split in cells(args):
        start = time.perf_counter()
        det = USFlow(random_state=seed).fit(split.X_train)
        row = {"dataset": dataset, "seed": seed, "n": len(split.X_train), "d": split.X_train.shape[1]}
        row["fit_s"] = round(time.perf_counter() - start, 1)
        row["fitted"] = test_roc(split, det.decision_function(split.X_test))
        data = det._validated(split.X_train)
        row["variants"], row["variant_s"] = [], []
        for variant in variants:
            start = time.perf_counter()
            for name, value in variant.items():
                setattr(det, name, tuple(value) if isinstance(value, list) else value)
            with torch.no_grad():
                det._set_kernel_base(data, torch.Generator().manual_seed(seed))
            row["variants"].append(test_roc(split, det.decision_function(split.X_test)))
            row["variant_s"].append(round(time.perf_counter() - start, 1))
            for name in variant:
                delattr(det, name)  # back to the class's value
        write_row(args.output, row)


if __name__ == "__main__":
    main()
