"""``usfad fit`` and ``usfad score``: train a detector on a file, score another file.

``usfad fit DATA --model usflow -o MODEL`` reads DATA whole (CSV, NPZ or Parquet; see
:mod:`usfad.data.files`) and saves the fitted detector as one safetensors file. With
``--label-column`` the labels are split off and only the rows labelled 0 are used for
training: the detectors are one-class and must see normal data only. The feature column
names of a CSV or Parquet header are saved with the model (``feature_names_in_``); a bad
row (a wrong number of fields, a missing, NaN or infinite value) is named by its line.

``usfad score MODEL DATA`` reads DATA in chunks of rows, so memory stays flat however long
the file, and writes one ``score,label`` row per input row, in order (label 1 = score
above the model's threshold). Without ``-o`` it prints a summary instead. A bad row (a
non-numeric value, a wrong number of fields, a missing, NaN or infinite value) stops the
run with status 1 and an error naming its line in DATA (CSV; its row index for NPZ and
Parquet); every row before it is scored and written to the output first, and the error
says how many. A model fitted on a CSV or Parquet file refuses a CSV or Parquet file whose
feature columns are not the same names in the same order (nothing is scored; reorder the
columns); NPZ files and models fitted on NPZ are positional. A row whose standardised
features are beyond float32's reach (e.g. a value of 1e39) scores the largest float64 and
is flagged.

``usfad fit DATA --sample N`` takes a file, a folder or a glob pattern and fits on a uniform
random sample of N rows drawn in one pass over its files (:mod:`usfad.fitting`); the
sample's size, seed and source files are saved in the model file. ``usfad score MODEL DATA
-o OUT_DIR --backend ray`` scores a folder, a glob pattern or a file on Ray Data, one output
file per input file, resumable (:mod:`usfad.distributed`, which says what a bad row keeps).
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..data.files import feature_columns, find_data_files, iter_table, read_table, write_scores
from ..errors import DataError
from ..flows import FLOWS
from ..outputs import check_output_file
from ..validation import check_array, check_feature_names
from .args import add_streaming_args, add_threads_arg, auto_or_positive_int, positive_int, use_threads

#: the ``--model`` names whose detectors are flows (``--base``, ``--input-kernel`` ... apply to them only)
FLOW_MODELS = ("usflow", "nonusflow", "flow")

MODELS = {
    "usflow": "USFlow",
    "nonusflow": "NonUSFlow",
    "flow": "FlowDetector",
    "deepsvdd": "DeepSVDD",
    "vaeflow": "VAEFlow",
    "deepsvddvae": "DeepSVDDVAE",
}


def _weight(text: str) -> str | float:
    """``--gaussian-weight``: ``auto`` or a number in [0, 1]."""
    if text == "auto":
        return text
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a number in [0, 1], got {text!r}")
    return value


def _detector(name: str, args: argparse.Namespace) -> Any:
    from .. import detectors

    params: dict[str, Any] = {"random_state": args.random_state, "verbose": not args.quiet}
    if args.flow is not None:
        if name != "flow":
            raise ValueError(f"--flow goes with --model flow (--model {name} fixes its own flow)")
        params["flow"] = args.flow
    flow_only = {  # option -> the flow models' parameter and its value
        "base_components": args.base_components,
        "base": args.base,
        "input_kernel": None if args.input_kernel is None else args.input_kernel == "on",
        "gaussian_weight": args.gaussian_weight,
    }
    for key, value in flow_only.items():
        if value is None:
            continue
        if name not in FLOW_MODELS:
            option = "--" + key.replace("_", "-")
            raise ValueError(f"{option} goes with a flow model ({', '.join(FLOW_MODELS)}), not --model {name}")
        params[key] = value
    for key in ("epochs", "contamination", "threshold", "alpha"):
        value = getattr(args, key)
        if value is not None:
            params[key] = value
    return getattr(detectors, MODELS[name])(**params)


def normal_rows(path: str, X: np.ndarray, y: np.ndarray, label_column: str) -> np.ndarray:
    """The rows of ``X`` labelled 0 in ``label_column`` (``y``), which must hold only 0 and 1."""
    values = set(np.unique(y).tolist())
    if values - {0, 1}:
        raise DataError(
            f"{path}: label column {label_column!r} must hold 0 (normal) and 1 (anomaly), got {sorted(values)[:10]}"
        )
    return X[y == 0]


def _normal_rows(path: str, X: np.ndarray, y: np.ndarray, label_column: str) -> np.ndarray:
    normal = normal_rows(path, X, y, label_column)
    if len(normal) < 2:
        raise DataError(f"{path}: only {len(normal)} row(s) labelled 0 (normal); fitting needs at least 2")
    return normal


def _several_files(data: str) -> bool:
    """Whether DATA names a folder or a glob pattern rather than one file."""
    return Path(data).is_dir() or (not Path(data).exists() and any(c in data for c in "*?["))


def fit(args: argparse.Namespace) -> int:
    use_threads(args)
    if args.sample is not None:
        return fit_sample(args)
    if _several_files(args.data):
        raise DataError(f"{args.data} names a folder or a pattern: to fit on several files, pass --sample N")
    check_output_file(args.output, inputs=[args.data], what="model file", example="model.usfad")
    X, y = read_table(args.data, label_column=args.label_column, finite=True)
    names = feature_columns(args.data, label_column=args.label_column)
    n_rows = len(X)
    if args.label_column is not None and y is not None:
        X = _normal_rows(args.data, X, y, args.label_column)
    elif y is not None:  # an .npz with an array y, not named: train on every row, but say so
        print(f"note: {args.data} holds labels 'y'; pass --label-column y to train on the rows labelled 0 only")
    X = check_array(X, min_samples=2, what=str(args.data))
    detector = _detector(args.model, args)
    start = time.perf_counter()
    if names is not None:  # fitting the frame records the header's names as feature_names_in_
        import pandas as pd

        detector.fit(pd.DataFrame(X, columns=names, copy=False))
    else:
        detector.fit(X)
    seconds = time.perf_counter() - start
    path = detector.save(args.output)
    left_out = f" ({n_rows - len(X)} anomalous row(s) left out)" if n_rows > len(X) else ""
    print(
        f"fitted {type(detector).__name__} on {len(X)} rows x {X.shape[1]} features{left_out} in {seconds:.1f} s; "
        f"threshold {detector.threshold_:.6g} ({detector.threshold}){_weight_note(detector)}; saved to {path}"
    )
    return 0


def _weight_note(detector: Any) -> str:
    """``; ...`` naming the trained Gaussian's weight in the score when binary columns set one, else ``""``."""
    weight = getattr(detector, "gaussian_weight_", 0.0)
    if not weight:
        return ""
    rule = "the share of binary columns" if detector.gaussian_weight == "auto" else "--gaussian-weight"
    return f"; the flow's Gaussian weighs {weight:.2f} in the score ({rule})"


