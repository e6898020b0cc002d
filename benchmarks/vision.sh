#!/usr/bin/env bash
# Image heads (issue 4): FastFlow, CFlow and U-Flow, each with flow=usf, usf-gin and affine, 3 seeds,
# on Magnetic Tile (761 training and 583 test images, MVTec AD layout) with ImageNet MobileNetV2
# features at 256 x 256 and the detector's defaults (features standardised per position, training noise 0.1);
# then the same with EfficientNet-Lite0 features.
# One process per seed, one thread each (each extracts the features once for its 9 runs); then
# the three result files are joined and the table over all seeds is written (nothing left to run).
# Each command is resumable: rerun the script after a crash and finished runs are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGES="${USFAD_IMAGES:-../shared/data/images}"
USFAD=.venv/bin/usfad
bench() {  # BACKBONE OUT
    local out=$2 args=("$IMAGES/magnetic_tile" --models fastflow cflow uflow --flows usf usf-gin affine --backbone "$1" --image-size 256)
    for seed in 0 1 2; do
        overlays=$([ "$seed" = 0 ] || echo --no-overlays)
        # shellcheck disable=SC2086
        $USFAD image bench "${args[@]}" --seeds "$seed" --threads 1 --no-progress $overlays -o "$out/seed$seed" &
    done
    wait
    cat "$out"/seed{0,1,2}/results.jsonl > "$out/results.jsonl"
    $USFAD image bench "${args[@]}" --seeds 0 1 2 -o "$out"
}
bench mobilenet_v2 benchmarks/results/vision_magnetic_tile
# the same grid on EfficientNet-Lite0 (24/40/112 channels at strides 4/8/16)
bench efficientnet_lite0 benchmarks/results/vision_magnetic_tile_efficientnet_lite0

# Training noise on ReLU features (SqueezeNet, CFlow-USF): with and without the detector's noise
.venv/bin/python benchmarks/noise_check.py
