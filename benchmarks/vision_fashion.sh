#!/usr/bin/env bash
# Image heads on a second dataset (issue 4): Fashion-MNIST one-class, each class in turn normal
# (trained on its 6,000 training images, tested on all 10,000 test images, image AUROC only).
# FastFlow, CFlow and U-Flow, each with flow=usf, usf-gin and affine, seed 0, ImageNet MobileNetV2
# features at 64 x 64 and the detector's defaults. Two processes (classes 0-4 and 5-9), one thread
# each; then the rows are joined and the table over all classes is written (nothing left to run).
# Resumable: rerun the script after a crash and finished runs are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGES="${USFAD_IMAGES:-../shared/data/images}"
OUT=benchmarks/results/vision_fashion_mnist
USFAD=.venv/bin/usfad
ARGS=("$IMAGES/fashion_mnist" --models fastflow cflow uflow --flows usf usf-gin affine --seeds 0 --backbone mobilenet_v2 --image-size 64)
$USFAD image bench "${ARGS[@]}" --normal-class 0 1 2 3 4 --threads 1 --no-progress --no-overlays -o "$OUT/part0" &
$USFAD image bench "${ARGS[@]}" --normal-class 5 6 7 8 9 --threads 1 --no-progress --no-overlays -o "$OUT/part1" &
wait
cat "$OUT"/part{0,1}/results.jsonl > "$OUT/results.jsonl"
$USFAD image bench "${ARGS[@]}" --normal-class 0 1 2 3 4 5 6 7 8 9 -o "$OUT"
