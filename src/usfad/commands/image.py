"""``usfad image fit | predict | bench``: image anomaly detection on MVTec-layout folders.

- ``usfad image fit ROOT -o MODEL`` trains an :class:`~usfad.vision.detector.ImageDetector`
  (FastFlow, CFlow or U-Flow head; ``--flow usf | usf-gin | affine``) on ``ROOT/train/good``.
- ``usfad image predict MODEL IMAGES... -o DIR`` scores image files (or every image in
  folders), writing one heat-map overlay PNG per image and ``scores.csv``.
- ``usfad image bench ROOT -o DIR`` runs every (model, flow, seed) on one category with the
  backbone features extracted once for all runs (:func:`usfad.experiments.image.run_image_bench`);
  one row per run is appended to ``DIR/results.jsonl`` as soon as it ends (a rerun skips the
  runs already there), then ``DIR/results.md`` (mean +- std over seeds,
  :func:`usfad.reporting.image.write_bench_table`) and overlays of a few test images are written.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..flows import FLOWS
from ..outputs import check_output_dir, check_output_file
from ..plots import write_overlay
from ..validation import check_seeds
from ..vision.detector import MAPS
from ..vision.heads import HEADS
from .args import int_list, positive_int, split_list


def _weights(text: str | None) -> str | None:
    if text is None:
        return "default"
    return None if text.lower() == "none" else text


def _detector_params(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {
        "backbone": args.backbone,
        "weights": _weights(args.weights),
        "image_size": args.image_size,
        "device": args.device,
    }
    for key in ("epochs", "n_blocks", "batch_size", "lr", "noise", "maps"):
        value = getattr(args, key, None)
        if value is not None:
            params[key] = value
    if getattr(args, "layers", None):
        params["layers"] = int_list(args.layers, "layers")
    return params


# --- fit ------------------------------------------------------------------------------
def fit(args: argparse.Namespace) -> int:
    from ..vision.detector import ImageDetector

    check_output_file(args.output, inputs=[args.root], what="model file", example="model.usfad")
    threshold = {"none": None, "conformal": "conformal"}[args.threshold]
    if args.alpha is not None and threshold is None:
        raise ValueError("--alpha sets the false-alarm rate of --threshold conformal; give both")
    detector = ImageDetector(
        args.model,
        args.flow,
        threshold=threshold,
        alpha=0.01 if args.alpha is None else args.alpha,
        random_state=args.random_state,
        verbose=not args.quiet,
        **_detector_params(args),
    )
    start = time.perf_counter()
    detector.fit(args.root)
    seconds = time.perf_counter() - start
    path = detector.save(args.output)
    losses = detector.history_.train_loss
    print(
        f"fitted {args.model} ({args.flow}) on {args.root} with {detector.backbone_name} features in {seconds:.1f} s; "
        f"loss {losses[0]:.4g} -> {losses[-1]:.4g} over {len(losses)} epochs; saved to {path}"
    )
    if threshold is not None:
        print(
            f"threshold {detector.threshold_:.6g}: conformal at alpha {detector.alpha} from "
            f"{len(detector.calibration_scores_)} held-out training images"
        )
    return 0


# --- predict --------------------------------------------------------------------------
def _overlay_names(files: list[Path]) -> list[str]:
    """``<stem>_overlay.png``, made unique with the parent folder's name (and an index) when stems repeat."""
    names, seen = [], set()
    for i, f in enumerate(files):
        name = f"{f.stem}_overlay.png"
        if name in seen:
            name = f"{f.parent.name}_{f.stem}_overlay.png"
        if name in seen:
            name = f"{i:05d}_{f.stem}_overlay.png"
        seen.add(name)
        names.append(name)
    return names


