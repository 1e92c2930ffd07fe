"""SimOTA label assignment (YOLOX), batched over the images of a batch.

Stateless functions under ``torch.no_grad()``, one per step of Megvii's
``YOLOXHead.get_assignments`` (YOLOX 0.3.0), but with the ground truths padded to the batch's
largest count (``valid`` mask) instead of a per-image Python loop:

1. :func:`geometry_constraint` — a point is a *candidate* when its cell centre
   ``point + stride / 2`` lies strictly inside some gt box or within ``center_radius`` strides of
   some gt centre; per (gt, point) it is *in box and centre* when both hold for that gt.
2. :func:`matching_cost` — ``BCE(sqrt(σ(cls)·σ(obj)), one_hot) + 3·(-log(IoU + 1e-8))`` plus
   ``1e5`` where the point is not in that gt's box and centre; ``inf`` for non-candidates and
   padded gts (they are never matched).
3. :func:`dynamic_k` — per gt, ``k = max(int(sum of its 10 largest candidate IoUs), 1)``.
4. :func:`match_lowest_cost` — each gt takes its ``k`` cheapest candidates.
5. :func:`resolve_conflicts` — a point taken by several gts goes to the gt of lowest cost for it
   (over all gts, as the official code does).

An image without boxes gets all-background targets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from dfss.models.outputs import DenseOutputs, decode_boxes

CENTER_RADIUS = 2.5
IOU_COST_WEIGHT = 3.0
OUTSIDE_PENALTY = 1e5
CANDIDATE_TOPK = 10


@dataclass(frozen=True)
class PaddedGroundTruth:
    """Per-image ground truths padded to ``G = max(1, max_i G_i)`` rows."""

    boxes: Tensor  # [B, G, 4] xyxy pixels, 0 in padded rows
    labels: Tensor  # [B, G] int64, 0 in padded rows
    valid: Tensor  # [B, G] bool


@dataclass(frozen=True)
class GeometryPrior:
    candidate_mask: Tensor  # [B, N] inside some gt's box or centre region
    box_and_centre_mask: Tensor  # [B, G, N] inside this gt's box and its centre region


@dataclass(frozen=True)
class SimOTATargets:
    """Per-point assignment; background points hold -1 / 0."""

    foreground_mask: Tensor  # [B, N] bool
    matched_gt_index: Tensor  # [B, N] int64 row in the image's gt list, -1 for background
    matched_labels: Tensor  # [B, N] int64 class of the matched gt, -1 for background
    matched_ious: Tensor  # [B, N] IoU of the point's predicted box with its gt, 0 for background
    matched_boxes: Tensor  # [B, N, 4] xyxy box of the matched gt, 0 for background
    num_foreground: Tensor  # [] int64, over the whole batch (on the device)


def pad_ground_truth(
    gt_boxes: Sequence[Tensor], gt_labels: Sequence[Tensor], device: torch.device
) -> PaddedGroundTruth:
    """Stack per-image ``[G_i, 4]`` boxes and ``[G_i]`` labels into padded ``[B, G, ...]`` tensors."""
    if len(gt_boxes) != len(gt_labels):
        raise ValueError(f"{len(gt_boxes)} box tensors but {len(gt_labels)} label tensors")
    counts = [len(boxes) for boxes in gt_boxes]
    if any(len(boxes) != len(labels) for boxes, labels in zip(gt_boxes, gt_labels, strict=True)):
        raise ValueError(f"boxes and labels differ in count: {counts} vs {[len(lb) for lb in gt_labels]}")
    boxes = pad_sequence(
        [b.to(device=device, dtype=torch.float32).reshape(-1, 4) for b in gt_boxes], batch_first=True
    )
    labels = pad_sequence([lb.to(device=device, dtype=torch.int64) for lb in gt_labels], batch_first=True)
    if boxes.shape[1] == 0:  # no image has a box: one padded row keeps every shape non-empty
        boxes, labels = F.pad(boxes, (0, 0, 0, 1)), F.pad(labels, (0, 1))
    counts_tensor = torch.tensor(counts, device=device)
    valid = torch.arange(boxes.shape[1], device=device)[None] < counts_tensor[:, None]
    return PaddedGroundTruth(boxes=boxes, labels=labels, valid=valid)


@torch.no_grad()
def geometry_constraint(
    points: Tensor, strides: Tensor, gt: PaddedGroundTruth, center_radius: float = CENTER_RADIUS
) -> GeometryPrior:
    """Step 1: which points may be matched to which gt (see the module docstring)."""
    centres = (points + 0.5 * strides[:, None])[None, None]  # [1, 1, N, 2]
    boxes = gt.boxes[:, :, None]  # [B, G, 1, 4]
    in_box = torch.cat([centres - boxes[..., :2], boxes[..., 2:] - centres], dim=-1).amin(-1) > 0
    gt_centres = 0.5 * (boxes[..., :2] + boxes[..., 2:])  # [B, G, 1, 2]
    radius = (center_radius * strides)[None, None, :, None]  # [1, 1, N, 1]
    # Written as the official deltas (not |d| < r) so boundary points round the same way.
    centre_deltas = torch.cat([centres - (gt_centres - radius), (gt_centres + radius) - centres], dim=-1)
    in_centre = centre_deltas.amin(-1) > 0  # [B, G, N]
    valid = gt.valid[:, :, None]
    candidate = ((in_box | in_centre) & valid).any(dim=1)
    return GeometryPrior(candidate_mask=candidate, box_and_centre_mask=in_box & in_centre & valid)


@torch.no_grad()
def pairwise_box_iou(gt_boxes: Tensor, pred_boxes: Tensor) -> Tensor:
    """IoU ``[B, G, N]`` between ``gt_boxes [B, G, 4]`` and ``pred_boxes [B, N, 4]`` (xyxy)."""
    top_left = torch.maximum(gt_boxes[:, :, None, :2], pred_boxes[:, None, :, :2])
    bottom_right = torch.minimum(gt_boxes[:, :, None, 2:], pred_boxes[:, None, :, 2:])
    intersection = (bottom_right - top_left).clamp(min=0).prod(-1)
    area_gt = (gt_boxes[..., 2:] - gt_boxes[..., :2]).prod(-1)[:, :, None]
    area_pred = (pred_boxes[..., 2:] - pred_boxes[..., :2]).prod(-1)[:, None, :]
    return intersection / (area_gt + area_pred - intersection).clamp(min=1e-12)


@torch.no_grad()
def matching_cost(
    cls_logits: Tensor,
    quality_logits: Tensor,
    gt: PaddedGroundTruth,
    pair_ious: Tensor,
    prior: GeometryPrior,
    iou_weight: float = IOU_COST_WEIGHT,
    outside_penalty: float = OUTSIDE_PENALTY,
) -> Tensor:
    """Step 2: cost ``[B, G, N]`` of matching each gt to each point (``inf`` where not allowed).

    The class term equals ``F.binary_cross_entropy(p, one_hot(label)).sum(-1)`` with
    ``p = sqrt(σ(cls)·σ(obj))`` (log clamped at -100 as there), computed as the sum over all
    classes of the negative term, corrected at the gt's class, so that no ``[B, G, N, C]`` tensor
    is built.
    """
    probs = (cls_logits.float().sigmoid() * quality_logits.float().sigmoid()[..., None]).sqrt()  # [B, N, C]
    neg_term = -torch.log1p(-probs).clamp(min=-100)  # -log(1 - p)
    pos_term = -torch.log(probs).clamp(min=-100)  # -log(p)
    labels = gt.labels[:, :, None].expand(-1, -1, probs.shape[1])  # [B, G, N]
    neg_at_label = neg_term.transpose(1, 2).gather(1, labels)  # [B, G, N]
    pos_at_label = pos_term.transpose(1, 2).gather(1, labels)
    cls_cost = neg_term.sum(-1)[:, None, :] - neg_at_label + pos_at_label
    cost = cls_cost + iou_weight * -torch.log(pair_ious + 1e-8)
    cost = cost + outside_penalty * (~prior.box_and_centre_mask).float()
    allowed = prior.candidate_mask[:, None, :] & gt.valid[:, :, None]
    return cost.masked_fill(~allowed, float("inf"))


@torch.no_grad()
def dynamic_k(
    pair_ious: Tensor, prior: GeometryPrior, gt_valid: Tensor, candidate_topk: int = CANDIDATE_TOPK
) -> Tensor:
    """Step 3: ``[B, G]`` int64 number of points per gt (0 for padded gts)."""
    ious = pair_ious.masked_fill(~prior.candidate_mask[:, None, :], 0.0)
    top_ious = ious.topk(min(candidate_topk, ious.shape[-1]), dim=-1).values
    ks = top_ious.sum(-1).to(torch.int64).clamp(min=1)  # truncation, as the official `.int()`
    return ks.masked_fill(~gt_valid, 0)


@torch.no_grad()
def match_lowest_cost(cost: Tensor, ks: Tensor, candidate_topk: int = CANDIDATE_TOPK) -> Tensor:
    """Step 4: ``[B, G, N]`` bool, each gt matched to its ``ks`` cheapest allowed points.

    ``ks <= candidate_topk`` always (a sum of at most that many IoUs ≤ 1), so the ``candidate_topk``
    cheapest points of each gt suffice.
    """
    num_take = min(candidate_topk, cost.shape[-1])
    lowest_costs, lowest_points = cost.topk(num_take, dim=-1, largest=False)  # [B, G, K]
    rank = torch.arange(num_take, device=cost.device)
    take = (rank < ks[..., None]) & torch.isfinite(lowest_costs)
    return torch.zeros_like(cost, dtype=torch.bool).scatter(-1, lowest_points, take)


@torch.no_grad()
def resolve_conflicts(matching: Tensor, cost: Tensor) -> Tensor:
    """Step 5: a point matched to several gts keeps only the gt of lowest cost (new tensor)."""
    contested = matching.sum(dim=1) > 1  # [B, N]
    cheapest_gt = cost.argmin(dim=1)  # [B, N]
    gt_rows = torch.arange(cost.shape[1], device=cost.device)[None, :, None]
    cheapest = gt_rows == cheapest_gt[:, None, :]  # [B, G, N]
    return torch.where(contested[:, None, :], cheapest, matching)


@torch.no_grad()
def simota_assign(
    outputs: DenseOutputs,
    gt_boxes: Sequence[Tensor],
    gt_labels: Sequence[Tensor],
    *,
    center_radius: float = CENTER_RADIUS,
    iou_weight: float = IOU_COST_WEIGHT,
    outside_penalty: float = OUTSIDE_PENALTY,
    candidate_topk: int = CANDIDATE_TOPK,
) -> SimOTATargets:
    """SimOTA targets for ``outputs`` (``box_format="yolox"``) given per-image xyxy boxes and labels."""
    if outputs.box_format != "yolox":
        raise ValueError(f"SimOTA expects YOLOX outputs, got box_format={outputs.box_format!r}")
    if len(gt_boxes) != outputs.num_images:
        raise ValueError(f"{len(gt_boxes)} ground-truth lists for {outputs.num_images} images")
    device = outputs.cls_logits.device
    gt = pad_ground_truth(gt_boxes, gt_labels, device)
    pred_boxes = decode_boxes(outputs)  # [B, N, 4]

    prior = geometry_constraint(outputs.points.float(), outputs.strides.float(), gt, center_radius)
    pair_ious = pairwise_box_iou(gt.boxes, pred_boxes)
    cost = matching_cost(
        outputs.cls_logits, outputs.quality_logits, gt, pair_ious, prior, iou_weight, outside_penalty
    )
    ks = dynamic_k(pair_ious, prior, gt.valid, candidate_topk)
    matching = resolve_conflicts(match_lowest_cost(cost, ks, candidate_topk), cost)

    foreground = matching.any(dim=1)  # [B, N]
    gt_index = matching.to(torch.uint8).argmax(dim=1)  # [B, N], 0 for background
    matched_ious = pair_ious.gather(1, gt_index[:, None]).squeeze(1)
    matched_boxes = gt.boxes.gather(1, gt_index[..., None].expand(-1, -1, 4))
    return SimOTATargets(
        foreground_mask=foreground,
        matched_gt_index=torch.where(foreground, gt_index, -1),
        matched_labels=torch.where(foreground, gt.labels.gather(1, gt_index), -1),
        matched_ious=torch.where(foreground, matched_ious, 0.0),
        matched_boxes=torch.where(foreground[..., None], matched_boxes, 0.0),
        num_foreground=foreground.sum(),
    )
