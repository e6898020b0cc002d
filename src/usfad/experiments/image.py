"""The image benchmark grid: every (head, flow, seed) on one or more datasets, features extracted once.

Each run is an :class:`ImageRun`, a job of :mod:`usfad.experiments.engine`: it trains an
:class:`~usfad.vision.detector.ImageDetector` head on the backbone features of a dataset's
training images (:func:`feature_cache`, computed once per dataset for every run) and scores
its test images: image AUROC (also as ``roc_auc``), pixel AUROC and AUPRO when the test set
has masks (:func:`usfad.vision.metrics.vision_metrics`), the training and scoring seconds,
and the per-epoch ``train_loss`` (read by :func:`usfad.experiments.health.training_health`
in the tables of :mod:`usfad.reporting.image`). A run whose training diverged ends
``failed`` with ``diverged`` true, and the grid goes on.

:func:`run_image_bench` runs the grid behind ``usfad image bench``: one row per run appended
to ``OUT/results.jsonl`` (:class:`~usfad.experiments.store.ResultStore`) as soon as it ends,
runs already there skipped, and overlays of a few test images of each (head, flow)'s first
seed. :func:`cached_features` keeps a folder's features on disk for scripts that rerun the
same images (``benchmarks/vision_*.py``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..plots import write_overlay
from ..runtime import seeded
from ..validation import check_seeds
from .engine import run_job
from .store import Key, ResultStore, row_key

#: the detector settings that name a bench run's preset (``mobilenet_v2-256px-e5-b2``), with
#: their tags: every training setting given to a bench is in the label, so a resumed run never
#: takes rows trained with other settings for its own
PRESET_TAGS = {"epochs": "e", "n_blocks": "b", "batch_size": "bs", "lr": "lr", "noise": "noise", "maps": "maps-"}


def image_preset(params: Mapping[str, Any]) -> str:
    """The preset label of a bench run with detector settings ``params`` (backbone, image
    size and every setting of :data:`PRESET_TAGS` that is given)."""
    label = f"{params['backbone']}-{params['image_size']}px"
    return label + "".join(f"-{tag}{params[key]}" for key, tag in PRESET_TAGS.items() if params.get(key) is not None)


def feature_cache(extractor: Any, train: Any, test: Any) -> dict[str, Any]:
    """What an :class:`ImageRun` reads: the backbone features of both splits (by ``extractor``,
    an ImageDetector), the test labels and, when the test set has them, its masks ``[N, H, W]``."""
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


def cached_features(
    images: str | os.PathLike[str], backbone: str, cache_dir: str | os.PathLike[str], image_size: int = 256
) -> tuple[dict[str, Any], Any]:
    """:func:`feature_cache` of an MVTec-layout folder with the ``backbone``'s ImageNet weights,
    kept in ``cache_dir`` between calls (tensors only, read with ``weights_only=True``), and the
    backbone module (for ``ImageDetector(backbone=...)``)."""
    import torch

    from ..vision.backbone import build_backbone
    from ..vision.data import ImageFolderDataset
    from ..vision.detector import ImageDetector

    images = Path(images)
    with seeded(0):  # the same module as ImageDetector(backbone=name) builds
        module = build_backbone(backbone)
    path = Path(cache_dir) / f"{images.name}_{backbone}_{image_size}.features.pt"
    if path.exists():
        stored = torch.load(path, weights_only=True)
        masks = stored["masks"]
        return {**stored, "labels": stored["labels"].numpy(), "masks": None if masks is None else masks.numpy()}, module
    extractor = ImageDetector(backbone=module, image_size=image_size, verbose=False)
    train, test = (ImageFolderDataset(images, split=split, image_size=image_size) for split in ("train", "test"))
    cache = feature_cache(extractor, train, test)
    path.parent.mkdir(parents=True, exist_ok=True)
    masks = cache["masks"]
    tensors = {**cache, "labels": torch.from_numpy(cache["labels"])}
    tensors["masks"] = None if masks is None else torch.from_numpy(np.ascontiguousarray(masks))
    torch.save(tensors, path)
    return cache, module


@dataclass(frozen=True)
class ImageRun:
    """One (head, flow, seed) on one dataset's :func:`feature_cache`: a job of
    :mod:`usfad.experiments.engine` (run in this process; the cache is its ``data``)."""

    head: str
    flow: str
    seed: int
    #: ImageDetector settings (``backbone`` may be the module the cache was made with)
    params: Mapping[str, Any] = field(default_factory=dict)
    dataset: str = ""
    preset: str = ""
    backbone: str = ""  #: the backbone's name, for the row
    group: str = "image"
    n_train: int | None = None
    n_test: int | None = None
    threads: int = 1

    @property
    def key(self) -> Key:
        return row_key(self.base_row())

    def base_row(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "dataset": self.dataset,
            "preset": self.preset,
            "backbone": self.backbone,
            "model": f"{self.head}-{self.flow}",
            "head": self.head,
            "flow": self.flow,
            "seed": self.seed,
            "n_train": self.n_train,
            "n_test": self.n_test,
        }

    def load(self) -> Any:
        raise ValueError("an image run reads the feature cache it is given (run_job(run, cache))")

    def run(self, row: dict[str, Any], data: Mapping[str, Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Train and score; returns the test scores and maps (for overlays)."""
        import torch

        from ..vision.detector import ImageDetector
        from ..vision.metrics import vision_metrics

        cache = data if data is not None else self.load()
        torch.set_num_threads(self.threads)
        detector = ImageDetector(self.head, self.flow, random_state=self.seed, **self.params)
        start, cpu = time.perf_counter(), time.process_time()
        detector.fit_features(cache["train"])
        row["fit_seconds"] = round(time.perf_counter() - start, 2)
        row["fit_cpu_seconds"] = round(time.process_time() - cpu, 2)  # all threads; wall time on a shared machine
        start = time.perf_counter()
        scores, maps = detector.score_maps_features(cache["test"])
        row["score_seconds"] = round(time.perf_counter() - start, 2)
        masks = cache["masks"] if cache["has_masks"] else None
        metrics = vision_metrics(cache["labels"], scores, masks, maps if masks is not None else None)
        row["roc_auc"] = metrics["image_auroc"]
        row.update(metrics)
        losses = detector.history_.train_loss
        row.update(epochs=len(losses), final_loss=losses[-1], train_loss=[float(x) for x in losses])
        return scores, maps


