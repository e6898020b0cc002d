"""``usfad bench`` and ``usfad report``: the command-line side of :mod:`usfad.bench` (parse, then call its
runner and report)."""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

from ..bench.spec import PRESETS, MissingDependencyError, default_models, describe_presets, parse_override
from ..data.protocol import SEEDS
from ..experiments.store import StoreLockedError
from ..outputs import check_output_dir, check_output_file
from .args import int_list, split_list


def add_commands(subparsers: Any) -> None:
    bench = subparsers.add_parser(
        "bench",
        help="run a benchmark grid (datasets x models x seeds) under Protocol T",
        description=(
            "Run every (dataset, model, seed) cell under Protocol T and append one row per cell to the result "
            "file as soon as it ends. Rerunning the same command skips the cells already there."
        ),
    )
    bench.add_argument("--data", metavar="DIR", help="ADBench directory (default: $USFAD_DATA)")
    bench.add_argument(
        "--datasets",
        nargs="+",
        metavar="NAME",
        help="dataset names, group names or globs, e.g. 6_cardio Classical 'CV_by_ResNet18/MVTec-AD_*' "
        "(default: the Classical group, or every dataset if there is no such group)",
    )
    bench.add_argument(
        "--models", nargs="+", metavar="MODEL", help="models (default: usfad's models, plus PyOD's if installed)"
    )
    bench.add_argument(
        "--seeds", nargs="+", metavar="SEED", default=[",".join(map(str, SEEDS))], help="seeds (default: 42 0 1 2 3)"
    )
    bench.add_argument("--preset", choices=PRESETS, default="default", help="hyper-parameter preset (default: default)")
    bench.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="[MODEL.]KEY=VALUE",
        help="override one setting (recorded in the preset label), e.g. usflow.epochs=50 or max_steps=500",
    )
    bench.add_argument(
        "--jobs", type=int, help="parallel cells (default: cores // threads; on Ray: cluster CPUs // threads)"
    )
    bench.add_argument("--threads", type=int, help="torch/BLAS threads per cell (default: 1)")
    bench.add_argument("--backend", choices=("local", "ray"), default="local", help="executor (default: local)")
    bench.add_argument("--address", help="Ray cluster address (with --backend ray; default: start a local Ray)")
    bench.add_argument(
        "--results", default="bench-results.jsonl", metavar="FILE", help="result file, JSON lines (appended to)"
    )
    bench.add_argument(
        "--time-limit", type=float, default=3600.0, metavar="S", help="seconds per cell before it is stopped (3600)"
    )
    bench.add_argument("--no-time-limit", action="store_true", help="let every cell run to the end")
    bench.add_argument("--retry-failed", action="store_true", help="run again the cells recorded as failed")
    bench.add_argument("--no-progress", action="store_true", help="no progress bar")
    bench.add_argument("--show-presets", action="store_true", help="print every preset's settings and exit")
    bench.set_defaults(func=run_bench)

    report = subparsers.add_parser(
        "report",
        help="tables, tests and plots from a benchmark result file",
        description="Write report.md (tables, ranks, win/tie/loss, Wilcoxon test, failures) and PNG plots.",
    )
    report.add_argument("results", metavar="RESULTS", nargs="+", help="result file(s) written by usfad bench (merged)")
    report.add_argument("-o", "--output", required=True, metavar="DIR", help="folder for report.md and the plots")
    report.add_argument("--reference", default="usflow", help="model compared with every other (default: usflow)")
    report.add_argument("--control", default="nonusflow", help="model for the Wilcoxon test (default: nonusflow)")
    report.add_argument("--preset", help="keep only this preset's rows of usfad's models (anchors are kept)")
    report.add_argument("--group", help="keep only this dataset group, e.g. Classical or CV_by_ResNet18")
    report.add_argument("--metric", choices=("roc_auc", "pr_auc", "best_f1"), default="roc_auc")
    report.set_defaults(func=run_report)


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def run_bench(args: argparse.Namespace) -> int:
    from ..bench.runner import run_benchmark

    if args.show_presets:
        print(describe_presets())
        return 0
    overrides = dict(parse_override(text) for text in args.param)
    check_output_file(args.results, inputs=[args.data], what="result file", example="results.jsonl")
    # A plain `kill` (SIGTERM) must unwind like Ctrl-C, so the executor stops its workers.
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        outcome = run_benchmark(
            args.data,
            args.results,
            models=split_list(args.models) or list(default_models()),
            datasets=split_list(args.datasets) or None,
            seeds=int_list(args.seeds, "seeds"),
            preset=args.preset,
            overrides=overrides,
            jobs=args.jobs,
            threads=args.threads,
            backend=args.backend,
            address=args.address,
            time_limit=None if args.no_time_limit else args.time_limit,
            retry_failed=args.retry_failed,
            progress=not args.no_progress,
        )
    except (MissingDependencyError, StoreLockedError) as exc:
        print(f"usfad bench: error: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(
        f"{outcome.planned} cells planned, {outcome.skipped} already in {outcome.results}, "
        f"{outcome.ok} ok, {outcome.failed} failed, in {outcome.seconds:.1f} s"
    )
    for row in outcome.rows:
        if row.get("status") != "ok":
            print(f"  failed: {row['model']} on {row['dataset']} seed {row['seed']}: {row.get('error')}")
    return 0  # failed cells are results too: they are in the file and the report


def run_report(args: argparse.Namespace) -> int:
    from ..bench.report import write_report

    check_output_dir(args.output, inputs=args.results, create=False)  # made once the results are read
    path = write_report(
        args.results,
        args.output,
        reference=args.reference,
        control=args.control,
        preset=args.preset,
        group=args.group,
        metric=args.metric,
    )
    print(f"report written to {path}")
    return 0
