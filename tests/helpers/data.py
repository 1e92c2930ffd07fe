"""Tiny but real COCO X-ray data sets, written by hand, and overrides that shrink a training run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

# Sparse, unordered ids on purpose: the class table must not depend on id order or density.
CATEGORIES = [
    {"id": 11, "name": "keys", "supercategory": "normal"},
    {"id": 3, "name": "knife", "supercategory": "dangerous"},
    {"id": 20, "name": "mystery", "supercategory": "unknown"},
    {"id": 7, "name": "phone", "supercategory": "normal"},
]
# A distinct, saturated colour per box index, so a test can find where a box's content went.
PALETTE = [(255, 0, 0), (0, 200, 0), (0, 0, 255), (255, 0, 255), (0, 200, 200), (200, 200, 0)]


def write_split(root: Path, split: str, specs: list[dict], categories=CATEGORIES) -> Path:
    """Write images and ``annotations/<split>.json``.

    ``specs``: one dict per image with ``size`` ``(w, h)`` and ``boxes``: list of
    ``(x, y, w, h, category_id[, iscrowd])``. Box ``k`` of an image is painted ``PALETTE[k]`` on white.
    """
    image_dir = root / "images" / split
    image_dir.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    ann_id = 1
    for image_id, spec in enumerate(specs, start=1):
        width, height = spec["size"]
        pixels = np.full((height, width, 3), 255, dtype=np.uint8)
        for k, box in enumerate(spec["boxes"]):
            x, y, w, h, cat = box[:5]
            pixels[int(y) : int(y + h), int(x) : int(x + w)] = PALETTE[k % len(PALETTE)]
            annotations.append(
                {
                    "id": ann_id,
                    "image_id": image_id,
                    "category_id": cat,
                    "bbox": [float(x), float(y), float(w), float(h)],
                    "area": float(w * h),
                    "iscrowd": int(box[5]) if len(box) > 5 else 0,
                }
            )
            ann_id += 1
        file_name = f"{image_id:04d}.png"
        Image.fromarray(pixels).save(image_dir / file_name)
        images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
    ann_path = root / "annotations" / f"{split}.json"
    ann_path.parent.mkdir(parents=True, exist_ok=True)
    ann_path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return ann_path


TRAIN_SPECS = [
    {"size": (96, 64), "boxes": [(8, 8, 20, 12, 3), (50, 30, 30, 20, 7)]},
    {"size": (64, 96), "boxes": [(10, 40, 16, 30, 11)]},
    {"size": (80, 80), "boxes": []},  # a negative
    {"size": (96, 64), "boxes": [(4, 4, 24, 24, 7), (60, 10, 20, 40, 3, 1)]},  # second is a crowd box
    {"size": (72, 72), "boxes": [(30, 30, 20, 20, 3), (5, 50, 20, 12, 11), (50, 5, 16, 16, 7)]},
    {"size": (96, 64), "boxes": [(20, 10, 40, 30, 11)]},
]
TEST_SPECS = [
    {"size": (96, 64), "boxes": [(8, 8, 20, 12, 3), (50, 30, 30, 20, 20)]},  # an unknown object
    {"size": (64, 64), "boxes": [(10, 10, 30, 30, 7)]},
]


def tiny_train_overrides(root: Path, extra: list[str] = ()) -> list[str]:
    """Overrides that shrink any training experiment to seconds on a CPU."""
    return [
        f"data.root={root}",
        "data.image_size=128",
        "data.batch_size=2",
        "data.num_workers=0",
        "data.mosaic_prob=0.0",
        "data.mixup_prob=0.0",
        "trainer=cpu",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=2",
        "trainer.limit_test_batches=1",
        "logger=csv",
        *extra,
    ]
