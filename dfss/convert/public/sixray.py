"""SIXray: box annotations (VOC xml) for the positive images, image-level labels in csv lists.

Layout::

    <root>/JPEGImage/<name>.jpg               (CHR/ray.py of github.com/MeioJane/CHR: root/JPEGImage,
                                               name + '.jpg'; images directly in that folder)
    <root>/positive-Annotation/**/<name>.xml  (positive-Annotation.zip in github.com/MeioJane/SIXray
                                               data_list.txt; <root>/Annotation/ is read when that
                                               folder is absent)
    <root>/ImageSet/.../<list>.csv            (ImageSet.zip; CHR reads ImageSet/train_test_10-5/<set>.csv
                                               with a 'name,Gun,Knife,Wrench,Pliers,Scissors' header)

The xml files are named after their image (``P00001.xml`` for ``P00001.jpg``); the image is found
by that name, not by ``<filename>``. ``split`` is either ``positive`` (every image with an xml) or
the path of an image list (relative to ``root`` or absolute): one name per line, or a csv whose rows
are ``name,label,...`` as ImageSet's are. A listed image with an xml gets its boxes; one without
becomes an image without objects (a negative) unless one of its labels is > 0, in which case it is
left out and counted (a positive image nobody drew boxes on would teach the detector to miss).

Quirks handled: objects with no ``<name>`` are left out and counted (users of the released files
report them: ``utils/gTGeneratorSIXray.m`` of github.com/taimurhassan/TST);
class names are matched ignoring case, spaces, ``_`` and ``-``; a missing or zero ``<size>`` is read
from the image header. Coordinates are converted as ``dfss-convert voc2coco`` converts VOC's 1-based
inclusive pixels (``x1 = xmin - 1``, ``x2 = xmax``); ``difficult`` objects become ``iscrowd``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from dfss.convert.classmap import ClassMap
from dfss.convert.coco_io import Box, Conversion, ImageRecord, count_skipped
from dfss.convert.public.common import (
    PublicSplit,
    class_lookup,
    drop_reason,
    find_image,
    parse_float,
    read_id_list,
    require_dir,
    resolve_class,
)
from dfss.convert.voc import voc_corners
from dfss.data.errors import DataError
from dfss.data.io import read_image_size

SIXRAY_SUFFIXES = (".jpg", ".jpeg", ".png")
ALL_POSITIVES = "positive"


def read_sixray(
    root: Path, split: str, class_map: ClassMap, *, ids: Path | None = None, unknown_names: str = "error"
) -> PublicSplit:
    """``split``: ``positive`` or an image list; :class:`DataError` naming the file on bad input."""
    if ids is not None:
        raise DataError("SIXray takes its image list as --split (a path), not --ids")
    image_dir = root / "JPEGImage"
    require_dir(image_dir, "image folder", "--root is the SIXray folder holding JPEGImage/")
    xml_by_name = _xml_files(root)
    lookup = class_lookup(class_map)
    records, skipped = [], []

    def annotated(name: str, xml_path: Path) -> None:
        image_path = find_image(image_dir, name, where=str(xml_path), suffixes=SIXRAY_SUFFIXES)
        records.append(_parse_xml(xml_path, image_path, image_dir, class_map, lookup, unknown_names, skipped))

    if split == ALL_POSITIVES:
        for name, xml_path in sorted(xml_by_name.items()):
            annotated(name, xml_path)
    else:
        list_path = Path(split) if Path(split).is_absolute() else root / split
        if not list_path.is_file():
            raise DataError(
                f"SIXray split '{split}': {list_path} is not a file; give '{ALL_POSITIVES}' or an image "
                "list (e.g. a csv of ImageSet/), relative to --root or absolute"
            )
        for listed in read_id_list(list_path):
            if listed.name in xml_by_name:
                annotated(listed.name, xml_by_name[listed.name])
            elif listed.labels is not None and any(label > 0 for label in listed.labels):
                skipped.append("image labelled positive in the list but without a box annotation (left out)")
            else:
                image_path = find_image(image_dir, listed.name, where=listed.where, suffixes=SIXRAY_SUFFIXES)
                width, height = read_image_size(image_path)
                records.append(ImageRecord(image_path.relative_to(image_dir).as_posix(), width, height, ()))
    return PublicSplit(Conversion(tuple(records), count_skipped(skipped)), image_dir)


def _xml_files(root: Path) -> dict[str, Path]:
    """``{image name: xml path}`` under positive-Annotation/ (or Annotation/), searched recursively."""
    candidates = [root / "positive-Annotation", root / "Annotation"]
    ann_dir = next((c for c in candidates if c.is_dir()), None)
    if ann_dir is None:
        raise DataError(
            f"neither {candidates[0]} nor {candidates[1]} exists (unpack positive-Annotation.zip in --root)"
        )
    found: dict[str, Path] = {}
    for path in sorted(ann_dir.rglob("*.xml")):
        if path.stem in found:
            raise DataError(f"two box files for image '{path.stem}': {found[path.stem]} and {path}")
        found[path.stem] = path
    if not found:
        raise DataError(f"no .xml files under {ann_dir}")
    return found


def _parse_xml(
    xml_path: Path,
    image_path: Path,
    image_dir: Path,
    class_map: ClassMap,
    lookup: dict[str, str],
    unknown_names: str,
    skipped: list[str],
) -> ImageRecord:
    try:
        root = ET.parse(xml_path).getroot()
    except ET.ParseError as exc:
        raise DataError(f"{xml_path}: malformed xml: {exc}") from None
    if root.tag != "annotation":
        raise DataError(f"{xml_path}: root element is <{root.tag}>, expected <annotation>")
    width = parse_float(root.findtext("size/width") or "0", "size/width", str(xml_path))
    height = parse_float(root.findtext("size/height") or "0", "size/height", str(xml_path))
    if width <= 0 or height <= 0:
        width, height = read_image_size(image_path)
    width, height = int(width), int(height)
    boxes = []
    for i, obj in enumerate(root.findall("object")):
        raw_name = (obj.findtext("name") or "").strip()
        if not raw_name:
            skipped.append("object without a <name> (left out)")
            continue
        where = f"{xml_path}: object {i} ('{raw_name}')"
        name = resolve_class(
            raw_name, lookup, class_map, where=where, unknown_names=unknown_names, skipped=skipped
        )
        if name is None:
            continue
        x1, y1, x2, y2 = voc_corners(obj, where)
        reason = drop_reason(x1, y1, x2, y2, width, height)
        if reason is not None:
            skipped.append(reason)
            continue
        difficult = parse_float(obj.findtext("difficult") or "0", "difficult", where) != 0
        boxes.append(Box(name, x1, y1, x2, y2, iscrowd=difficult))
    return ImageRecord(image_path.relative_to(image_dir).as_posix(), width, height, tuple(boxes))
