"""Mosaic and mixup for teacher training (YOLOX-style), as a dataset wrapper.

Both need other samples of the data set, so they wrap the dataset instead of being per-sample
transforms. The wrapped dataset must yield letterboxed ``size x size`` samples (eval transforms);
the wrapper composes them and then applies its own per-sample ``transforms`` (flip, photometric).

Mixup defaults to the X-ray-aware ``"multiply"`` mode: scans are transmissions, and two bags in the
beam attenuate multiplicatively (Beer-Lambert), so ``I = I_a * I_b`` (white = 1) is what overlapping
luggage really looks like; ``"blend"`` is YOLOX's 0.5/0.5 average.

The mosaic keeps the objects' scale: four tiles fill a ``2S x 2S`` canvas, and an ``S/r``-wide window
of it around the tiles' common corner, ``r ~ U(scale)``, is resized to ``S x S``, so objects appear at
``r`` times their size (YOLOX's random affine does the same with ``mosaic_scale``). A window shows
``1/r^2`` times as much canvas, hence as many more objects, when it zooms out, so the zoom an
*object* sees averages ``ln(b/a) / (1/a - 1/b)`` over ``U(a, b)``: 1.0 for the default ``(0.6, 1.8)``,
0.82 for ``(0.5, 1.5)``. Resizing the whole canvas (``r = 0.5``, this module's first version) halved
every training object for good, and the detector never saw the scale it is tested at.

Like YOLOX's last ``no_aug_epochs``, mosaic and mixup stop from epoch ``close_epoch`` on: the last
epochs train on plain samples, as the model is evaluated. The epoch reaches the worker processes with
each index (:class:`~dfss.data.sampling.SeededDataset` calls :meth:`MosaicMixup.set_epoch`), so the
switch holds with persistent workers and after a resume.

Randomness comes from torch's generator, which DataLoader seeds per worker and per rank.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F

from dfss.data.coco import Sample
from dfss.data.transforms import WHITE

MIXUP_MODES = ("multiply", "blend")


class MosaicMixup(torch.utils.data.Dataset):
    """Mosaic of 4 samples (probability ``mosaic_prob``), then mixup with another (``mixup_prob``).

    ``scale``: range of the mosaic's zoom ``r`` (objects at ``r`` times their size), ``0.5 <= low``;
    ``close_epoch``: from this epoch on (see :meth:`set_epoch`) neither is applied; ``None``: never.
    """

    def __init__(
        self,
        dataset: torch.utils.data.Dataset,
        size: int,
        *,
        mosaic_prob: float = 1.0,
        mixup_prob: float = 0.5,
        mixup_mode: str = "multiply",
        scale: Sequence[float] = (0.6, 1.8),
        close_epoch: int | None = None,
        transforms: Callable[[tv_tensors.Image, dict], Sample] | None = None,
        fill: int = WHITE,
    ) -> None:
        if mixup_mode not in MIXUP_MODES:
            raise ValueError(f"mixup_mode must be one of {MIXUP_MODES}, got {mixup_mode!r}")
        low, high = (float(v) for v in scale)
        if not 0.5 <= low <= high:
            raise ValueError(
                f"mosaic scale must be (low, high) with 0.5 <= low <= high (the canvas is twice the "
                f"image size, so no window shows objects smaller than half their size), got {tuple(scale)}"
            )
        if close_epoch is not None and close_epoch < 0:
            raise ValueError(f"close_epoch must be >= 0 or None, got {close_epoch}")
        for name, p in (("mosaic_prob", mosaic_prob), ("mixup_prob", mixup_prob)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {p}")
        self.dataset = dataset
        self.size = int(size)
        self.mosaic_prob = mosaic_prob
        self.mixup_prob = mixup_prob
        self.mixup_mode = mixup_mode
        self.scale = (low, high)
        self.close_epoch = close_epoch
        self.epoch = 0
        self.transforms = transforms
        self.fill = fill

    def set_epoch(self, epoch: int) -> None:
        """The training epoch the next samples belong to (decides :attr:`active`)."""
        self.epoch = int(epoch)

    @property
    def active(self) -> bool:
        """Whether mosaic and mixup apply in the current epoch (before ``close_epoch``)."""
        return self.close_epoch is None or self.epoch < self.close_epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def _random_index(self) -> int:
        return int(torch.randint(0, len(self.dataset), ()))

    def _sample(self, index: int) -> Sample:
        """Sample ``index`` letterboxed, as a mosaic with three random others w.p. ``mosaic_prob``."""
        if float(torch.rand(())) < self.mosaic_prob:
            return self._mosaic([index] + [self._random_index() for _ in range(3)])
        return self.dataset[index]

    def __getitem__(self, index: int) -> Sample:
        if self.active:
            image, target = self._sample(index)
            if float(torch.rand(())) < self.mixup_prob:
                image, target = self._mixup((image, target), self._sample(self._random_index()))
        else:
            image, target = self.dataset[index]
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target

    def _mosaic(self, indices: list[int]) -> Sample:
        """Four samples around a random centre of a ``2S x 2S`` canvas; an ``S/r`` window of it, as
        ``S x S``."""
        s = self.size
        canvas = torch.full((3, 2 * s, 2 * s), self.fill, dtype=torch.uint8)
        cx = int(torch.randint(s // 2, 3 * s // 2 + 1, ()))
        cy = int(torch.randint(s // 2, 3 * s // 2 + 1, ()))
        # Each tile is placed with one corner at the centre; (x0, y0) is its top-left on the canvas.
        origins = [(cx - s, cy - s), (cx, cy - s), (cx - s, cy), (cx, cy)]
        boxes, labels, category_ids = [], [], []
        first_target: dict[str, Any] | None = None
        for index, (x0, y0) in zip(indices, origins, strict=True):
            image, target = self.dataset[index]
            first_target = first_target or target
            # Visible part of the tile on the canvas.
            cx0, cy0 = max(x0, 0), max(y0, 0)
            cx1, cy1 = min(x0 + s, 2 * s), min(y0 + s, 2 * s)
            canvas[:, cy0:cy1, cx0:cx1] = image[:, cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
            shifted = target["boxes"].as_subclass(torch.Tensor) + torch.tensor([x0, y0, x0, y0])
            boxes.append(shifted)
            labels.append(target["labels"])
            category_ids.append(target["category_ids"])
        assert first_target is not None
        # The window: side w = S / r on the canvas, placed at random so that it holds the centre.
        low, high = self.scale
        zoom = low + (high - low) * float(torch.rand(()))
        w = min(2 * s, max(1, round(s / zoom)))
        wx = int(torch.randint(max(0, cx - w), min(cx, 2 * s - w) + 1, ()))
        wy = int(torch.randint(max(0, cy - w), min(cy, 2 * s - w) + 1, ()))
        mosaic_boxes = tv_tensors.BoundingBoxes(
            torch.cat(boxes) - torch.tensor([wx, wy, wx, wy]),
            format=tv_tensors.BoundingBoxFormat.XYXY,
            canvas_size=(w, w),
        )
        mosaic_boxes = F.clamp_bounding_boxes(mosaic_boxes)
        window = tv_tensors.Image(canvas[:, wy : wy + w, wx : wx + w])
        image = F.resize(window, [s, s], antialias=True)
        mosaic_boxes = F.resize(mosaic_boxes, [s, s])
        target = {
            "boxes": mosaic_boxes,
            "labels": torch.cat(labels),
            "category_ids": torch.cat(category_ids),
            "image_id": first_target["image_id"],
            "orig_size": first_target["orig_size"],
        }
        return _drop_empty(image, target)

    def _mixup(self, a: Sample, b: Sample) -> Sample:
        (image_a, target_a), (image_b, target_b) = a, b
        if self.mixup_mode == "multiply":
            mixed = image_a.float() * image_b.float() / 255.0
        else:
            mixed = 0.5 * image_a.float() + 0.5 * image_b.float()
        image = tv_tensors.Image(mixed.round().clamp(0, 255).to(torch.uint8))
        target = dict(target_a)
        target["boxes"] = tv_tensors.wrap(
            torch.cat(
                [target_a["boxes"].as_subclass(torch.Tensor), target_b["boxes"].as_subclass(torch.Tensor)]
            ),
            like=target_a["boxes"],
        )
        target["labels"] = torch.cat([target_a["labels"], target_b["labels"]])
        target["category_ids"] = torch.cat([target_a["category_ids"], target_b["category_ids"]])
        return image, target


def _drop_empty(image: tv_tensors.Image, target: dict[str, Any]) -> Sample:
    """Remove boxes the mosaic crop reduced to less than one pixel."""
    boxes = target["boxes"].as_subclass(torch.Tensor)
    keep = ((boxes[:, 2] - boxes[:, 0]) >= 1) & ((boxes[:, 3] - boxes[:, 1]) >= 1)
    target = dict(target)
    target["boxes"] = tv_tensors.wrap(boxes[keep], like=target["boxes"])
    target["labels"] = target["labels"][keep]
    target["category_ids"] = target["category_ids"][keep]
    return image, target
