"""OPIXray and HiXray: one text file per image, one ``image_name category x1 y1 x2 y2`` line per box.

Layout (the official loaders, ``DOAM/data/OPIXray.py`` of github.com/OPIXray-author/OPIXray and
``MuBo/data/HiXray.py`` of github.com/HiXray-author/HiXray; HiXray's README states the line format)::

    <root>/<split>/<split>_annotation/<id>.txt
    <root>/<split>/<split>_image/<id>.jpg      (HiXray's loader tries .TIFF, .tiff, then .jpg)
    <root>/<split>/<split>_knife.txt            (OPIXray's id list; HiXray's is <split>_name.txt)

``<root>`` is the folder holding ``train/`` and ``test/``. Every annotation file is one image (a
file with no lines is an image without objects), unless ``ids`` names a list of ids (the official
loaders read such a list, e.g. OPIXray's ``test_knife-3.txt`` for its occlusion level 3).

Each line's last five fields are the class and ``x1 y1 x2 y2``: the top-left and bottom-right
corners in pixels, used as they are, as the official loaders do (they divide them by the image
size, with no ±1). The first field, the image name, is not read: the file's own name says which
image it is (the loaders do the same); splitting from the right keeps names with spaces working.
Files are read as utf-8 (a byte-order mark is dropped): an earlier OPIXray release wrote its class
names in Chinese, which map to the English ones (``OPIXRAY_ALIASES``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
    read_text,
    require_dir,
    resolve_class,
)
from dfss.data.errors import DataError
from dfss.data.io import read_image_size

OPIXRAY_SUFFIXES = (".jpg", ".tiff", ".tif", ".png")  # the training loader reads .jpg
# An earlier release named OPIXray's classes in Chinese: a compiled loader left in HiXray's repository
# (MuBo/data/__pycache__/SIXray.cpython-35.pyc, root '/mnt/zhedang_dataset', zhedang = occlusion)
# lists these five in the order of OPIXray_CLASSES.
OPIXRAY_ALIASES = {
    "折叠刀": "Folding_Knife",
    "直刀": "Straight_Knife",
    "剪刀": "Scissor",
    "裁纸刀": "Utility_Knife",
    "多功能刀": "Multi-tool_Knife",
}
HIXRAY_SUFFIXES = (".tiff", ".jpg", ".tif", ".png")  # the loader tries .TIFF, .tiff, then .jpg


def read_opixray(
    root: Path, split: str, class_map: ClassMap, *, ids: Path | None = None, unknown_names: str = "error"
) -> PublicSplit:
    return read_txt_set(
        root,
        split,
        class_map,
        ids=ids,
        unknown_names=unknown_names,
        suffixes=OPIXRAY_SUFFIXES,
        aliases=OPIXRAY_ALIASES,
    )


def read_hixray(
    root: Path, split: str, class_map: ClassMap, *, ids: Path | None = None, unknown_names: str = "error"
) -> PublicSplit:
    return read_txt_set(
        root, split, class_map, ids=ids, unknown_names=unknown_names, suffixes=HIXRAY_SUFFIXES
    )


def read_txt_set(
    root: Path,
    split: str,
    class_map: ClassMap,
    *,
    ids: Path | None,
    unknown_names: str,
    suffixes: Sequence[str],
    aliases: Mapping[str, str] | None = None,
) -> PublicSplit:
    """One split of an OPIXray/HiXray-style set; :class:`DataError` naming the file on bad input."""
    hint = f"--root is the folder holding {split}/, with {split}/{split}_annotation and {split}/{split}_image"
    ann_dir, image_dir = root / split / f"{split}_annotation", root / split / f"{split}_image"
    require_dir(ann_dir, "annotation folder", hint)
    require_dir(image_dir, "image folder", hint)
    if ids is None:
        ann_paths = sorted(ann_dir.glob("*.txt"))
        if not ann_paths:
            raise DataError(f"no .txt annotation files in {ann_dir}")
    else:
        ann_paths = []
        for listed in read_id_list(ids):
            path = ann_dir / f"{listed.name}.txt"
            if not path.is_file():
                raise DataError(f"{listed.where}: lists '{listed.name}', but {path} does not exist")
            ann_paths.append(path)
    lookup = class_lookup(class_map, aliases)
    records, skipped = [], []
    for ann_path in ann_paths:
        image_path = find_image(image_dir, ann_path.stem, where=str(ann_path), suffixes=suffixes)
        width, height = read_image_size(image_path)
        text = read_text(ann_path, "annotation file")
        boxes = parse_box_lines(
            text,
            class_map,
            lookup,
            width,
            height,
            source=ann_path,
            unknown_names=unknown_names,
            skipped=skipped,
        )
        records.append(ImageRecord(image_path.relative_to(image_dir).as_posix(), width, height, boxes))
    return PublicSplit(Conversion(tuple(records), count_skipped(skipped)), image_dir)


def parse_box_lines(
    text: str,
    class_map: ClassMap,
    lookup: dict[str, str],
    width: int,
    height: int,
    *,
    source: Path,
    unknown_names: str,
    skipped: list[str],
) -> tuple[Box, ...]:
    """The boxes of one annotation file; blank lines are ignored, left-out boxes appended to ``skipped``."""
    boxes = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{source} line {lineno}"
        if len(fields) < 6:
            raise DataError(
                f"{where}: expected 'image_name category x1 y1 x2 y2', got {len(fields)} fields: "
                f"{line.strip()!r}"
            )
        raw_name, coords = fields[-5], fields[-4:]
        x1, y1, x2, y2 = (
            parse_float(v, tag, where) for v, tag in zip(coords, ("x1", "y1", "x2", "y2"), strict=True)
        )
        name = resolve_class(
            raw_name, lookup, class_map, where=where, unknown_names=unknown_names, skipped=skipped
        )
        if name is None:
            continue
        reason = drop_reason(x1, y1, x2, y2, width, height)
        if reason is not None:
            skipped.append(reason)
            continue
        boxes.append(Box(name, x1, y1, x2, y2))
    return tuple(boxes)
