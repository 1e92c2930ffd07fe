"""YOLO txt folders (ultralytics layout) <-> records.

Layout: images anywhere under the image folder (searched recursively for .jpg .jpeg .png .bmp .tif
.tiff), labels under the label folder at the same relative path with ``.txt``
(``images/train/a/x.jpg`` <-> ``labels/train/a/x.txt``; both folders may be the same). Each label line
is ``class cx cy w h``: a 0-based index into the class map and the box centre and size normalised
by the image width and height to ``[0, 1]``.

An image without a label file, or with an empty one, is a negative. A label file without an image is
an error, as is any bad line (field count, not a number, class index out of range, coordinate
outside ``[0, 1]``, zero size); the message names the file and line number. Image sizes are read
from the image headers. YOLO has no ignore regions: ``iscrowd`` boxes are dropped on writing
(counted), or written as ordinary boxes when asked.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

from dfss.convert.classmap import ClassMap
from dfss.convert.coco_io import (
    IMAGE_SUFFIXES,
    Box,
    Conversion,
    ImageRecord,
    count_skipped,
    output_paths,
)
from dfss.data.errors import DataError
from dfss.data.io import read_image_size
from dfss.fileio import write_text_atomic


def find_images(image_dir: Path) -> list[Path]:
    """Image files under ``image_dir`` (recursive), sorted by relative path."""
    found = (p for p in image_dir.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    return sorted(found, key=lambda p: p.relative_to(image_dir).as_posix())


def _stem_key(path: Path, root: Path) -> str:
    return path.relative_to(root).with_suffix("").as_posix()


def read_yolo(image_dir: str | Path, label_dir: str | Path, class_map: ClassMap) -> Conversion:
    """Read an image folder and its YOLO label folder; :class:`DataError` naming the file on bad input."""
    image_dir, label_dir = Path(image_dir), Path(label_dir)
    for what, folder in (("image", image_dir), ("label", label_dir)):
        if not folder.is_dir():
            raise DataError(f"{what} folder {folder} does not exist")
    image_paths = find_images(image_dir)
    if not image_paths:
        raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {image_dir}")
    image_by_key: dict[str, Path] = {}
    for path in image_paths:
        key = _stem_key(path, image_dir)
        if key in image_by_key:
            raise DataError(f"images {image_by_key[key]} and {path} would share the label file {key}.txt")
        image_by_key[key] = path
    label_by_key: dict[str, Path] = {}
    for label in sorted(label_dir.rglob("*.txt")):
        key = _stem_key(label, label_dir)
        if key not in image_by_key:
            raise DataError(
                f"{label}: label file has no image "
                f"{image_dir / key}.<{'|'.join(s[1:] for s in IMAGE_SUFFIXES)}> "
                f"(move files that are not labels, e.g. classes.txt, out of {label_dir})"
            )
        label_by_key[key] = label
    records = []
    for key, path in image_by_key.items():
        width, height = read_image_size(path)
        label = label_by_key.get(key)
        boxes = (
            ()
            if label is None
            else parse_label_text(_read_text(label), class_map, width, height, source=label)
        )
        records.append(ImageRecord(path.relative_to(image_dir).as_posix(), width, height, boxes))
    return Conversion(tuple(records))


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read label file {path}: {exc}") from None


def parse_label_text(
    text: str, class_map: ClassMap, width: int, height: int, *, source: str | Path
) -> tuple[Box, ...]:
    """Boxes of one label file (pixel ``xyxy``); blank lines are ignored."""
    boxes = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{source} line {lineno}"
        if len(fields) != 5:
            raise DataError(
                f"{where}: expected 5 fields 'class cx cy w h', got {len(fields)}: {line.strip()!r}"
            )
        try:
            index = int(fields[0])
        except ValueError:
            raise DataError(f"{where}: class index {fields[0]!r} is not an integer") from None
        if not 0 <= index < len(class_map.names):
            raise DataError(
                f"{where}: class index {index} is out of range; {class_map.source} has "
                f"{len(class_map.names)} classes (0..{len(class_map.names) - 1})"
            )
        try:
            cx, cy, w, h = (float(v) for v in fields[1:])
        except ValueError:
            raise DataError(f"{where}: coordinates {fields[1:]} are not all numbers") from None
        if not all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in (cx, cy, w, h)):
            raise DataError(f"{where}: coordinates {fields[1:]} must be normalised to [0, 1]")
        if w <= 0 or h <= 0:
            raise DataError(f"{where}: box has zero width or height")
        boxes.append(
            Box(
                class_map.names[index],
                (cx - w / 2) * width,
                (cy - h / 2) * height,
                (cx + w / 2) * width,
                (cy + h / 2) * height,
            )
        )
    return tuple(boxes)


# ---- writing -----------------------------------------------------------------------------------
def without_crowd(conversion: Conversion) -> Conversion:
    """The same images with ``iscrowd`` boxes removed and counted as skipped."""
    reasons = [
        f"iscrowd box of '{b.category}' (YOLO has no ignore regions)"
        for r in conversion.images
        for b in r.boxes
        if b.iscrowd
    ]
    images = tuple(replace(r, boxes=tuple(b for b in r.boxes if not b.iscrowd)) for r in conversion.images)
    return Conversion(images, conversion.skipped + count_skipped(reasons))


def crowd_as_objects(conversion: Conversion) -> Conversion:
    """The same images with ``iscrowd`` boxes turned into ordinary boxes."""
    images = tuple(
        replace(r, boxes=tuple(replace(b, iscrowd=False) for b in r.boxes)) for r in conversion.images
    )
    return Conversion(images, conversion.skipped)


def _fmt(value: float) -> str:
    text = f"{value:.10f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def yolo_label_text(record: ImageRecord, index_by_name: dict[str, int]) -> str:
    """One label file: ``class cx cy w h`` per box, normalised by the image size."""
    lines = []
    for box in record.boxes:
        if box.category not in index_by_name:
            raise DataError(f"{record.file_name}: class '{box.category}' is not in the class map")
        cx = (box.x1 + box.x2) / 2 / record.width
        cy = (box.y1 + box.y2) / 2 / record.height
        w = (box.x2 - box.x1) / record.width
        h = (box.y2 - box.y1) / record.height
        lines.append(" ".join([str(index_by_name[box.category]), *(_fmt(v) for v in (cx, cy, w, h))]))
    return "".join(line + "\n" for line in lines)


def write_yolo(conversion: Conversion, class_map: ClassMap, label_dir: str | Path) -> int:
    """One ``<label_dir>/<file_name stem>.txt`` per image (empty for negatives); returns the count."""
    label_dir = Path(label_dir)
    index_by_name = class_map.index_by_name()
    targets = output_paths(label_dir, conversion.images, ".txt")
    for record, target in zip(conversion.images, targets, strict=True):
        write_text_atomic(target, yolo_label_text(record, index_by_name))
    return len(targets)
