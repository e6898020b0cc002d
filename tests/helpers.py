"""Shared test helpers: where the real ADBench data lies (shared/ beside the repository)."""

import os
from pathlib import Path

import pytest

from usfad.data.adbench import ENV_VAR

DATA = Path(os.environ.get(ENV_VAR) or Path(__file__).resolve().parents[2] / "shared/data/adbench")
needs_data = pytest.mark.skipif(
    not DATA.is_dir(), reason=f"ADBench data not found at {DATA} (set {ENV_VAR} or put shared/ beside the repo)"
)
