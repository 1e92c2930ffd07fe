"""Format-neutral records, COCO json building/reading, atomic writes and the conversion summary.

Every converter reads its format into :class:`ImageRecord` s (boxes as continuous pixel ``xyxy``
with the class *name*), and every writer takes them back out; COCO ids are assigned only here.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from dfss.convert.classmap import ClassMap
from dfss.data.errors import DataError
from dfss.fileio import write_json_atomic

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


@dataclass(frozen=True)
class Box:
    """One object: continuous pixel corners (COCO convention, ``x2 = x1 + w``)."""

    category: str
    x1: float
    y1: float
    x2: float
    y2: float
    iscrowd: bool = False  # an ignore region (VOC "difficult"): not a training target


@dataclass(frozen=True)
class ImageRecord:
    file_name: str  # posix path relative to the image root
    width: int
    height: int
    boxes: tuple[Box, ...]


@dataclass(frozen=True)
class Conversion:
    """What a reader produced: the images, and objects it left out with the reason and count."""

    images: tuple[ImageRecord, ...]
    skipped: tuple[tuple[str, int], ...] = ()


def output_paths(root: Path, images: Sequence[ImageRecord], suffix: str) -> list[Path]:
    """``root/<file_name with suffix>`` per image for a writer; refuses names leaving ``root`` or clashing."""
    paths = []
    for record in images:
        rel = Path(record.file_name)
        if rel.is_absolute() or ".." in rel.parts:
            raise DataError(
                f"image file_name '{record.file_name}' is absolute or has '..'; cannot write it under {root}"
            )
        paths.append(root / rel.with_suffix(suffix))
    clashes = sorted(str(p) for p, n in Counter(paths).items() if n > 1)
    if clashes:
        raise DataError(f"several images (same name, different suffix) would be written to {clashes[0]}")
    return paths


def count_skipped(reasons: Iterable[str]) -> tuple[tuple[str, int], ...]:
    return tuple(sorted(Counter(reasons).items()))


# ---- COCO json ---------------------------------------------------------------------------------
def build_coco(images: Sequence[ImageRecord], class_map: ClassMap, *, description: str) -> dict:
    """COCO dict: images sorted by file name with ids from 1, annotations with ids from 1."""
    cat_id = {name: i + 1 for name, i in class_map.index_by_name().items()}
    ordered = sorted(images, key=lambda r: r.file_name)
    dupes = sorted(name for name, n in Counter(r.file_name for r in ordered).items() if n > 1)
    if dupes:
        raise DataError(f"duplicate image file names: {dupes[:5]}")
    coco_images, annotations = [], []
    for image_id, record in enumerate(ordered, start=1):
        coco_images.append(
            {"id": image_id, "file_name": record.file_name, "width": record.width, "height": record.height}
        )
        for box in record.boxes:
            if box.category not in cat_id:
                raise DataError(f"{record.file_name}: class '{box.category}' is not in {class_map.source}")
            w, h = float(box.x2 - box.x1), float(box.y2 - box.y1)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": cat_id[box.category],
                    "bbox": [float(box.x1), float(box.y1), w, h],
                    "area": w * h,
                    "iscrowd": int(box.iscrowd),
                }
            )
    return {
        "info": {"description": description},
        "licenses": [],
        "images": coco_images,
        "annotations": annotations,
        "categories": class_map.categories(),
    }


def _require(entry: dict, keys: Sequence[str], where: str) -> None:
    missing = [k for k in keys if k not in entry]
    if missing:
        raise DataError(f"{where} has no {missing}")


def read_coco(path: str | Path) -> tuple[ClassMap, Conversion]:
    """Read a COCO detection json into records; the class map follows ascending category id."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: malformed json: {exc}") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a COCO json object")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(f"{path}: '{key}' is missing or not a list")
    class_map = ClassMap.from_categories(data["categories"], source=str(path))
    name_of = {int(c["id"]): str(c["name"]) for c in data["categories"]}
    boxes_of: dict[int, list[Box]] = {}
    for img in data["images"]:
        _require(img, ("id", "file_name", "width", "height"), f"{path}: image {img.get('id', '?')}")
        if int(img["id"]) in boxes_of:
            raise DataError(f"{path}: duplicate image id {img['id']}")
        boxes_of[int(img["id"])] = []
    for ann in data["annotations"]:
        where = f"{path}: annotation id {ann.get('id', '?')}"
        _require(ann, ("image_id", "category_id", "bbox"), where)
        if int(ann["image_id"]) not in boxes_of:
            raise DataError(f"{where} refers to image id {ann['image_id']}, which is not in 'images'")
        if int(ann["category_id"]) not in name_of:
            raise DataError(f"{where} has category_id {ann['category_id']}, which is not in 'categories'")
        bbox = ann["bbox"]
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise DataError(f"{where}: bbox {bbox!r} is not [x, y, w, h]")
        x, y, w, h = (float(v) for v in bbox)
        boxes_of[int(ann["image_id"])].append(
            Box(name_of[int(ann["category_id"])], x, y, x + w, y + h, bool(ann.get("iscrowd", 0)))
        )
    images = tuple(
        ImageRecord(
            str(img["file_name"]), int(img["width"]), int(img["height"]), tuple(boxes_of[int(img["id"])])
        )
        for img in data["images"]
    )
    return class_map, Conversion(images)


# ---- writing -----------------------------------------------------------------------------------
def write_coco(path: str | Path, coco: dict) -> None:
    write_json_atomic(path, coco)


# ---- summary -----------------------------------------------------------------------------------
def format_summary(conversion: Conversion, class_map: ClassMap, *, title: str) -> str:
    """Images, negatives, objects and ignore regions per class, skipped objects."""
    images = conversion.images
    objects = Counter(b.category for r in images for b in r.boxes if not b.iscrowd)
    crowd = Counter(b.category for r in images for b in r.boxes if b.iscrowd)
    negatives = sum(1 for r in images if not r.boxes)
    width = max(len(n) for n in class_map.names)
    lines = [
        title,
        f"  images: {len(images)} (negatives, without any box: {negatives})",
        f"  objects: {sum(objects.values())}   ignore regions (iscrowd): {sum(crowd.values())}",
        f"  {'class':<{width}}  {'supercategory':<13} {'objects':>8} {'iscrowd':>8}",
    ]
    for name, sup in zip(class_map.names, class_map.supercategories, strict=True):
        lines.append(f"  {name:<{width}}  {sup:<13} {objects[name]:>8} {crowd[name]:>8}")
    for reason, count in conversion.skipped:
        lines.append(f"  skipped {count}: {reason}")
    return "\n".join(lines)
