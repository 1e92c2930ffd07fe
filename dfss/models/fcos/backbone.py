"""Backbones with an FPN P3–P7 for FCOS: torchvision's ResNet-50 (parity path) or any timm model.

Both return an ``OrderedDict`` of five feature maps (strides 8, 16, 32, 64, 128) with
``out_channels`` channels each, and expose ``out_channels``, ``strides`` and the input
normalisation (``image_mean`` / ``image_std``, on 0–1 pixels) the backbone was trained with.
Module names are ``body`` (the feature extractor) and ``fpn``, as in torchvision's
``BackboneWithFPN``, so ``fcos_resnet50_fpn`` state dicts load without key mapping.
"""

from __future__ import annotations

from collections import OrderedDict

import timm
from torch import Tensor, nn
from torchvision.models.detection.backbone_utils import BackboneWithFPN, resnet_fpn_backbone
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelP6P7
from torchvision.ops.misc import FrozenBatchNorm2d

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FPN_STRIDES = (8, 16, 32, 64, 128)  # P3..P7


# ResNet normalisation: torchvision's frozen statistics (for pretrained weights), or batch norm
# that learns (for training from random init, where frozen BN is the identity).
NORMS = {"frozen_bn": FrozenBatchNorm2d, "bn": nn.BatchNorm2d}


def resnet50_fpn_backbone(
    trainable_layers: int = 3, out_channels: int = 256, norm: str = "frozen_bn"
) -> BackboneWithFPN:
    """torchvision's FCOS R-50 backbone: ResNet-50, FPN on C3–C5, P6/P7 from P5.

    With ``norm="frozen_bn"`` it is built exactly as ``torchvision.models.detection.fcos_resnet50_fpn``
    builds it for pretrained weights (FrozenBatchNorm2d; ``trainable_layers`` counts the last ResNet
    stages left trainable, 0–5). Random init: load ImageNet or COCO weights from a local file
    afterwards (no downloads here). Without such weights, ``norm="bn"`` with ``trainable_layers=5``
    trains from scratch: frozen BN at its initial statistics is the identity, and the frozen stem
    would stay random.
    """
    if out_channels != 256:
        # torchvision's extractor hard-codes 256 FPN channels; P6/P7 follow it.
        raise ValueError(f"the torchvision R-50 FPN has 256 channels, got out_channels={out_channels}")
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {sorted(NORMS)}, got {norm!r}")
    backbone = resnet_fpn_backbone(
        backbone_name="resnet50",
        weights=None,
        norm_layer=NORMS[norm],
        trainable_layers=trainable_layers,
        returned_layers=[2, 3, 4],
        extra_blocks=LastLevelP6P7(256, 256),
    )
    backbone.strides = FPN_STRIDES
    backbone.image_mean = IMAGENET_MEAN
    backbone.image_std = IMAGENET_STD
    return backbone


class TimmFPNBackbone(nn.Module):
    """A timm ``features_only`` model on C3–C5 (strides 8/16/32) plus an FPN with P6/P7.

    P6 is computed from P5 (as torchvision's FCOS/RetinaNet ``LastLevelP6P7`` with equal channels),
    P7 from ReLU(P6). The input normalisation is read from the timm model's ``pretrained_cfg``.
    """

    def __init__(
        self,
        model_name: str,
        out_channels: int = 256,
        pretrained: bool = False,
        out_indices: tuple[int, ...] | None = None,
    ) -> None:
        super().__init__()
        if out_indices is None:
            # timm's feature_info lists every stage; pick the ones at strides 8, 16, 32.
            probe = timm.create_model(model_name, features_only=True, pretrained=False)
            reductions = probe.feature_info.reduction()
            out_indices = tuple(reductions.index(s) for s in FPN_STRIDES[:3])
            del probe
        self.body = timm.create_model(
            model_name, features_only=True, out_indices=out_indices, pretrained=pretrained
        )
        reductions = tuple(self.body.feature_info.reduction())
        if reductions != FPN_STRIDES[:3]:
            raise ValueError(
                f"{model_name}: out_indices {out_indices} give strides {reductions}, need (8, 16, 32)"
            )
        self.fpn = FeaturePyramidNetwork(
            in_channels_list=list(self.body.feature_info.channels()),
            out_channels=out_channels,
            extra_blocks=LastLevelP6P7(out_channels, out_channels),
        )
        self.out_channels = out_channels
        self.strides = FPN_STRIDES
        cfg = self.body.pretrained_cfg
        self.image_mean = tuple(cfg.get("mean", IMAGENET_MEAN))
        self.image_std = tuple(cfg.get("std", IMAGENET_STD))

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        features = self.body(x)  # list of [B, C_i, H/s_i, W/s_i], s_i = 8, 16, 32
        return self.fpn(OrderedDict((str(i), f) for i, f in enumerate(features)))
