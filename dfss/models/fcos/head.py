"""The shared FCOS head: classification branch and regression branch (box + centerness).

Module and parameter names mirror torchvision's ``FCOSHead`` (``classification_head.conv``,
``classification_head.cls_logits``, ``regression_head.conv``, ``regression_head.bbox_reg``,
``regression_head.bbox_ctrness``), so with ``box_head="scalar"`` and ``use_scales=False`` the head
is torchvision's, parameter for parameter.

Two box heads coexist behind ``box_head``:

- ``"scalar"`` (torchvision parity path): ``bbox_reg`` predicts 4 values per point, ``ReLU``-ed, the
  side distances in stride units.
- ``"distribution"`` (Generalized Focal Loss / Localization Distillation): ``bbox_reg`` predicts
  ``4 × num_bins`` logits, a distribution per side over the distances ``0, 1, …, num_bins − 1``
  (stride units). The head returns those logits *and* their softmax expectation as the side
  distances, so every consumer of ``box_regression`` (decoding, GIoU, post-processing) works on
  either head; only the DFL term and the distillation losses read the distribution.

Optional per-level learnable scales (FCOS paper; not in torchvision): one scalar per level
multiplying the regression output (scalar head: before the ReLU; distribution head: the logits,
as GFL does).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor, nn

from dfss.errors import ConfigError

BOX_HEADS = ("scalar", "distribution")


@dataclass(frozen=True)
class FCOSHeadOutputs:
    """Per-point head outputs, levels concatenated (each level row-major)."""

    cls_logits: Tensor  # [B, N, C]
    box_regression: Tensor  # [B, N, 4] non-negative (l, t, r, b) in stride units
    ctrness_logits: Tensor  # [B, N]
    box_distribution_logits: Tensor | None  # [B, N, 4, R] with the distribution head, else None


def _conv_tower(channels: int, num_convs: int, norm_layer: Callable[[int], nn.Module]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(num_convs):
        conv = nn.Conv2d(channels, channels, kernel_size=3, stride=1, padding=1)
        nn.init.normal_(conv.weight, std=0.01)
        nn.init.zeros_(conv.bias)
        layers += [conv, norm_layer(channels), nn.ReLU()]
    return nn.Sequential(*layers)


def _to_points(x: Tensor, channels_per_point: int) -> Tensor:
    """``[B, K·P, H, W]`` → ``[B, H·W, K·P]`` with row-major points (K values of size P per point)."""
    batch, _, height, width = x.shape
    return x.permute(0, 2, 3, 1).reshape(batch, height * width, channels_per_point)


class FCOSClassificationHead(nn.Module):
    """``num_convs`` × (conv 3×3, GroupNorm, ReLU) then a 3×3 conv to ``num_classes`` logits."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        num_convs: int = 4,
        prior_probability: float = 0.01,
        norm_layer: Callable[[int], nn.Module] | None = None,
    ) -> None:
        super().__init__()
        if norm_layer is None:
            norm_layer = partial(nn.GroupNorm, 32)
        self.num_classes = num_classes
        self.prior_probability = prior_probability
        self.conv = _conv_tower(in_channels, num_convs, norm_layer)
        self.cls_logits = nn.Conv2d(in_channels, num_classes, kernel_size=3, stride=1, padding=1)
        self.reset_logits()

    def reset_logits(self) -> None:
        """(Re-)initialise the class logits layer: small weights, bias at the prior probability."""
        nn.init.normal_(self.cls_logits.weight, std=0.01)
        prior = self.prior_probability
        nn.init.constant_(self.cls_logits.bias, -math.log((1 - prior) / prior))

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        logits = [_to_points(self.cls_logits(self.conv(f)), self.num_classes) for f in features]
        return torch.cat(logits, dim=1)  # [B, N, C]


