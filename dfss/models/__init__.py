"""Detectors: the YOLOX teacher and the FCOS student, with a common raw-output contract."""

from dfss.models.outputs import BOX_FORMATS, DenseOutputs, decode_boxes

__all__ = ["BOX_FORMATS", "DenseOutputs", "decode_boxes"]
