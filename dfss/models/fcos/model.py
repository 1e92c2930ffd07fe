"""The FCOS detector (raw outputs only) and its variants ``fcos_r50``, ``fcos_r18``, ``fcos_mobilenetv3``.

``FCOS.forward(images)`` takes letterboxed ``uint8`` (or float 0–255) RGB ``[B, 3, H, W]``,
normalises them itself (``/255`` then the backbone's mean/std, as torchvision does) and returns one
:class:`~dfss.models.outputs.DenseOutputs` with ``box_format="ltrb"`` — in train and eval mode
alike. It never resizes.

Points are placed as torchvision's anchor generator places its anchor centres: a level whose grid
is ``h × w`` on an ``H × W`` input steps by ``(W // w, H // h)`` pixels, so the point of cell
``(i, j)`` is ``((j + point_offset)·(W // w), (i + point_offset)·(H // h))``. That step is the
nominal stride (8, 16, 32, 64, 128) where the input size is a multiple of it; at 320 px the 3 × 3
P7 grid steps by 106 px, not 128 (points 0 / 106 / 212). The FCOS paper and mmdet put the point at
the cell centre (``point_offset=0.5``, the default of the light variants); torchvision's FCOS uses
its anchor centres (``point_offset=0.0``, the default of ``fcos_r50`` so torchvision checkpoints
behave as trained). Everything measured *in strides* — box regression, the scale ranges and centre
sampling of the assignment, the distribution bins — uses the nominal stride, as torchvision's box
coder and matcher use the anchor size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor, nn

from dfss.models.fcos.backbone import TimmFPNBackbone, resnet50_fpn_backbone
from dfss.models.fcos.head import FCOSHead
from dfss.models.fcos.weights import load_fcos_weights
from dfss.models.outputs import DenseOutputs


def make_points(
    feature_sizes: Sequence[tuple[int, int]],
    strides: Sequence[int],
    point_offset: float,
    device: torch.device | None = None,
    image_size: tuple[int, int] | None = None,
) -> tuple[Tensor, Tensor]:
    """Points ``[N, 2]`` (x, y) in pixels and their nominal strides ``[N]``, levels concatenated,
    row-major. With ``image_size`` ``(H, W)`` a level's points step by ``(W // w, H // h)`` (torchvision's
    anchor centres); without it, by the nominal stride."""
    points_per_level, strides_per_level = [], []
    for (height, width), stride in zip(feature_sizes, strides, strict=True):
        step_y, step_x = (
            (stride, stride) if image_size is None else (image_size[0] // height, image_size[1] // width)
        )
        ys = (torch.arange(height, device=device, dtype=torch.float32) + point_offset) * step_y
        xs = (torch.arange(width, device=device, dtype=torch.float32) + point_offset) * step_x
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        points_per_level.append(torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], dim=1))
        strides_per_level.append(torch.full((height * width,), float(stride), device=device))
    return torch.cat(points_per_level), torch.cat(strides_per_level)


class FCOS(nn.Module):
    """FCOS: a backbone with FPN (``backbone``) and a shared head (``head``), returning raw outputs.

    ``backbone`` must return an ordered mapping of feature maps (one per stride) and expose
    ``out_channels``; its ``strides``, ``image_mean`` and ``image_std`` attributes are used when the
    matching arguments are ``None``. ``head`` defaults to :class:`FCOSHead` built from ``head_kwargs``
    (``box_head``, ``num_bins``, ``use_scales``, ``num_convs``, ``prior_probability``).
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        head: FCOSHead | None = None,
        strides: Sequence[int] | None = None,
        point_offset: float = 0.5,
        image_mean: Sequence[float] | None = None,
        image_std: Sequence[float] | None = None,
        box_head: str = "scalar",
        num_bins: int = 17,
        use_scales: bool = True,
        num_convs: int = 4,
        prior_probability: float = 0.01,
    ) -> None:
        super().__init__()
        if strides is None:
            strides = backbone.strides
        if image_mean is None:
            image_mean = getattr(backbone, "image_mean", (0.485, 0.456, 0.406))
        if image_std is None:
            image_std = getattr(backbone, "image_std", (0.229, 0.224, 0.225))
        if head is None:
            head = FCOSHead(
                backbone.out_channels,
                num_classes,
                num_convs=num_convs,
                prior_probability=prior_probability,
                box_head=box_head,
                num_bins=num_bins,
                num_levels=len(strides),
                use_scales=use_scales,
            )
        if head.num_classes != num_classes:
            raise ValueError(f"head predicts {head.num_classes} classes, model has num_classes={num_classes}")
        self.backbone = backbone
        self.head = head
        self.num_classes = num_classes
        self.strides = tuple(int(s) for s in strides)
        self.point_offset = float(point_offset)
        # Not persistent: the state dict stays exactly torchvision's FCOS keys.
        self.register_buffer("pixel_mean", torch.tensor(image_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(image_std).view(1, 3, 1, 1), persistent=False)

    def normalize(self, images: Tensor) -> Tensor:
        """``uint8`` or float 0–255 ``[B, 3, H, W]`` → normalised float, as torchvision's transform."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected RGB images [B, 3, H, W], got {tuple(images.shape)}")
        pixels = images.to(self.pixel_mean.dtype) / 255.0
        return (pixels - self.pixel_mean) / self.pixel_std

    def forward(self, images: Tensor) -> DenseOutputs:
        features = list(self.backbone(self.normalize(images)).values())  # [B, D, H_l, W_l] per level
        if len(features) != len(self.strides):
            raise ValueError(f"backbone returned {len(features)} levels for strides {self.strides}")
        head_outputs = self.head(features)
        feature_sizes = [(f.shape[-2], f.shape[-1]) for f in features]
        points, strides = make_points(
            feature_sizes, self.strides, self.point_offset, images.device, image_size=tuple(images.shape[-2:])
        )
        return DenseOutputs(
            points=points,  # [N, 2]
            strides=strides,  # [N]
            num_points_per_level=tuple(h * w for h, w in feature_sizes),
            cls_logits=head_outputs.cls_logits,  # [B, N, C]
            box_regression=head_outputs.box_regression,  # [B, N, 4]
            quality_logits=head_outputs.ctrness_logits,  # [B, N]
            box_format="ltrb",
            box_distribution_logits=head_outputs.box_distribution_logits,  # [B, N, 4, R] | None
        )


def fcos_r50(
    num_classes: int,
    weights: str | Path | None = None,
    trainable_backbone_layers: int | None = None,
    box_head: str = "scalar",
    num_bins: int = 17,
    use_scales: bool = False,
    point_offset: float = 0.0,
    norm: str = "auto",
) -> FCOS:
    """torchvision's ``fcos_resnet50_fpn`` architecture (ResNet-50, FPN, GN head, no scales).

    ``weights``: a local ``fcos_resnet50_fpn_coco-*.pth`` or any state dict of this model
    (:func:`~dfss.models.fcos.weights.load_fcos_weights`); the class logits layer is re-initialised
    when ``num_classes`` differs from the file's (logged). The defaults are torchvision's: with
    weights, frozen batch norm and 3 trainable stages (its recipe for pretrained weights); without,
    learning batch norm and every stage trainable (``norm="auto"``, ``trainable_backbone_layers=None``),
    as ``fcos_resnet50_fpn(weights=None)`` builds it. ``norm="bn"`` with weights fine-tunes the batch
    norm from the file's statistics.
    ``box_head="distribution"`` or ``use_scales=True`` depart from torchvision's model (and then a
    torchvision checkpoint no longer fits the box layer: an error).
    """
    if norm == "auto":
        norm = "frozen_bn" if weights is not None else "bn"
    if trainable_backbone_layers is None:
        trainable_backbone_layers = 3 if weights is not None else 5
    backbone = resnet50_fpn_backbone(trainable_layers=trainable_backbone_layers, norm=norm)
    model = FCOS(
        backbone,
        num_classes,
        point_offset=point_offset,
        box_head=box_head,
        num_bins=num_bins,
        use_scales=use_scales,
    )
    if weights is not None:
        load_fcos_weights(model, weights)
    return model


def fcos_timm(
    backbone_name: str,
    num_classes: int,
    fpn_channels: int = 256,
    out_indices: tuple[int, ...] | None = None,
    pretrained_backbone: bool = False,
    box_head: str = "scalar",
    num_bins: int = 17,
    use_scales: bool = True,
    point_offset: float = 0.5,
    num_convs: int = 4,
    weights: str | Path | None = None,
) -> FCOS:
    """FCOS on any timm backbone with strides 8/16/32 (``pretrained_backbone`` needs timm's cache);
    ``weights``: a local state dict of this model (:func:`~dfss.models.fcos.weights.load_fcos_weights`)."""
    backbone = TimmFPNBackbone(
        backbone_name, out_channels=fpn_channels, pretrained=pretrained_backbone, out_indices=out_indices
    )
    model = FCOS(
        backbone,
        num_classes,
        point_offset=point_offset,
        box_head=box_head,
        num_bins=num_bins,
        use_scales=use_scales,
        num_convs=num_convs,
    )
    if weights is not None:
        load_fcos_weights(model, weights)
    return model


def _timm_variant(name: str, backbone_name: str, fpn_channels: int, summary: str) -> Callable[..., FCOS]:
    """The named builder of a timm-backbone student (a Hydra ``_target_``): :func:`fcos_timm` with the
    backbone and its C3–C5 features fixed, and its own default FPN width."""

    def builder(num_classes: int, **kwargs: Any) -> FCOS:
        kwargs.setdefault("fpn_channels", fpn_channels)
        return fcos_timm(backbone_name, num_classes, out_indices=(2, 3, 4), **kwargs)

    builder.__name__ = builder.__qualname__ = name
    builder.__doc__ = f"{summary} Keyword arguments as :func:`fcos_timm`."
    return builder


fcos_r18 = _timm_variant(
    "fcos_r18",
    "resnet18",
    256,
    "FCOS with a timm ResNet-18 backbone (C3–C5), FPN P3–P7, per-level scales, centred points.",
)
fcos_mobilenetv3 = _timm_variant(
    "fcos_mobilenetv3",
    "mobilenetv3_large_100",
    128,
    "FCOS with a timm MobileNetV3-Large 1.0 backbone, a 128-channel FPN P3–P7 and head.",
)


FCOS_VARIANTS: MappingProxyType[str, Callable[..., FCOS]] = MappingProxyType(
    {"fcos_r50": fcos_r50, "fcos_r18": fcos_r18, "fcos_mobilenetv3": fcos_mobilenetv3}
)
