"""The YOLOX teacher: CSPDarknet + PAFPN + decoupled head, SimOTA, losses, official weights."""

from dfss.models.yolox.losses import YOLOXCriterion, class_loss, iou_loss, l1_box_loss, objectness_loss
from dfss.models.yolox.model import (
    LEGACY_INPUT,
    OFFICIAL_INPUT,
    YOLOX,
    YOLOX_VARIANTS,
    InputNormalization,
    build_yolox,
    yolox_l,
    yolox_m,
    yolox_nano,
    yolox_s,
    yolox_tiny,
    yolox_x,
)
from dfss.models.yolox.simota import SimOTATargets, simota_assign
from dfss.models.yolox.weights import CheckpointMismatchError, LoadReport, load_official_checkpoint

__all__ = [
    "LEGACY_INPUT",
    "OFFICIAL_INPUT",
    "YOLOX",
    "YOLOX_VARIANTS",
    "CheckpointMismatchError",
    "InputNormalization",
    "LoadReport",
    "SimOTATargets",
    "YOLOXCriterion",
    "build_yolox",
    "class_loss",
    "iou_loss",
    "l1_box_loss",
    "load_official_checkpoint",
    "objectness_loss",
    "simota_assign",
    "yolox_l",
    "yolox_m",
    "yolox_nano",
    "yolox_s",
    "yolox_tiny",
    "yolox_x",
]
