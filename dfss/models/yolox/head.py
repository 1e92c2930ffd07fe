"""Decoupled YOLOX head: per level a 1x1 stem, then a class branch and a box/objectness branch.

Mirrors Megvii's ``yolox/models/yolo_head.py::YOLOXHead`` module names (``stems``, ``cls_convs``,
``reg_convs``, ``cls_preds``, ``reg_preds``, ``obj_preds``) and initialisation (class and
objectness biases at ``-log((1 - p) / p)`` with prior ``p = 0.01``), but returns raw logits in a
:class:`~dfss.models.outputs.DenseOutputs` in every mode: no losses, no sigmoid, no decoding, and
no state kept between calls (the grid points are rebuilt from the feature shapes).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from dfss.models.outputs import DenseOutputs
from dfss.models.yolox.blocks import BaseConv, make_conv

DEFAULT_STRIDES = (8, 16, 32)
DEFAULT_PRIOR_PROB = 1e-2


def prior_bias(prior_prob: float) -> float:
    """The logit whose sigmoid is ``prior_prob``."""
    return -math.log((1.0 - prior_prob) / prior_prob)


def grid_points(
    sizes_per_level: list[tuple[int, int]], strides: tuple[int, ...], device: torch.device
) -> tuple[Tensor, Tensor]:
    """``points [N, 2]`` = ``(gx·stride, gy·stride)`` and ``strides [N]``, level by level, row-major."""
    points_per_level, strides_per_level = [], []
    for (height, width), stride in zip(sizes_per_level, strides, strict=True):
        ys, xs = torch.meshgrid(
            torch.arange(height, device=device, dtype=torch.float32),
            torch.arange(width, device=device, dtype=torch.float32),
            indexing="ij",
        )
        points_per_level.append(torch.stack([xs, ys], dim=-1).reshape(-1, 2) * stride)
        strides_per_level.append(torch.full((height * width,), float(stride), device=device))
    return torch.cat(points_per_level), torch.cat(strides_per_level)


class YOLOXHead(nn.Module):
    """Anchor-free decoupled head over the PAFPN levels (one prediction per grid point)."""

    def __init__(
        self,
        num_classes: int,
        width: float = 1.0,
        strides: tuple[int, ...] = DEFAULT_STRIDES,
        in_channels: tuple[int, ...] = (256, 512, 1024),
        act: str = "silu",
        depthwise: bool = False,
        prior_prob: float = DEFAULT_PRIOR_PROB,
    ) -> None:
        super().__init__()
        if len(strides) != len(in_channels):
            raise ValueError(f"one stride per input level: strides={strides}, in_channels={in_channels}")
        self.num_classes = num_classes
        self.strides = tuple(strides)
        self.prior_prob = prior_prob
        hidden = int(256 * width)

        def branch() -> nn.Sequential:
            return nn.Sequential(
                make_conv(hidden, hidden, 3, 1, depthwise, act),
                make_conv(hidden, hidden, 3, 1, depthwise, act),
            )

        self.stems = nn.ModuleList(BaseConv(int(c * width), hidden, 1, 1, act=act) for c in in_channels)
        self.cls_convs = nn.ModuleList(branch() for _ in in_channels)
        self.reg_convs = nn.ModuleList(branch() for _ in in_channels)
        self.cls_preds = nn.ModuleList(nn.Conv2d(hidden, num_classes, 1) for _ in in_channels)
        self.reg_preds = nn.ModuleList(nn.Conv2d(hidden, 4, 1) for _ in in_channels)
        self.obj_preds = nn.ModuleList(nn.Conv2d(hidden, 1, 1) for _ in in_channels)
        self.reset_class_predictors()
        with torch.no_grad():
            for conv in self.obj_preds:
                conv.bias.fill_(prior_bias(prior_prob))

    def reset_class_predictors(self) -> None:
        """Re-initialise ``cls_preds`` (PyTorch default weights, prior-probability bias)."""
        with torch.no_grad():
            for conv in self.cls_preds:
                conv.reset_parameters()
                conv.bias.fill_(prior_bias(self.prior_prob))

    def forward(self, features_per_level: tuple[Tensor, ...]) -> DenseOutputs:
        cls_per_level, box_per_level, obj_per_level, sizes = [], [], [], []
        for level, features in enumerate(features_per_level):
            x = self.stems[level](features)
            cls_feat = self.cls_convs[level](x)
            reg_feat = self.reg_convs[level](x)
            cls_per_level.append(self.cls_preds[level](cls_feat).flatten(2))  # [B, C, HW]
            box_per_level.append(self.reg_preds[level](reg_feat).flatten(2))  # [B, 4, HW]
            obj_per_level.append(self.obj_preds[level](reg_feat).flatten(2))  # [B, 1, HW]
            sizes.append((features.shape[-2], features.shape[-1]))
        points, strides = grid_points(sizes, self.strides, features_per_level[0].device)
        return DenseOutputs(
            points=points,  # [N, 2]
            strides=strides,  # [N]
            num_points_per_level=tuple(h * w for h, w in sizes),
            cls_logits=torch.cat(cls_per_level, dim=2).transpose(1, 2),  # [B, N, C]
            box_regression=torch.cat(box_per_level, dim=2).transpose(1, 2),  # [B, N, 4]
            quality_logits=torch.cat(obj_per_level, dim=2)[:, 0],  # [B, N]
            box_format="yolox",
        )
