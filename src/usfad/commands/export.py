"""``usfad export MODEL -o MODEL.onnx``: a saved detector as an ONNX graph, checked.

The graph takes raw features (float64, any batch size) and returns the anomaly score of
``decision_function`` (see :mod:`usfad.export`). Unless ``--no-check``, the file is
checked right away: ONNX Runtime and PyTorch score the same rows (``--check-rows`` draws
from a Gaussian with the training data's mean and deviation, or the first rows of
``--check-data``) at batch sizes 1 and all rows, and the largest relative difference is
printed; above the tolerance the command exits with status 1 (the file is kept).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from ..export import OPSET, RTOL
from .model import _positive_int


def _check_rows(detector: Any, args: argparse.Namespace) -> tuple[np.ndarray, str]:
    if args.check_data is not None:
        from ..data.files import iter_table

        chunk = next(iter(iter_table(args.check_data, chunk_size=args.check_rows, label_column=args.label_column)))
        return chunk, f"the first {len(chunk)} rows of {args.check_data}"
    rng = np.random.default_rng(args.random_state)
    X = detector.scaler_mean_ + detector.scaler_scale_ * rng.standard_normal((args.check_rows, detector.n_features_in_))
    return X, f"{args.check_rows} random rows (Gaussian with the training mean and deviation)"


def export(args: argparse.Namespace) -> int:
    from ..detectors import load
    from ..export import verify_onnx

    detector = load(args.model)
    path = detector.export_onnx(args.output, opset=args.opset)
    print(
        f"exported {type(detector).__name__} ({detector.n_features_in_} features) to {path}: opset {args.opset}, "
        f"input X float64 (batch, {detector.n_features_in_}) raw features, output score float64 (batch,), "
        f"dynamic batch; threshold {detector.threshold_:.6g}"
    )
    if args.no_check:
        return 0
    X, what = _check_rows(detector, args)
    report = verify_onnx(detector, path, X, batch_sizes=sorted({1, len(X)}), rtol=args.rtol)
    per = ", ".join(f"{v:.2e} at batch {b}" for b, v in report.max_rel_diff.items())
    print(f"check on {what}: max relative difference ONNX Runtime vs PyTorch {per}")
    if not report.passed:
        print(f"check FAILED: above the tolerance {args.rtol:g}; the file {path} is kept but does not match")
        return 1
    print(f"check passed (tolerance {args.rtol:g})")
    return 0


def add_commands(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a saved detector to ONNX and check it against PyTorch",
        description="Export the detector in MODEL to an ONNX graph (raw features in, anomaly scores out) and check "
        "that ONNX Runtime scores like PyTorch.",
    )
    p.add_argument("model", metavar="MODEL", help="model file written by usfad fit")
    p.add_argument("-o", "--output", required=True, type=Path, metavar="OUT.onnx", help="ONNX file to write")
    p.add_argument("--opset", type=_positive_int, default=OPSET, metavar="N", help=f"ONNX opset (default: {OPSET})")
    p.add_argument("--no-check", action="store_true", help="skip the ONNX Runtime vs PyTorch check")
    p.add_argument(
        "--check-rows", type=_positive_int, default=1000, metavar="N", help="rows to check on (default: 1000)"
    )
    p.add_argument("--check-data", metavar="DATA", help="check on the first rows of this file instead of random rows")
    p.add_argument("--label-column", metavar="NAME", help="with --check-data: a label column to leave out")
    p.add_argument(
        "--rtol", type=float, default=RTOL, metavar="TOL", help=f"largest relative difference allowed (default: {RTOL})"
    )
    p.add_argument("--random-state", type=int, default=0, metavar="SEED", help="seed of the random check rows")
    p.set_defaults(func=export)
