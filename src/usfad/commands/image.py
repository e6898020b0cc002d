"""``usfad image fit | predict | bench``: image anomaly detection on MVTec-layout folders.

- ``usfad image fit ROOT -o MODEL`` trains an :class:`~usfad.vision.detector.ImageDetector`
  (FastFlow, CFlow or U-Flow head; ``--flow usf | usf-gin | affine``) on ``ROOT/train/good``.
- ``usfad image predict MODEL IMAGES... -o DIR`` scores image files (or every image in
  folders), writing one heat-map overlay PNG per image and ``scores.csv``.
- ``usfad image bench ROOT -o DIR`` runs every (model, flow, seed) on one category with the
  backbone features extracted once for all runs; one row per run is appended to
  ``DIR/results.jsonl`` as soon as it ends (a rerun skips the runs already there), then
  ``DIR/results.md`` (mean +- std over seeds) and overlays of a few test images are written.
"""

from __future__ import annotations

import argparse
import csv
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, TrainingDivergedError
from ..flows import FLOWS, is_usf
from ..outputs import check_output_dir, check_output_file
from ..reporting.tables import markdown_table, mean_std
from ..vision.detector import MAPS
from ..vision.heads import HEADS
from .args import int_list, positive_int, split_list

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


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

    check_output_file(args.output, inputs=[args.root], what="model file")
    detector = ImageDetector(
        args.model, args.flow, random_state=args.random_state, verbose=not args.quiet, **_detector_params(args)
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
    return 0


# --- predict --------------------------------------------------------------------------
def _image_files(paths: list[str]) -> list[Path]:
    files: list[Path] = []
    for text in paths:
        path = Path(text)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise DataError(f"{path}: no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"no image file or folder at {path}")
    return files


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


def write_overlay(
    path: Path,
    image: np.ndarray,
    amap: np.ndarray,
    vmin: float,
    vmax: float,
    mask: np.ndarray | None = None,
    title: str | None = None,
) -> Path:
    """Save ``image`` ``[H, W, 3]`` in [0, 1] with ``amap`` ``[H, W]`` blended on top (jet, range vmin..vmax)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h, w = image.shape[:2]
    scale = max(1.0, 420 / max(h, w))  # small images are shown larger, so the title fits
    pad = 24 if title else 0  # pixels above the image for the title
    fig = plt.figure(figsize=(w * scale / 100, (h * scale + pad) / 100), dpi=100)
    ax = fig.add_axes((0, 0, 1, h * scale / (h * scale + pad)))
    ax.imshow(image)
    ax.imshow(amap, cmap="jet", alpha=0.45, vmin=vmin, vmax=vmax if vmax > vmin else vmin + 1)
    if mask is not None and mask.any():
        ax.contour(mask, levels=[0.5], colors="white", linewidths=1.0)
    ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=7, y=0.995, va="top")
    fig.savefig(path)
    plt.close(fig)
    return path


def predict(args: argparse.Namespace) -> int:
    import torch
    import torch.nn.functional as F

    from ..vision.data import read_image
    from ..vision.detector import ImageDetector

    detector = ImageDetector.load(args.model, device=args.device)
    if args.maps is not None:
        detector.set_params(maps=args.maps)
    out = check_output_dir(args.output, inputs=[args.model])
    files = _image_files(args.images)
    size = int(detector.image_size)
    images = torch.stack([read_image(f, size) for f in files])
    scores, maps = detector.predict(images)
    lo, hi = float(np.percentile(maps, 1)), float(maps.max())  # one colour scale for every image of the run
    with open(out / "scores.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "score", "overlay"])
        for f, s, name, amap in zip(files, scores, _overlay_names(files), maps):
            original = read_image(f, _native_size(f))
            full = F.interpolate(torch.from_numpy(amap)[None, None], size=original.shape[-2:], mode="bilinear")[0, 0]
            write_overlay(out / name, original.permute(1, 2, 0).numpy(), full.numpy(), lo, hi)
            writer.writerow([str(f), f"{float(s):.6g}", name])
    order = np.argsort(-scores)
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
def _bench_row(base: dict[str, Any], model: str, flow: str, seed: int) -> dict[str, Any]:
    return {**base, "model": f"{model}-{flow}", "head": model, "flow": flow, "seed": seed}


def run_one(
    model: str, flow: str, seed: int, params: dict[str, Any], backbone: Any, cache: dict[str, Any], threads: int
) -> tuple[dict[str, Any], np.ndarray | None, np.ndarray | None]:
    """Train and evaluate one (model, flow, seed); never raises for a diverged or failed run."""
    import torch

    from ..vision.detector import ImageDetector
    from ..vision.metrics import vision_metrics

    torch.set_num_threads(threads)
    row: dict[str, Any] = {"status": "ok", "error": None, "diverged": False}
    detector = ImageDetector(model, flow, random_state=seed, **{**params, "backbone": backbone})
    start, cpu = time.perf_counter(), time.process_time()
    try:
        detector.fit_features(cache["train"])
        row["fit_seconds"] = round(time.perf_counter() - start, 2)
        row["fit_cpu_seconds"] = round(time.process_time() - cpu, 2)  # all threads; wall time on a shared machine
        start = time.perf_counter()
        scores, maps = detector.predict_features(cache["test"])
        row["score_seconds"] = round(time.perf_counter() - start, 2)
    except (TrainingDivergedError, DataError) as exc:  # DataError: non-finite scores
        row.update(status="failed", diverged=True, error=str(exc), fit_seconds=round(time.perf_counter() - start, 2))
        return row, None, None
    except Exception as exc:  # noqa: BLE001 (a failed run is a result; the grid goes on)
        row.update(status="failed", error=f"{type(exc).__name__}: {exc}")
        return row, None, None
    masks = cache["masks"] if cache["has_masks"] else None
    metrics = vision_metrics(cache["labels"], scores, masks, maps if masks is not None else None)
    row["roc_auc"] = metrics["image_auroc"]
    row.update(metrics)
    row["epochs"] = len(detector.history_.train_loss)
    row["final_loss"] = detector.history_.train_loss[-1]
    row["train_loss"] = [float(x) for x in detector.history_.train_loss]  # per epoch: did it blow up on the way?
    return row, scores, maps


def feature_cache(extractor: Any, train: Any, test: Any) -> dict[str, Any]:
    """What :func:`run_one` needs: the backbone features of both splits (by ``extractor``, an
    ImageDetector), the test labels and, when the test set has them, its masks ``[N, H, W]``."""
    cache = {
        "train": extractor.features(train, split="train"),
        "test": extractor.features(test, split="test"),
        "labels": np.asarray(test.labels),
        "has_masks": bool(test.has_masks),
        "masks": None,
    }
    if cache["has_masks"]:
        masks = np.asarray(test.masks())
        cache["masks"] = masks[:, 0] if masks.ndim == 4 else masks
    return cache


def _bench_overlays(out: Path, name: str, dataset: Any, scores: np.ndarray, maps: np.ndarray) -> None:
    """The highest-scored defect, the lowest-scored defect and the highest-scored normal image."""
    labels = np.asarray(dataset.labels)
    picks = []
    defect, normal = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    if len(defect):
        picks.append(("best-defect", defect[np.argmax(scores[defect])]))
        picks.append(("worst-defect", defect[np.argmin(scores[defect])]))
    if len(normal):
        picks.append(("worst-normal", normal[np.argmax(scores[normal])]))
    lo, hi = float(np.percentile(maps, 1)), float(maps.max())
    for tag, i in picks:
        sample = dataset[int(i)]
        write_overlay(
            out / f"{name}_{tag}.png",
            sample.image.permute(1, 2, 0).numpy(),
            maps[i],
            lo,
            hi,
            mask=sample.mask[0].numpy(),
            title=f"{name} {tag}: {Path(sample.path).parent.name}/{Path(sample.path).name} score {scores[i]:.3g}",
        )


#: the name benchmarks/vision_summary.py imports
_fmt = mean_std

#: a run "blew up" when its last epoch's loss is this many nats per dimension above its best epoch's
BLOW_UP_NATS = 1.0
#: ... or above this many nats per dimension: on standardised features (the detector's default) a
#: Gaussian alone scores about 1.4, so a loss this high means the flow never settled
UNSETTLED_NATS = 10.0
#: a run "jumped" when its epoch loss ever rose this many nats per dimension above its best so far
JUMP_NATS = 0.1


def blew_up(row: dict[str, Any]) -> bool:
    """Whether a finished run's training loss stayed finite but ended far above its best epoch's
    (``BLOW_UP_NATS``: thrown off by a bad step) or far above any sane value (``UNSETTLED_NATS``)."""
    losses = [x for x in row.get("train_loss") or [] if math.isfinite(x)]
    return bool(losses) and (losses[-1] > min(losses) + BLOW_UP_NATS or losses[-1] > UNSETTLED_NATS)


def largest_rise(row: dict[str, Any]) -> float:
    """How far the epoch loss ever climbed above the lowest loss of the epochs before it (nats per
    dimension; ``0.0`` when it fell every epoch, ``inf`` when it became non-finite). Unlike
    :func:`blew_up` it also counts a jump the run recovered from."""
    best, rise = math.inf, 0.0
    for loss in row.get("train_loss") or []:
        if not math.isfinite(loss):
            return math.inf
        if math.isfinite(best):
            rise = max(rise, loss - best)
        best = min(best, loss)
    return rise


Group = tuple[str, str, str]  # (dataset, head, flow)
#: the metrics of an image run's row, and their column labels
METRIC_LABELS = {"image_auroc": "image AUROC", "pixel_auroc": "pixel AUROC", "aupro": "AUPRO"}


def _groups(rows: list[dict[str, Any]]) -> dict[Group, list[dict[str, Any]]]:
    """Rows per (dataset, head, flow): datasets in order of appearance, then heads and flows in
    their canonical order."""
    groups: dict[Group, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["head"], r["flow"]), []).append(r)
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    order = sorted(groups, key=lambda k: (datasets.index(k[0]), HEADS.index(k[1]), FLOWS.index(k[2])))
    return {k: groups[k] for k in order}


def _ok(group: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in group if r.get("status") == "ok"]


def run_cells(group: list[dict[str, Any]]) -> dict[str, str]:
    """Table cells for one group of runs, by column name: the number of runs, of diverged runs
    (non-finite loss), of runs that blew up (:func:`blew_up`) or jumped (a :func:`largest_rise`
    above ``JUMP_NATS``), the largest rise, the metrics (mean ± std) and the training CPU time.
    A count needing the per-epoch losses is ``-`` when no finished row kept them."""
    ok = _ok(group)
    known = [r for r in ok if r.get("train_loss")]  # rows from before the losses were kept: unknown
    rises = [largest_rise(r) for r in known]
    cells = {
        "runs": str(len(group)),
        "diverged": str(sum(bool(r.get("diverged")) for r in group)),
        "blew up": str(sum(blew_up(r) for r in known)) if known else "-",
        "jumped": str(sum(rise > JUMP_NATS for rise in rises)) if known else "-",
        "largest rise": f"{max(rises):.2g}" if known else "-",
    }
    cells.update({label: mean_std([r.get(key) for r in ok]) for key, label in METRIC_LABELS.items()})
    # CPU time, not wall time: it does not depend on how many runs shared the machine
    cells["train CPU s"] = mean_std([r.get("fit_cpu_seconds") for r in ok], 1)
    return cells


def _table_lines(groups: dict[Group, list[dict[str, Any]]], with_dataset: bool) -> list[str]:
    cols = ["runs", "diverged", "blew up", "largest rise", *METRIC_LABELS.values(), "train CPU s"]
    head_cols = ["dataset", "model", "flow"] if with_dataset else ["model", "flow"]
    rows = []
    for (dataset, head, flow), group in groups.items():
        cells = run_cells(group)
        rows.append([dataset, head, flow][-len(head_cols) :] + [cells[c] for c in cols])
    return markdown_table(head_cols + cols, rows).split("\n")


def _summary_lines(groups: dict[Group, list[dict[str, Any]]]) -> list[str]:
    """Per (model, flow): image AUROC averaged over datasets (each the mean over its seeds), and for
    a USF head, on how many datasets it is at least as high as the affine head."""
    mean: dict[Group, float] = {}
    for key, group in groups.items():
        vals = [r.get("image_auroc") for r in _ok(group)]
        vals = [v for v in vals if v is not None and math.isfinite(v)]
        mean[key] = float(np.mean(vals)) if vals else math.nan
    rows = []
    heads = sorted({(h, f) for _, h, f in mean}, key=lambda k: (HEADS.index(k[0]), FLOWS.index(k[1])))
    for head, flow in heads:
        per = {d: v for (d, h, f), v in mean.items() if (h, f) == (head, flow) and math.isfinite(v)}
        versus = "-"
        if is_usf(flow):
            pairs = [(v, mean.get((d, head, "affine"), math.nan)) for d, v in per.items()]
            pairs = [(u, a) for u, a in pairs if math.isfinite(a)]
            versus = f"{sum(u >= a for u, a in pairs)} of {len(pairs)}" if pairs else "-"
        avg = f"{np.mean(list(per.values())):.3f}" if per else "-"
        rows.append([head, flow, str(len(per)), avg, versus])
    headers = ["model", "flow", "datasets", "mean image AUROC", "datasets with this USF >= affine"]
    return markdown_table(headers, rows).split("\n")


def write_bench_table(rows: list[dict[str, Any]], path: Path) -> Path:
    """Markdown table: mean ± std over seeds per (model, flow), with the counts of diverged runs
    (non-finite loss) and of runs that blew up (see :func:`blew_up`), and the largest rise of any
    run's epoch loss above its best so far (:func:`largest_rise`); for several datasets one
    row per (dataset, model, flow) and a summary over the datasets."""
    groups = _groups(rows)
    several = len({dataset for dataset, _, _ in groups}) > 1
    lines = _table_lines(groups, several)
    if several:
        lines += ["", "Over the datasets (image AUROC):", "", *_summary_lines(groups)]
    failed = [r for r in rows if r.get("status") != "ok"]
    if failed:
        lines += ["", "Failed runs:", ""]
        lines += [f"- {r['dataset']} {r['model']} seed {r['seed']}: {r.get('error')}" for r in failed]
    path.write_text("\n".join(lines) + "\n")
    return path


def _bench_datasets(root: Path, image_size: int, normal_classes: list[int] | None) -> list[tuple[Any, Any, str]]:
    """``(train set, test set, name)`` per dataset: an MVTec-layout folder, or Fashion-MNIST's IDX
    files with one class normal, one dataset per class in ``normal_classes``."""
    from ..vision.data import FashionMNISTOneClass, ImageFolderDataset, is_fashion_mnist

    if is_fashion_mnist(root):
        if not normal_classes:
            raise ValueError(f"{root} holds Fashion-MNIST: say which classes are normal with --normal-class (0..9)")
        return [
            (*(FashionMNISTOneClass(root, k, split, image_size) for split in ("train", "test")), f"{root.name}-{k}")
            for k in normal_classes
        ]
    if normal_classes:
        raise ValueError(f"--normal-class is for Fashion-MNIST's IDX files; {root} is not such a folder")
    train, test = (ImageFolderDataset(root, split=split, image_size=image_size) for split in ("train", "test"))
    return [(train, test, root.name)]


def bench(args: argparse.Namespace) -> int:
    import torch
    from tqdm.auto import tqdm

    from ..bench.store import ResultStore, row_key
    from ..vision.detector import ImageDetector

    models = split_list(args.models) or list(HEADS)
    flows = split_list(args.flows) or list(FLOWS)
    seeds = int_list(args.seeds, "seeds") or [0, 1, 2]
    for m in models:
        if m not in HEADS:
            raise ValueError(f"--models must be among {HEADS}, got {m!r}")
    for f in flows:
        if f not in FLOWS:
            raise ValueError(f"--flows must be among {FLOWS}, got {f!r}")
    out = check_output_dir(args.output, inputs=[args.root])
    datasets = _bench_datasets(Path(args.root), args.image_size, args.normal_class)
    store = ResultStore(out / "results.jsonl")
    params = _detector_params(args)
    params["verbose"] = False
    # every training setting given on the command line is in the label, so a resumed run never
    # takes rows trained with other settings for its own
    tags = {"epochs": "e", "n_blocks": "b", "batch_size": "bs", "lr": "lr", "noise": "noise", "maps": "maps-"}
    preset = f"{args.backbone}-{args.image_size}px" + "".join(
        f"-{tag}{getattr(args, key)}" for key, tag in tags.items() if getattr(args, key, None) is not None
    )
    progress = not args.no_progress
    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    extractor = ImageDetector(random_state=0, **{**params, "verbose": progress})
    done = store.keys()
    planned = skipped = 0
    for train, test, dataset in datasets:
        base = {"group": "image", "dataset": dataset, "preset": preset, "backbone": args.backbone}
        runs = [(m, f, s) for m in models for f in flows for s in seeds]
        todo = [run for run in runs if row_key(_bench_row(base, *run)) not in done]
        planned, skipped = planned + len(runs), skipped + len(runs) - len(todo)
        if not todo:
            continue
        start = time.perf_counter()
        cache = feature_cache(extractor, train, test)
        print(
            f"{dataset}: features of {len(train)} train and {len(test)} test images ({args.backbone}) "
            f"in {time.perf_counter() - start:.1f} s; {len(todo)} of {len(runs)} runs to do"
        )
        overlays_for = {(m, f): min(seeds) for m in models for f in flows}
        with store.writer() as writer:
            for m, f, s in tqdm(todo, desc=f"image bench {dataset}", unit="run", disable=not progress):
                row, scores, maps = run_one(m, f, s, params, extractor.backbone_, cache, threads)
                writer.append({**_bench_row(base, m, f, s), **row, "n_train": len(train), "n_test": len(test)})
                if scores is not None and overlays_for[(m, f)] == s and not args.no_overlays:
                    name = f"{m}-{f}-seed{s}" if len(datasets) == 1 else f"{dataset}_{m}-{f}-seed{s}"
                    _bench_overlays(out, name, test, scores, maps)
        del cache
    names = {name for _, _, name in datasets}
    rows = [r for r in store.rows() if r.get("preset") == preset and r.get("dataset") in names]
    table = write_bench_table(rows, out / "results.md")
    print(table.read_text())
    print(f"{planned} runs planned, {skipped} already in {store.path}; table in {table}")
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
