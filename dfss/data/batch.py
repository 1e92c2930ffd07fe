"""The training batch: stacked images plus per-image targets, and its collate function."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch

from dfss.data.coco import Sample


@dataclass
class DetectionBatch:
    """A batch of ``B`` images with a variable number of boxes each.

    Lightning moves every tensor field (and the tensors inside the lists) to the device; the
    DataLoader pins it through :meth:`pin_memory`. Not frozen: Lightning's device transfer
    rebuilds dataclasses field by field.
    """

    images: torch.Tensor  # uint8 [B, 3, H, W], or a list of [3, H_i, W_i] when sizes differ
    boxes: list[torch.Tensor]  # per image float32 [N_i, 4] xyxy pixels on the transformed image
    labels: list[torch.Tensor]  # per image int64 [N_i] contiguous labels 0..K-1
    category_ids: list[torch.Tensor]  # per image int64 [N_i] the json's category ids
    image_ids: torch.Tensor  # int64 [B]
    orig_sizes: torch.Tensor  # int64 [B, 2] (height, width) of the original files

    def __len__(self) -> int:
        return len(self.boxes)

    @property
    def num_boxes(self) -> int:
        return sum(len(b) for b in self.boxes)

    def pin_memory(self) -> DetectionBatch:
        def pin(value):
            if isinstance(value, torch.Tensor):
                return value.pin_memory()
            return [pin(v) for v in value]

        return DetectionBatch(**{f.name: pin(getattr(self, f.name)) for f in fields(self)})


def collate_detection(samples: Sequence[Sample]) -> DetectionBatch:
    """Stack images (when they share a size) and keep per-image boxes/labels as lists."""
    images = [image.as_subclass(torch.Tensor) for image, _ in samples]
    same_size = all(img.shape == images[0].shape for img in images)
    return DetectionBatch(
        images=torch.stack(images) if same_size else images,
        boxes=[t["boxes"].as_subclass(torch.Tensor).float() for _, t in samples],
        labels=[t["labels"] for _, t in samples],
        category_ids=[t["category_ids"] for _, t in samples],
        image_ids=torch.tensor([t["image_id"] for _, t in samples], dtype=torch.int64),
        orig_sizes=torch.stack([t["orig_size"] for _, t in samples]),
    )
