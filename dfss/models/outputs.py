"""The one container every detector's ``forward`` returns: raw per-point outputs, never losses.

Points of all pyramid levels are concatenated level by level (each level row-major, y then x), the
same order in every image of the batch. Outputs are *logits* in train and eval mode alike; decoding,
scores, the unknown rule and NMS live in post-processing, losses in the criteria.

Box formats (``box_format``):

- ``"ltrb"`` (FCOS): ``box_regression`` holds the non-negative distances (left, top, right, bottom)
  from the point to the box sides, **in units of the point's stride**;
  ``x1 = px - l * stride``, ``y1 = py - t * stride``, ``x2 = px + r * stride``, ``y2 = py + b * stride``.
- ``"yolox"`` (YOLOX): ``box_regression`` holds ``(dx, dy, log w, log h)`` in stride units with the
  grid point ``(gx, gy) * stride`` as ``points``;
  ``cx = px + dx * stride``, ``cy = py + dy * stride``, ``w = exp(log w) * stride``,
  ``h = exp(log h) * stride``.

``box_distribution_logits`` (optional, FCOS with a distribution box head, as in Generalized Focal
Loss / Localization Distillation): ``[B, N, 4, R]`` logits over ``R`` bins ``0..R-1`` (stride units)
per side; the softmax expectation equals the side distance in ``box_regression``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

BOX_FORMATS = ("ltrb", "yolox")


@dataclass(frozen=True)
class DenseOutputs:
    """Raw outputs of a dense detector for a batch of ``B`` images with ``N`` points in all."""

    points: Tensor  # [N, 2] (x, y) of each point in input pixels
    strides: Tensor  # [N] stride of the level of each point
    num_points_per_level: tuple[int, ...]  # sums to N
    cls_logits: Tensor  # [B, N, C]
    box_regression: Tensor  # [B, N, 4] raw box output, see box_format
    quality_logits: Tensor  # [B, N] FCOS centerness or YOLOX objectness logits
    box_format: str  # one of BOX_FORMATS
    box_distribution_logits: Tensor | None = None  # [B, N, 4, R] per-side distance logits (FCOS-GFL)

    def __post_init__(self) -> None:
        if self.box_format not in BOX_FORMATS:
            raise ValueError(f"box_format must be one of {BOX_FORMATS}, got {self.box_format!r}")

    @property
    def num_images(self) -> int:
        return self.cls_logits.shape[0]

    @property
    def num_classes(self) -> int:
        return self.cls_logits.shape[-1]

    def float(self) -> DenseOutputs:
        """The same outputs with every tensor in float32 (after a bf16 autocast forward)."""
        distribution = self.box_distribution_logits
        return replace(
            self,
            points=self.points.float(),
            strides=self.strides.float(),
            cls_logits=self.cls_logits.float(),
            box_regression=self.box_regression.float(),
            quality_logits=self.quality_logits.float(),
            box_distribution_logits=None if distribution is None else distribution.float(),
        )


def decode_boxes(outputs: DenseOutputs) -> Tensor:
    """``[B, N, 4]`` float32 xyxy boxes in input pixels from the raw box outputs (pure, batched).

    Always computed in float32, whatever the dtype of the raw outputs: under bf16 autocast the raw
    values are bf16, and ``point + reg * stride`` in bf16 would round pixel coordinates to steps of
    2 px in 256-512 and 4 px in 512-1024. The precision contract of the project: every box in pixels
    (decoding, assignment, losses, KD targets, post-processing) is float32.
    """
    reg = outputs.box_regression.float()
    stride = outputs.strides.float()[None, :, None]  # [1, N, 1]
    points = outputs.points.float()[None]  # [1, N, 2]
    if outputs.box_format == "ltrb":
        dist = reg * stride
        return torch.cat([points - dist[..., :2], points + dist[..., 2:]], dim=-1)
    centre = points + reg[..., :2] * stride
    half_size = 0.5 * torch.exp(reg[..., 2:]) * stride
    return torch.cat([centre - half_size, centre + half_size], dim=-1)
