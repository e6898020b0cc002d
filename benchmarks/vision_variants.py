"""Head variants on Magnetic Tile, USF against affine: does more capacity close the gap?

The backbone features (MobileNetV2 ImageNet, 256 px) are extracted once and cached in
``--cache``; each variant is then trained with ``flow="usf"`` and ``flow="affine"`` on the
same features and seed, with the detector's defaults except what the variant changes:

- ``base``: the defaults;
- ``k3``: 3x3 conditioners in every block (FastFlow's ResNet-18 configuration);
- ``wide``: ``hidden_ratio=2``;
- ``deep``: 8 blocks;
- ``long``: 20 epochs.

One row per run (image AUROC, pixel AUROC, AUPRO, training loss per epoch, seconds) goes to the
``--results`` store (:class:`usfad.experiments.store.ResultStore`), keyed by dataset, head and flow,
backbone and variant, and seed; finished runs are skipped.

    PYTHONPATH=src .venv/bin/python benchmarks/vision_variants.py --variants base k3 wide --seeds 0
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from usfad.experiments.engine import run_job
from usfad.experiments.image import ImageRun, cached_features
from usfad.experiments.store import ResultStore, row_key
from usfad.flows import FLOWS

ROOT = Path(__file__).resolve().parents[2] / "shared"
VARIANTS = {
    "base": {},
    "k3": {"head_params": {"kernel_sizes": [3]}},
    "wide": {"hidden_ratio": 2.0},
    "deep": {"n_blocks": 8},
    "long": {"epochs": 20},
}
KEPT = ("image_auroc", "pixel_auroc", "aupro", "train_loss", "fit_seconds", "fit_cpu_seconds", "status", "error")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=ROOT / "data/images/magnetic_tile")
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--model", default="fastflow")
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=sorted(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--flows", nargs="+", choices=FLOWS, default=["usf", "affine"])
    parser.add_argument("--cache", type=Path, default=Path("/tmp/usfad_features"))
    parser.add_argument("--results", type=Path, default=Path(__file__).parent / "results" / "vision_variants.jsonl")
    args = parser.parse_args()
    args.results.parent.mkdir(parents=True, exist_ok=True)
    store = ResultStore(args.results)
    done = store.keys()
    cache, backbone = cached_features(args.images, args.backbone, args.cache)
    with store.writer() as writer:
        for seed in args.seeds:
            for variant in args.variants:
                for flow in args.flows:
                    row = {
                        "group": "image-variants",
                        "dataset": args.images.name,
                        "model": f"{args.model}-{flow}",
                        "preset": f"{args.backbone}-{variant}",
                        "seed": seed,
                        "head": args.model,
                        "flow": flow,
                        "variant": variant,
                    }
                    if row_key(row) in done:
                        continue
                    params = {**VARIANTS[variant], "verbose": False, "backbone": backbone}
                    result = run_job(ImageRun(args.model, flow, seed, params, threads=1), cache).row
                    row.update({k: result.get(k) for k in KEPT})
                    writer.append(row)
                    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
