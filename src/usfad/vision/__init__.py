"""Image anomaly detection: frozen backbones, FastFlow / CFlow / U-Flow heads with
``flow="usf" | "usf-gin" | "affine"``, anomaly maps, MVTec-layout data, pixel metrics.

torchvision, timm and pillow are optional (``pip install usfad[vision]``); they are imported
only when a backbone is built or an image is read, so ``import usfad.vision`` works without them.
"""

from .anomaly_map import COMBINE_RULES, anomaly_map, combine_levels, gaussian_blur, image_scores, upsample_levels
from .backbone import (
    BACKBONES,
    WEIGHTS_ENV_VAR,
    Backbone,
    WeightsNotFoundError,
    build_backbone,
    extract_features,
    find_default_weights,
)
from .data import FashionMNISTOneClass, ImageFolderDataset, ImageSample, make_synthetic_dataset
from .detector import ImageDetector
from .heads import CFlowHead, FastFlowHead, FlowHead, UFlowHead, build_head
from .metrics import aupro, image_auroc, pixel_auroc, pro_curve, vision_metrics

__all__ = [
    "BACKBONES",
    "COMBINE_RULES",
    "WEIGHTS_ENV_VAR",
    "Backbone",
    "FashionMNISTOneClass",
    "ImageFolderDataset",
    "ImageSample",
    "WeightsNotFoundError",
    "anomaly_map",
    "aupro",
    "build_backbone",
    "combine_levels",
    "extract_features",
    "find_default_weights",
    "gaussian_blur",
    "image_auroc",
    "image_scores",
    "make_synthetic_dataset",
    "pixel_auroc",
    "pro_curve",
    "upsample_levels",
    "vision_metrics",
    "CFlowHead",
    "FastFlowHead",
    "FlowHead",
    "ImageDetector",
    "UFlowHead",
    "build_head",
]
