"""Load official Megvii YOLOX checkpoints (``.pth``) into our YOLOX, without a key map.

Accepted files: the official training checkpoint (a dict with a ``"model"`` state dict, plus
optional ``optimizer``/``start_epoch``/... entries) or a bare state dict. Files are read with
``torch.load(weights_only=True)``; nothing is downloaded.

Rules: every key of the model must be in the file with the same shape, and the file must hold no
other key — except the class predictors ``head.cls_preds.*``, which are skipped and
re-initialised when the file's class count differs from the model's (e.g. COCO's 80 classes into an
84-class X-ray model). Anything else raises :class:`CheckpointMismatchError` naming the keys and
shapes; there is no silent partial load.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from dfss.models.yolox.model import YOLOX

log = logging.getLogger(__name__)

CLASS_HEAD_PREFIX = "head.cls_preds."


class CheckpointMismatchError(RuntimeError):
    """A checkpoint does not fit the model (other than a differing class count)."""


@dataclass(frozen=True)
class LoadReport:
    """What :func:`load_official_checkpoint` did."""

    path: str
    num_loaded: int  # tensors copied from the file
    skipped_keys: tuple[str, ...]  # class-head keys left out and re-initialised
    checkpoint_num_classes: int | None  # class count found in the file (None if no class head)

    @property
    def class_head_reinitialised(self) -> bool:
        return bool(self.skipped_keys)


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """The state dict in an official checkpoint (``{"model": sd, ...}``) or a bare state dict."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"YOLOX checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # unpickling errors have several types across torch versions
        raise CheckpointMismatchError(
            f"{path} is not a loadable PyTorch checkpoint (read with weights_only=True): {error}"
        ) from error
    if isinstance(payload, Mapping) and isinstance(payload.get("model"), Mapping):
        payload = payload["model"]
    if not isinstance(payload, Mapping) or not payload:
        raise CheckpointMismatchError(f"{path} holds neither a 'model' state dict nor a bare state dict")
    non_tensors = [key for key, value in payload.items() if not isinstance(value, Tensor)]
    if non_tensors:
        raise CheckpointMismatchError(
            f"{path} is not a state dict: entries {non_tensors[:5]} are not tensors "
            "(expected an official YOLOX .pth with a 'model' key, or a bare state dict)"
        )
    return dict(payload)


def class_count(state_dict: Mapping[str, Tensor]) -> int | None:
    """Number of classes of the class predictor in ``state_dict`` (None when it has none)."""
    bias = state_dict.get(CLASS_HEAD_PREFIX + "0.bias")
    return None if bias is None else int(bias.shape[0])


def _describe(keys: list[str], limit: int = 20) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def load_official_checkpoint(model: YOLOX, path: str | Path) -> LoadReport:
    """Copy an official YOLOX checkpoint into ``model`` (in place); see the module docstring."""
    checkpoint = read_state_dict(path)
    expected = model.state_dict()

    class_head_keys = sorted(k for k in expected if k.startswith(CLASS_HEAD_PREFIX))
    class_head_differs = any(
        key in checkpoint and checkpoint[key].shape != expected[key].shape for key in class_head_keys
    )
    skipped = [k for k in class_head_keys if k in checkpoint] if class_head_differs else []
    to_load = {k: v for k, v in checkpoint.items() if k not in skipped}

    missing = sorted(k for k in expected if k not in to_load and k not in skipped)
    unexpected = sorted(k for k in to_load if k not in expected)
    wrong_shape = sorted(
        f"{k}: file {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
        for k, v in to_load.items()
        if k in expected and v.shape != expected[k].shape
    )
    problems = []
    if missing:
        problems.append(f"missing from the file ({len(missing)}): {_describe(missing)}")
    if unexpected:
        problems.append(f"not in the model ({len(unexpected)}): {_describe(unexpected)}")
    if wrong_shape:
        problems.append(f"shape mismatch ({len(wrong_shape)}): {_describe(wrong_shape)}")
    if problems:
        raise CheckpointMismatchError(
            f"{path} does not fit {type(model).__name__} ({model.num_classes} classes):\n  "
            + "\n  ".join(problems)
        )

    model.load_state_dict(to_load, strict=not skipped)
    if skipped:
        model.head.reset_class_predictors()
        log.info(
            "YOLOX checkpoint %s has %s classes, the model %d: class head re-initialised (%s)",
            path,
            class_count(checkpoint),
            model.num_classes,
            ", ".join(skipped),
        )
    return LoadReport(
        path=str(path),
        num_loaded=len(to_load),
        skipped_keys=tuple(skipped),
        checkpoint_num_classes=class_count(checkpoint),
    )
