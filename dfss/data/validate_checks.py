"""The checks behind :func:`dfss.data.validate.validate_coco`, one function per part of the json.

Each check reads parsed json and returns what it keeps plus the :class:`Problem` list it found; none
writes into its input (a clipped box is a new annotation dict). Problem kinds are stable strings.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from dfss.data.errors import DataError
from dfss.data.io import load_rgb, read_image_size

# ---- problem kinds (stable strings: configs, reports and tests refer to them) -----------------
MALFORMED_JSON = "malformed_json"
MISSING_SUPERCATEGORY = "missing_supercategory"
DUPLICATE_CATEGORY_ID = "duplicate_category_id"
DUPLICATE_IMAGE_ID = "duplicate_image_id"
MISSING_IMAGE = "missing_image"
UNREADABLE_IMAGE = "unreadable_image"
SIZE_MISMATCH = "size_mismatch"
DUPLICATE_ANNOTATION_ID = "duplicate_annotation_id"
ORPHAN_ANNOTATION = "orphan_annotation"
UNKNOWN_CATEGORY = "unknown_category"
DEGENERATE_BOX = "degenerate_box"
BOX_ENTIRELY_OUTSIDE = "box_entirely_outside"
BOX_OUTSIDE_IMAGE = "box_outside_image"
KINDS = (
    MALFORMED_JSON,
    MISSING_SUPERCATEGORY,
    DUPLICATE_CATEGORY_ID,
    DUPLICATE_IMAGE_ID,
    MISSING_IMAGE,
    UNREADABLE_IMAGE,
    SIZE_MISMATCH,
    DUPLICATE_ANNOTATION_ID,
    ORPHAN_ANNOTATION,
    UNKNOWN_CATEGORY,
    DEGENERATE_BOX,
    BOX_ENTIRELY_OUTSIDE,
    BOX_OUTSIDE_IMAGE,
)

# ---- actions -----------------------------------------------------------------------------------
FATAL = "fatal"
DROPPED_IMAGE = "dropped_image"
DROPPED_ANNOTATION = "dropped_annotation"
CLIPPED = "clipped"

IMAGE_CHECKS = ("decode", "header", "none")


@dataclass(frozen=True)
class Problem:
    """One problem found in the input. ``action`` is what skip mode does about it."""

    kind: str  # one of KINDS
    message: str  # one line; names file, image id, annotation id where they apply
    file: str | None  # the json file or the image file concerned
    image_id: int | None
    ann_id: int | None
    action: str  # FATAL, DROPPED_IMAGE, DROPPED_ANNOTATION or CLIPPED
    loses_data: bool


def _is_int(value: Any) -> bool:
    return type(value) is int  # json gives plain ints; excludes bool (an int subclass)


def _is_number(value: Any) -> bool:
    return type(value) is int or type(value) is float


def _fatal(kind: str, message: str, file: str) -> Problem:
    return Problem(kind, message, file, None, None, FATAL, True)


# ---- whole file --------------------------------------------------------------------------------
def load_coco_json(ann_file: Path) -> tuple[dict | None, list[Problem]]:
    """Parse the json and check its top-level structure; ``None`` when it cannot be used at all."""
    src = str(ann_file)
    try:
        data = json.loads(ann_file.read_bytes())
    except json.JSONDecodeError as exc:
        msg = f"{src}: not valid json at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        return None, [_fatal(MALFORMED_JSON, msg, src)]
    except UnicodeDecodeError as exc:
        return None, [_fatal(MALFORMED_JSON, f"{src}: not utf-8/16/32 text: {exc}", src)]
    if not isinstance(data, dict):
        msg = (
            f"{src}: top level is a json {type(data).__name__}, "
            "expected an object with images/annotations/categories"
        )
        return None, [_fatal(MALFORMED_JSON, msg, src)]
    problems = []
    for key in ("images", "annotations", "categories"):
        if key not in data:
            problems.append(_fatal(MALFORMED_JSON, f"{src}: no '{key}' list at the top level", src))
        elif not isinstance(data[key], list):
            msg = f"{src}: '{key}' is a {type(data[key]).__name__}, expected a list"
            problems.append(_fatal(MALFORMED_JSON, msg, src))
    return (None if problems else data), problems


# ---- categories --------------------------------------------------------------------------------
def check_categories(categories: Sequence[Any], *, src: str) -> tuple[dict[int, str], list[Problem]]:
    """Map category id -> supercategory ('' when missing). Every category problem is fatal."""
    supercategory_of: dict[int, str] = {}
    problems = []
    missing = []  # (cat_id, name) without a supercategory, reported once the used ones are known
    for index, cat in enumerate(categories):
        if not isinstance(cat, dict) or not _is_int(cat.get("id")) or not isinstance(cat.get("name"), str):
            msg = f"{src}: category entry #{index} ({cat!r:.80}) needs an integer 'id' and a string 'name'"
            problems.append(_fatal(MALFORMED_JSON, msg, src))
            continue
        cat_id, name = cat["id"], cat["name"]
        if cat_id in supercategory_of:
            msg = (
                f"{src}: duplicate category id {cat_id} (entry #{index}, '{name}'); "
                "category ids must be unique"
            )
            problems.append(_fatal(DUPLICATE_CATEGORY_ID, msg, src))
            continue
        sup = cat.get("supercategory")
        sup = sup.strip() if isinstance(sup, str) else ""
        supercategory_of[cat_id] = sup
        if not sup:
            missing.append((cat_id, name))
    if not categories:
        problems.append(_fatal(MALFORMED_JSON, f"{src}: 'categories' is empty", src))
    used = sorted({s for s in supercategory_of.values() if s})
    for cat_id, name in missing:
        msg = (
            f"{src}: category id {cat_id} ('{name}') has no 'supercategory'; "
            "every category needs a non-empty "
            f"one such as 'dangerous', 'normal' or 'unknown' (used in this file: {used})"
        )
        problems.append(_fatal(MISSING_SUPERCATEGORY, msg, src))
    return supercategory_of, problems


# ---- image entries -----------------------------------------------------------------------------
def check_image_entries(
    images: Sequence[Any], *, src: str
) -> tuple[dict[int, dict], set[int], list[Problem]]:
    """Well-formed, first-seen image entries by id; every id declared (even by a bad entry); problems."""
    kept: dict[int, dict] = {}
    declared: set[int] = set()
    problems = []
    for index, img in enumerate(images):
        if not isinstance(img, dict):
            msg = f"{src}: image entry #{index} is a json {type(img).__name__}, expected an object; dropped"
            problems.append(Problem(MALFORMED_JSON, msg, src, None, None, DROPPED_IMAGE, True))
            continue
        image_id = img.get("id")
        if not _is_int(image_id):
            image_id = None
        where = f"image entry #{index}" + ("" if image_id is None else f" (image id {image_id})")
        errors = _image_entry_errors(img)
        if errors:
            msg = f"{src}: {where}: {'; '.join(errors)}; image dropped"
            problems.append(Problem(MALFORMED_JSON, msg, src, image_id, None, DROPPED_IMAGE, True))
        if image_id is not None and image_id in declared:
            first = kept.get(image_id, {}).get("file_name")
            msg = (
                f"{src}: {where}: duplicate image id {image_id} ('{img.get('file_name')}', first used by "
                f"'{first}'); later entry dropped"
            )
            problems.append(Problem(DUPLICATE_IMAGE_ID, msg, src, image_id, None, DROPPED_IMAGE, True))
            continue
        if image_id is not None:
            declared.add(image_id)
        if not errors:
            kept[image_id] = img
    return kept, declared, problems


def _image_entry_errors(img: Mapping) -> list[str]:
    errors = []
    for key in ("id", "file_name", "width", "height"):
        if key not in img:
            errors.append(f"no '{key}'")
    if "id" in img and not _is_int(img["id"]):
        errors.append(f"'id' must be an integer, got {img['id']!r}")
    name = img.get("file_name")
    if "file_name" in img and not (isinstance(name, str) and name.strip()):
        errors.append(f"'file_name' must be a non-empty string, got {name!r}")
    for key in ("width", "height"):
        if key in img and not (_is_int(img[key]) and img[key] > 0):
            errors.append(f"'{key}' must be a positive integer, got {img[key]!r}")
    return errors


# ---- image files -------------------------------------------------------------------------------
def check_image_files(
    images: Iterable[dict], image_dir: Path, *, image_check: str, num_workers: int
) -> list[Problem]:
    """Existence, decodability and size of each image file, in the order given (thread pool if asked)."""
    if image_check == "none":
        return []
    images = list(images)

    def check(img: dict) -> Problem | None:
        return check_image_file(img, image_dir, image_check=image_check)

    if num_workers > 0 and len(images) > 1:
        with ThreadPoolExecutor(max_workers=num_workers) as pool:
            results = list(pool.map(check, images))  # map keeps input order
    else:
        results = [check(img) for img in images]
    return [p for p in results if p is not None]


def check_image_file(img: Mapping, image_dir: Path, *, image_check: str) -> Problem | None:
    """The first problem of one image file (missing, unreadable, wrong size), or ``None``."""
    image_id, file_name = img["id"], img["file_name"]
    path = image_dir / file_name
    file = str(path)
    if not path.is_file():
        msg = (
            f"image file {file} (image id {image_id}, file_name '{file_name}') does not exist; image dropped"
        )
        return Problem(MISSING_IMAGE, msg, file, image_id, None, DROPPED_IMAGE, True)
    try:
        if image_check == "decode":
            height, width = load_rgb(path, image_id).shape[:2]
        else:
            width, height = read_image_size(path, image_id)
    except (DataError, Image.DecompressionBombError) as exc:
        msg = (
            f"{exc}; image dropped" if isinstance(exc, DataError) else f"{file} (image id {image_id}): {exc}"
        )
        return Problem(UNREADABLE_IMAGE, msg, file, image_id, None, DROPPED_IMAGE, True)
    if (width, height) != (img["width"], img["height"]):
        msg = (
            f"image file {file} (image id {image_id}) is {width}x{height} but the json says "
            f"{img['width']}x{img['height']} (width x height); image dropped"
        )
        return Problem(SIZE_MISMATCH, msg, file, image_id, None, DROPPED_IMAGE, True)
    return None


# ---- annotations -------------------------------------------------------------------------------
@dataclass(frozen=True)
class AnnotationCheck:
    """Annotations that survive their own checks (boxes clipped), in input order, and the problems."""

    kept: list[dict]
    problems: list[Problem]


def check_annotations(
    annotations: Sequence[Any],
    *,
    src: str,
    images: Mapping[int, Mapping],
    declared_image_ids: Collection[int],
    category_ids: Collection[int],
) -> AnnotationCheck:
    """One pass over the annotations. ``images``: well-formed entries by id (for names and sizes)."""
    kept: list[dict] = []
    problems: list[Problem] = []
    seen_ids: set[int] = set()
    for index, ann in enumerate(annotations):
        if not isinstance(ann, dict):
            msg = (
                f"{src}: annotation entry #{index} is a json {type(ann).__name__}, "
                "expected an object; dropped"
            )
            problems.append(Problem(MALFORMED_JSON, msg, src, None, None, DROPPED_ANNOTATION, True))
            continue
        found: list[tuple[str, str]] = []  # (kind, reason) of this annotation; messages built below
        errors = _annotation_entry_errors(ann)
        if errors:
            found.append((MALFORMED_JSON, "; ".join(errors)))
        ann_id = ann.get("id")
        if _is_int(ann_id) and ann_id in seen_ids:
            found.append((DUPLICATE_ANNOTATION_ID, f"duplicate annotation id {ann_id}, later entry"))
        elif _is_int(ann_id):
            seen_ids.add(ann_id)
        image_id = ann.get("image_id")
        img = images.get(image_id) if _is_int(image_id) else None
        if not found:  # well-formed and first of its id: check what it refers to and its box
            if image_id not in declared_image_ids:
                found.append((ORPHAN_ANNOTATION, f"image id {image_id} is not in 'images'"))
            if ann["category_id"] not in category_ids:
                found.append((UNKNOWN_CATEGORY, f"category id {ann['category_id']} is not in 'categories'"))
            box_problem, bbox = _check_box(ann["bbox"], img)
            if box_problem is not None and (box_problem[0] != BOX_OUTSIDE_IMAGE or not found):
                found.append(box_problem)  # a clip is only worth reporting on a kept annotation
            if all(kind == BOX_OUTSIDE_IMAGE for kind, _ in found):
                kept.append(ann if bbox is None else {**ann, "bbox": bbox})
        if found:
            problems.extend(_annotation_problems(found, src, index, ann, img))
    return AnnotationCheck(kept, problems)


def _annotation_problems(
    found: list[tuple[str, str]], src: str, index: int, ann: Mapping, img: Mapping | None
) -> list[Problem]:
    ann_id = ann.get("id") if _is_int(ann.get("id")) else None
    image_id = ann.get("image_id") if _is_int(ann.get("image_id")) else None
    where = _ann_where(src, index, ann_id, image_id, img)
    problems = []
    for kind, reason in found:
        if kind == BOX_OUTSIDE_IMAGE:
            problems.append(Problem(kind, f"{where}: {reason}", src, image_id, ann_id, CLIPPED, False))
        else:
            msg = f"{where}: {reason}; annotation dropped"
            problems.append(Problem(kind, msg, src, image_id, ann_id, DROPPED_ANNOTATION, True))
    return problems


def _ann_where(src: str, index: int, ann_id: int | None, image_id: int | None, img: Mapping | None) -> str:
    head = f"annotation id {ann_id}" if ann_id is not None else f"annotation entry #{index} (no valid id)"
    if image_id is None:
        return f"{src}: {head}"
    name = f", '{img['file_name']}'" if img is not None else ""
    return f"{src}: {head} (image id {image_id}{name})"


def _annotation_entry_errors(ann: Mapping) -> list[str]:
    errors = []
    for key in ("id", "image_id", "category_id"):
        if key not in ann:
            errors.append(f"no '{key}'")
        elif not _is_int(ann[key]):
            errors.append(f"'{key}' must be an integer, got {ann[key]!r}")
    bbox = ann.get("bbox")
    if "bbox" not in ann:
        errors.append("no 'bbox'")
    elif not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
        errors.append(f"'bbox' must be 4 numbers [x, y, w, h], got {bbox!r:.80}")
    return errors


def _check_box(bbox: list, img: Mapping | None) -> tuple[tuple[str, str] | None, list[float] | None]:
    """``((kind, reason) or None, clipped bbox or None)`` for an xywh box on an image of known size."""
    x, y, w, h = bbox
    if not all(math.isfinite(v) for v in bbox):
        return (DEGENERATE_BOX, f"bbox {bbox} has non-finite coordinates"), None
    if w <= 0 or h <= 0:
        return (DEGENERATE_BOX, f"bbox {bbox} has zero or negative width/height"), None
    if img is None:  # image entry malformed or absent: reported there, nothing to clip against
        return None, None
    width, height = img["width"], img["height"]
    if x + w <= 0 or y + h <= 0 or x >= width or y >= height:
        reason = f"bbox {bbox} lies entirely outside the {width}x{height} image"
        return (BOX_ENTIRELY_OUTSIDE, reason), None
    if x >= 0 and y >= 0 and x + w <= width and y + h <= height:
        return None, None
    x1, y1 = max(x, 0), max(y, 0)
    clipped = [x1, y1, min(x + w, width) - x1 if x + w > width or x < 0 else w]
    clipped.append(min(y + h, height) - y1 if y + h > height or y < 0 else h)
    reason = f"bbox {bbox} sticks out of the {width}x{height} image; clipped to {clipped}"
    return (BOX_OUTSIDE_IMAGE, reason), clipped
