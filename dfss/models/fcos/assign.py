"""FCOS target assignment, batched over the images of a batch (no per-image loop), stateless.

A point is a candidate for a ground-truth box when (torchvision ``FCOS.compute_loss``, replicated):

1. it lies strictly inside the box: ``min(l, t, r, b) > 0``;
2. centre sampling: ``max(|px − cx|, |py − cy|) < radius · stride``;
3. scale range of its level: ``lower < max(l, t, r, b) < upper`` with ``lower = 4·stride``
   (0 on the first level) and ``upper = 8·stride`` (∞ on the last level).

Among several candidate boxes the one of smallest area wins (ties: the lowest box index).
torchvision ranks ``1e8 − area`` in float32, which cannot tell apart areas closer than ~8 px²;
here areas are compared exactly — the only (intended) difference.

Ground truth arrives as per-image lists and is padded to the batch maximum with a validity mask.
An image without boxes gives all-background targets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pad_sequence


@dataclass(frozen=True)
class FCOSTargets:
    """Per-point training targets for a batch of ``B`` images with ``N`` points."""

    foreground_mask: Tensor  # [B, N] bool
    labels: Tensor  # [B, N] int64, class of the matched box, -1 on background
    matched_gt_index: Tensor  # [B, N] int64, index into the image's boxes, -1 on background
    box_targets: Tensor  # [B, N, 4] xyxy pixels of the matched box, zeros on background
    ltrb_targets: Tensor  # [B, N, 4] (l, t, r, b) in stride units, zeros on background
    centerness_targets: Tensor  # [B, N] in [0, 1], zeros on background

    @property
    def num_foreground(self) -> Tensor:
        return self.foreground_mask.sum()  # [] int64, stays on the device


def pad_ground_truth(
    gt_boxes: Sequence[Tensor], gt_labels: Sequence[Tensor], device: torch.device | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Pad per-image boxes/labels to ``G = max(1, max_i G_i)``: ``boxes [B, G, 4]``, ``labels [B, G]``,
    ``valid [B, G]``."""
    if len(gt_boxes) != len(gt_labels):
        raise ValueError(f"{len(gt_boxes)} box tensors but {len(gt_labels)} label tensors")
    for i, (boxes_i, labels_i) in enumerate(zip(gt_boxes, gt_labels, strict=True)):
        if boxes_i.ndim != 2 or boxes_i.shape[-1] != 4 or len(boxes_i) != len(labels_i):
            raise ValueError(f"image {i}: boxes {tuple(boxes_i.shape)} do not match {len(labels_i)} labels")
    if device is None:
        device = gt_boxes[0].device if len(gt_boxes) else torch.device("cpu")
    counts = [len(b) for b in gt_boxes]  # host-side sizes, no device sync
    extra = max([1, *counts]) - max(counts, default=0)  # at least one (invalid) column, so argmin has a dim
    boxes = pad_sequence([b.to(device, torch.float32) for b in gt_boxes], batch_first=True)
    labels = pad_sequence([t.to(device, torch.int64) for t in gt_labels], batch_first=True, padding_value=-1)
    boxes = nn.functional.pad(boxes, (0, 0, 0, extra))  # [B, G, 4]
    labels = nn.functional.pad(labels, (0, extra), value=-1)  # [B, G]
    # Built on the device (a host tensor of counts copied over would sync the stream on CUDA).
    valid = pad_sequence([torch.ones(n, dtype=torch.bool, device=device) for n in counts], batch_first=True)
    valid = nn.functional.pad(valid, (0, extra), value=False)  # [B, G]
    return boxes, labels, valid


def scale_ranges(strides: Tensor, num_points_per_level: Sequence[int]) -> tuple[Tensor, Tensor]:
    """Per-point ``(lower, upper)`` bounds on ``max(l, t, r, b)`` in pixels, as torchvision's FCOS."""
    lower = strides * 4
    upper = strides * 8
    lower[: num_points_per_level[0]] = 0
    upper[-num_points_per_level[-1] :] = float("inf")
    return lower, upper  # [N], [N]


@torch.no_grad()
def assign_fcos_targets(
    points: Tensor,
    strides: Tensor,
    num_points_per_level: Sequence[int],
    gt_boxes: Sequence[Tensor],
    gt_labels: Sequence[Tensor],
    center_sampling_radius: float = 1.5,
) -> FCOSTargets:
    """Assign every point of every image to one ground-truth box or to background.

    Args:
        points: ``[N, 2]`` (x, y) point positions in pixels.
        strides: ``[N]`` stride of each point's level.
        num_points_per_level: points per level, in order (for the first/last level scale bounds).
        gt_boxes: per image ``[G_i, 4]`` xyxy boxes in pixels.
        gt_labels: per image ``[G_i]`` int64 labels ``0..C-1``.
        center_sampling_radius: in strides (1.5 as in FCOS / torchvision).
    """
    boxes, labels, valid = pad_ground_truth(gt_boxes, gt_labels, device=points.device)  # [B, G, 4], [B, G]
    points, strides = points.float(), strides.float()  # pixels in float32, whatever the model's dtype
    x = points[None, :, None, 0]  # [1, N, 1]
    y = points[None, :, None, 1]
    x0, y0, x1, y1 = boxes[:, None].unbind(dim=-1)  # each [B, 1, G]
    distances = torch.stack([x - x0, y - y0, x1 - x, y1 - y], dim=-1)  # [B, N, G, 4] pixels

    centres = (boxes[..., :2] + boxes[..., 2:]) / 2  # [B, G, 2]
    centre_offset = (points[None, :, None, :] - centres[:, None]).abs().max(dim=-1).values  # [B, N, G]
    match = centre_offset < center_sampling_radius * strides[None, :, None]
    match &= distances.min(dim=-1).values > 0
    lower, upper = scale_ranges(strides, num_points_per_level)
    max_distance = distances.max(dim=-1).values  # [B, N, G]
    match &= (max_distance > lower[None, :, None]) & (max_distance < upper[None, :, None])
    match &= valid[:, None, :]  # padding is [0, 0, 0, 0], never matched anyway: belt and braces

    areas = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])  # [B, G]
    candidate_areas = torch.where(match, areas[:, None, :], torch.full_like(max_distance, float("inf")))
    matched = candidate_areas.argmin(dim=-1)  # [B, N] first smallest area
    foreground = match.any(dim=-1)  # [B, N]

    matched_boxes = torch.gather(boxes, 1, matched[..., None].expand(-1, -1, 4))  # [B, N, 4]
    matched_labels = torch.gather(labels, 1, matched)  # [B, N]
    matched_distances = torch.gather(distances, 2, matched[..., None, None].expand(-1, -1, 1, 4))
    ltrb = matched_distances.squeeze(2) / strides[None, :, None]  # [B, N, 4] stride units

    fg = foreground[..., None]
    ltrb = torch.where(fg, ltrb, torch.zeros_like(ltrb))
    left_right, top_bottom = ltrb[..., [0, 2]], ltrb[..., [1, 3]]
    ratio = (left_right.min(dim=-1).values / left_right.max(dim=-1).values) * (
        top_bottom.min(dim=-1).values / top_bottom.max(dim=-1).values
    )
    centerness = torch.where(foreground, ratio, torch.zeros_like(ratio)).sqrt()  # 0/0 on background masked

    return FCOSTargets(
        foreground_mask=foreground,
        labels=torch.where(foreground, matched_labels, -1),
        matched_gt_index=torch.where(foreground, matched, -1),
        box_targets=torch.where(fg, matched_boxes, torch.zeros_like(matched_boxes)),
        ltrb_targets=ltrb,
        centerness_targets=centerness,
    )
