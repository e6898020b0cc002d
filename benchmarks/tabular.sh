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
# KNN and PyOD's DeepSVDD run on every set too. Their slow cells (one thread, 2 shared cores):
# KNN on 11_donors about 7 min (277 s fit + 162 s score for seed 3; 16_http and 33_skin, d = 3,
# take seconds), PyOD's DeepSVDD about 8 min on 11_donors and 16_http; hence --time-limit 1800.

# usfad's models, default preset (= the library defaults), both cores
$USFAD bench --data "$DATA" --datasets Classical "$MVTEC" --models usflow nonusflow deepsvdd \
    --jobs 2 --time-limit 1800 --results "$OUT/usfad_models.jsonl"
# the anchors, PyOD defaults
$USFAD bench --data "$DATA" --datasets Classical "$MVTEC" --models iforest ecod \
    --jobs 1 --time-limit 600 --results "$OUT/results.jsonl"
$USFAD bench --data "$DATA" --datasets Classical "$MVTEC" --models knn pyod_deepsvdd \
    --jobs 1 --time-limit 1800 --results "$OUT/results.jsonl"

for group in Classical CV_by_ResNet18; do
    name=$([ "$group" = Classical ] && echo classical || echo mvtec)
    $USFAD report "$OUT/results.jsonl" "$OUT/usfad_models.jsonl" --group "$group" -o "$OUT/report_$name"
done
# the paper preset's cost: both presets on the same splits, in one process
.venv/bin/python benchmarks/paper_vs_default.py --data "$DATA" --seeds 42 -o "$OUT/paper_vs_default.csv" \
    --datasets 14_glass 15_Hepatitis 21_Lymphography 37_Stamps 39_vertebral 42_WBC 43_WDBC 45_wine 46_WPBC \
    4_breastw 40_vowels 38_thyroid 6_cardio

# issue 5: the VAE variants through the same runner (resumable; one worker leaves a core free)
$USFAD bench --data "$DATA" --datasets Classical --models vaeflow_usf vaeflow_affine vaeflow_normal deepsvddvae \
    --jobs 1 --time-limit 1800 --results "$OUT/vae_models.jsonl"
$USFAD report "$OUT/usfad_models.jsonl" "$OUT/vae_models.jsonl" --group Classical -o "$OUT/report_vae"
# issue 5: training stability, 5 seeds (default datasets 4_breastw 6_cardio 24_mnist 25_musk 38_thyroid)
$USFAD study stability --data "$DATA" --threads 1 -o "$OUT/stability"
# USFlow with GIN couplings (flow="usf-gin") on the 27 Classical sets where usflow trains fastest,
# against the usflow / nonusflow rows above
$USFAD bench --data "$DATA" --models usflow_gin --jobs 2 --results "$OUT/usflow_gin_classical.jsonl" \
    --datasets 45_wine 15_Hepatitis 42_WBC 37_Stamps 46_WPBC 39_vertebral 21_Lymphography 14_glass 43_WDBC \
    4_breastw 38_thyroid 40_vowels 35_SpamBase 7_Cardiotocography 27_PageBlocks 6_cardio 30_satellite \
    2_annthyroid 28_pendigits 25_musk 19_landsat 32_shuttle 22_magic.gamma 33_skin 34_smtp 11_donors 24_mnist
$USFAD report "$OUT/usflow_gin_classical.jsonl" "$OUT/usfad_models.jsonl" --group Classical \
    --reference usflow_gin --control usflow -o "$OUT/report_gin"

# issue 17, session 10: the new USFlow default (mixing='auto', noise='auto', batch 512, 1500 steps, fused Adam)
# next to the anchors, all in one run so that cell-seconds compare. Run from a snapshot of the code (a git worktree
# of e3dd20f, PYTHONPATH=that/src), so that edits made while it runs cannot leak into the worker processes. Seed 42
# only (the machine was shared; seed 0 and the rest were stopped: results_partial.jsonl).
$USFAD bench --data "$DATA" --datasets Classical --models usflow knn iforest ecod \
    --seeds 42 --jobs 2 --time-limit 1800 --results "$OUT/tabular_v2/results.jsonl"
$USFAD bench --data "$DATA" --datasets "$MVTEC" --models usflow knn \
    --seeds 42 --jobs 2 --time-limit 1800 --results "$OUT/tabular_v2/mvtec.jsonl"
$USFAD bench --data "$DATA" --datasets Classical --models nonusflow \
    --seeds 42 --jobs 2 --time-limit 1800 --results "$OUT/tabular_v2/results.jsonl"
$USFAD report "$OUT/tabular_v2/results.jsonl" --group Classical --control knn -o "$OUT/tabular_v2/report_vs_knn"
$USFAD report "$OUT/tabular_v2/mvtec.jsonl" --group CV_by_ResNet18 --control knn -o "$OUT/tabular_v2/report_mvtec"
.venv/bin/python benchmarks/tabular_compare.py --models usflow nonusflow knn iforest ecod --seeds 42 \
    --before "$OUT/results.jsonl" "$OUT/usfad_models.jsonl" --after "$OUT/tabular_v2/results.jsonl" \
    -o "$OUT/tabular_v2/compare.md"
# seed 0 on a quiet machine, all changes in (the clean cost measurement)
$USFAD bench --data "$DATA" --datasets Classical --models usflow knn iforest ecod \
    --seeds 0 --jobs 2 --time-limit 1800 --results "$OUT/tabular_v2/results_seed0_quiet.jsonl"
.venv/bin/python benchmarks/tabular_compare.py --models usflow knn iforest ecod --seeds 0 \
    --before "$OUT/results.jsonl" "$OUT/usfad_models.jsonl" --after "$OUT/tabular_v2/results_seed0_quiet.jsonl" \
    -o "$OUT/tabular_v2/compare_seed0_quiet.md"
# the smallest sets, 5 seeds: noise 0.2 against noise='auto'
SMALL="15_Hepatitis 45_wine 46_WPBC 14_glass 39_vertebral 21_Lymphography 42_WBC 37_Stamps 43_WDBC 4_breastw 40_vowels"
$USFAD bench --data "$DATA" --datasets $SMALL --models usflow --jobs 1 --param usflow.noise=0.2 \
    --results "$OUT/tabular_v2/small_sets.jsonl"
$USFAD bench --data "$DATA" --datasets $SMALL --models usflow --jobs 1 --results "$OUT/tabular_v2/small_sets.jsonl"
.venv/bin/python benchmarks/small_sets_noise.py -o "$OUT/tabular_v2/small_sets.md"
# one fit profiled, before and after (a worktree of the commit before the change as --before)
.venv/bin/python benchmarks/fit_cost.py --before /tmp/before/src --data "$DATA" -o "$OUT/fit_cost"
.venv/bin/python benchmarks/alignment_default.py -o "$OUT/alignment_default.md"
