"""Pascal VOC xml <-> records.

Reading: every ``*.xml`` under the xml folder (recursively, sorted) is one image. From each file:
``filename`` (relative to the image folder; if empty, an image with the xml's stem is looked up),
``size/width`` and ``size/height`` (read from the image header when missing or 0), and per
``object``: ``name``, ``difficult`` and ``bndbox`` ``xmin ymin xmax ymax``.

Coordinates: VOC boxes are 1-based, inclusive pixel indices. Following Detectron2's VOC loader they
become continuous COCO corners ``x1 = xmin - 1, y1 = ymin - 1, x2 = xmax, y2 = ymax`` (so a box
covering pixel columns 1..10 is 10 wide). Writing inverts this, rounding to whole pixels
(``xmin = round(x1) + 1, xmax = max(round(x2), xmin)``): integer VOC boxes survive a round trip
exactly; a sub-pixel box grows to at least one pixel.

``difficult`` objects become ``iscrowd: 1`` by default: an ignore region, kept out of training and
neither a hit nor a miss in COCO evaluation. ``difficult="keep"`` makes them ordinary objects,
``difficult="drop"`` leaves them out (counted as skipped). When writing, ``iscrowd`` becomes
``difficult``.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
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
from dfss.convert.fields import parse_float
from dfss.data.errors import DataError
from dfss.data.io import read_image_size
from dfss.fileio import write_text_atomic

DIFFICULT_POLICIES = ("crowd", "keep", "drop")
UNKNOWN_NAME_POLICIES = ("error", "skip")


def voc_corners(obj: ET.Element, where: str) -> tuple[float, float, float, float]:
    """An ``<object>``'s ``<bndbox>`` as COCO corners: VOC's 1-based inclusive pixel indices become
    ``x1 = xmin - 1, y1 = ymin - 1, x2 = xmax, y2 = ymax`` (Detectron2's convention)."""
    bndbox = obj.find("bndbox")
    if bndbox is None:
        raise DataError(f"{where} has no <bndbox>")
    xmin, ymin, xmax, ymax = (
        parse_float(bndbox.findtext(tag), f"bndbox/{tag}", where) for tag in ("xmin", "ymin", "xmax", "ymax")
    )
    return xmin - 1, ymin - 1, xmax, ymax


def read_voc(
    xml_dir: str | Path,
    image_dir: str | Path,
    class_map: ClassMap,
    *,
    difficult: str = "crowd",
    unknown_names: str = "error",
) -> Conversion:
    """Read a folder of VOC xml files; :class:`DataError` naming the file on any bad input."""
    if difficult not in DIFFICULT_POLICIES:
        raise ValueError(f"difficult must be one of {DIFFICULT_POLICIES}, got {difficult!r}")
    if unknown_names not in UNKNOWN_NAME_POLICIES:
        raise ValueError(f"unknown_names must be one of {UNKNOWN_NAME_POLICIES}, got {unknown_names!r}")
    xml_dir, image_dir = Path(xml_dir), Path(image_dir)
    for what, folder in (("xml", xml_dir), ("image", image_dir)):
        if not folder.is_dir():
            raise DataError(f"{what} folder {folder} does not exist")
    xml_paths = sorted(xml_dir.rglob("*.xml"))
    if not xml_paths:
        raise DataError(f"no .xml files under {xml_dir}")
    records, skipped = [], []
    for xml_path in xml_paths:
        record, reasons = parse_voc_xml(
            xml_path, image_dir, class_map, difficult=difficult, unknown_names=unknown_names
        )
        records.append(record)
        skipped.extend(reasons)
    return Conversion(tuple(records), count_skipped(skipped))


def _find_image(xml_path: Path, image_dir: Path, rel: Path) -> Path:
    """``image_dir/rel``; a name without an image suffix (or no name: the xml's stem) gets one added."""
    if rel.suffix.lower() in IMAGE_SUFFIXES:
        candidates = [image_dir / rel]
    else:
        suffixes = dict.fromkeys(s for suffix in IMAGE_SUFFIXES for s in (suffix, suffix.upper()))
        candidates = [image_dir / rel.parent / (rel.name + suffix) for suffix in suffixes]
    # keyed by inode so a.jpg and a.JPG on a case-insensitive file system count once
    found = list({(st.st_dev, st.st_ino): c for c in candidates if c.is_file() for st in [c.stat()]}.values())
    if len(found) == 1:
        return found[0]
    if found:
        raise DataError(f"{xml_path}: image '{rel}' is ambiguous: {[str(f) for f in found]}")
    tried = candidates[0] if len(candidates) == 1 else f"{image_dir / rel}{{{','.join(IMAGE_SUFFIXES)}}}"
    raise DataError(f"{xml_path}: names image '{rel}', but {tried} does not exist")


def parse_voc_xml(
    xml_path: Path, image_dir: Path, class_map: ClassMap, *, difficult: str, unknown_names: str
) -> tuple[ImageRecord, list[str]]:
    """One VOC file -> its record and the reasons of objects left out."""
    try:
        root = ET.parse(xml_path).getroot()
    except ET.ParseError as exc:
        raise DataError(f"{xml_path}: malformed xml: {exc}") from None
    if root.tag != "annotation":
        raise DataError(f"{xml_path}: root element is <{root.tag}>, expected <annotation>")

    filename = (root.findtext("filename") or "").strip()
    image_path = _find_image(xml_path, image_dir, Path(filename) if filename else Path(xml_path.stem))
    file_name = image_path.relative_to(image_dir).as_posix()

    width = parse_float(root.findtext("size/width") or "0", "size/width", str(xml_path))
    height = parse_float(root.findtext("size/height") or "0", "size/height", str(xml_path))
    if width <= 0 or height <= 0:
        width, height = read_image_size(image_path)

    known = set(class_map.names)
    boxes, skipped = [], []
    for i, obj in enumerate(root.findall("object")):
        name = (obj.findtext("name") or "").strip()
        where = f"{xml_path}: object {i} ('{name}')"
        if not name:
            raise DataError(f"{xml_path}: object {i} has no <name>")
        if name not in known:
            if unknown_names == "skip":
                skipped.append(f"object named '{name}' is not in the class map")
                continue
            raise DataError(
                f"{xml_path}: object {i} has class name '{name}', which is not in the class map "
                f"{class_map.source} (use --unknown-names skip to leave such objects out)"
            )
        is_difficult = parse_float(obj.findtext("difficult") or "0", "difficult", where) != 0
        if is_difficult and difficult == "drop":
            skipped.append("difficult object (--difficult drop)")
            continue
        x1, y1, x2, y2 = voc_corners(obj, where)
        if x2 <= x1 or y2 <= y1:
            raise DataError(f"{where}: empty box xmin={x1 + 1:g} ymin={y1 + 1:g} xmax={x2:g} ymax={y2:g}")
        boxes.append(Box(name, x1, y1, x2, y2, iscrowd=is_difficult and difficult == "crowd"))
    return ImageRecord(file_name, int(width), int(height), tuple(boxes)), skipped


# ---- writing -----------------------------------------------------------------------------------
def _round(value: float) -> int:
    return math.floor(value + 0.5)


def voc_xml_text(record: ImageRecord) -> str:
    """The VOC xml of one image (coordinates as documented in the module docstring)."""
    root = ET.Element("annotation")
    ET.SubElement(root, "filename").text = record.file_name
    size = ET.SubElement(root, "size")
    for tag, value in (("width", record.width), ("height", record.height), ("depth", 3)):
        ET.SubElement(size, tag).text = str(value)
    ET.SubElement(root, "segmented").text = "0"
    for box in record.boxes:
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = box.category
        ET.SubElement(obj, "pose").text = "Unspecified"
        ET.SubElement(obj, "truncated").text = "0"
        ET.SubElement(obj, "difficult").text = str(int(box.iscrowd))
        xmin, ymin = _round(box.x1) + 1, _round(box.y1) + 1
        xmax, ymax = max(_round(box.x2), xmin), max(_round(box.y2), ymin)
        bndbox = ET.SubElement(obj, "bndbox")
        for tag, value in (("xmin", xmin), ("ymin", ymin), ("xmax", xmax), ("ymax", ymax)):
            ET.SubElement(bndbox, tag).text = str(value)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def write_voc(conversion: Conversion, xml_dir: str | Path) -> int:
    """One ``<xml_dir>/<file_name stem>.xml`` per image (sub-folders kept); returns the file count."""
    xml_dir = Path(xml_dir)
    targets = output_paths(xml_dir, conversion.images, ".xml")
    for record, target in zip(conversion.images, targets, strict=True):
        write_text_atomic(target, voc_xml_text(record))
    return len(targets)
