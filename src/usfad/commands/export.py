"""``usfad export MODEL -o MODEL.onnx``: a saved detector as an ONNX graph, checked.

The file's class is read from its header: a tabular detector (``usfad fit``) or an image
detector (``usfad image fit``); see :mod:`usfad.export` for both graphs. Unless
``--no-check``, the file is checked right away and the largest relative difference ONNX
Runtime vs PyTorch is printed; above the tolerance the command exits with status 1 (the
file is kept).

- Tabular: raw features (float64, any batch size) in, ``decision_function``'s score out.
  Check on ``--check-rows`` rows drawn from a Gaussian with the training data's mean and
  deviation, or the first rows of ``--check-data``, at batch sizes 1 and all rows
  (tolerance 1e-5).
- Image: RGB images in ``[0, 1]`` (float32 ``[batch, 3, S, S]``) in, ``predict``'s scores
  and anomaly maps out. Check on ``--check-images`` random images (smooth colour blobs plus
  noise), or the image files / folders of ``--check-data``, at batch sizes 1 and 8, scores
  and maps (tolerance 1e-4, see :func:`usfad.export.verify_image_onnx`).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..export import IMAGE_RTOL, OPSET, RTOL
from ..outputs import check_output_file
from .args import positive_int


def _check_rows(detector: Any, args: argparse.Namespace) -> tuple[np.ndarray, str]:
    if args.check_data is not None:
        from ..data.files import iter_table
        from ..validation import check_array, check_feature_names

        rows, n = [], 0
        chunks = iter_table(args.check_data, chunk_size=args.check_rows, label_column=args.label_column, finite=True)
        names = getattr(detector, "feature_names_in_", None)
        check_feature_names(chunks.feature_names, names, what=str(args.check_data))
        for chunk in chunks:
            rows.append(chunk[: args.check_rows - n])
            n += len(rows[-1])
            if n >= args.check_rows:
                break
        chunk = check_array(np.concatenate(rows), n_features=detector.n_features_in_, what=str(args.check_data))
        return chunk, f"the first {len(chunk)} rows of {args.check_data}"
    rng = np.random.default_rng(args.random_state)
    X = detector.scaler_mean_ + detector.scaler_scale_ * rng.standard_normal((args.check_rows, detector.n_features_in_))
    return X, f"{args.check_rows} random rows (Gaussian with the training mean and deviation)"


def _check(checked: tuple[Any, str] | None, verify: Callable[[Any, float], Any], rtol: float, path: Path) -> int:
    """Run ``verify(data, rtol)`` on the check data (none: nothing to check) and print its verdict."""
    if checked is None:
        return 0
    data, what = checked
    report = verify(data, rtol)
    print(f"check on {what}: max relative difference ONNX Runtime vs PyTorch {report.differences()}")
    if not report.passed:
        print(f"check FAILED: above the tolerance {rtol:g}; the file {path} is kept but does not match")
        return 1
    print(f"check passed (tolerance {rtol:g})")
    return 0


def _export_tabular(args: argparse.Namespace) -> int:
    from ..detectors import load
    from ..export import verify_onnx

    if args.image_size is not None or args.check_images is not None:
        raise ValueError(f"{args.model} holds a tabular detector: --image-size and --check-images are for image models")
    detector = load(args.model)
    checked = None if args.no_check else _check_rows(detector, args)  # a bad check file fails before the export
    path = detector.export_onnx(args.output, opset=args.opset)
    print(
        f"exported {type(detector).__name__} ({detector.n_features_in_} features) to {path}: opset {args.opset}, "
        f"input X float64 (batch, {detector.n_features_in_}) raw features, output score float64 (batch,), "
        f"dynamic batch; threshold {detector.threshold_:.6g}"
    )
    rtol = RTOL if args.rtol is None else args.rtol
    return _check(
        checked, lambda X, rtol: verify_onnx(detector, path, X, batch_sizes=sorted({1, len(X)}), rtol=rtol), rtol, path
    )


def _check_images(size: int, args: argparse.Namespace) -> tuple[Any, str]:
    import torch

    from ..export import random_images

    if args.check_data is not None:
        from ..vision.data import image_files, read_image

        files = image_files([args.check_data])
        files = files if args.check_images is None else files[: args.check_images]
        return torch.stack([read_image(f, size) for f in files]), f"{len(files)} image(s) of {args.check_data}"
    n = 8 if args.check_images is None else args.check_images
    return random_images(n, size, seed=args.random_state), f"{n} random {size} x {size} images"


def _export_image(args: argparse.Namespace) -> int:
    from ..export import IMAGE_VERIFY_BATCH_SIZES, verify_image_onnx
    from ..vision.detector import ImageDetector

    if args.label_column is not None:
        raise ValueError("--label-column is for tabular models; this file holds an image detector")
    detector = ImageDetector.load(args.model)
    size = int(detector.image_size if args.image_size is None else args.image_size)
    checked = None if args.no_check else _check_images(size, args)  # a bad check folder fails before the export
    path = detector.export_onnx(args.output, opset=args.opset, image_size=size)
    print(
        f"exported ImageDetector ({detector.model}, {detector.flow}, backbone {detector.backbone_name}) to {path}: "
        f"opset {args.opset}, input images float32 (batch, 3, {size}, {size}) RGB in [0, 1], outputs scores float32 "
        f"(batch,) and maps float32 (batch, {size}, {size}), dynamic batch"
    )
    rtol = IMAGE_RTOL if args.rtol is None else args.rtol

    return _check(
        checked,
        lambda images, rtol: verify_image_onnx(detector, path, images, batch_sizes=IMAGE_VERIFY_BATCH_SIZES, rtol=rtol),
        rtol,
        path,
    )


def export(args: argparse.Namespace) -> int:
    from ..modelfile import model_file_format
    from ..vision.detector import FORMAT as IMAGE_FORMAT

    check_output_file(args.output, inputs=[args.model, args.check_data], what="ONNX file", example="model.onnx")
    if model_file_format(args.model) == IMAGE_FORMAT:
        return _export_image(args)
    return _export_tabular(args)


def add_commands(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a saved detector (tabular or image) to ONNX and check it against PyTorch",
        description="Export the detector in MODEL to an ONNX graph (raw features in, anomaly scores out; or, for an "
        "image model, images in, scores and anomaly maps out) and check that ONNX Runtime scores like PyTorch.",
    )
    p.add_argument("model", metavar="MODEL", help="model file written by usfad fit or usfad image fit")
    p.add_argument("-o", "--output", required=True, type=Path, metavar="OUT.onnx", help="ONNX file to write")
    p.add_argument("--opset", type=positive_int, default=OPSET, metavar="N", help=f"ONNX opset (default: {OPSET})")
    p.add_argument("--no-check", action="store_true", help="skip the ONNX Runtime vs PyTorch check")
    p.add_argument(
        "--check-rows", type=positive_int, default=1000, metavar="N", help="tabular: rows to check on (default: 1000)"
    )
    p.add_argument(
        "--check-images",
        type=positive_int,
        metavar="N",
        help="image models: images to check on (default: 8 random ones, or every image of --check-data)",
    )
    p.add_argument(
        "--check-data",
        metavar="DATA",
        help="check on the first rows of this file (tabular) or the images in this file or folder (image models) "
        "instead of random ones",
    )
    p.add_argument("--label-column", metavar="NAME", help="tabular, with --check-data: a label column to leave out")
    p.add_argument(
        "--image-size",
        type=positive_int,
        metavar="S",
        help="image models: the graph's input side (default: the model's image size; another is resized inside)",
    )
    p.add_argument(
        "--rtol",
        type=float,
        metavar="TOL",
        help=f"largest relative difference allowed (default: {RTOL} tabular, {IMAGE_RTOL} image models)",
    )
    p.add_argument("--random-state", type=int, default=0, metavar="SEED", help="seed of the random check rows/images")
    p.set_defaults(func=export)