def fit_sample(args: argparse.Namespace) -> int:
    from ..fitting import fit_on_sample, save_with_training_data

    files = find_data_files(args.data)
    check_output_file(args.output, inputs=files, what="model file", example="model.usfad")
    detector = _detector(args.model, args)
    start = time.perf_counter()
    sample = fit_on_sample(detector, files, args.sample, random_state=args.random_state, label_column=args.label_column)
    seconds = time.perf_counter() - start
    path = save_with_training_data(detector, args.output, {"sample": sample.record()})
    left_out = f", {sample.anomalies_left_out} anomalous row(s) left out" if sample.anomalies_left_out else ""
    print(
        f"fitted {type(detector).__name__} on a sample of {len(sample.X)} of {sample.rows_seen} rows from "
        f"{len(files)} file(s) (seed {args.random_state}{left_out}) x {sample.X.shape[1]} features in {seconds:.1f} s; "
        f"threshold {detector.threshold_:.6g} ({detector.threshold}){_weight_note(detector)}; saved to {path}"
    )
    return 0


def scored_chunks(
    detector: Any, path: str, chunks: Iterator[np.ndarray], stats: dict[str, float]
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(scores, labels)`` of each chunk of ``path``, checked like any input; ``stats`` (:func:`new_stats`) tallied."""
    start = 0
    for chunk in chunks:
        stop = start + len(chunk)
        X = check_array(chunk, n_features=detector.n_features_in_, what=f"{path} (rows {start}-{stop - 1})")
        scores = detector.decision_function(X)
        labels = (scores > detector.threshold_).astype(np.int64)
        stats["n"] += len(scores)
        stats["flagged"] += int(labels.sum())
        with np.errstate(over="ignore"):  # +inf rows score the largest float64
            stats["sum"] += float(scores.sum())
        stats["min"] = min(stats["min"], float(scores.min()))
        stats["max"] = max(stats["max"], float(scores.max()))
        yield scores, labels
        start = stop


def new_stats() -> dict[str, float]:
    """The tallies :func:`scored_chunks` keeps: rows, flagged rows, sum, min and max of the scores."""
    return {"n": 0, "flagged": 0, "sum": 0.0, "min": math.inf, "max": -math.inf}


def stopped_at_bad_row(exc: DataError, n: int, output: Path | None, done: str) -> DataError:
    """The error for a stream stopped by a bad row: what was wrong, and what happened to the ``n`` rows before it."""
    if n == 0:
        return DataError(f"{exc}; no row was {done}")
    where = f"written to {output}" if output is not None else done
    return DataError(f"{exc}; the {n} row(s) before it were {where} (stopped there)")


def score(args: argparse.Namespace) -> int:
    from ..detectors import load

    if args.backend == "ray":
        return score_on_ray(args)
    for option in ("address", "workers", "format", "engine"):
        if getattr(args, option) is not None:
            raise ValueError(f"--{option} goes with --backend ray")
    use_threads(args)
    if args.output is not None:
        check_output_file(args.output, inputs=[args.model, args.data], what="output", example="scores.csv")
    detector = load(args.model)
    stats = new_stats()
    try:
        chunks = iter_table(args.data, chunk_size=args.chunk_size, label_column=args.label_column, finite=True)
        check_feature_names(chunks.feature_names, getattr(detector, "feature_names_in_", None), what=str(args.data))
        scored = scored_chunks(detector, args.data, chunks, stats)
        if args.output is not None:
            write_scores(args.output, scored)
        else:
            for _ in scored:
                pass
    except DataError as exc:
        raise stopped_at_bad_row(exc, int(stats["n"]), args.output, "scored") from None
    n = int(stats["n"])
    summary = (
        f"scored {n} rows with {type(detector).__name__}: {int(stats['flagged'])} flagged as anomalies "
        f"({stats['flagged'] / n:.1%}) at threshold {detector.threshold_:.6g}; "
        f"scores min {stats['min']:.6g}, mean {stats['sum'] / n:.6g}, max {stats['max']:.6g}"
    )
    print(f"{summary}; written to {args.output}" if args.output is not None else summary)
    return 0


def score_on_ray(args: argparse.Namespace) -> int:
    from ..distributed import score_files

    if args.output is None:
        raise ValueError("--backend ray writes one output file per input file: give the output folder with -o OUT_DIR")
    run = score_files(
        args.model,
        args.data,
        args.output,
        output_format=args.format or "csv",
        workers=args.workers,
        address=args.address,
        engine=args.engine or "auto",
        chunk_size=args.chunk_size,
        label_column=args.label_column,
    )
    print(f"scored on Ray: {run.summary()}")
    return 0


def add_commands(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "fit",
        help="fit a detector on a CSV, NPZ or Parquet file and save it",
        description="Fit a detector on normal data read from DATA and save it to MODEL (safetensors).",
    )
    p.add_argument(
        "data",
        metavar="DATA",
        help="training data: .csv, .npz (array X) or .parquet; with --sample also a folder or a glob pattern (quoted)",
    )
    p.add_argument(
        "--model",
        choices=sorted(MODELS),
        default="usflow",
        help="detector (default: usflow); usflow = flow --flow usf, nonusflow = flow --flow affine",
    )
    p.add_argument(
        "--flow",
        choices=FLOWS,
        help="with --model flow: additive (usf, a uniformly scaling flow), GIN (usf-gin, also a USF) or affine",
    )
    p.add_argument(
        "--label-column",
        metavar="NAME",
        help="column (NPZ: array) of 0/1 labels; dropped from the features, rows labelled 1 left out",
    )
    p.add_argument("--epochs", type=positive_int, metavar="N", help="training epochs (default: the model's)")
    p.add_argument(
        "--base-components",
        type=auto_or_positive_int,
        metavar="K",
        help="flow models: the base density, one Gaussian (1, the default), a mixture of K, or auto (8 up to 128 "
        "features, one above)",
    )
    p.add_argument(
        "--base",
        choices=("gaussian", "kernel"),
        help="flow models: score with the trained base (gaussian) or with a kernel density of the training rows' "
        "latents (kernel)",
    )
    p.add_argument(
        "--input-kernel",
        choices=("on", "off"),
        help="flow models with a kernel base: also score with a kernel density of the standardised rows, the "
        "mean of the two NLLs (default: on whenever a kernel base scores; off allows explain --baseline typical)",
    )
    p.add_argument(
        "--gaussian-weight",
        type=_weight,
        metavar="W",
        help="flow models with a kernel base: the weight in [0, 1] of the flow's NLL under the Gaussian it trained "
        "with, beside the kernels' (default: auto, the share of binary columns; 0 with --input-kernel off allows "
        "explain --baseline typical)",
    )
    p.add_argument(
        "--contamination",
        type=float,
        metavar="C",
        help="expected anomaly share, sets the threshold (default: the model's, 0.1)",
    )
    p.add_argument(
        "--threshold",
        choices=("contamination", "chi2", "conformal"),
        help="how to set the threshold: the contamination share of the training rows, or a false-alarm rate "
        "--alpha by chi2 (usflow only, approximate) or conformal (held-out calibration rows, any model) "
        "(default: contamination)",
    )
    p.add_argument(
        "--alpha",
        type=float,
        metavar="A",
        help="false-alarm rate for --threshold chi2 or conformal (default: the model's, 0.01)",
    )
    p.add_argument(
        "--sample",
        type=positive_int,
        metavar="N",
        help="fit on a uniform random sample of N rows drawn in one pass over DATA's files (reservoir sampling, "
        "seeded by --random-state; memory holds the sample and one chunk); the sample's size, seed and source "
        "files are saved in the model file",
    )
    p.add_argument("--random-state", type=int, default=0, metavar="SEED", help="seed (default: 0)")
    p.add_argument("--quiet", action="store_true", help="no training progress bar")
    add_threads_arg(p)
    p.add_argument("-o", "--output", required=True, metavar="MODEL", type=Path, help="model file to write")
    p.set_defaults(func=fit)

    p = subparsers.add_parser(
        "score",
        help="score a file with a saved detector, streaming it in chunks",
        description="Score every row of DATA with the detector in MODEL; one score,label row per input row.",
    )
    p.add_argument("model", metavar="MODEL", help="model file written by usfad fit")
    p.add_argument(
        "data",
        metavar="DATA",
        help="data to score: .csv, .npz (array X) or .parquet; with --backend ray a folder or a glob pattern (quoted)",
    )
    p.add_argument(
        "-o",
        "--output",
        metavar="OUT",
        type=Path,
        help="write score,label per row to this file (default: print a summary only); with --backend ray the "
        "output folder: one NAME.scores.csv of file,row,score,label rows per input file",
    )
    add_streaming_args(p)
    p.add_argument(
        "--backend",
        choices=("local", "ray"),
        default="local",
        help="local: one file, streamed in this process (default); ray: many files on Ray Data, one output per "
        "input, resumable (pip install 'usfad[ray]')",
    )
    p.add_argument(
        "--address",
        metavar="ADDR",
        help="with --backend ray: the Ray cluster to connect to (default: start a local Ray with --workers CPUs)",
    )
    p.add_argument(
        "--workers", type=positive_int, metavar="N", help="with --backend ray: scoring workers (default: the CPUs)"
    )
    p.add_argument(
        "--format", choices=("csv", "parquet"), help="with --backend ray: the output files' format (default: csv)"
    )
    p.add_argument(
        "--engine",
        choices=("auto", "onnx", "torch"),
        help="with --backend ray: onnx (ONNX Runtime), torch, or auto: onnx when installed (default)",
    )
    add_threads_arg(p, " of local scoring (Ray's workers take one each)")
    p.set_defaults(func=score)
