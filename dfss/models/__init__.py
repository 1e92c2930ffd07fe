"""Detectors: the YOLOX teacher and the FCOS student, with a common raw-output contract.

(The post-processing lives in :mod:`dfss.models.postprocess`; its function of the same name is not
re-exported here, so that the dotted path keeps naming the module, as Hydra's ``_target_`` needs.)
"""

from dfss.models.outputs import BOX_FORMATS, DenseOutputs, decode_boxes

__all__ = ["BOX_FORMATS", "DenseOutputs", "decode_boxes"]
