"""Detectors: the YOLOX teacher and the FCOS student, with a common raw-output contract."""

from dfss.models.outputs import BOX_FORMATS, DenseOutputs, decode_boxes
from dfss.models.postprocess import Detections, PostProcessConfig, UnknownRule, postprocess

__all__ = [
    "BOX_FORMATS",
    "DenseOutputs",
    "Detections",
    "PostProcessConfig",
    "UnknownRule",
    "decode_boxes",
    "postprocess",
]
