"""Loading torchvision's COCO FCOS checkpoint (``fcos_resnet50_fpn_coco-*.pth``) from a local file.

The file is a bare state dict whose keys are exactly those of :func:`dfss.models.fcos.fcos_r50`
(``backbone.body.*``, ``backbone.fpn.*``, ``head.classification_head.*``,
``head.regression_head.*``). Loading is all or nothing: the only tolerated difference is the
class logits layer when the class count differs, which is re-initialised (prior-probability
bias) and reported; any other missing, unexpected or mis-shaped key is an error naming it.
``num_batches_tracked`` buffers are ignored on both sides (FrozenBatchNorm2d has none).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

log = logging.getLogger(__name__)

CLASS_LOGITS_KEYS = ("head.classification_head.cls_logits.weight", "head.classification_head.cls_logits.bias")
_MAX_LISTED = 10


@dataclass(frozen=True)
class WeightsLoadReport:
    """What a checkpoint load did."""

    path: Path
    num_loaded: int  # tensors copied from the file
    reinitialized: tuple[str, ...]  # keys left at their fresh initialisation (class count changed)
    file_num_classes: int | None  # classes of the file's logits layer (None if it has none)


def _list(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    return shown + (f", … ({len(items)} in all)" if len(items) > _MAX_LISTED else "")


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """A bare state dict from ``path`` via ``torch.load(weights_only=True)``, or a clear error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"FCOS weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises many types for a non-checkpoint file
        raise ValueError(f"{path} is not a loadable PyTorch weights file: {error}") from error
    if not isinstance(state, Mapping):
        raise ValueError(f"{path} holds a {type(state).__name__}, expected a state dict (name → tensor)")
    non_tensors = [str(k) for k, v in state.items() if not isinstance(v, Tensor)]
    if non_tensors:
        raise ValueError(
            f"{path} is not a bare state dict: entries {_list(non_tensors)} are not tensors "
            "(a training checkpoint? extract its model state dict first)"
        )
    return dict(state)


def load_torchvision_fcos_weights(model: nn.Module, path: str | Path) -> WeightsLoadReport:
    """Load a torchvision FCOS state dict into ``model`` (an :class:`~dfss.models.fcos.FCOS`), strictly.

    Raises ``ValueError`` naming every missing / unexpected key and every shape mismatch outside
    the class logits layer. Returns a :class:`WeightsLoadReport`; a re-initialised logits layer is
    also logged as a warning.
    """
    path = Path(path)
    state = {k: v for k, v in read_state_dict(path).items() if not k.endswith("num_batches_tracked")}
    expected = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}

    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [k for k in sorted(set(state) & set(expected)) if state[k].shape != expected[k].shape]
    reinitialized = [k for k in mismatched if k in CLASS_LOGITS_KEYS]
    wrong_shapes = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in mismatched
        if k not in CLASS_LOGITS_KEYS
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_list(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_list(unexpected)}")
    if wrong_shapes:
        problems.append(f"shape mismatches: {_list(wrong_shapes)}")
    if problems:
        raise ValueError(
            f"{path} does not fit this FCOS model ({type(model).__name__}): " + "; ".join(problems)
        )

    loadable = {k: v for k, v in state.items() if k not in reinitialized}
    result = model.load_state_dict(loadable, strict=False)
    left_out = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if sorted(left_out) != sorted(reinitialized) or result.unexpected_keys:
        raise RuntimeError(f"partial load of {path}: missing {left_out}, unexpected {result.unexpected_keys}")

    file_bias = state.get(CLASS_LOGITS_KEYS[1])
    file_num_classes = None if file_bias is None else int(file_bias.shape[0])
    if reinitialized:
        model.head.classification_head.reset_logits()
        log.warning(
            "%s: class logits re-initialised (%s classes in the file, %s in the model): %s",
            path,
            file_num_classes,
            model.head.num_classes,
            ", ".join(reinitialized),
        )
    return WeightsLoadReport(
        path=path,
        num_loaded=len(loadable),
        reinitialized=tuple(reinitialized),
        file_num_classes=file_num_classes,
    )