def image_datasets(
    root: str | os.PathLike[str], image_size: int, normal_classes: Sequence[int] | None = None
) -> list[tuple[Any, Any, str]]:
    """``(train set, test set, name)`` per dataset: an MVTec-layout folder, or Fashion-MNIST's IDX
    files with one class normal, one dataset per class in ``normal_classes``."""
    from ..vision.data import FashionMNISTOneClass, ImageFolderDataset, is_fashion_mnist

    root = Path(root)
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


def _overlays(out: Path, name: str, dataset: Any, scores: np.ndarray, maps: np.ndarray) -> None:
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


@dataclass
class ImageBenchResult:
    """What :func:`run_image_bench` did: runs planned and already stored, and the stored rows
    of this bench's preset and datasets (old and new)."""

    planned: int
    skipped: int
    rows: list[dict[str, Any]]
    results: Path


def run_image_bench(
    root: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    models: Sequence[str],
    flows: Sequence[str],
    seeds: Sequence[int],
    params: Mapping[str, Any],
    normal_classes: Sequence[int] | None = None,
    threads: int | None = None,
    overlays: bool = True,
    progress: bool = True,
    log: Callable[[str], None] | None = print,
) -> ImageBenchResult:
    """Run every (model, flow, seed) on ``root``'s dataset(s) (:func:`image_datasets`), appending
    one row per run to ``out/results.jsonl``; ``params`` are the ImageDetector settings (with
    ``backbone`` by name and ``image_size``; they name the preset, :func:`image_preset`).
    ``threads``: torch threads (default: torch's). ``log`` gets one line per dataset."""
    import torch
    from tqdm.auto import tqdm

    from ..vision.detector import ImageDetector

    seeds = check_seeds(seeds)
    out = Path(out)
    datasets = image_datasets(root, int(params["image_size"]), normal_classes)
    store = ResultStore(out / "results.jsonl")
    preset = image_preset(params)
    threads = threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    extractor = ImageDetector(random_state=0, **{**params, "verbose": progress})
    done = store.keys()
    planned = skipped = 0
    settings = {**params, "verbose": False}
    for train, test, dataset in datasets:
        common = dict(dataset=dataset, preset=preset, backbone=str(params["backbone"]), threads=threads)
        common.update(n_train=len(train), n_test=len(test))
        runs = [(m, f, s) for m in models for f in flows for s in seeds]
        todo = [run for run in runs if ImageRun(*run, settings, **common).key not in done]
        planned, skipped = planned + len(runs), skipped + len(runs) - len(todo)
        if not todo:
            continue
        start = time.perf_counter()
        cache = feature_cache(extractor, train, test)
        if log is not None:
            log(
                f"{dataset}: features of {len(train)} train and {len(test)} test images ({params['backbone']}) "
                f"in {time.perf_counter() - start:.1f} s; {len(todo)} of {len(runs)} runs to do"
            )
        with store.writer() as writer:
            for head, flow, seed in tqdm(todo, desc=f"image bench {dataset}", unit="run", disable=not progress):
                job = ImageRun(head, flow, seed, {**settings, "backbone": extractor.backbone_}, **common)
                row, output = run_job(job, cache)
                writer.append(row)
                if output is not None and seed == min(seeds) and overlays:
                    name = f"{head}-{flow}-seed{seed}"
                    _overlays(out, name if len(datasets) == 1 else f"{dataset}_{name}", test, *output)
        del cache
    names = {name for _, _, name in datasets}
    rows = [r for r in store.rows() if r.get("preset") == preset and r.get("dataset") in names]
    return ImageBenchResult(planned, skipped, rows, store.path)


__all__ = [
    "PRESET_TAGS",
    "ImageBenchResult",
    "ImageRun",
    "cached_features",
    "feature_cache",
    "image_datasets",
    "image_preset",
    "run_image_bench",
]
