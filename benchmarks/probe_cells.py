"""What the tabular probes share: their common arguments, the (set, seed) cells they run under
Protocol T, the test ROC-AUC they record and the JSON line they append per cell."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator

import numpy as np
import torch

from usfad.data.adbench import load_dataset
from usfad.data.protocol import Split, protocol_t
from usfad.metrics import detection_metrics


def probe_parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with ``--datasets``, ``--seeds`` (default 0) and ``-o/--output``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--datasets", nargs="+", required=True)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("-o", "--output", required=True, help="JSON lines, appended")
    return parser


def cells(args: argparse.Namespace) -> Iterator[tuple[str, int, Split]]:
    """``(dataset, seed, split)`` for every set and seed asked for, one torch thread, each set loaded once."""
    torch.set_num_threads(1)
    for dataset in args.datasets:
        X, y = load_dataset(dataset)
        for seed in args.seeds:
            yield dataset, seed, protocol_t(X, y, seed)


def test_roc(split: Split, scores: np.ndarray) -> float:
    """The test ROC-AUC of ``scores``, to 4 decimals."""
    return round(detection_metrics(split.y_test, scores)["roc_auc"], 4)


def write_row(path: str, row: dict) -> None:
    """Append ``row`` to the JSON lines at ``path`` and print it."""
    with open(path, "a") as fh:
        fh.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)
