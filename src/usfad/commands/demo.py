"""``usfad demo``: Protocol T on the embedded datasets, a table and a report folder.

Runs USFlow, NonUSFlow and DeepSVDD (and PyOD's IForest and KNN when PyOD is installed) on
every embedded dataset (:func:`usfad.experiments.demo.run_demo`), prints ROC-AUC, PR-AUC and
fit time per cell, and writes ``report.md``, ``results.csv`` and three figures: ROC curves,
score histograms and NLL against latent distance for the two flows
(:mod:`usfad.reporting.demo`).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from ..data.embedded import EMBEDDED
from ..data.protocol import SEEDS
from ..outputs import check_output_dir
from .args import print_report_written, print_tables


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one seed")
    return values


def _dataset_list(text: str) -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [n for n in names if n not in EMBEDDED]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown dataset(s) {unknown}; choose from {', '.join(EMBEDDED)}")
    return names


def run(args: argparse.Namespace) -> int:
    from ..experiments.demo import run_demo
    from ..reporting.demo import (
        MODEL_HEADERS,
        TABLE_HEADERS,
        model_mean_rows,
        summary_rows,
        write_plots,
        write_report,
        write_results_csv,
    )

    out = check_output_dir(args.output)
    start = time.perf_counter()
    result = run_demo(args.datasets, args.seeds, quick=args.quick, progress=not args.no_progress)
    print_tables((TABLE_HEADERS, summary_rows(result.cells)), (MODEL_HEADERS, model_mean_rows(result.cells)))
    plots = [] if args.no_plots else write_plots(result, out)
    write_results_csv(result.cells, out / "results.csv")
    report = write_report(result, out, args.seeds, args.quick, plots)
    print_report_written(report, start)
    return 0


def add_commands(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "demo",
        help="run USFlow, NonUSFlow, DeepSVDD and anchors on embedded datasets and write a report",
        description="Run Protocol T on the embedded datasets (breast cancer, wine, digits, a Gaussian mixture) "
        "for USFlow, NonUSFlow, DeepSVDD and, when PyOD is installed, IForest and KNN; print a table and write "
        "a report folder with report.md, results.csv and figures.",
    )
    p.add_argument("-o", "--output", default="usfad-demo", metavar="DIR", help="report folder (default: usfad-demo)")
    p.add_argument(
        "--seeds",
        type=_int_list,
        default=list(SEEDS),
        metavar="S[,S...]",
        help="Protocol T seeds (default: 42,0,1,2,3)",
    )
    p.add_argument(
        "--datasets",
        type=_dataset_list,
        default=list(EMBEDDED),
        metavar="NAME[,NAME...]",
        help=f"embedded datasets to run (default: all of {', '.join(EMBEDDED)})",
    )
    p.add_argument("--quick", action="store_true", help="train for a few steps only: a smoke test in seconds")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)
