"""YOLOX losses: IoU loss, objectness BCE, class BCE with IoU-scaled targets, optional L1.

Pure per-element functions plus :class:`YOLOXCriterion`, which runs SimOTA
(:func:`~dfss.models.yolox.simota.simota_assign`) and returns a dict of named parts plus ``loss``.
As in Megvii's ``YOLOXHead.get_losses`` (YOLOX 0.3.0): every part is a sum divided by the
batch's foreground count clamped at 1 (kept on the device, no host sync);
``loss = 5·IoU + obj + cls (+ L1)``; the IoU loss is ``1 - IoU²``.

Class weights (the paper's α_c for dangerous classes): the criterion takes ``class_weights [C]``
and multiplies the **positive part** of the class BCE for class ``c`` by ``α_c``, exactly like
``F.binary_cross_entropy_with_logits(pos_weight=α)``::

    loss_c = -[α_c · t_c · log σ(x_c) + (1 - t_c) · log(1 - σ(x_c))]

with ``t_c`` the IoU-scaled one-hot target. Only foreground points carry ``t_c > 0``, and only
at their gt's class, so a foreground point of a dangerous class weighs α more in the class loss
while the negative (suppression) terms are untouched; objectness, IoU and L1 terms are not
weighted. ``pos_weight = 1`` is exactly the unweighted BCE (PyTorch scales ``log σ(x)`` by
``1 + (α - 1)·t``, which is 1 exactly), so α_c = 1 reproduces the unweighted loss bit for bit.
This is also how the paper's released code applied α (``pos_weight`` = 2).

Under DDP each rank normalises by its own foreground count, as the official code does.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dfss.models.common import check_class_weights
from dfss.models.outputs import DenseOutputs, decode_boxes
from dfss.models.yolox.simota import (
    CANDIDATE_TOPK,
    CENTER_RADIUS,
    IOU_COST_WEIGHT,
    SimOTATargets,
    simota_assign,
)

IOU_LOSS_WEIGHT = 5.0


def aligned_box_iou(pred_boxes: Tensor, target_boxes: Tensor) -> Tensor:
    """IoU ``[M]`` of ``pred_boxes[i]`` with ``target_boxes[i]`` (xyxy), as the official ``IOUloss``."""
    top_left = torch.maximum(pred_boxes[:, :2], target_boxes[:, :2])
    bottom_right = torch.minimum(pred_boxes[:, 2:], target_boxes[:, 2:])
    overlaps = (top_left < bottom_right).all(dim=-1)
    intersection = (bottom_right - top_left).prod(-1) * overlaps
    area_pred = (pred_boxes[:, 2:] - pred_boxes[:, :2]).prod(-1)
    area_target = (target_boxes[:, 2:] - target_boxes[:, :2]).prod(-1)
    return intersection / (area_pred + area_target - intersection + 1e-16)


def iou_loss(pred_boxes: Tensor, target_boxes: Tensor, weight: Tensor | None = None) -> Tensor:
    """``1 - IoU²`` per box pair ``[M]`` (xyxy pixels)."""
    loss = 1.0 - aligned_box_iou(pred_boxes, target_boxes) ** 2
    return loss if weight is None else loss * weight


def objectness_loss(quality_logits: Tensor, foreground_mask: Tensor, weight: Tensor | None = None) -> Tensor:
    """Per-point BCE of the objectness logits against the foreground mask (same shape)."""
    return F.binary_cross_entropy_with_logits(
        quality_logits, foreground_mask.to(quality_logits.dtype), weight=weight, reduction="none"
    )


def class_loss(cls_logits: Tensor, targets: Tensor, class_weights: Tensor | None = None) -> Tensor:
    """Per-element BCE ``[M, C]``; ``class_weights [C]`` scales the positive part (``pos_weight``)."""
    return F.binary_cross_entropy_with_logits(cls_logits, targets, pos_weight=class_weights, reduction="none")


def l1_box_targets(points: Tensor, strides: Tensor, boxes: Tensor, eps: float = 1e-8) -> Tensor:
    """The raw ``(dx, dy, log w, log h)`` (stride units) that would decode exactly to ``boxes`` (xyxy)."""
    stride = strides[:, None]
    centre = 0.5 * (boxes[:, :2] + boxes[:, 2:])
    size = boxes[:, 2:] - boxes[:, :2]
    return torch.cat([(centre - points) / stride, torch.log(size / stride + eps)], dim=-1)


def l1_box_loss(box_regression: Tensor, targets: Tensor, weight: Tensor | None = None) -> Tensor:
    """Per-element L1 ``[M, 4]`` between raw box outputs and :func:`l1_box_targets`."""
    loss = (box_regression - targets).abs()
    return loss if weight is None else loss * weight


class YOLOXCriterion(nn.Module):
    """SimOTA + YOLOX losses. ``forward`` returns ``loss`` and its named parts (all on the device).

    Returned keys: ``loss``, ``loss_iou`` (already ×``iou_loss_weight``), ``loss_obj``,
    ``loss_cls``, ``loss_l1`` (0 unless ``use_l1``), ``num_foreground`` (float, not a loss).
    """

    def __init__(
        self,
        num_classes: int,
        class_weights: Tensor | None = None,
        *,
        iou_loss_weight: float = IOU_LOSS_WEIGHT,
        l1_loss_weight: float = 1.0,
        center_radius: float = CENTER_RADIUS,
        assignment_iou_weight: float = IOU_COST_WEIGHT,
        candidate_topk: int = CANDIDATE_TOPK,
    ) -> None:
        super().__init__()
        class_weights = check_class_weights(class_weights, num_classes)
        self.num_classes = num_classes
        self.iou_loss_weight = iou_loss_weight
        self.l1_loss_weight = l1_loss_weight
        self.center_radius = center_radius
        self.assignment_iou_weight = assignment_iou_weight
        self.candidate_topk = candidate_topk
        self.register_buffer("class_weights", class_weights, persistent=False)

    def assign(
        self, outputs: DenseOutputs, gt_boxes: Sequence[Tensor], gt_labels: Sequence[Tensor]
    ) -> SimOTATargets:
        return simota_assign(
            outputs,
            gt_boxes,
            gt_labels,
            center_radius=self.center_radius,
            iou_weight=self.assignment_iou_weight,
            candidate_topk=self.candidate_topk,
        )

    def forward(
        self,
        outputs: DenseOutputs,
        gt_boxes: Sequence[Tensor],
        gt_labels: Sequence[Tensor],
        *,
        use_l1: bool = False,
    ) -> dict[str, Tensor]:
        """Losses for ``outputs`` given per-image ``gt_boxes [G_i, 4]`` (xyxy px) and ``gt_labels [G_i]``.

        ``use_l1`` adds the L1 loss on the raw box outputs (YOLOX switches it on for the last
        epochs, without augmentation); the caller decides per step.
        """
        if outputs.num_classes != self.num_classes:
            raise ValueError(f"outputs have {outputs.num_classes} classes, criterion {self.num_classes}")
        targets = self.assign(outputs, gt_boxes, gt_labels)
        foreground = targets.foreground_mask  # [B, N]
        num_foreground = targets.num_foreground.clamp(min=1).float()

        # Every term is computed on all points and kept only at the foreground with `where`
        # (no boolean indexing, hence no host sync); an image without boxes contributes exactly 0
        # to the box and class terms.
        pred_boxes = decode_boxes(outputs)  # [B, N, 4]
        per_point_iou = iou_loss(pred_boxes.flatten(0, 1), targets.matched_boxes.flatten(0, 1))
        loss_iou = torch.where(foreground.flatten(), per_point_iou, 0.0).sum() / num_foreground

        loss_obj = objectness_loss(outputs.quality_logits.float(), foreground).sum() / num_foreground

        labels = targets.matched_labels.clamp(min=0)  # background rows are masked below
        cls_targets = F.one_hot(labels, self.num_classes).float() * targets.matched_ious[..., None]
        per_element_cls = class_loss(outputs.cls_logits.float(), cls_targets, self.class_weights)
        loss_cls = torch.where(foreground[..., None], per_element_cls, 0.0).sum() / num_foreground

        if use_l1:
            batch_size = outputs.num_images
            l1_targets = l1_box_targets(
                outputs.points.float().repeat(batch_size, 1),
                outputs.strides.float().repeat(batch_size),
                targets.matched_boxes.flatten(0, 1),
            ).view_as(outputs.box_regression)
            per_element_l1 = l1_box_loss(outputs.box_regression.float(), l1_targets)
            loss_l1 = torch.where(foreground[..., None], per_element_l1, 0.0).sum() / num_foreground
        else:
            loss_l1 = torch.zeros((), device=foreground.device)

        loss_iou = self.iou_loss_weight * loss_iou
        loss = loss_iou + loss_obj + loss_cls + self.l1_loss_weight * loss_l1
        return {
            "loss": loss,
            "loss_iou": loss_iou,
            "loss_obj": loss_obj,
            "loss_cls": loss_cls,
            "loss_l1": loss_l1,
            "num_foreground": targets.num_foreground.float(),
        }
