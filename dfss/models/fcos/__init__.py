"""The FCOS student: model and variants, target assignment, losses, torchvision weight loading."""

from dfss.models.fcos.assign import FCOSTargets, assign_fcos_targets, pad_ground_truth
from dfss.models.fcos.backbone import TimmFPNBackbone, resnet50_fpn_backbone
from dfss.models.fcos.head import BOX_HEADS, FCOSHead, FCOSHeadOutputs
from dfss.models.fcos.losses import (
    FCOSCriterion,
    centerness_loss,
    distribution_focal_loss,
    giou_loss,
    sigmoid_focal_loss,
)
from dfss.models.fcos.model import (
    FCOS,
    FCOS_VARIANTS,
    fcos_mobilenetv3,
    fcos_r18,
    fcos_r50,
    fcos_timm,
    make_points,
)
from dfss.models.fcos.weights import load_torchvision_fcos_weights
from dfss.models.weights import LoadReport as WeightsLoadReport
from dfss.models.weights import read_state_dict

__all__ = [
    "BOX_HEADS",
    "FCOS",
    "FCOS_VARIANTS",
    "FCOSCriterion",
    "FCOSHead",
    "FCOSHeadOutputs",
    "FCOSTargets",
    "TimmFPNBackbone",
    "WeightsLoadReport",
    "assign_fcos_targets",
    "centerness_loss",
    "distribution_focal_loss",
    "fcos_mobilenetv3",
    "fcos_r18",
    "fcos_r50",
    "fcos_timm",
    "giou_loss",
    "load_torchvision_fcos_weights",
    "make_points",
    "pad_ground_truth",
    "read_state_dict",
    "resnet50_fpn_backbone",
    "sigmoid_focal_loss",
]
