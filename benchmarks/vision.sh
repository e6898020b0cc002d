#!/usr/bin/env bash
# Image heads (issue 4): FastFlow, CFlow and U-Flow, each with flow=usf and flow=affine, 3 seeds,
# on Magnetic Tile (761 training and 583 test images, MVTec AD layout) with ImageNet MobileNetV2
# features at 256 x 256. The backbone runs once for all 18 runs; the command is resumable
# (rerun it after a crash and the finished runs are skipped). Writes results.jsonl,
# results.md (mean ± std over seeds, diverged count) and overlays of a few test images.
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGES="${USFAD_IMAGES:-../shared/data/images}"
OUT=benchmarks/results/vision_magnetic_tile
USFAD=.venv/bin/usfad
$USFAD image bench "$IMAGES/magnetic_tile" --models fastflow cflow uflow --flows usf affine --seeds 0 1 2 \
    --backbone mobilenet_v2 --image-size 256 --threads 2 -o "$OUT"
