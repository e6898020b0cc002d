"""Does the image detectors' training noise keep a head from blowing up on ReLU features?

SqueezeNet 1.1 (ImageNet weights from ``../shared/weights``) features of the first
``--train`` Magnetic Tile training images, 256 px: 12 of the 512 channels of the deepest
level are never on, so their likelihood is unbounded. CFlow-USF (``ImageDetector``
defaults otherwise) is trained for ``--epochs`` epochs with ``noise=0`` and with the default
``noise=0.1``, same seed; the table gives each epoch's mean training loss (a diverged run,
non-finite loss, is reported as such) and the final per-level loss on the training images
without noise (the mean of each level's map). Writes ``noise_check.md`` and ``noise_check.csv`` to ``--out``.

    PYTHONPATH=src .venv/bin/python benchmarks/noise_check.py
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import torch

from usfad.errors import TrainingDivergedError
from usfad.vision import ImageDetector, ImageFolderDataset

ROOT = Path(__file__).resolve().parents[2] / "shared"


@torch.no_grad()
def _level_losses(det: ImageDetector, features: list[torch.Tensor], batch: int = 20) -> list[float]:
    """Mean of each level's map (the head's per-position NLL) over the images, without noise."""
    det.head_.eval()
    totals = [0.0] * len(features)
    for start in range(0, len(features[0]), batch):
        maps = det.head_.anomaly_maps(det.standardized([f[start : start + batch] for f in features]))
        totals = [t + float(m.mean(dim=(1, 2)).sum()) for t, m in zip(totals, maps)]
    return [t / len(features[0]) for t in totals]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=ROOT / "data/images/magnetic_tile")
    parser.add_argument(
        "--weights", type=Path, default=ROOT / "weights/squeezenet1_1_imagenet/squeezenet1_1_imagenet_fp16.pth"
    )
    parser.add_argument("--model", default="cflow")
    parser.add_argument("--train", type=int, default=200, help="training images")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    torch.set_num_threads(1)

    def detector(noise: float) -> ImageDetector:
        return ImageDetector(
            args.model,
            "usf",
            backbone="squeezenet1_1",
            weights=str(args.weights),
            epochs=args.epochs,
            noise=noise,
            random_state=args.seed,
        )

    dataset = ImageFolderDataset(args.images, split="train", image_size=256)
    images = torch.stack([dataset[i].image for i in range(min(args.train, len(dataset)))])
    features = detector(0.0).features(images)
    dead = [int((f.flatten(2).amax(2).amax(0) <= 0).sum()) for f in features]
    rows = []
    for noise in (0.0, 0.1):
        det = detector(noise)
        start = time.perf_counter()
        try:
            det.fit_features(features)
            losses, status = det.history_.train_loss, "ok"
            final = _level_losses(det, features)
        except TrainingDivergedError as exc:
            losses, status, final = [], f"diverged: {exc}", []
        rows.append(
            {
                "noise": noise,
                "status": status,
                "epoch_losses": losses,
                "final_level_losses": final,
                "seconds": time.perf_counter() - start,
            }
        )
        print(rows[-1], flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "noise_check.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["noise", "status", "epoch", "train_loss"])
        for r in rows:
            for epoch, loss in enumerate(r["epoch_losses"], 1):
                writer.writerow([r["noise"], r["status"], epoch, f"{loss:.6g}"])
    lines = [
        "# Training noise on SqueezeNet features (CFlow-USF)",
        "",
        f"`PYTHONPATH=src .venv/bin/python benchmarks/noise_check.py`: {len(images)} Magnetic Tile training images, "
        f"SqueezeNet 1.1 ImageNet features at 256 px (channels {list(map(int, det.backbone_.channels))}; never on "
        f"over these images: {dead}), {args.model} with flow=usf, {args.epochs} epochs, seed {args.seed}, one thread.",
        "",
        "| noise | status | mean training loss per epoch | final loss per level (no noise) | seconds |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        epochs = ", ".join(f"{v:.3g}" for v in r["epoch_losses"]) or "-"
        final = ", ".join(f"{v:.3g}" for v in r["final_level_losses"]) or "-"
        lines.append(f"| {r['noise']} | {r['status'][:80]} | {epochs} | {final} | {r['seconds']:.0f} |")
    (args.out / "noise_check.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
