"""Anomaly detectors with one contract (scikit-learn estimator + PyOD names)."""

from .base import BaseDetector, load
from .flow import FlowDetector, NonUSFlow, USFlow
from .svdd import DeepSVDD

__all__ = ["BaseDetector", "DeepSVDD", "FlowDetector", "NonUSFlow", "USFlow", "load"]
