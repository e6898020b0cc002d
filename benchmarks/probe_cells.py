"""What the tabular probes share: their common arguments, the (set, seed) cells they run under
Protocol T, the test ROC-AUC they record, the JSON line they append per cell, and how their
tables compare variants over sets (the report's win / tie / loss and Wilcoxon test)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Hashable, Iterator, Mapping, Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch

from usfad.bench.report import wilcoxon_test, win_tie_loss
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


class Versus(NamedTuple):
    """A variant against the reference over the reference's sets (each set's mean over its seeds)."""

    mean: float  #: mean over those sets
    win: int  #: sets where the variant is better by more than the tie tolerance
    tie: int
    loss: int
    p: float  #: two-sided Wilcoxon signed-rank p (1 where every difference is 0)


def compare_to(roc: Mapping[Hashable, Mapping[str, Sequence[float]]], reference: Hashable) -> dict[Hashable, Versus]:
    """Every variant of ``roc`` (variant -> set -> ROC-AUC per seed) against ``reference``, with the
    benchmark report's :func:`~usfad.bench.report.win_tie_loss` and
    :func:`~usfad.bench.report.wilcoxon_test` (ties within its default tolerance, 0.001)."""
    keys = list(roc)
    table = pd.DataFrame({i: pd.Series({s: float(np.mean(v)) for s, v in roc[k].items()}) for i, k in enumerate(keys)})
    ref = keys.index(reference)
    table = table[table[ref].notna()]
    counts = win_tie_loss(table, ref)  # the reference's wins are the variant's losses
    out = {}
    for i, key in enumerate(keys):
        if i == ref:
            out[key] = Versus(float(table[ref].mean()), 0, len(table), 0, 1.0)
            continue
        row = counts.loc[i]
        p = wilcoxon_test(table, i, ref).p_value
        out[key] = Versus(float(table[i].mean()), int(row["loss"]), int(row["tie"]), int(row["win"]), p)
    return out
