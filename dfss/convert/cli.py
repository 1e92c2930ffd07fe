"""``dfss-convert``: Pascal VOC / YOLO annotation folders <-> DFSS COCO json; public X-ray sets -> COCO.

    dfss-convert voc2coco  --xml-dir Annotations --image-dir JPEGImages --classes map.yaml --out ann.json
    dfss-convert yolo2coco --image-dir images/train --label-dir labels/train --classes map.yaml --out ann.json
    dfss-convert coco2voc  --ann ann.json --xml-dir Annotations
    dfss-convert coco2yolo --ann ann.json --label-dir labels/train --classes-out map.yaml
    dfss-convert public    --set opixray --root OPIXray_Dataset --split train --out data/opixray
    dfss-convert public-classes --set opixray --out opixray_classes.yaml

Bad input exits with code 2 and a one-line message naming the file.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from dfss.convert.classmap import FORMAT_HELP, load_class_map
from dfss.convert.coco_io import build_coco, format_summary, read_coco, write_coco
from dfss.convert.public.cli import add_parsers as add_public_parsers
from dfss.convert.public.cli import run_public, run_public_classes
from dfss.convert.voc import DIFFICULT_POLICIES, UNKNOWN_NAME_POLICIES, read_voc, write_voc
from dfss.convert.yolo import crowd_as_objects, read_yolo, without_crowd, write_yolo
from dfss.data.errors import DataError
from dfss.fileio import write_text_atomic

_RAW = argparse.RawDescriptionHelpFormatter

_MAIN_EPILOG = f"""examples:
  dfss-convert voc2coco --xml-dir VOC/Annotations --image-dir VOC/JPEGImages \\
      --classes classmap.yaml --out train.json
  dfss-convert yolo2coco --image-dir ds/images/train --label-dir ds/labels/train \\
      --classes classmap.yaml --out train.json
  dfss-convert coco2voc --ann train.json --xml-dir out/Annotations
  dfss-convert coco2yolo --ann train.json --label-dir out/labels/train --classes-out out/classmap.yaml
  dfss-convert public --set pidray --root pidray --split train --out data/pidray

{FORMAT_HELP}
Supercategories used by DFSS: dangerous, normal, unknown (unknown classes are not trained on).

