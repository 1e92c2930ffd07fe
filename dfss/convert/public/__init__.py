"""Public X-ray sets in their published layouts -> a validated DFSS COCO set.

``dfss-convert public --set {sixray,opixray,hixray,pidray,clcxray} --root <download> --split <split>
--out <dir>`` (see :mod:`dfss.convert.public.cli`). Each set has a reader (its module docstring
gives the layout and the source it was verified from) and a default class map with supercategories
(``classes/<set>.yaml``, packaged; ``--classes`` replaces it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from dfss.convert.classmap import ClassMap, parse_class_map
from dfss.convert.public.coco_sets import PIDRAY_SPLITS, read_clcxray, read_pidray
from dfss.convert.public.common import PublicSplit
from dfss.convert.public.sixray import ALL_POSITIVES, read_sixray
from dfss.convert.public.txt_sets import read_hixray, read_opixray
from dfss.convert.voc import UNKNOWN_NAME_POLICIES
from dfss.data.errors import DataError


@dataclass(frozen=True)
class PublicSet:
    name: str
    title: str
    splits: str  # the published splits, for help texts
    source: str  # where the layout was verified
    read: Callable[..., PublicSplit]


PUBLIC_SETS: dict[str, PublicSet] = {
    s.name: s
    for s in (
        PublicSet(
            "sixray",
            "SIXray",
            f"'{ALL_POSITIVES}' (every image with boxes) or an image list, e.g. ImageSet/10/train.csv",
            "https://github.com/MeioJane/SIXray, https://github.com/MeioJane/CHR (CHR/ray.py)",
            read_sixray,
        ),
        PublicSet(
            "opixray",
            "OPIXray",
            "train, test (--ids <root>/test/test_knife-3.txt: occlusion level 3, also -1, -2)",
            "https://github.com/OPIXray-author/OPIXray (DOAM/data/OPIXray.py)",
            read_opixray,
        ),
        PublicSet(
            "hixray",
            "HiXray",
            "train, test",
            "https://github.com/HiXray-author/HiXray (README, MuBo/data/HiXray.py)",
            read_hixray,
        ),
        PublicSet(
            "pidray",
            "PIDray",
            ", ".join(PIDRAY_SPLITS),
            "https://github.com/bywang2018/security-dataset (configs/sda_cascade_mask_rcnn_fpn_1x.py)",
            read_pidray,
        ),
        PublicSet(
            "clcxray",
            "CLCXray",
            "train, test (any <split> with annotations/instances_<split>2017.json)",
            "https://github.com/GreysonPhoenix/mmdetection (configs/_base_/datasets/coco_detection.py)",
            read_clcxray,
        ),
    )
}


def public_set(name: str) -> PublicSet:
    if name not in PUBLIC_SETS:
        raise DataError(f"unknown public set '{name}'; choose one of {sorted(PUBLIC_SETS)}")
    return PUBLIC_SETS[name]


def default_class_map_text(name: str) -> str:
    """The packaged default class map yaml of a set (comments included)."""
    public_set(name)
    return resources.files("dfss.convert.public").joinpath("classes", f"{name}.yaml").read_text("utf-8")


def default_class_map(name: str) -> ClassMap:
    return parse_class_map(default_class_map_text(name), source=f"the default {name} class map")


def read_public(
    name: str,
    root: str | Path,
    split: str,
    class_map: ClassMap,
    *,
    ids: str | Path | None = None,
    unknown_names: str = "error",
) -> PublicSplit:
    """One split of a public set; :class:`DataError` naming the offending file on bad input."""
    if unknown_names not in UNKNOWN_NAME_POLICIES:
        raise ValueError(f"unknown_names must be one of {UNKNOWN_NAME_POLICIES}, got {unknown_names!r}")
    reader = public_set(name)
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"--root {root} is not a folder (the {reader.title} download)")
    return reader.read(
        root, split, class_map, ids=None if ids is None else Path(ids), unknown_names=unknown_names
    )


__all__ = [
    "PUBLIC_SETS",
    "PublicSet",
    "PublicSplit",
    "default_class_map",
    "default_class_map_text",
    "public_set",
    "read_public",
]
