"""Paired image + box transforms (``torchvision.transforms.v2`` on ``tv_tensors``).

Geometry: :class:`Letterbox` resizes keeping the aspect ratio so the image fits a ``size x size``
canvas and pads right/bottom (top-left placement, as YOLOX does), so mapping boxes back to the
original image is a per-axis division (:func:`letterbox_to_original`). :class:`RandomScaleLetterbox`
is the scale-jitter variant for training: a random scale of the letterboxed image, placed at a
random offset on the canvas (cropped where it overflows). Padding is white by default: in a scan,
"nothing" is free belt, which is white.

Photometric jitter changes brightness and contrast (thickness/penetration changes) and only a
little saturation; hue stays untouched by default because an X-ray hue encodes the material
(orange organic, green inorganic, blue metal).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F
from torchvision.transforms.v2._utils import query_size

WHITE = 255


class Letterbox(v2.Transform):
    """Resize to fit ``size x size`` keeping the aspect ratio, pad right/bottom with ``fill``."""

    def __init__(self, size: int, fill: int = WHITE) -> None:
        super().__init__()
        if size <= 0:
            raise ValueError(f"size must be positive, got {size}")
        self.size = int(size)
        self.fill = fill

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = query_size(flat_inputs)
        new_h, new_w = letterbox_shape(height, width, self.size)
        return {"resized": (new_h, new_w), "padding": [0, 0, self.size - new_w, self.size - new_h]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        out = F.resize(inpt, list(params["resized"]), antialias=True)
        return F.pad(out, params["padding"], fill=self.fill)


class RandomScaleLetterbox(v2.Transform):
    """Scale jitter: letterbox scaled by ``s ~ U(scale)``, placed at a random offset on the canvas.

    Parts that overflow the ``size x size`` canvas are cropped; boxes are clipped to it (follow with
    :class:`torchvision.transforms.v2.SanitizeBoundingBoxes` to drop boxes cropped away entirely).
    """

    def __init__(self, size: int, scale: Sequence[float] = (0.75, 1.25), fill: int = WHITE) -> None:
        super().__init__()
        lo, hi = float(scale[0]), float(scale[1])
        if not 0 < lo <= hi:
            raise ValueError(f"scale must be 0 < low <= high, got {scale}")
        self.size = int(size)
        self.scale = (lo, hi)
        self.fill = fill

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = query_size(flat_inputs)
        s = self.scale[0] + (self.scale[1] - self.scale[0]) * float(torch.rand(()))
        new_h, new_w = letterbox_shape(height, width, max(1, round(self.size * s)))
        # Pad the resized image so it covers the canvas, at a random offset, then crop the canvas.
        pad_x, pad_y = max(0, self.size - new_w), max(0, self.size - new_h)
        left = int(torch.randint(0, pad_x + 1, ()))
        top = int(torch.randint(0, pad_y + 1, ()))
        padded_w, padded_h = new_w + pad_x, new_h + pad_y
        crop_left = int(torch.randint(0, padded_w - self.size + 1, ()))
        crop_top = int(torch.randint(0, padded_h - self.size + 1, ()))
        return {
            "resized": (new_h, new_w),
            "padding": [left, top, pad_x - left, pad_y - top],
            "crop": (crop_top, crop_left),
        }

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        out = F.resize(inpt, list(params["resized"]), antialias=True)
        out = F.pad(out, params["padding"], fill=self.fill)
        top, left = params["crop"]
        out = F.crop(out, top, left, self.size, self.size)
        if isinstance(out, torch.Tensor) and out.__class__.__name__ == "BoundingBoxes":
            out = F.clamp_bounding_boxes(out)
        return out


def letterbox_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """``(new_h, new_w)`` of an image letterboxed into ``size x size``."""
    scale = min(size / height, size / width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def letterbox_to_original(
    boxes: torch.Tensor, orig_size: Sequence[int] | torch.Tensor, size: int
) -> torch.Tensor:
    """Map xyxy boxes on a :class:`Letterbox` canvas back to the original images.

    One image: ``boxes [M, 4]`` and ``orig_size`` ``(height, width)``. A batch: ``boxes [B, M, 4]``
    and ``orig_size [B, 2]``. Uses the exact per-axis factors of the integer resize and clips to
    each original image. Returns a new tensor (the input is not modified).
    """
    sizes = torch.as_tensor(orig_size).reshape(-1, 2).tolist()
    factors, limits = [], []
    for height, width in sizes:
        new_h, new_w = letterbox_shape(int(height), int(width), size)
        factors.append([width / new_w, height / new_h] * 2)
        limits.append([width, height] * 2)
    factors_t, limits_t = boxes.new_tensor(factors), boxes.new_tensor(limits)  # [B, 4]
    if boxes.dim() == 3:
        factors_t, limits_t = factors_t[:, None], limits_t[:, None]
    else:
        factors_t, limits_t = factors_t[0], limits_t[0]
    return torch.minimum((boxes * factors_t).clamp(min=0), limits_t)


def _labels_and_ids(inputs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Which target tensors :class:`SanitizeBoundingBoxes` filters together with the boxes."""
    target = inputs[1]
    return target["labels"], target["category_ids"]


def sanitize() -> v2.SanitizeBoundingBoxes:
    """Drop boxes that an augmentation cropped away or shrank below one pixel (labels follow)."""
    return v2.SanitizeBoundingBoxes(min_size=1.0, labels_getter=_labels_and_ids)


def build_train_transforms(
    size: int,
    *,
    hflip: float = 0.5,
    scale_jitter: Sequence[float] | None = (0.75, 1.25),
    brightness: float = 0.2,
    contrast: float = 0.2,
    saturation: float = 0.1,
    hue: float = 0.0,
    fill: int = WHITE,
) -> v2.Compose:
    """Training pipeline: (scale-jittered) letterbox, horizontal flip, photometric jitter."""
    steps: list[v2.Transform] = [
        RandomScaleLetterbox(size, scale_jitter, fill) if scale_jitter else Letterbox(size, fill)
    ]
    if hflip > 0:
        steps.append(v2.RandomHorizontalFlip(p=hflip))
    if any(v > 0 for v in (brightness, contrast, saturation, hue)):
        steps.append(v2.ColorJitter(brightness=brightness, contrast=contrast, saturation=saturation, hue=hue))
    steps.append(sanitize())
    return v2.Compose(steps)


def build_eval_transforms(size: int, *, fill: int = WHITE) -> v2.Compose:
    """Evaluation pipeline: a deterministic letterbox (invert with :func:`letterbox_to_original`)."""
    return v2.Compose([Letterbox(size, fill)])
