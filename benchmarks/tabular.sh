#!/usr/bin/env bash
# Protocol T on ADBench (issue 3): the commands behind benchmarks/results/.
# Each bench command is resumable: rerun it after a crash and finished cells are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${USFAD_DATA:-../shared/data/adbench}"
OUT=benchmarks/results
mkdir -p "$OUT"
USFAD=.venv/bin/usfad
MVTEC='CV_by_ResNet18/MVTec-AD_*'
# KNN's cells on the four largest Classical sets (11_donors, 16_http, 33_skin, 8_celeba) take
# about 8 minutes each here (11_donors seed 42: 352 s fit + 124 s score), so they are left out.
KNN_SETS=$(ls "$DATA/Classical" | sed 's/\.npz$//' | grep -v -E '^(11_donors|16_http|33_skin|8_celeba)$' | tr '\n' ' ')

# usfad's models, default preset (= the library defaults), both cores
$USFAD bench --data "$DATA" --datasets Classical "$MVTEC" --models usflow nonusflow deepsvdd \
    --jobs 2 --time-limit 1800 --results "$OUT/usfad_models.jsonl"
# the anchors, PyOD defaults
$USFAD bench --data "$DATA" --datasets Classical "$MVTEC" --models iforest ecod \
    --jobs 1 --time-limit 600 --results "$OUT/results.jsonl"
# shellcheck disable=SC2086
$USFAD bench --data "$DATA" --datasets $KNN_SETS "$MVTEC" --models knn \
    --jobs 1 --time-limit 600 --results "$OUT/results.jsonl"

$USFAD report "$OUT/results.jsonl" "$OUT/usfad_models.jsonl" -o "$OUT/report"
