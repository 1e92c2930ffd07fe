"""Convolution blocks of YOLOX (Conv-BN-act, depthwise conv, CSP layer, SPP, Focus).

Attribute names (``conv``/``bn``, ``dconv``/``pconv``, ``conv1``..``conv3``, ``m``) mirror
Megvii's ``yolox/models/network_blocks.py`` so that official state dicts load without a key map.
Batch norm uses the official training settings (``eps=1e-3``, ``momentum=0.03``, set in the
official ``Exp.get_model``); the value of ``eps`` matters for eval-mode parity.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

BN_EPS = 1e-3
BN_MOMENTUM = 0.03
ACTIVATIONS = ("silu", "relu", "lrelu")


def make_activation(name: str) -> nn.Module:
    """The activation the official code builds for ``name`` (in place, as there)."""
    if name == "silu":
        return nn.SiLU(inplace=True)
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "lrelu":
        return nn.LeakyReLU(0.1, inplace=True)
    raise ValueError(f"activation must be one of {ACTIVATIONS}, got {name!r}")


class BaseConv(nn.Module):
    """Conv2d (same padding, no bias) -> BatchNorm2d -> activation."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        groups: int = 1,
        act: str = "silu",
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size=kernel_size,
            stride=stride,
            padding=(kernel_size - 1) // 2,
            groups=groups,
            bias=False,
        )
        self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.act = make_activation(act)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))


class DWConv(nn.Module):
    """Depthwise ``k x k`` BaseConv followed by a pointwise ``1 x 1`` BaseConv."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, act: str = "silu"
    ) -> None:
        super().__init__()
        self.dconv = BaseConv(in_channels, in_channels, kernel_size, stride, groups=in_channels, act=act)
        self.pconv = BaseConv(in_channels, out_channels, 1, 1, act=act)

    def forward(self, x: Tensor) -> Tensor:
        return self.pconv(self.dconv(x))


def make_conv(
    in_channels: int, out_channels: int, kernel_size: int, stride: int, depthwise: bool, act: str
) -> nn.Module:
    """``DWConv`` when ``depthwise`` (YOLOX-nano), else ``BaseConv``."""
    if depthwise:
        return DWConv(in_channels, out_channels, kernel_size, stride, act=act)
    return BaseConv(in_channels, out_channels, kernel_size, stride, act=act)


class Bottleneck(nn.Module):
    """1x1 conv -> 3x3 conv, with a residual connection when shapes allow and ``shortcut``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        shortcut: bool = True,
        expansion: float = 0.5,
        depthwise: bool = False,
        act: str = "silu",
    ) -> None:
        super().__init__()
        hidden_channels = int(out_channels * expansion)
        self.conv1 = BaseConv(in_channels, hidden_channels, 1, 1, act=act)
        self.conv2 = make_conv(hidden_channels, out_channels, 3, 1, depthwise, act)
        self.use_add = shortcut and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv2(self.conv1(x))
        return y + x if self.use_add else y


class CSPLayer(nn.Module):
    """Cross-stage partial layer (C3 in YOLOv5): two 1x1 branches, ``num_blocks`` bottlenecks on one."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_blocks: int = 1,
        shortcut: bool = True,
        expansion: float = 0.5,
        depthwise: bool = False,
        act: str = "silu",
    ) -> None:
        super().__init__()
        hidden_channels = int(out_channels * expansion)
        self.conv1 = BaseConv(in_channels, hidden_channels, 1, 1, act=act)
        self.conv2 = BaseConv(in_channels, hidden_channels, 1, 1, act=act)
        self.conv3 = BaseConv(2 * hidden_channels, out_channels, 1, 1, act=act)
        self.m = nn.Sequential(
            *(
                Bottleneck(hidden_channels, hidden_channels, shortcut, 1.0, depthwise, act=act)
                for _ in range(num_blocks)
            )
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.conv3(torch.cat([self.m(self.conv1(x)), self.conv2(x)], dim=1))


class SPPBottleneck(nn.Module):
    """Spatial pyramid pooling (max pools 5/9/13, stride 1) between two 1x1 convs."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_sizes: tuple[int, ...] = (5, 9, 13),
        act: str = "silu",
    ) -> None:
        super().__init__()
        hidden_channels = in_channels // 2
        self.conv1 = BaseConv(in_channels, hidden_channels, 1, 1, act=act)
        self.m = nn.ModuleList(nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2) for k in kernel_sizes)
        self.conv2 = BaseConv(hidden_channels * (len(kernel_sizes) + 1), out_channels, 1, 1, act=act)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        return self.conv2(torch.cat([x, *(pool(x) for pool in self.m)], dim=1))


class Focus(nn.Module):
    """Space-to-depth (``[B, C, H, W] -> [B, 4C, H/2, W/2]``) followed by a BaseConv.

    The four sub-images are stacked in the official order: top-left, bottom-left, top-right,
    bottom-right.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1, act: str = "silu"
    ) -> None:
        super().__init__()
        self.conv = BaseConv(in_channels * 4, out_channels, kernel_size, stride, act=act)

    def forward(self, x: Tensor) -> Tensor:
        top_left = x[..., ::2, ::2]
        top_right = x[..., ::2, 1::2]
        bottom_left = x[..., 1::2, ::2]
        bottom_right = x[..., 1::2, 1::2]
        return self.conv(torch.cat([top_left, bottom_left, top_right, bottom_right], dim=1))
