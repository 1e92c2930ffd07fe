"""The ``public`` and ``public-classes`` subcommands of ``dfss-convert``.

``--out DIR`` writes the layout ``data=coco data.root=DIR`` reads: ``DIR/annotations/<name>.json``
and ``DIR/images/<name>``, a symbolic link to the set's own image folder (nothing is copied).
``--out FILE.json`` writes the json alone, its ``file_name`` entries relative to the set's image
folder, which the summary names. Either way the json is then checked by the validator
(:func:`dfss.data.validate.validate_coco`) before the command reports success.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

from dfss.convert.classmap import load_class_map
from dfss.convert.coco_io import build_coco, format_summary, write_coco
from dfss.convert.public import PUBLIC_SETS, default_class_map, default_class_map_text, read_public
from dfss.convert.voc import UNKNOWN_NAME_POLICIES
from dfss.data.errors import DataError
from dfss.data.validate import DataValidationError, validate_coco
from dfss.data.validate_checks import IMAGE_CHECKS
from dfss.fileio import write_text_atomic

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

_PUBLIC_EPILOG = """sets and their splits (docs/data.md gives each layout, its --root and its source):
{sets}

--out DIR writes DIR/annotations/<name>.json and links DIR/images/<name> to the set's image
folder (no copy), so that `python train.py data=coco data.root=DIR` reads it; <name> is
--out-split, by default the split's name. --out FILE.json writes only the json.
Class names are matched ignoring case, spaces, '_' and '-'. Boxes with no area or entirely
outside their image are left out and counted, as the sets' own loaders do.

examples:
  dfss-convert public --set opixray --root OPIXray_Dataset --split train --out data/opixray
  dfss-convert public --set opixray --root OPIXray_Dataset --split test --out data/opixray
  dfss-convert public --set pidray --root pidray --split hidden --out data/pidray
  dfss-convert public --set sixray --root SIXray --split ImageSet/10/train.csv --out data/sixray10"""


def add_parsers(sub: argparse._SubParsersAction, formatter_class: type) -> None:
    """Register ``public`` and ``public-classes`` on the ``dfss-convert`` subparsers."""
    sets = "\n".join(f"  {s.name:<8} {s.title}: {s.splits}" for s in PUBLIC_SETS.values())
    public = sub.add_parser(
        "public",
        help="a public X-ray set (SIXray, OPIXray, HiXray, PIDray, CLCXray) as downloaded -> COCO json",
        epilog=_PUBLIC_EPILOG.format(sets=sets),
        formatter_class=formatter_class,
    )
    public.add_argument("--set", dest="set_name", choices=sorted(PUBLIC_SETS), required=True)
    public.add_argument("--root", metavar="DIR", required=True, help="the set's download folder")
    public.add_argument("--split", required=True, help="the set's split (listed below)")
    public.add_argument(
        "--out", metavar="DIR|JSON", required=True, help="a data root to write into, or a .json file"
    )
    public.add_argument(
        "--out-split",
        metavar="NAME",
        help="name of the written split (annotations/<NAME>.json, images/<NAME>); default: the split's",
    )
    public.add_argument(
        "--classes", metavar="YAML", help="class map yaml replacing the set's default (see public-classes)"
    )
    public.add_argument(
        "--ids", metavar="FILE", help="opixray/hixray: convert only the image ids listed in FILE"
    )
    public.add_argument(
        "--unknown-names",
        choices=UNKNOWN_NAME_POLICIES,
        default="error",
        help="objects whose class is not in the class map: error (default) or skip (counted)",
    )
    public.add_argument(
        "--image-check",
        choices=IMAGE_CHECKS,
        default="header",
        help="how the validator checks the images: header (default: exists, size matches), "
        "decode (reads every pixel), none",
    )
    public.add_argument(
        "--workers",
        type=int,
        default=min(8, os.cpu_count() or 1),
        metavar="N",
        help="threads for the validator's image checks (default: %(default)s)",
    )

    classes = sub.add_parser(
        "public-classes",
        help="print or write a public set's default class map (to edit and pass as --classes)",
        epilog="example:\n  dfss-convert public-classes --set hixray --out my_hixray.yaml",
        formatter_class=formatter_class,
    )
    classes.add_argument("--set", dest="set_name", choices=sorted(PUBLIC_SETS), required=True)
    classes.add_argument("--out", metavar="YAML", help="write it here instead of printing it")


def _link_images(link: Path, image_dir: Path) -> None:
    """``link`` -> ``image_dir`` (absolute); an existing link to the same folder is kept."""
    target = image_dir.resolve()
    if link.is_symlink():
        if link.resolve() == target:
            return
        raise DataError(
            f"{link} already links to {link.resolve()}, not {target}; remove it or use another --out"
        )
    if link.exists():
        raise DataError(f"{link} exists and is not a link to {target}; remove it or use another --out")
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target, target_is_directory=True)


def run_public(args: argparse.Namespace) -> str:
    """Convert, write, validate; returns the summary (``DataError`` on anything wrong)."""
    out_split = args.out_split or Path(args.split).stem
    if not _SAFE_NAME.match(out_split):
        raise DataError(f"--out-split '{out_split}' must be a plain name (letters, digits, '_', '.', '-')")
    if args.workers < 0:
        raise DataError("--workers must be >= 0")
    class_map = load_class_map(args.classes) if args.classes else default_class_map(args.set_name)
    split = read_public(
        args.set_name, args.root, args.split, class_map, ids=args.ids, unknown_names=args.unknown_names
    )
    coco = build_coco(
        split.conversion.images,
        class_map,
        description=f"dfss-convert public --set {args.set_name} --split {args.split}",
    )
    out = Path(args.out)
    if out.suffix.lower() == ".json":
        ann_path, image_dir = out, split.image_dir
    else:
        ann_path, image_dir = out / "annotations" / f"{out_split}.json", out / "images" / out_split
        _link_images(image_dir, split.image_dir)
    write_coco(ann_path, coco)
    try:
        result = validate_coco(ann_path, image_dir, image_check=args.image_check, num_workers=args.workers)
    except DataValidationError as exc:
        print(exc.report.summary())
        problems = len(exc.report.problems)
        raise DataError(
            f"{ann_path} was written but fails validation ({problems} problems, listed above); "
            f"`dfss-validate {ann_path} --images {image_dir}` reports them again"
        ) from None
    lines = [
        format_summary(split.conversion, class_map, title=f"wrote {ann_path} (images: {image_dir})"),
        result.report.summary(),
    ]
    if out.suffix.lower() != ".json":
        lines.append(
            f"train on it: python train.py experiment=student data=coco data.root={out} "
            f"(this split is data.*_ann=annotations/{out_split}.json, data.*_images=images/{out_split})"
        )
    return "\n".join(lines)


def run_public_classes(args: argparse.Namespace) -> str:
    text = default_class_map_text(args.set_name)
    if args.out is None:
        return text.rstrip("\n")
    write_text_atomic(args.out, text)
    return f"wrote the default {args.set_name} class map to {args.out}"
