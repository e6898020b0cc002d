"""usfad: anomaly detection with uniformly scaling flows (USFs).

>>> from usfad import USFlow
>>> det = USFlow().fit(X_train)          # doctest: +SKIP
>>> scores = det.decision_function(X)    # higher = more anomalous  # doctest: +SKIP
"""

from .detectors import BaseDetector, DeepSVDD, DeepSVDDVAE, FlowDetector, NonUSFlow, USFlow, VAEFlow
from .flows import build_flow
from .loading import load

__version__ = "0.1.0"

__all__ = [
    "BaseDetector",
    "DeepSVDD",
    "DeepSVDDVAE",
    "FlowDetector",
    "NonUSFlow",
    "USFlow",
    "VAEFlow",
    "__version__",
    "build_flow",
    "load",
]
