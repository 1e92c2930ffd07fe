"""CSPDarknet, the YOLOX backbone: Focus stem, four CSP stages, SPP bottleneck in the last.

Mirrors Megvii's ``yolox/models/darknet.py::CSPDarknet`` (module names ``stem``, ``dark2`` ..
``dark5``), with channels ``64·width`` .. ``1024·width`` and ``max(round(3·depth), 1)`` bottlenecks
per CSP layer (three times that in ``dark3``/``dark4``).
"""

from __future__ import annotations

from torch import Tensor, nn

from dfss.models.yolox.blocks import CSPLayer, Focus, SPPBottleneck, make_conv


class CSPDarknet(nn.Module):
    """Returns the ``dark3``, ``dark4``, ``dark5`` features (strides 8, 16, 32)."""

    def __init__(self, depth: float, width: float, depthwise: bool = False, act: str = "silu") -> None:
        super().__init__()
        base_channels = int(width * 64)
        base_depth = max(round(depth * 3), 1)

        def stage(in_channels: int, num_blocks: int) -> list[nn.Module]:
            out_channels = in_channels * 2
            return [
                make_conv(in_channels, out_channels, 3, 2, depthwise, act),
                CSPLayer(out_channels, out_channels, num_blocks, depthwise=depthwise, act=act),
            ]

        self.stem = Focus(3, base_channels, kernel_size=3, act=act)
        self.dark2 = nn.Sequential(*stage(base_channels, base_depth))
        self.dark3 = nn.Sequential(*stage(base_channels * 2, base_depth * 3))
        self.dark4 = nn.Sequential(*stage(base_channels * 4, base_depth * 3))
        self.dark5 = nn.Sequential(
            make_conv(base_channels * 8, base_channels * 16, 3, 2, depthwise, act),
            SPPBottleneck(base_channels * 16, base_channels * 16, act=act),
            CSPLayer(
                base_channels * 16,
                base_channels * 16,
                base_depth,
                shortcut=False,
                depthwise=depthwise,
                act=act,
            ),
        )
        self.out_channels = (base_channels * 4, base_channels * 8, base_channels * 16)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        dark2 = self.dark2(self.stem(x))
        dark3 = self.dark3(dark2)  # [B, 256·w, H/8, W/8]
        dark4 = self.dark4(dark3)  # [B, 512·w, H/16, W/16]
        dark5 = self.dark5(dark4)  # [B, 1024·w, H/32, W/32]
        return dark3, dark4, dark5
