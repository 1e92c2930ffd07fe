"""PAFPN neck of YOLOX: a top-down FPN path then a bottom-up path, CSP layers after each merge.

Mirrors Megvii's ``yolox/models/yolo_pafpn.py::YOLOPAFPN``; the backbone is held as
``self.backbone`` there too, so official keys read ``backbone.backbone.stem...`` in the full model.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dfss.models.yolox.blocks import BaseConv, CSPLayer, make_conv
from dfss.models.yolox.darknet import CSPDarknet


class YOLOPAFPN(nn.Module):
    """CSPDarknet + PAFPN; returns features at strides 8, 16, 32 with ``(256, 512, 1024)·width`` channels."""

    def __init__(self, depth: float, width: float, depthwise: bool = False, act: str = "silu") -> None:
        super().__init__()
        self.backbone = CSPDarknet(depth, width, depthwise=depthwise, act=act)
        c3, c4, c5 = (int(c * width) for c in (256, 512, 1024))
        num_blocks = round(3 * depth)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")

        def csp(in_channels: int, out_channels: int) -> CSPLayer:
            return CSPLayer(
                in_channels, out_channels, num_blocks, shortcut=False, depthwise=depthwise, act=act
            )

        # top-down
        self.lateral_conv0 = BaseConv(c5, c4, 1, 1, act=act)
        self.C3_p4 = csp(2 * c4, c4)
        self.reduce_conv1 = BaseConv(c4, c3, 1, 1, act=act)
        self.C3_p3 = csp(2 * c3, c3)
        # bottom-up
        self.bu_conv2 = make_conv(c3, c3, 3, 2, depthwise, act)
        self.C3_n3 = csp(2 * c3, c4)
        self.bu_conv1 = make_conv(c4, c4, 3, 2, depthwise, act)
        self.C3_n4 = csp(2 * c4, c5)
        self.out_channels = (c3, c4, c5)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        dark3, dark4, dark5 = self.backbone(x)

        fpn_out0 = self.lateral_conv0(dark5)  # stride 32
        f_out0 = self.C3_p4(torch.cat([self.upsample(fpn_out0), dark4], dim=1))  # stride 16
        fpn_out1 = self.reduce_conv1(f_out0)  # stride 16
        pan_out2 = self.C3_p3(torch.cat([self.upsample(fpn_out1), dark3], dim=1))  # stride 8

        pan_out1 = self.C3_n3(torch.cat([self.bu_conv2(pan_out2), fpn_out1], dim=1))  # stride 16
        pan_out0 = self.C3_n4(torch.cat([self.bu_conv1(pan_out1), fpn_out0], dim=1))  # stride 32
        return pan_out2, pan_out1, pan_out0
