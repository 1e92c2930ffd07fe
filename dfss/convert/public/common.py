"""What the public-set readers share: class-name matching, the box rules, image and id-list lookup.

Class names are matched ignoring case, spaces, ``_`` and ``-`` (``SwissArmyKnife`` =
``swiss_army_knife`` = ``Swiss Army Knife``), because the sets' own files and code spell them
inconsistently; the output keeps the class map's spelling. Two class-map names that become equal
that way are an error.

Boxes: a box with no area, or lying entirely outside its image, is left out and counted, as the
official loaders skip such boxes (mmdetection's ``CocoDataset._parse_ann_info`` for PIDray and
CLCXray; ``xmin > width: continue`` in OPIXray's and HiXray's loaders). Boxes sticking partly out
of the image are kept; the validator clips them (counted, lossless).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from dfss.convert.classmap import ClassMap
from dfss.convert.coco_io import IMAGE_SUFFIXES, Conversion
from dfss.convert.fields import parse_float
from dfss.data.errors import DataError

_IGNORED_IN_NAMES = re.compile(r"[\s_\-]+")


@dataclass(frozen=True)
class PublicSplit:
    """One converted split: the images (file names relative to ``image_dir``) and their folder."""

    conversion: Conversion
    image_dir: Path


@dataclass(frozen=True)
class ListedImage:
    """One row of an id list: the image's name (no suffix) and its image-level labels, if any."""

    name: str
    labels: tuple[float, ...] | None
    where: str  # "<file> line <n>", for messages


def name_key(name: str) -> str:
    """The form names are compared in: case-folded, without spaces, ``_`` and ``-``."""
    return _IGNORED_IN_NAMES.sub("", name).casefold()


def class_lookup(class_map: ClassMap, aliases: Mapping[str, str] | None = None) -> dict[str, str]:
    """``{name_key: class-map name}``; two names with the same key are an error naming the map.

    ``aliases`` (other spellings a set's files use -> its own class name) add keys for the class-map
    names they point to; an alias of a name the map lacks adds nothing.
    """
    lookup: dict[str, str] = {}
    for name in class_map.names:
        key = name_key(name)
        if key in lookup:
            raise DataError(
                f"{class_map.source}: class names '{lookup[key]}' and '{name}' are the same once case, "
                "spaces, '_' and '-' are ignored, which is how public-set names are matched"
            )
        lookup[key] = name
    for alias, target in (aliases or {}).items():
        if name_key(target) in lookup:
            lookup.setdefault(name_key(alias), lookup[name_key(target)])
    return lookup


def resolve_class(
    raw: str,
    lookup: dict[str, str],
    class_map: ClassMap,
    *,
    where: str,
    unknown_names: str,
    skipped: list[str],
) -> str | None:
    """The class-map name for ``raw``; None (counted in ``skipped``) or an error when it has none."""
    name = lookup.get(name_key(raw))
    if name is not None:
        return name
    if unknown_names == "skip":
        skipped.append(f"object named '{raw}' is not in the class map")
        return None
    raise DataError(
        f"{where}: class name '{raw}' is not in the class map {class_map.source} "
        "(use --unknown-names skip to leave such objects out, or --classes to pass a map that has it)"
    )


def drop_reason(x1: float, y1: float, x2: float, y2: float, width: int, height: int) -> str | None:
    """Why a pixel ``xyxy`` box is left out (the official loaders skip it too), or None to keep it."""
    if not x2 > x1 or not y2 > y1:
        return "box with no area (left out, as the official loader does)"
    if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
        return "box entirely outside its image (left out, as the official loader does)"
    return None


def read_text(path: Path, what: str) -> str:
    """A utf-8 text file (a byte-order mark is dropped); an error naming it when unreadable."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {what} {path}: {exc}") from None


def require_dir(folder: Path, what: str, hint: str) -> None:
    if not folder.is_dir():
        raise DataError(f"{what} {folder} does not exist ({hint})")


def find_image(image_dir: Path, stem: str, *, where: str, suffixes: Sequence[str] = IMAGE_SUFFIXES) -> Path:
    """``image_dir/<stem><suffix>`` for the first suffix (tried as written, then upper case) that exists."""
    for suffix in suffixes:
        for candidate in (image_dir / f"{stem}{suffix}", image_dir / f"{stem}{suffix.upper()}"):
            if candidate.is_file():
                return candidate
    raise DataError(f"{where}: no image {image_dir / stem}.<{'|'.join(s[1:] for s in suffixes)}>")


def strip_known_suffix(name: str) -> str:
    """``a.jpg`` / ``a.txt`` / ``a.xml`` -> ``a`` (id lists write names with or without one)."""
    path = Path(name)
    return path.stem if path.suffix.lower() in (*IMAGE_SUFFIXES, ".txt", ".xml") else name


def read_id_list(path: Path) -> list[ListedImage]:
    """An image list: one name per line, or a csv whose rows are ``name,label,...`` (a header row
    starting with ``name`` is skipped); labels are numbers, > 0 meaning the class is present."""
    text = read_text(path, "image list")
    rows = list(csv.reader(text.splitlines()))
    listed = []
    for lineno, row in enumerate(rows, start=1):
        cells = [cell.strip() for cell in row]
        if not cells or not cells[0]:
            continue
        where = f"{path} line {lineno}"
        if lineno == 1 and cells[0].lower() == "name":
            continue
        labels = tuple(parse_float(cell, f"label {i}", where) for i, cell in enumerate(cells[1:], 1))
        listed.append(ListedImage(strip_known_suffix(cells[0]), labels if len(cells) > 1 else None, where))
    if not listed:
        raise DataError(f"{path}: the image list is empty")
    return listed
