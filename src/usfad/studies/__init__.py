"""Studies that check the paper's claims on any machine, each writing a report folder.

- :mod:`usfad.studies.alignment`: density alignment on Gaussian mixtures with a known
  density (does the latent distance rank samples like the true likelihood?);
- :mod:`usfad.studies.stability`: training stability over seeds on ADBench datasets
  (spread of ROC-AUC, diverged and exploded runs, loss curves).
"""

from .alignment import AlignmentResult, DiagonalGaussianMixture, alignment_mixture, run_alignment
from .stability import StabilityResult, run_stability

__all__ = [
    "AlignmentResult",
    "DiagonalGaussianMixture",
    "StabilityResult",
    "alignment_mixture",
    "run_alignment",
    "run_stability",
]
