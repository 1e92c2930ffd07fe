"""PIDray and CLCXray: COCO json per split, images in one folder per split.

Layouts (the official mmdetection configs)::

    PIDray  (configs/sda_cascade_mask_rcnn_fpn_1x.py of github.com/bywang2018/security-dataset)
    <root>/annotations/xray_train.json         images in <root>/train/
    <root>/annotations/xray_test_easy.json     images in <root>/easy/     (also hard, hidden)

    CLCXray (configs/_base_/datasets/coco_detection.py of github.com/GreysonPhoenix/mmdetection)
    <root>/annotations/instances_train2017.json   images in <root>/train2017/
    <root>/annotations/instances_test2017.json    images in <root>/test2017/

The json's categories are matched to the class map by name (ignoring case, spaces, ``_`` and
``-``); ``bbox`` is COCO ``[x, y, w, h]`` in pixels, taken as it is (both sets' loaders read
``[x1, y1, x1 + w, y1 + h]``); ``iscrowd`` is kept; segmentations are not read. An image without
annotations is an image without objects. Image and annotation ids are renumbered (file-name order).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

from dfss.convert.classmap import ClassMap
from dfss.convert.coco_io import Box, Conversion, ImageRecord, count_skipped
from dfss.convert.public.common import PublicSplit, class_lookup, drop_reason, require_dir, resolve_class
from dfss.data.errors import DataError
from dfss.data.io import read_image_size

PIDRAY_SPLITS = {
    "train": ("xray_train.json", "train"),
    "easy": ("xray_test_easy.json", "easy"),
    "hard": ("xray_test_hard.json", "hard"),
    "hidden": ("xray_test_hidden.json", "hidden"),
}


def read_pidray(
    root: Path, split: str, class_map: ClassMap, *, ids: Path | None = None, unknown_names: str = "error"
) -> PublicSplit:
    if ids is not None:
        raise DataError("--ids is not read for PIDray: its splits are its json files")
    if split not in PIDRAY_SPLITS:
        raise DataError(f"PIDray's splits are {list(PIDRAY_SPLITS)}, not '{split}'")
    json_name, folder = PIDRAY_SPLITS[split]
    return read_coco_set(
        root / "annotations" / json_name, root / folder, class_map, unknown_names=unknown_names
    )


def read_clcxray(
    root: Path, split: str, class_map: ClassMap, *, ids: Path | None = None, unknown_names: str = "error"
) -> PublicSplit:
    if ids is not None:
        raise DataError("--ids is not read for CLCXray: its splits are its json files")
    return read_coco_set(
        root / "annotations" / f"instances_{split}2017.json",
        root / f"{split}2017",
        class_map,
        unknown_names=unknown_names,
    )


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _load(ann_path: Path) -> dict:
    if not ann_path.is_file():
        present = sorted(p.name for p in ann_path.parent.glob("*.json")) if ann_path.parent.is_dir() else []
        raise DataError(f"annotation file {ann_path} does not exist (json files there: {present})")
    try:
        data = json.loads(ann_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {ann_path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{ann_path}: malformed json: {exc}") from None
    if not isinstance(data, dict):
        raise DataError(f"{ann_path}: expected a COCO json object")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(f"{ann_path}: '{key}' is missing or not a list")
    return data


def _field(entry: object, key: str, where: str) -> object:
    if not isinstance(entry, Mapping) or key not in entry:
        raise DataError(f"{where} has no '{key}'")
    return entry[key]


def _int(entry: object, key: str, where: str) -> int:
    value = _field(entry, key, where)
    if not _finite(value) or value != int(value):
        raise DataError(f"{where}: '{key}' is {value!r}, not an integer")
    return int(value)


def _where(kind: str, entry: object, ann_path: Path) -> str:
    return f"{ann_path}: {kind} {entry.get('id', '?') if isinstance(entry, Mapping) else repr(entry)}"


def read_coco_set(ann_path: Path, image_dir: Path, class_map: ClassMap, *, unknown_names: str) -> PublicSplit:
    """A COCO json and its image folder -> records named after the class map; errors name the json."""
    data = _load(ann_path)
    require_dir(image_dir, "image folder", f"the images of {ann_path.name}")
    category_name: dict[int, str] = {}
    for cat in data["categories"]:
        where = _where("category", cat, ann_path)
        category_name[_int(cat, "id", where)] = str(_field(cat, "name", where))
    images: dict[int, tuple[str, int, int]] = {}
    for img in data["images"]:
        where = _where("image", img, ann_path)
        image_id, file_name = _int(img, "id", where), str(_field(img, "file_name", where))
        if image_id in images:
            raise DataError(f"{ann_path}: duplicate image id {image_id}")
        width = _int(img, "width", where) if img.get("width") else 0
        height = _int(img, "height", where) if img.get("height") else 0
        if width <= 0 or height <= 0:
            width, height = read_image_size(image_dir / file_name, image_id)
        images[image_id] = (file_name, width, height)
    lookup = class_lookup(class_map)
    boxes_of: dict[int, list[Box]] = {image_id: [] for image_id in images}
    skipped: list[str] = []
    for ann in data["annotations"]:
        where = _where("annotation id", ann, ann_path)
        image_id, cat_id = _int(ann, "image_id", where), _int(ann, "category_id", where)
        if image_id not in images:
            raise DataError(f"{where} refers to image id {image_id}, which is not in 'images'")
        if cat_id not in category_name:
            raise DataError(f"{where} has category_id {cat_id}, which is not in 'categories'")
        name = resolve_class(
            category_name[cat_id],
            lookup,
            class_map,
            where=where,
            unknown_names=unknown_names,
            skipped=skipped,
        )
        if name is None:
            continue
        bbox = _field(ann, "bbox", where)
        if not isinstance(bbox, list) or len(bbox) != 4 or not all(_finite(v) for v in bbox):
            raise DataError(f"{where}: bbox {bbox!r} is not [x, y, w, h] of finite numbers")
        x, y, w, h = (float(v) for v in bbox)
        _, width, height = images[image_id]
        reason = drop_reason(x, y, x + w, y + h, width, height)
        if reason is not None:
            skipped.append(reason)
            continue
        boxes_of[image_id].append(Box(name, x, y, x + w, y + h, iscrowd=bool(ann.get("iscrowd", 0))))
    records = tuple(
        ImageRecord(file_name, width, height, tuple(boxes_of[image_id]))
        for image_id, (file_name, width, height) in images.items()
    )
    return PublicSplit(Conversion(records, count_skipped(skipped)), image_dir)
