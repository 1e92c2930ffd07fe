"""Converters from Pascal VOC xml and YOLO txt to DFSS COCO json and back, and from the published
layouts of SIXray, OPIXray, HiXray, PIDray and CLCXray to DFSS COCO json (:mod:`dfss.convert.public`).

The command line is ``dfss-convert`` (:mod:`dfss.convert.cli`); the class map yaml format is described
in :mod:`dfss.convert.classmap`.
"""

from dfss.convert.classmap import ClassMap, load_class_map, parse_class_map
from dfss.convert.coco_io import Box, Conversion, ImageRecord, build_coco, read_coco, write_coco
from dfss.convert.voc import read_voc, write_voc
from dfss.convert.yolo import read_yolo, write_yolo

__all__ = [
    "Box",
    "ClassMap",
    "Conversion",
    "ImageRecord",
    "build_coco",
    "load_class_map",
    "parse_class_map",
    "read_coco",
    "read_voc",
    "read_yolo",
    "write_coco",
    "write_voc",
    "write_yolo",
]
