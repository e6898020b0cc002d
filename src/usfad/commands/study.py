"""``usfad study alignment | stability``: check the paper's claims, write a report folder.

``usfad study alignment`` fits USFlow, NonUSFlow and DeepSVDD on Gaussian mixtures with
a known density and correlates their latent distance (and, for the flows, their learned
log-density) with the truth (:mod:`usfad.studies.alignment`).

``usfad study stability --data DIR`` runs models over many seeds on ADBench datasets and
reports the spread of ROC-AUC, the diverged and exploded runs and the loss curves
(:mod:`usfad.studies.stability`).

Both write ``report.md``, a CSV and PNG figures into ``-o DIR``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from ..data.protocol import SEEDS
from ..outputs import check_output_dir
from ..validation import check_seeds
from .args import int_list, print_report_written, print_tables, split_list


def _limit_threads(threads: int | None) -> None:
    # On a shared machine torch's default (one thread per core) oversubscribes the cores.
    if threads is not None:
        from ..experiments.engine import limit_threads

        limit_threads(threads)


def run_alignment_command(args: argparse.Namespace) -> int:
    from ..studies.alignment import TABLE_HEADERS, run_alignment, table_rows, write_report

    _limit_threads(args.threads)
    start = time.perf_counter()
    n_train, n_eval = args.n_train, args.n_eval
    if args.quick:  # a smoke test: small samples unless given explicitly
        n_train = n_train if n_train is not None else 500
        n_eval = n_eval if n_eval is not None else 500
    check_output_dir(args.output)
    result = run_alignment(
        dims=int_list(args.dims, "dims"),
        n_train=50_000 if n_train is None else n_train,
        n_eval=10_000 if n_eval is None else n_eval,
        seed=args.seed,
        quick=args.quick,
        device=args.device,
        progress=not args.no_progress,
    )
    print_tables((TABLE_HEADERS, table_rows(result.rows)))
    report = write_report(result, Path(args.output), plots=not args.no_plots)
    print_report_written(report, start)
    return 0


def run_stability_command(args: argparse.Namespace) -> int:
    from ..studies.stability import (
        DEFAULT_DATASETS,
        DEFAULT_MODELS,
        MODEL_HEADERS,
        TABLE_HEADERS,
        model_rows,
        run_stability,
        table_rows,
        write_report,
    )

    _limit_threads(args.threads)
    seeds = check_seeds(int_list(args.seeds, "seeds"))  # before the output folder is made
    check_output_dir(args.output)
    start = time.perf_counter()
    result = run_stability(
        datasets=split_list(args.datasets) or list(DEFAULT_DATASETS),
        models=split_list(args.models) or list(DEFAULT_MODELS),
        seeds=seeds,
        data_dir=args.data,
        preset=args.preset,
        quick=args.quick,
        device=args.device,
        progress=not args.no_progress,
    )
    print_tables((TABLE_HEADERS, table_rows(result)), (MODEL_HEADERS, model_rows(result)))
    report = write_report(result, Path(args.output), plots=not args.no_plots)
    print_report_written(report, start)
    return 0


def add_commands(subparsers: Any) -> None:
    from ..bench.spec import PRESETS
    from ..studies.alignment import DIMS
    from ..studies.stability import DEFAULT_DATASETS, DEFAULT_MODELS

    study = subparsers.add_parser(
        "study",
        help="check the paper's claims: density alignment, training stability",
        description="Studies that write a report folder (report.md, a CSV and PNG figures).",
    )
    sub = study.add_subparsers(dest="study", metavar="STUDY", required=True)

    def common(p: argparse.ArgumentParser, default_output: str) -> None:
        p.add_argument(
            "-o", "--output", default=default_output, metavar="DIR", help=f"report folder ({default_output})"
        )
        p.add_argument("--quick", action="store_true", help="train for a few steps only: a smoke test in seconds")
        p.add_argument("--device", default="cpu", help="torch device for usfad's models (cpu, cuda, auto; cpu)")
        p.add_argument("--threads", type=int, default=None, help="torch/BLAS threads (default: torch's, one per core)")
        p.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
        p.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    alignment = sub.add_parser(
        "alignment",
        help="latent distance vs true density on Gaussian mixtures (USFlow, NonUSFlow, DeepSVDD)",
        description="Fit USFlow, NonUSFlow and DeepSVDD on two-component Gaussian mixtures with a known density "
        "and report Pearson, Spearman and Kendall correlations between the true NLL and the latent distance "
        "(and, for the flows, between learned and true log-density).",
    )
    alignment.add_argument(
        "--dims", nargs="+", default=[",".join(map(str, DIMS))], metavar="D", help="dimensions (2 8 32 128)"
    )
    alignment.add_argument(
        "--n-train", type=int, metavar="N", help="training samples per dimension (50000; 500 with --quick)"
    )
    alignment.add_argument(
        "--n-eval", type=int, metavar="N", help="fresh evaluation samples per dimension (10000; 500 with --quick)"
    )
    alignment.add_argument("--seed", type=int, default=0, help="seed of the samples and the models (0)")
    common(alignment, "usfad-alignment")
    alignment.set_defaults(func=run_alignment_command)

    stability = sub.add_parser(
        "stability",
        help="ROC-AUC spread, diverged and exploded runs over seeds on ADBench datasets",
        description="Run models over several seeds under Protocol T and report the spread of ROC-AUC, the runs "
        "whose loss became non-finite or exploded, and the loss curves.",
    )
    stability.add_argument("--data", metavar="DIR", help="ADBench directory (default: $USFAD_DATA)")
    stability.add_argument(
        "--datasets",
        nargs="+",
        metavar="NAME",
        help=f"dataset names, group names or globs (default: {' '.join(DEFAULT_DATASETS)})",
    )
    stability.add_argument(
        "--models", nargs="+", metavar="MODEL", help=f"benchmark models (default: {' '.join(DEFAULT_MODELS)})"
    )
    stability.add_argument(
        "--seeds", nargs="+", default=[",".join(map(str, SEEDS))], metavar="SEED", help="seeds (42 0 1 2 3)"
    )
    stability.add_argument("--preset", choices=PRESETS, default="default", help="hyper-parameter preset (default)")
    common(stability, "usfad-stability")
    stability.set_defaults(func=run_stability_command)
