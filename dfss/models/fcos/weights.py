"""Loading torchvision's COCO FCOS checkpoint (``fcos_resnet50_fpn_coco-*.pth``) from a local file.

The file is a bare state dict whose keys are exactly those of :func:`dfss.models.fcos.fcos_r50`
(``backbone.body.*``, ``backbone.fpn.*``, ``head.classification_head.*``,
``head.regression_head.*``). Loading is all or nothing (:func:`dfss.models.weights.load_weights`):
the only tolerated difference is the class logits layer when the class count differs, which is
re-initialised (prior-probability bias) and reported; any other missing, unexpected or mis-shaped
key is an error naming it. ``num_batches_tracked`` buffers are ignored on both sides
(FrozenBatchNorm2d has none).
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from dfss.models.weights import LoadReport, load_weights

CLASS_LOGITS_KEYS = ("head.classification_head.cls_logits.weight", "head.classification_head.cls_logits.bias")


def load_torchvision_fcos_weights(model: nn.Module, path: str | Path) -> LoadReport:
    """Load a torchvision FCOS state dict into ``model`` (an :class:`~dfss.models.fcos.FCOS`), strictly."""
    return load_weights(
        model,
        path,
        class_keys=CLASS_LOGITS_KEYS,
        reset_class_predictor=model.head.classification_head.reset_logits,
        ignore=lambda key: key.endswith("num_batches_tracked"),
    )
