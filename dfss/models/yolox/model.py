"""The YOLOX detector (CSPDarknet + PAFPN + decoupled head), its input normalisation and builders.

``forward(images)`` takes the data pipeline's pixels (``uint8`` or float 0–255 RGB, already
letterboxed; the model never resizes) and returns one :class:`~dfss.models.outputs.DenseOutputs`
of raw logits. The model converts the pixels to what its weights were trained on: official YOLOX
≥ 0.2 reads images with ``cv2.imread`` and feeds raw 0–255 **BGR** pixels with no mean/std
(``yolox/data/data_augment.py::preproc``/``ValTransform(legacy=False)``), which is
:data:`OFFICIAL_INPUT`; weights from YOLOX < 0.2 expect :data:`LEGACY_INPUT` (RGB, ``/255``,
ImageNet mean/std). Official training letterboxes with pad value 114, which is the data
pipeline's business.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor, nn

from dfss.errors import ConfigError
from dfss.models.outputs import DenseOutputs
from dfss.models.yolox.head import DEFAULT_PRIOR_PROB, YOLOXHead
from dfss.models.yolox.pafpn import YOLOPAFPN
from dfss.models.yolox.weights import load_official_checkpoint

CHANNEL_ORDERS = ("rgb", "bgr")
SIZE_DIVISOR = 32  # the coarsest stride: H and W must be multiples of it


@dataclass(frozen=True)
class InputNormalization:
    """How 0–255 RGB pixels become the network input: reorder channels, then ``(x - mean) / std``.

    ``mean`` and ``std`` are on the 0–255 scale and in the *network's* channel order.
    """

    channel_order: str = "bgr"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        # Accept any sequence (e.g. a Hydra ListConfig) and store plain float tuples.
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if self.channel_order not in CHANNEL_ORDERS:
            raise ValueError(f"channel_order must be one of {CHANNEL_ORDERS}, got {self.channel_order!r}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"mean and std need 3 values each, std > 0; got {self.mean}, {self.std}")


OFFICIAL_INPUT = InputNormalization()
LEGACY_INPUT = InputNormalization(
    channel_order="rgb",
    mean=(0.485 * 255, 0.456 * 255, 0.406 * 255),
    std=(0.229 * 255, 0.224 * 255, 0.225 * 255),
)


class YOLOX(nn.Module):
    """``backbone`` (``YOLOPAFPN``: CSPDarknet + PAFPN) and ``head``, named as in the official model."""

    def __init__(
        self, backbone: YOLOPAFPN, head: YOLOXHead, input_normalization: InputNormalization = OFFICIAL_INPUT
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.input_normalization = input_normalization
        # Non-persistent: they follow .to(device) but stay out of the state dict (official keys only).
        self.register_buffer("pixel_mean", torch.tensor(input_normalization.mean).view(1, 3, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(input_normalization.std).view(1, 3, 1, 1), False)

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    def normalize(self, images: Tensor) -> Tensor:
        """0–255 RGB ``[B, 3, H, W]`` -> the network input (float, in the parameters' dtype)."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [B, 3, H, W] RGB, got shape {tuple(images.shape)}")
        height, width = images.shape[-2:]
        if height % SIZE_DIVISOR or width % SIZE_DIVISOR:
            raise ValueError(
                f"image size {height}x{width} is not a multiple of {SIZE_DIVISOR}; "
                "letterbox/pad in the data pipeline (the model never resizes)"
            )
        x = images.to(self.pixel_mean.dtype)
        if self.input_normalization.channel_order == "bgr":
            x = x.flip(1)
        norm = self.input_normalization
        if norm.mean != OFFICIAL_INPUT.mean or norm.std != OFFICIAL_INPUT.std:
            x = (x - self.pixel_mean) / self.pixel_std
        return x

    def forward(self, images: Tensor) -> DenseOutputs:
        return self.head(self.backbone(self.normalize(images)))


@dataclass(frozen=True)
class YOLOXSize:
    """Depth/width multipliers of a variant (YOLOX paper, official ``exps/default``)."""

    depth: float
    width: float
    depthwise: bool = False


SIZES: Mapping[str, YOLOXSize] = MappingProxyType(
    {
        "yolox_nano": YOLOXSize(0.33, 0.25, depthwise=True),
        "yolox_tiny": YOLOXSize(0.33, 0.375),
        "yolox_s": YOLOXSize(0.33, 0.50),
        "yolox_m": YOLOXSize(0.67, 0.75),
        "yolox_l": YOLOXSize(1.0, 1.0),
        "yolox_x": YOLOXSize(1.33, 1.25),
    }
)


def build_yolox(
    variant: str,
    num_classes: int,
    *,
    weights: str | Path | None = None,
    weights_path: str | Path | None = None,
    input_normalization: InputNormalization = OFFICIAL_INPUT,
    act: str = "silu",
    prior_prob: float = DEFAULT_PRIOR_PROB,
) -> YOLOX:
    """A YOLOX variant with official initialisation, optionally loading an official checkpoint.

    ``weights``: a local official checkpoint or state dict (``weights_path``, its former name, is still
    taken); the class head is re-initialised when the file's class count differs (see
    :func:`~dfss.models.yolox.weights.load_official_checkpoint`).
    """
    if variant not in SIZES:
        raise ConfigError(f"unknown YOLOX variant {variant!r}; choose from {sorted(SIZES)}")
    size = SIZES[variant]
    backbone = YOLOPAFPN(size.depth, size.width, depthwise=size.depthwise, act=act)
    head = YOLOXHead(num_classes, size.width, act=act, depthwise=size.depthwise, prior_prob=prior_prob)
    model = YOLOX(backbone, head, input_normalization)
    if weights is not None and weights_path is not None:
        raise ConfigError("give the weights file once: model.net.weights (weights_path is its former name)")
    if (weights or weights_path) is not None:
        load_official_checkpoint(model, weights or weights_path)
    return model


def _variant(variant: str, summary: str) -> Callable[..., YOLOX]:
    """The named builder of one variant (a Hydra ``_target_``): :func:`build_yolox` with it fixed."""

    def builder(num_classes: int, **kwargs: Any) -> YOLOX:
        return build_yolox(variant, num_classes, **kwargs)

    builder.__name__ = builder.__qualname__ = variant
    builder.__doc__ = f"{summary} Keyword arguments as :func:`build_yolox`."
    return builder


yolox_nano = _variant("yolox_nano", "YOLOX-Nano: depth 0.33, width 0.25, depthwise convolutions.")
yolox_tiny = _variant("yolox_tiny", "YOLOX-Tiny: depth 0.33, width 0.375.")
yolox_s = _variant("yolox_s", "YOLOX-S: depth 0.33, width 0.50.")
yolox_m = _variant("yolox_m", "YOLOX-M: depth 0.67, width 0.75.")
yolox_l = _variant("yolox_l", "YOLOX-L: depth 1.0, width 1.0.")
yolox_x = _variant("yolox_x", "YOLOX-X: depth 1.33, width 1.25.")


YOLOX_VARIANTS: Mapping[str, Callable[..., YOLOX]] = MappingProxyType(
    {
        "yolox_nano": yolox_nano,
        "yolox_tiny": yolox_tiny,
        "yolox_s": yolox_s,
        "yolox_m": yolox_m,
        "yolox_l": yolox_l,
        "yolox_x": yolox_x,
    }
)
