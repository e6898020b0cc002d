"""Probe: other rules for the default USFlow's two kernels, on the same trained flow.

The kernels are built after training from class attributes of the detector:
``kernel_neighbours`` (the ``k`` of each centre's ``k``-th nearest neighbour distance, which
sets the widths and the bandwidths' unit), ``kernel_local_powers``, ``kernel_local_clip``,
``kernel_multiples``, ``kernel_max_centres``. Per (set, seed) one default USFlow is fitted
(``random_state = seed``, the grid's cell). Then, for each variant (a JSON object of those
attributes; ``{}`` is the default rebuilt), both kernels are built again from the training rows
(:func:`rebuild_kernels`, as ``fit`` builds them) and the test rows scored. The rebuilt
default's centres differ from the fit's only where there are more training rows than centres.
Each output row holds the test ROC-AUC of the fitted model (``fitted``) and of every variant
(``variants``, in the order given).

``--table ROWS`` writes, instead, the mean test ROC-AUC over sets of each variant in ``ROWS`` (a
file of this probe's rows, run with the same ``--variants``) and its sets won, tied and lost
against the first variant (a tie: within 0.001).

    USFAD_DATA=../shared/data/adbench .venv/bin/python benchmarks/tabular_kernel_rule_probe.py \
        --datasets 6_cardio --variants '{}' '{"kernel_neighbours": 10}' -o /tmp/rules.jsonl
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from probe_cells import cells, compare_to, probe_parser, test_roc, write_row  # this folder is on sys.path when run

from usfad import USFlow


def main() -> None:
    parser = probe_parser(__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", required=True, help="JSON objects of kernel attributes")
    parser.add_argument("--table", type=Path, help="write the table of these rows to --output instead")
    args = parser.parse_args()
    variants = [json.loads(v) for v in args.variants]
    if args.table:
        return write_table(args.table, args.variants, args.output)
    for dataset, seed, split in cells(args):
        start = time.perf_counter()
        det = USFlow(random_state=seed).fit(split.X_train)
        row = {"dataset": dataset, "seed": seed, "n": len(split.X_train), "d": split.X_train.shape[1]}
        row["fit_s"] = round(time.perf_counter() - start, 1)
        row["fitted"] = test_roc(split, det.decision_function(split.X_test))
        row["variants"], row["variant_s"] = [], []
        for variant in variants:
            start = time.perf_counter()
            for name, value in variant.items():
                setattr(det, name, tuple(value) if isinstance(value, list) else value)
            rebuild_kernels(det, split.X_train, torch.Generator().manual_seed(seed))
            row["variants"].append(test_roc(split, det.decision_function(split.X_test)))
            row["variant_s"].append(round(time.perf_counter() - start, 1))
            for name in variant:
                delattr(det, name)  # back to the class's value
        write_row(args.output, row)


def rebuild_kernels(det: USFlow, X: np.ndarray, generator: torch.Generator) -> None:
    """Both kernel bases built again from the training rows ``X`` as ``fit`` builds them, through
    the public pieces (the centre count, the latents, the scaler, ``build_kernel``), the flow as trained."""
    rows = np.arange(len(X))
    keep = det.kernel_centres_for(*X.shape)
    if len(X) > keep:
        rows = torch.randperm(len(X), generator=generator)[:keep].sort().values.numpy()
    latents = torch.as_tensor(det.latent(X[rows]), dtype=torch.float32)
    standardised = torch.as_tensor(X[rows] / det.scaler_scale_ - det.scaler_mean_ / det.scaler_scale_)
    with torch.no_grad():
        det.model_.base = det.build_kernel(latents, generator)
        det.model_.input_base = det.build_kernel(standardised.float(), generator)


def write_table(rows_file: Path, labels: list[str], output: str) -> None:
    """Mean ROC-AUC per variant over the sets in ``rows_file``, and w/t/l against the first variant."""
    rows = [json.loads(line) for line in rows_file.read_text().splitlines()]
    per_set = defaultdict(lambda: defaultdict(list))  # variant -> set -> [roc per seed]
    for row in rows:
        per_set["the fitted model"][row["dataset"]].append(row["fitted"])
        for label, roc in zip(labels, row["variants"], strict=True):
            per_set[label][row["dataset"]].append(roc)
    versus = compare_to(per_set, labels[0])
    seconds = np.array([row["variant_s"] for row in rows]).sum(0)
    lines = [
        f"# Kernel rules on the same trained flows ({len(rows)} cells, {versus[labels[0]].tie} sets)",
        "",
        "| variant | mean ROC-AUC | vs the first w/t/l | rebuild + score s |",
        "|---|---|---|---|",
    ]
    for label, s in zip(["the fitted model", *labels], ["", *(f"{s:.0f}" for s in seconds)]):
        v = versus[label]
        lines.append(f"| `{label}` | {v.mean:.4f} | {v.win}/{v.tie}/{v.loss} | {s} |")
    Path(output).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
