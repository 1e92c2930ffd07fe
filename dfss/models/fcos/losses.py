"""FCOS losses: pure functions and the criterion that assigns targets and combines them.

Terms, as torchvision's ``FCOSHead.compute_loss`` (whose numbers the criterion reproduces with
unit class weights): sigmoid focal loss (α 0.25, γ 2) over every point and class; GIoU between the
decoded boxes and their matched boxes on foreground points; BCE between the centerness logit and
the centerness target on foreground points. Each is summed and divided by the foreground count
of the batch, clamped at 1 (averaged across ranks under DDP), kept on the device — no ``.item()``,
no boolean indexing (foreground is a 0/1 weight), so no host sync in the step.

Class weights (the dataset's danger weighting): ``class_weights[c] = α_c`` multiplies the
*positive* part of the focal loss in column ``c`` — the ``target = 1`` term, i.e. the loss of
missing an object of class ``c`` — exactly as BCE's ``pos_weight``. The negative part (false
alarms of class ``c`` on background and on other objects) keeps weight 1. Thus α_c scales how much
a missed dangerous object costs without making the model shy of predicting other classes near
it; the foreground normaliser is unchanged. With all α_c = 1 the weight is exactly 1.0 and the
loss is bit-identical to the unweighted one. Box and centerness terms are not class-weighted.

Distribution head: ``loss_dfl`` is the Distribution Focal Loss (GFL, Li et al. 2020) of each side's
bin logits against the side's target distance (stride units, clamped to ``[0, R − 1 − 0.01]``),
averaged over the four sides, summed over foreground, normalised like the others and weighted by
``dfl_weight`` (0.25 as GFL). GIoU is then computed on the expectation boxes, as GFL does.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torchvision.ops import generalized_box_iou_loss
from torchvision.ops import sigmoid_focal_loss as tv_sigmoid_focal_loss

from dfss.models.common import check_class_weights, mean_across_ranks
from dfss.models.fcos.assign import FCOSTargets, assign_fcos_targets
from dfss.models.outputs import DenseOutputs, decode_boxes


def _reduce(loss: Tensor, weight: Tensor | None, reduction: str) -> Tensor:
    if weight is not None:
        loss = loss * weight
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"reduction must be 'sum' or 'none', got {reduction!r}")


def sigmoid_focal_loss(
    logits: Tensor,
    targets: Tensor,
    weight: Tensor | None = None,
    alpha: float = 0.25,
    gamma: float = 2.0,
    class_weights: Tensor | None = None,
    reduction: str = "sum",
) -> Tensor:
    """Focal loss of ``logits [..., C]`` against 0/1 ``targets [..., C]`` (torchvision's formula).

    ``class_weights [C]`` multiplies the positive (``target = 1``) part of column ``c`` by α_c;
    ``weight`` (broadcastable) multiplies the elementwise loss.
    """
    targets = targets.float()
    loss = tv_sigmoid_focal_loss(logits.float(), targets, alpha=alpha, gamma=gamma, reduction="none")
    if class_weights is not None:
        # 1 on negatives, α_c on positives; exactly 1.0 everywhere when α_c = 1.
        loss = loss * (1 + (class_weights.to(loss.dtype) - 1) * targets)
    return _reduce(loss, weight, reduction)


def giou_loss(
    pred_boxes: Tensor, target_boxes: Tensor, weight: Tensor | None = None, reduction: str = "sum"
) -> Tensor:
    """``1 − GIoU`` of xyxy ``pred_boxes [..., 4]`` and ``target_boxes [..., 4]`` (torchvision's)."""
    loss = generalized_box_iou_loss(pred_boxes.float(), target_boxes.float(), reduction="none")
    return _reduce(loss, weight, reduction)


def centerness_loss(
    pred_logits: Tensor, targets: Tensor, weight: Tensor | None = None, reduction: str = "sum"
) -> Tensor:
    """BCE-with-logits of centerness logits ``[...]`` against targets in ``[0, 1]``."""
    loss = F.binary_cross_entropy_with_logits(pred_logits.float(), targets.float(), reduction="none")
    return _reduce(loss, weight, reduction)


def distribution_focal_loss(
    pred_logits: Tensor, targets: Tensor, weight: Tensor | None = None, reduction: str = "sum"
) -> Tensor:
    """DFL of bin logits ``[..., R]`` against continuous targets ``[...]`` in ``[0, R − 1)``.

    ``−(y_{i+1} − y)·log p_i − (y − y_i)·log p_{i+1}`` with ``y_i = ⌊y⌋``: minimal (equal to the
    entropy of the two-bin split; zero at an integer target) when the mass sits on the two bins
    around ``y`` in those proportions.
    """
    num_bins = pred_logits.shape[-1]
    targets = targets.float().clamp(0, num_bins - 1 - 0.01)
    left = targets.floor().long()
    weight_left = (left + 1).float() - targets
    log_probs = pred_logits.float().log_softmax(dim=-1)
    log_p_left = log_probs.gather(-1, left[..., None]).squeeze(-1)
    log_p_right = log_probs.gather(-1, (left + 1)[..., None]).squeeze(-1)
    loss = -(weight_left * log_p_left + (1 - weight_left) * log_p_right)
    return _reduce(loss, weight, reduction)


class FCOSCriterion(nn.Module):
    """Assigns FCOS targets and returns ``{"loss_cls", "loss_box", "loss_ctr"[, "loss_dfl"], "loss"}``.

    ``class_weights``: ``[C]`` α_c (``None`` = all 1). ``loss = cls_weight·loss_cls + box_weight·loss_box
    + ctr_weight·loss_ctr (+ dfl_weight·loss_dfl)``; the parts are reported unweighted.
    """

    def __init__(
        self,
        num_classes: int,
        class_weights: Tensor | None = None,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        center_sampling_radius: float = 1.5,
        cls_weight: float = 1.0,
        box_weight: float = 1.0,
        ctr_weight: float = 1.0,
        dfl_weight: float = 0.25,
        average_across_ranks: bool = True,
    ) -> None:
        super().__init__()
        class_weights = check_class_weights(class_weights, num_classes)
        self.num_classes = num_classes
        self.register_buffer("class_weights", class_weights, persistent=False)
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        self.center_sampling_radius = center_sampling_radius
        self.cls_weight = cls_weight
        self.box_weight = box_weight
        self.ctr_weight = ctr_weight
        self.dfl_weight = dfl_weight
        self.average_across_ranks = average_across_ranks

    def assign(self, outputs: DenseOutputs, gt_boxes: list[Tensor], gt_labels: list[Tensor]) -> FCOSTargets:
        return assign_fcos_targets(
            outputs.points,
            outputs.strides,
            outputs.num_points_per_level,
            gt_boxes,
            gt_labels,
            center_sampling_radius=self.center_sampling_radius,
        )

    def loss_from_targets(self, outputs: DenseOutputs, targets: FCOSTargets) -> dict[str, Tensor]:
        if outputs.box_format != "ltrb":
            raise ValueError(f"FCOSCriterion needs box_format 'ltrb', got {outputs.box_format!r}")
        if outputs.num_classes != self.num_classes:
            raise ValueError(f"outputs have {outputs.num_classes} classes, criterion {self.num_classes}")
        foreground = targets.foreground_mask  # [B, N]
        fg_weight = foreground.float()
        num_foreground = fg_weight.sum()
        if self.average_across_ranks:
            num_foreground = mean_across_ranks(num_foreground)
        normaliser = num_foreground.clamp(min=1.0)

        classes = torch.arange(self.num_classes, device=targets.labels.device)
        cls_targets = targets.labels[..., None] == classes  # [B, N, C] one-hot, background (-1) all 0
        loss_cls = sigmoid_focal_loss(
            outputs.cls_logits,
            cls_targets,
            alpha=self.focal_alpha,
            gamma=self.focal_gamma,
            class_weights=self.class_weights,
        )
        pred_boxes = decode_boxes(outputs)  # [B, N, 4] float32 (the precision contract)
        loss_box = giou_loss(pred_boxes, targets.box_targets, weight=fg_weight)
        loss_ctr = centerness_loss(outputs.quality_logits, targets.centerness_targets, weight=fg_weight)
        losses = {
            "loss_cls": loss_cls / normaliser,
            "loss_box": loss_box / normaliser,
            "loss_ctr": loss_ctr / normaliser,
        }
        total = self.cls_weight * losses["loss_cls"] + self.box_weight * losses["loss_box"]
        total = total + self.ctr_weight * losses["loss_ctr"]
        if outputs.box_distribution_logits is not None:
            side_weight = fg_weight[..., None] / 4  # mean over the 4 sides
            loss_dfl = distribution_focal_loss(
                outputs.box_distribution_logits, targets.ltrb_targets, weight=side_weight
            )
            losses["loss_dfl"] = loss_dfl / normaliser
            total = total + self.dfl_weight * losses["loss_dfl"]
        losses["loss"] = total
        return losses

    def forward(
        self, outputs: DenseOutputs, gt_boxes: list[Tensor], gt_labels: list[Tensor]
    ) -> dict[str, Tensor]:
        """Losses for raw ``outputs`` and per-image ``gt_boxes [G_i, 4]`` (xyxy px), ``gt_labels [G_i]``."""
        return self.loss_from_targets(outputs, self.assign(outputs, gt_boxes, gt_labels))
