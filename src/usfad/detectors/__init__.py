"""Anomaly detectors with one contract (scikit-learn estimator + PyOD names)."""

from .base import BaseDetector, load
from .flow import FlowDetector, NonUSFlow, USFlow
from .svdd import DeepSVDD
from .vae import DeepSVDDVAE, VAEFlow

__all__ = ["BaseDetector", "DeepSVDD", "DeepSVDDVAE", "FlowDetector", "NonUSFlow", "USFlow", "VAEFlow", "load"]
