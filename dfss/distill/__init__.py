"""Knowledge distillation from a dense teacher (YOLOX) into a dense student (FCOS): the paper's
``L_KD = λ0·L_loc_soft + λ1·L_cls_soft + λ2·L_bbox_soft`` on the points of the strides both share."""

from dfss.distill.align import AlignedPoints, align_points, level_strides
from dfss.distill.criterion import BBOX_MODES, DistillationLoss
from dfss.distill.losses import (
    BOX_TARGETS,
    CLS_MODES,
    POINT_MODES,
    bernoulli_kl_with_logits,
    distribution_kl_with_logits,
    gaussian_target,
    kd_bbox_loss,
    kd_cls_loss,
    kd_giou_loss,
    kd_loc_loss,
    ltrb_distances,
    point_weights,
    representable,
    softmax_kl_with_logits,
    teacher_confidence,
    two_hot_target,
)

__all__ = [
    "BBOX_MODES",
    "BOX_TARGETS",
    "CLS_MODES",
    "POINT_MODES",
    "AlignedPoints",
    "DistillationLoss",
    "align_points",
    "bernoulli_kl_with_logits",
    "distribution_kl_with_logits",
    "gaussian_target",
    "kd_bbox_loss",
    "kd_cls_loss",
    "kd_giou_loss",
    "kd_loc_loss",
    "level_strides",
    "ltrb_distances",
    "point_weights",
    "representable",
    "softmax_kl_with_logits",
    "teacher_confidence",
    "two_hot_target",
]