def predict(args: argparse.Namespace) -> int:
    import torch
    import torch.nn.functional as F

    from ..vision.data import image_files, read_image
    from ..vision.detector import ImageDetector

    detector = ImageDetector.load(args.model, device=args.device)
    if args.maps is not None:
        detector.set_params(maps=args.maps)
    out = check_output_dir(args.output, inputs=[args.model])
    files = image_files(args.images)
    size = int(detector.image_size)
    images = torch.stack([read_image(f, size) for f in files])
    scores, maps = detector.score_maps(images)
    # with a conformal threshold, each image's label and p-value (predict's rule: score > threshold_)
    labelled = hasattr(detector, "threshold_")
    p_values = detector.p_values(images) if labelled else None
    lo, hi = float(np.percentile(maps, 1)), float(maps.max())  # one colour scale for every image of the run
    with open(out / "scores.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "score", *(["label", "p_value"] if labelled else []), "overlay"])
        for i, (f, s, name, amap) in enumerate(zip(files, scores, _overlay_names(files), maps)):
            original = read_image(f, _native_size(f))
            full = F.interpolate(torch.from_numpy(amap)[None, None], size=original.shape[-2:], mode="bilinear")[0, 0]
            write_overlay(out / name, original.permute(1, 2, 0).numpy(), full.numpy(), lo, hi)
            extra = [int(s > detector.threshold_), f"{float(p_values[i]):.6g}"] if labelled else []
            writer.writerow([str(f), f"{float(s):.6g}", *extra, name])
    order = np.argsort(-scores)
    if labelled:
        print(f"{int((scores > detector.threshold_).sum())} of {len(files)} image(s) flagged at alpha {detector.alpha}")
    print(
        f"scored {len(files)} image(s) with {detector.model} ({detector.flow}); scores min {scores.min():.4g}, "
        f"max {scores.max():.4g} (highest: {files[order[0]].name}); overlays and scores.csv in {out}"
    )
    return 0


def _native_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as im:
        return im.height, im.width


# --- bench ----------------------------------------------------------------------------
def bench(args: argparse.Namespace) -> int:
    from ..experiments.image import run_image_bench
    from ..reporting.image import write_bench_table

    models = split_list(args.models) or list(HEADS)
    flows = split_list(args.flows) or list(FLOWS)
    seeds = check_seeds(int_list(args.seeds, "seeds") or [0, 1, 2])  # before the output folder is made
    for m in models:
        if m not in HEADS:
            raise ValueError(f"--models must be among {HEADS}, got {m!r}")
    for f in flows:
        if f not in FLOWS:
            raise ValueError(f"--flows must be among {FLOWS}, got {f!r}")
    out = check_output_dir(args.output, inputs=[args.root])
    result = run_image_bench(
        args.root,
        out,
        models=models,
        flows=flows,
        seeds=seeds,
        params=_detector_params(args),
        normal_classes=args.normal_class,
        threads=args.threads,
        overlays=not args.no_overlays,
        progress=not args.no_progress,
    )
    table = write_bench_table(result.rows, out / "results.md")
    print(table.read_text())
    print(f"{result.planned} runs planned, {result.skipped} already in {result.results}; table in {table}")
    return 0


# --- parsers --------------------------------------------------------------------------


def _add_backbone_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backbone", default="mobilenet_v2", help="frozen feature extractor (default: mobilenet_v2)")
    p.add_argument(
        "--weights",
        metavar="PATH",
        help="backbone weights file (default: the installed ImageNet weights; 'none' = random, for smoke tests)",
    )
    p.add_argument("--layers", nargs="+", metavar="I", help="backbone levels (default: the backbone's)")
    p.add_argument("--image-size", type=positive_int, default=256, metavar="PX", help="image side (default: 256)")
    p.add_argument("--epochs", type=positive_int, metavar="N", help="training epochs (default: the model's)")
    p.add_argument("--n-blocks", type=positive_int, metavar="N", help="flow blocks per level (default: the model's)")
    p.add_argument("--batch-size", type=positive_int, metavar="N", help="images per step (default: 8)")
    p.add_argument("--lr", type=float, metavar="LR", help="Adam step size (default: 1e-3)")
    p.add_argument(
        "--noise", type=float, metavar="SD", help="Gaussian noise on the standardised training features (default: 0.1)"
    )
    p.add_argument(
        "--maps",
        choices=MAPS,
        help="published: the head's own maps (FastFlow, U-Flow: latent distance); density: per-position NLL "
        "with the log-det (default: published)",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: cpu)")


def add_commands(subparsers: Any) -> None:
    image = subparsers.add_parser(
        "image",
        help="image anomaly detection: FastFlow, CFlow, U-Flow heads with USF or affine flows",
        description="Train, apply and benchmark image anomaly detectors on MVTec-layout folders.",
    )
    sub = image.add_subparsers(dest="image_command", metavar="SUBCOMMAND")

    p = sub.add_parser(
        "fit",
        help="train a detector on ROOT/train/good and save it",
        description="Train an image detector on the normal images of an MVTec-layout folder and save it.",
    )
    p.add_argument("root", metavar="ROOT", help="category folder with train/good (MVTec AD layout)")
    p.add_argument("--model", choices=HEADS, default="fastflow", help="head (default: fastflow)")
    p.add_argument(
        "--flow",
        choices=FLOWS,
        default="usf",
        help="usf (uniformly scaling), usf-gin (uniformly scaling, GIN couplings) or affine (default: usf)",
    )
    _add_backbone_args(p)
    p.add_argument(
        "--threshold",
        choices=("none", "conformal"),
        default="none",
        help="none: scores and maps only; conformal: hold out training images to set a threshold with a "
        "false-alarm rate of at most --alpha, so predict writes labels and p-values (default: none)",
    )
    p.add_argument(
        "--alpha", type=float, metavar="A", help="false-alarm rate for --threshold conformal (default: 0.01)"
    )
    p.add_argument("--random-state", type=int, default=0, metavar="SEED", help="seed (default: 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("-o", "--output", required=True, type=Path, metavar="MODEL", help="model file to write")
    p.set_defaults(image_func=fit)

    p = sub.add_parser(
        "predict",
        help="score images with a saved detector; overlays + scores.csv",
        description="Score image files (or every image in folders): one overlay PNG per image and scores.csv.",
    )
    p.add_argument("model", metavar="MODEL", help="model file written by usfad image fit")
    p.add_argument("images", metavar="IMAGES", nargs="+", help="image files or folders")
    p.add_argument("--maps", choices=MAPS, help="score with these maps instead of the model's (see image fit)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: cpu)")
    p.add_argument("-o", "--output", required=True, type=Path, metavar="DIR", help="folder for overlays and scores")
    p.set_defaults(image_func=predict)

    p = sub.add_parser(
        "bench",
        help="every (model, flow, seed) on one category, features extracted once",
        description=(
            "Run every (model, flow, seed) on ROOT's train/test split with one feature extraction for all runs; "
            "results.jsonl gets one row per run as it ends (rerunning skips the runs already there)."
        ),
    )
    p.add_argument(
        "root",
        metavar="ROOT",
        help="category folder in MVTec AD layout (train/good, test, ground_truth), or Fashion-MNIST's IDX files",
    )
    p.add_argument(
        "--normal-class",
        nargs="+",
        type=int,
        choices=range(10),
        metavar="K",
        help=(
            "Fashion-MNIST only: the normal class, one dataset per class given (trained on that class's "
            "training images, tested on all 10,000 test images)"
        ),
    )
    p.add_argument("--models", nargs="+", metavar="MODEL", help=f"heads (default: {' '.join(HEADS)})")
    p.add_argument("--flows", nargs="+", metavar="FLOW", help=f"flows (default: {' '.join(FLOWS)})")
    p.add_argument("--seeds", nargs="+", metavar="SEED", help="seeds (default: 0 1 2)")
    _add_backbone_args(p)
    p.add_argument("--threads", type=positive_int, metavar="N", help="torch threads (default: torch's)")
    p.add_argument("--no-overlays", action="store_true", help="write no overlay PNGs")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("-o", "--output", required=True, type=Path, metavar="DIR", help="folder for results")
    p.set_defaults(image_func=bench)
    image.set_defaults(func=_dispatch, image_parser=image)


def _dispatch(args: argparse.Namespace) -> int:
    func = getattr(args, "image_func", None)
    if func is None:
        args.image_parser.print_help()
        return 2
    return int(func(args) or 0)
