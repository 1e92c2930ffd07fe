"""Load official Megvii YOLOX checkpoints (``.pth``) into our YOLOX, without a key map.

Accepted files: the official training checkpoint (a dict with a ``"model"`` state dict, plus
optional ``optimizer``/``start_epoch``/... entries) or a bare state dict, read with
``torch.load(weights_only=True)``; nothing is downloaded. Loading is all or nothing
(:func:`dfss.models.weights.load_weights`): every key of the model must be in the file with the
same shape and the file must hold no other key — except the class predictors
``head.cls_preds.*``, re-initialised when the file's class count differs from the model's (e.g.
COCO's 80 classes into an X-ray model). Anything else raises :class:`CheckpointMismatchError`
naming the keys and shapes.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from dfss.models.weights import LoadReport, WeightsError, load_weights

CLASS_HEAD_PREFIX = "head.cls_preds."
CheckpointMismatchError = WeightsError  # the name YOLOX users look for


def load_official_checkpoint(model: nn.Module, path: str | Path) -> LoadReport:
    """Copy an official YOLOX checkpoint into ``model`` (a :class:`~dfss.models.yolox.model.YOLOX`, in
    place); see the module docstring."""
    return load_weights(
        model,
        path,
        class_keys=[k for k in model.state_dict() if k.startswith(CLASS_HEAD_PREFIX)],
        reset_class_predictor=model.head.reset_class_predictors,
    )
