"""One scan: a bag, unlabelled clutter and labelled objects placed with limited overlap.

The scene is built as two attenuation maps (low and high energy) plus the labelled objects' boxes.
Boxes are the tight boxes of each object's rendered pixels, known before placement because placing
is a pure translation of the object's patch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from dfss.synth.bag import bag
from dfss.synth.catalog import BUILDERS, Category
from dfss.synth.clutter import SMALL_ITEMS, cable, garment
from dfss.synth.config import SCENE_WIDTH_CM, SynthConfig
from dfss.synth.raster import ObjectPatch, add_patch, rasterise

PLACEMENT_TRIES = 40


@dataclass(frozen=True)
class PlacedObject:
    """A labelled object: COCO ``bbox`` ``[x, y, w, h]`` in pixels and its pixel count."""

    category: Category
    bbox_xywh: tuple[float, float, float, float]
    area: int


@dataclass(frozen=True, eq=False)
class Scene:
    att_low: np.ndarray  # [H, W] float32, Σ μ_L·t (60 keV)
    att_high: np.ndarray  # [H, W] float32, Σ μ_H·t (100 keV)
    objects: tuple[PlacedObject, ...]


def box_iou_xywh(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def _random_patch(builder, rng: np.random.Generator, px_per_cm: float) -> ObjectPatch | None:
    parts = builder(rng)
    return rasterise(
        parts, angle_deg=rng.uniform(0.0, 360.0), px_per_cm=px_per_cm, mirror=bool(rng.random() < 0.5)
    )


def _add_bag(
    att_low: np.ndarray, att_high: np.ndarray, rng: np.random.Generator, px_per_cm: float
) -> tuple[int, int, int, int]:
    """Draw the bag centred (with jitter); returns its pixel region ``(x0, y0, x1, y1)`` within the image."""
    size = att_low.shape[0]
    width_cm, height_cm = SCENE_WIDTH_CM * rng.uniform(0.86, 0.97), SCENE_WIDTH_CM * rng.uniform(0.7, 0.95)
    if rng.random() < 0.5:
        width_cm, height_cm = height_cm, width_cm
    patch = rasterise(
        bag(rng, width_cm, height_cm),
        angle_deg=rng.uniform(-3.0, 3.0),
        px_per_cm=px_per_cm,
        mirror=bool(rng.random() < 0.5),
    )
    x0 = (size - patch.width) // 2 + int(rng.integers(-size // 40, size // 40 + 1))
    y0 = (size - patch.height) // 2 + int(rng.integers(-size // 40, size // 40 + 1))
    add_patch(att_low, att_high, patch, x0, y0)
    return max(0, x0), max(0, y0), min(size, x0 + patch.width), min(size, y0 + patch.height)


def _place_clutter(
    att_low: np.ndarray,
    att_high: np.ndarray,
    patch: ObjectPatch,
    rng: np.random.Generator,
    region: tuple[int, int, int, int],
) -> None:
    """Add an unlabelled patch centred at a random point of ``region``, kept inside it where it fits."""
    x0, y0, x1, y1 = region
    cx, cy = rng.uniform(x0, x1), rng.uniform(y0, y1)
    px = min(max(int(cx - patch.width / 2), x0), max(x0, x1 - patch.width))
    py = min(max(int(cy - patch.height / 2), y0), max(y0, y1 - patch.height))
    add_patch(att_low, att_high, patch, px, py)


def _upsample(image: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR))


def _add_clutter(
    att_low: np.ndarray,
    att_high: np.ndarray,
    rng: np.random.Generator,
    px_per_cm: float,
    amount: float,
    region: tuple[int, int, int, int],
) -> None:
    """Clothes (large, smooth: rendered at half resolution and upsampled), cables and small items."""
    num_garments = int(rng.poisson(1.0 + 4.0 * amount)) if amount > 0 else 0
    if num_garments:
        size = att_low.shape[0]
        half = (size + 1) // 2
        soft_low, soft_high = np.zeros((half, half), np.float32), np.zeros((half, half), np.float32)
        half_region = tuple(v // 2 for v in region)
        for _ in range(num_garments):
            patch = _random_patch(garment, rng, px_per_cm * half / size)
            if patch is not None:
                _place_clutter(soft_low, soft_high, patch, rng, half_region)
        att_low += _upsample(soft_low, size)
        att_high += _upsample(soft_high, size)
    builders = [cable] * int(rng.binomial(3, amount))
    builders += [
        SMALL_ITEMS[int(i)] for i in rng.integers(len(SMALL_ITEMS), size=int(rng.poisson(5.0 * amount)))
    ]
    for builder in builders:
        patch = _random_patch(builder, rng, px_per_cm)
        if patch is not None:
            _place_clutter(att_low, att_high, patch, rng, region)


def _place(
    patch: ObjectPatch,
    rng: np.random.Generator,
    region: tuple[int, int, int, int],
    size: int,
    boxes: list[tuple[float, float, float, float]],
    max_iou: float,
) -> tuple[int, int] | None:
    """A top-left position fully inside the image (inside ``region`` where it fits) with IoU <= max_iou."""
    x0, y0, x1, y1 = region
    if patch.width > x1 - x0 or patch.height > y1 - y0:
        x0, y0, x1, y1 = 0, 0, size, size
    if patch.width > x1 - x0 or patch.height > y1 - y0:
        return None
    for _ in range(PLACEMENT_TRIES):
        px = int(rng.integers(x0, x1 - patch.width + 1))
        py = int(rng.integers(y0, y1 - patch.height + 1))
        box = (float(px), float(py), float(patch.width), float(patch.height))
        if all(box_iou_xywh(box, other) <= max_iou for other in boxes):
            return px, py
    return None


def compose_scene(
    config: SynthConfig, categories: Sequence[Category], *, include_unknown: bool, rng: np.random.Generator
) -> Scene:
    """Build one scan's attenuation maps and labelled objects from ``rng``."""
    size, px_per_cm = config.image_size, config.px_per_cm
    att_low = np.zeros((size, size), np.float32)
    att_high = np.zeros((size, size), np.float32)
    region = _add_bag(att_low, att_high, rng, px_per_cm)
    _add_clutter(att_low, att_high, rng, px_per_cm, config.clutter, region)

    known = [c for c in categories if not c.is_unknown]
    unknown = [c for c in categories if c.is_unknown]
    picks = [
        known[int(i)]
        for i in rng.integers(
            len(known), size=int(rng.integers(config.objects_per_image[0], config.objects_per_image[1] + 1))
        )
    ]
    if include_unknown and unknown:
        low, high = config.unknown_per_test_image
        picks += [unknown[int(i)] for i in rng.integers(len(unknown), size=int(rng.integers(low, high + 1)))]
    rng.shuffle(picks)

    boxes: list[tuple[float, float, float, float]] = []
    placed: list[PlacedObject] = []
    for category in picks:
        scale = rng.uniform(*config.scale_range)
        patch = _random_patch(BUILDERS[category.name], rng, px_per_cm * scale)
        if patch is None:
            continue
        position = _place(patch, rng, region, size, boxes, config.max_overlap_iou)
        if position is None:
            continue
        add_patch(att_low, att_high, patch, *position)
        box = (float(position[0]), float(position[1]), float(patch.width), float(patch.height))
        boxes.append(box)
        placed.append(PlacedObject(category, box, patch.area))
    return Scene(att_low, att_high, tuple(placed))
