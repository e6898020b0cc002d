"""Probe: would the default USFlow rank better with smoother kernels, or another weight between its two NLLs?

The default scores with the mean of two kernel NLLs (:class:`usfad.detectors.flow.FlowModel`):
the trained flow's kernel over the training latents and the identity flow's kernel over the
standardised rows. Each kernel's bandwidth is the one with the highest leave-one-out likelihood
of the centres (:meth:`usfad.FlowDetector.build_kernel`). The likeliest density need not rank
best: a nearest-neighbour detector with ``k = 5`` is smoother than one with ``k = 1``.

Per (set, seed), one default USFlow is fitted (``random_state = seed``, the grid's cell) and the
test rows are scored with each kernel's bandwidth multiplied by each of ``--scales`` (the
widths' ratios kept), through the detector's own scoring path:

- ``flow[s]``: the flow's NLL alone, its kernel's bandwidth times ``s``;
- ``input[s]``: the identity flow's kernel NLL alone, its bandwidth times ``s``.

Each row of the output holds their test ROC-AUCs and those of ``0.5 * (flow[s] + input[s])``
for every ``s`` (the default is ``s = 1``). ``--save DIR`` writes the per-row NLLs
(``DIR/<set>_<seed>.npz``: ``y``, ``scales``, ``flow`` and ``input``, scales x rows) so that
other combinations can be scored without refitting. Only training rows choose anything in a
model; the scales are what the probe varies.

    USFAD_DATA=../shared/data/adbench .venv/bin/python benchmarks/tabular_bandwidth_probe.py \
        --datasets 6_cardio 19_landsat --seeds 0 -o /tmp/bandwidth.jsonl
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from probe_cells import cells, probe_parser, test_roc, write_row  # this folder is on sys.path when run

from usfad import USFlow


def main() -> None:
    parser = probe_parser(__doc__.splitlines()[0])
    parser.add_argument("--scales", nargs="+", type=float, default=[0.5, 0.75, 1.0, 1.5, 2.0])
    parser.add_argument("--save", type=Path, help="folder for per-row test NLLs (npz per set and seed)")
    args = parser.parse_args()
    for dataset, seed, split in cells(args):
        start = time.perf_counter()
        det = USFlow(random_state=seed).fit(split.X_train)
        fit_s = time.perf_counter() - start
        model = det.model_
        latent_h, input_base = float(model.base.bandwidth), model.input_base
        input_h = float(input_base.bandwidth)
        flow, both = [], []
        start = time.perf_counter()
        with torch.no_grad():
            for s in args.scales:
                model.base.bandwidth.fill_(s * latent_h)
                model.input_base = None
                flow.append(det.decision_function(split.X_test))
                model.base.bandwidth.fill_(latent_h)
                model.input_base = input_base
                input_base.bandwidth.fill_(s * input_h)
                both.append(det.decision_function(split.X_test))
                input_base.bandwidth.fill_(input_h)
        flow = np.stack(flow)
        default_flow = flow[args.scales.index(1.0)] if 1.0 in args.scales else None
        row = {
            "dataset": dataset,
            "seed": seed,
            "n": len(split.X_train),
            "d": split.X_train.shape[1],
            "fit_s": round(fit_s, 1),
            "score_s": round(time.perf_counter() - start, 1),
            "scales": args.scales,
            "flow": [test_roc(split, f) for f in flow],
        }
        if default_flow is not None:  # input[s] = 2 * mean - flow[1]
            inputs = np.stack([2 * b - default_flow for b in both])
            row["input"] = [test_roc(split, i) for i in inputs]
            row["mean"] = [test_roc(split, 0.5 * (f + i)) for f, i in zip(flow, inputs)]
            if args.save:
                args.save.mkdir(parents=True, exist_ok=True)
                np.savez_compressed(
                    args.save / f"{dataset}_{seed}.npz", y=split.y_test, scales=args.scales, flow=flow, input=inputs
                )
        write_row(args.output, row)


if __name__ == "__main__":
    main()
