"""A detection dataset over a (validated) COCO json and its image folder."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from pycocotools.coco import COCO
from torchvision import tv_tensors

from dfss.data.classes import ClassTable
from dfss.data.io import load_rgb

Sample = tuple[tv_tensors.Image, dict[str, Any]]


def coco_from_dict(dataset: Mapping) -> COCO:
    """A pycocotools index over an in-memory COCO dict (without pycocotools' prints)."""
    coco = COCO()
    coco.dataset = dict(dataset)
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


class CocoDetection(torch.utils.data.Dataset):
    """Yields ``(image, target)`` for each image of a COCO dict, negatives included.

    ``image`` is a ``tv_tensors.Image`` ``uint8 [3, H, W]`` (RGB, pixels as stored: each model owns its
    normalisation). ``target`` holds

    - ``boxes``: ``tv_tensors.BoundingBoxes`` ``[N, 4]`` xyxy pixels,
    - ``labels``: ``int64 [N]`` contiguous training labels ``0..K-1``,
    - ``category_ids``: ``int64 [N]`` the json's own category ids (for evaluation),
    - ``image_id``: ``int``, ``orig_size``: ``int64 [2]`` as ``(height, width)`` of the file.

    Crowd annotations (``iscrowd=1``) and annotations of unknown categories are kept out of the
    training target; evaluation reads them from the ground-truth json (:attr:`coco`), where crowd
    regions act as ignore regions. The dict is expected to have passed
    :func:`dfss.data.validate.validate_coco`.
    """

    def __init__(
        self,
        dataset: Mapping,
        image_dir: str | Path,
        class_table: ClassTable,
        transforms: Callable[[tv_tensors.Image, dict], Sample] | None = None,
    ) -> None:
        self.coco = coco_from_dict(dataset)
        self.image_dir = Path(image_dir)
        self.class_table = class_table
        self.transforms = transforms
        self.image_ids: list[int] = sorted(self.coco.imgs)

    def __len__(self) -> int:
        return len(self.image_ids)

    def load(self, index: int) -> Sample:
        """The sample before transforms (original pixels and boxes)."""
        image_id = self.image_ids[index]
        info = self.coco.imgs[image_id]
        pixels = load_rgb(self.image_dir / info["file_name"], image_id)
        height, width = pixels.shape[:2]
        boxes, labels, category_ids = [], [], []
        label_of = self.class_table.label_by_coco_id
        for ann in self.coco.imgToAnns.get(image_id, []):
            if ann.get("iscrowd", 0) or ann["category_id"] not in label_of:
                continue
            x, y, w, h = ann["bbox"]
            boxes.append([x, y, x + w, y + h])
            labels.append(label_of[ann["category_id"]])
            category_ids.append(ann["category_id"])
        image = tv_tensors.Image(torch.from_numpy(pixels).permute(2, 0, 1).contiguous())
        target = {
            "boxes": tv_tensors.BoundingBoxes(
                torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                format=tv_tensors.BoundingBoxFormat.XYXY,
                canvas_size=(height, width),
            ),
            "labels": torch.tensor(labels, dtype=torch.int64),
            "category_ids": torch.tensor(category_ids, dtype=torch.int64),
            "image_id": image_id,
            "orig_size": torch.tensor([height, width], dtype=torch.int64),
        }
        return image, target

    def __getitem__(self, index: int) -> Sample:
        image, target = self.load(index)
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target
