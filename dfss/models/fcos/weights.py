"""Loading FCOS weights from a local file: torchvision's COCO FCOS checkpoint
(``fcos_resnet50_fpn_coco-*.pth``) into ``fcos_r50``, or any state dict of one of our FCOS models.

torchvision's file is a bare state dict whose keys are exactly those of
:func:`dfss.models.fcos.fcos_r50` (``backbone.body.*``, ``backbone.fpn.*``,
``head.classification_head.*``, ``head.regression_head.*``). Loading is all or nothing
(:func:`dfss.models.weights.load_weights`): wrappers (``{"model": ...}``, ``{"state_dict": ...}``)
and a DDP ``module.`` prefix are undone, ``num_batches_tracked`` counters are ignored on both sides
(FrozenBatchNorm2d has none), and the only tolerated difference is the class logits layer when the
class count differs, which is re-initialised (prior-probability bias) and reported; any other
missing, unexpected or mis-shaped key is an error naming it.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from dfss.models.weights import LoadReport, load_weights

CLASS_LOGITS_KEYS = ("head.classification_head.cls_logits.weight", "head.classification_head.cls_logits.bias")


def load_fcos_weights(model: nn.Module, path: str | Path) -> LoadReport:
    """Load an FCOS state dict (torchvision's, or one of ours) into ``model`` (an
    :class:`~dfss.models.fcos.FCOS`), strictly."""
    return load_weights(
        model,
        path,
        class_keys=CLASS_LOGITS_KEYS,
        reset_class_predictor=model.head.classification_head.reset_logits,
    )


load_torchvision_fcos_weights = load_fcos_weights  # the name for torchvision's COCO file