COCO output: image ids from 1 in file-name order, file_name relative to --image-dir, bbox [x, y, w, h]
in pixels, area = w*h, categories with id 1..K, name and supercategory. Bad input exits with code 2."""

_VOC_EPILOG = """VOC boxes are 1-based inclusive pixel indices; they become COCO corners
x1 = xmin - 1, y1 = ymin - 1, x2 = xmax, y2 = ymax (Detectron2's convention).
<difficult>1</difficult> objects become iscrowd: 1 by default, i.e. ignore regions: not trained on,
and neither hits nor misses in COCO evaluation.

example:
  dfss-convert voc2coco --xml-dir VOC/Annotations --image-dir VOC/JPEGImages \\
      --classes classmap.yaml --out train.json"""

_YOLO_EPILOG = """\
Labels: <label-dir>/<image path relative to image-dir, suffix .txt>, one 'cls cx cy w h' line per
box, normalised to [0, 1]; cls is the 0-based index into the class map. Images without a label file
(or with an empty one) are negatives. A label file without an image is an error.

example:
  dfss-convert yolo2coco --image-dir ds/images/train --label-dir ds/labels/train \\
      --classes classmap.yaml --out train.json"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dfss-convert",
        description="Convert X-ray annotation sets between Pascal VOC xml, YOLO txt and DFSS COCO json, "
        "and public X-ray sets (SIXray, OPIXray, HiXray, PIDray, CLCXray) as downloaded to DFSS COCO json.",
        epilog=_MAIN_EPILOG,
        formatter_class=_RAW,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    classes_help = (
        "class map yaml: 'classes:' then 'name: supercategory' lines, in COCO id / YOLO index order"
    )

    voc = sub.add_parser(
        "voc2coco", help="Pascal VOC xml folder -> COCO json", epilog=_VOC_EPILOG, formatter_class=_RAW
    )
    voc.add_argument(
        "--xml-dir", metavar="DIR", required=True, help="folder of VOC .xml files (searched recursively)"
    )
    voc.add_argument(
        "--image-dir", metavar="DIR", required=True, help="image folder that <filename> is relative to"
    )
    voc.add_argument("--classes", metavar="YAML", required=True, help=classes_help)
    voc.add_argument("--out", metavar="JSON", required=True, help="COCO json to write")
    voc.add_argument(
        "--difficult",
        choices=DIFFICULT_POLICIES,
        default="crowd",
        help="difficult objects: crowd = iscrowd ignore regions (default), keep = ordinary objects, "
        "drop = leave out (counted)",
    )
    voc.add_argument(
        "--unknown-names",
        choices=UNKNOWN_NAME_POLICIES,
        default="error",
        help="object names missing from the class map: error (default) or skip (counted in the summary)",
    )

    yolo = sub.add_parser(
        "yolo2coco", help="YOLO txt label folder -> COCO json", epilog=_YOLO_EPILOG, formatter_class=_RAW
    )
    yolo.add_argument("--image-dir", metavar="DIR", required=True, help="image folder (searched recursively)")
    yolo.add_argument(
        "--label-dir", metavar="DIR", required=True, help="label folder mirroring the image folder"
    )
    yolo.add_argument("--classes", metavar="YAML", required=True, help=classes_help)
    yolo.add_argument("--out", metavar="JSON", required=True, help="COCO json to write")

    to_voc = sub.add_parser(
        "coco2voc",
        help="COCO json -> one VOC xml per image",
        epilog="iscrowd boxes are written as <difficult>1</difficult>; "
        "coordinates are rounded to whole pixels.\n\n"
        "example:\n  dfss-convert coco2voc --ann train.json --xml-dir out/Annotations",
        formatter_class=_RAW,
    )
    to_voc.add_argument("--ann", metavar="JSON", required=True, help="COCO json to read")
    to_voc.add_argument(
        "--xml-dir", metavar="DIR", required=True, help="folder to write <image stem>.xml files into"
    )

    to_yolo = sub.add_parser(
        "coco2yolo",
        help="COCO json -> one YOLO txt per image",
        epilog="Class index i is the i-th category by ascending COCO id; "
        "--classes-out writes that order as a\n"
        "class map yaml for yolo2coco. Negatives get empty label files.\n\n"
        "example:\n  dfss-convert coco2yolo --ann train.json --label-dir out/labels/train "
        "--classes-out map.yaml",
        formatter_class=_RAW,
    )
    to_yolo.add_argument("--ann", metavar="JSON", required=True, help="COCO json to read")
    to_yolo.add_argument(
        "--label-dir", metavar="DIR", required=True, help="folder to write <image stem>.txt files into"
    )
    to_yolo.add_argument(
        "--classes-out", metavar="YAML", help="also write the class map yaml (index order) here"
    )
    to_yolo.add_argument(
        "--crowd",
        choices=("drop", "keep"),
        default="drop",
        help="iscrowd boxes (YOLO has no ignore regions): drop (default, counted) or keep as ordinary boxes",
    )
    add_public_parsers(sub, _RAW)
    return parser


def _voc2coco(args: argparse.Namespace) -> str:
    class_map = load_class_map(args.classes)
    conversion = read_voc(
        args.xml_dir, args.image_dir, class_map, difficult=args.difficult, unknown_names=args.unknown_names
    )
    write_coco(
        args.out,
        build_coco(conversion.images, class_map, description=f"dfss-convert voc2coco {args.xml_dir}"),
    )
    return format_summary(conversion, class_map, title=f"wrote {args.out}")


def _yolo2coco(args: argparse.Namespace) -> str:
    class_map = load_class_map(args.classes)
    conversion = read_yolo(args.image_dir, args.label_dir, class_map)
    write_coco(
        args.out,
        build_coco(conversion.images, class_map, description=f"dfss-convert yolo2coco {args.label_dir}"),
    )
    return format_summary(conversion, class_map, title=f"wrote {args.out}")


def _coco2voc(args: argparse.Namespace) -> str:
    class_map, conversion = read_coco(args.ann)
    count = write_voc(conversion, args.xml_dir)
    return format_summary(conversion, class_map, title=f"wrote {count} xml files to {args.xml_dir}")


def _coco2yolo(args: argparse.Namespace) -> str:
    class_map, conversion = read_coco(args.ann)
    conversion = without_crowd(conversion) if args.crowd == "drop" else crowd_as_objects(conversion)
    count = write_yolo(conversion, class_map, args.label_dir)
    if args.classes_out:
        write_text_atomic(args.classes_out, class_map.to_yaml())
    return format_summary(conversion, class_map, title=f"wrote {count} label files to {args.label_dir}")


_COMMANDS = {
    "voc2coco": _voc2coco,
    "yolo2coco": _yolo2coco,
    "coco2voc": _coco2voc,
    "coco2yolo": _coco2yolo,
    "public": run_public,
    "public-classes": run_public_classes,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one conversion; 0 on success, 2 on bad input (message on stderr, no traceback)."""
    args = build_parser().parse_args(argv)
    try:
        summary = _COMMANDS[args.command](args)
    except (DataError, OSError) as exc:  # OSError: the output cannot be written
        print(f"dfss-convert {args.command}: error: {exc}", file=sys.stderr)
        return 2
    try:
        print(summary, flush=True)
    except BrokenPipeError:  # `dfss-convert ... | head`: the reader left; no traceback for that
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main())