class FCOSRegressionHead(nn.Module):
    """``num_convs`` × (conv, GroupNorm, ReLU) then box (scalar or distribution) and centerness convs."""

    def __init__(
        self,
        in_channels: int,
        num_convs: int = 4,
        box_head: str = "scalar",
        num_bins: int = 17,
        num_levels: int = 5,
        use_scales: bool = False,
        norm_layer: Callable[[int], nn.Module] | None = None,
    ) -> None:
        super().__init__()
        if box_head not in BOX_HEADS:
            raise ConfigError(f"box_head must be one of {BOX_HEADS}, got {box_head!r}")
        if box_head == "distribution" and num_bins < 2:
            raise ValueError(f"the distribution head needs num_bins >= 2, got {num_bins}")
        if norm_layer is None:
            norm_layer = partial(nn.GroupNorm, 32)
        self.box_head = box_head
        self.num_bins = num_bins if box_head == "distribution" else 1
        self.conv = _conv_tower(in_channels, num_convs, norm_layer)
        self.bbox_reg = nn.Conv2d(in_channels, 4 * self.num_bins, kernel_size=3, stride=1, padding=1)
        self.bbox_ctrness = nn.Conv2d(in_channels, 1, kernel_size=3, stride=1, padding=1)
        for layer in (self.bbox_reg, self.bbox_ctrness):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)
        # Absent (not a parameter of ones) when disabled, so the state dict stays torchvision's.
        self.scales = nn.Parameter(torch.ones(num_levels)) if use_scales else None
        self.register_buffer("bins", torch.arange(self.num_bins, dtype=torch.float32), persistent=False)

    def forward(self, features: Sequence[Tensor]) -> tuple[Tensor, Tensor, Tensor | None]:
        """Returns ``(box_regression [B, N, 4], ctrness_logits [B, N],
        box_distribution_logits [B, N, 4, R] | None)``."""
        if self.scales is not None and len(features) != len(self.scales):
            raise ValueError(f"head has {len(self.scales)} level scales, got {len(features)} levels")
        box_per_level, ctrness_per_level = [], []
        for level, f in enumerate(features):
            tower = self.conv(f)
            box = self.bbox_reg(tower)  # [B, 4·R, H, W]
            if self.scales is not None:
                box = box * self.scales[level]
            box_per_level.append(_to_points(box, 4 * self.num_bins))
            ctrness_per_level.append(_to_points(self.bbox_ctrness(tower), 1))
        box_raw = torch.cat(box_per_level, dim=1)  # [B, N, 4·R]
        ctrness_logits = torch.cat(ctrness_per_level, dim=1).squeeze(-1)  # [B, N]
        if self.box_head == "scalar":
            return nn.functional.relu(box_raw), ctrness_logits, None
        distribution_logits = box_raw.unflatten(-1, (4, self.num_bins))  # [B, N, 4, R]
        probs = distribution_logits.float().softmax(dim=-1)
        box_regression = (probs * self.bins).sum(dim=-1)  # [B, N, 4] float32 expectation (stride units)
        return box_regression, ctrness_logits, distribution_logits


class FCOSHead(nn.Module):
    """Classification and regression heads shared over the pyramid levels."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        num_convs: int = 4,
        prior_probability: float = 0.01,
        box_head: str = "scalar",
        num_bins: int = 17,
        num_levels: int = 5,
        use_scales: bool = False,
        classification_head: FCOSClassificationHead | None = None,
        regression_head: FCOSRegressionHead | None = None,
    ) -> None:
        super().__init__()
        if classification_head is None:
            classification_head = FCOSClassificationHead(
                in_channels, num_classes, num_convs, prior_probability
            )
        if regression_head is None:
            regression_head = FCOSRegressionHead(
                in_channels,
                num_convs,
                box_head=box_head,
                num_bins=num_bins,
                num_levels=num_levels,
                use_scales=use_scales,
            )
        self.classification_head = classification_head
        self.regression_head = regression_head

    @property
    def num_classes(self) -> int:
        return self.classification_head.num_classes

    def forward(self, features: Sequence[Tensor]) -> FCOSHeadOutputs:
        cls_logits = self.classification_head(features)  # [B, N, C]
        box_regression, ctrness_logits, distribution_logits = self.regression_head(features)
        return FCOSHeadOutputs(
            cls_logits=cls_logits,
            box_regression=box_regression,
            ctrness_logits=ctrness_logits,
            box_distribution_logits=distribution_logits,
        )
