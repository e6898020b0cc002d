#!/usr/bin/env bash
# Image heads (issue 4): FastFlow, CFlow and U-Flow, each with flow=usf and flow=affine, 3 seeds,
# on Magnetic Tile (761 training and 583 test images, MVTec AD layout) with ImageNet MobileNetV2
# features at 256 x 256 and the detector's defaults (features standardised per position, training noise 0.1).
# One process per seed, one thread each (each extracts the features once for its 6 runs); then
# the three result files are joined and the table over all seeds is written (nothing left to run).
# Each command is resumable: rerun the script after a crash and finished runs are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGES="${USFAD_IMAGES:-../shared/data/images}"
OUT=benchmarks/results/vision_magnetic_tile
USFAD=.venv/bin/usfad
ARGS=("$IMAGES/magnetic_tile" --models fastflow cflow uflow --flows usf affine --backbone mobilenet_v2 --image-size 256)
for seed in 0 1 2; do
    overlays=$([ "$seed" = 0 ] || echo --no-overlays)
    # shellcheck disable=SC2086
    $USFAD image bench "${ARGS[@]}" --seeds "$seed" --threads 1 --no-progress $overlays -o "$OUT/seed$seed" &
done
wait
cat "$OUT"/seed{0,1,2}/results.jsonl > "$OUT/results.jsonl"
$USFAD image bench "${ARGS[@]}" --seeds 0 1 2 -o "$OUT"

# Training noise on ReLU features (SqueezeNet, CFlow-USF): with and without the detector's noise
.venv/bin/python benchmarks/noise_check.py
