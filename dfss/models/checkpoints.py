"""Reading DFSS checkpoints (and official YOLOX weights) back into models, safely.

Every file is read with ``torch.load(weights_only=True)``: a checkpoint carrying a pickled payload
is refused, never executed. A DFSS checkpoint carries the run's resolved config (``dfss_config``)
and class list (``dfss_classes``), so the model is rebuilt exactly as it was trained.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from torch import nn

from dfss.data.classes import DEFAULT_DANGEROUS_SUPERCATEGORIES, DEFAULT_UNKNOWN_SUPERCATEGORIES, ClassTable
from dfss.errors import UserError
from dfss.models.postprocess import PostProcessConfig
from dfss.models.weights import load_refusal_reason

log = logging.getLogger(__name__)


class CheckpointError(UserError):
    """A checkpoint that cannot be used: unreadable, unsafe, or for another model or class list."""


def read_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """The checkpoint in ``path``, read with ``weights_only=True`` (pickled code is refused)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # pickle.UnpicklingError for unsafe payloads, RuntimeError for corrupt zips
        raise CheckpointError(
            f"cannot load {path} safely (weights_only=True; a file carrying pickled code is refused, a "
            f"truncated file is unreadable): {load_refusal_reason(exc)}"
        ) from None


def is_dfss_checkpoint(checkpoint: dict[str, Any]) -> bool:
    return "dfss_config" in checkpoint and "state_dict" in checkpoint


def read_dfss_checkpoint(path: str | Path, use: str) -> dict[str, Any]:
    """:func:`read_checkpoint`, refusing any file that is not a ``train.py`` checkpoint; ``use`` is the
    verb of the error's hint (``evaluate``, ``export``...)."""
    checkpoint = read_checkpoint(path)
    if not is_dfss_checkpoint(checkpoint):
        raise CheckpointError(f"{path} is not a DFSS checkpoint (no dfss_config): {use} a train.py .ckpt")
    return checkpoint


def weights_kind(checkpoint: dict[str, Any]) -> str:
    """``"ema"`` when the checkpoint has EMA weights (which :func:`model_state` prefers), else ``"model"``."""
    return "ema" if any(k.startswith("ema.module.") for k in checkpoint["state_dict"]) else "model"


def check_classes(checkpoint: dict[str, Any], class_table: ClassTable, path: str | Path) -> None:
    """The checkpoint's training classes must be the data's (same ids, names, supercategories)."""
    saved = [(c["id"], c["name"]) for c in checkpoint.get("dfss_classes", [])]
    ours = [(c.coco_id, c.name) for c in (*class_table.known, *class_table.unknown)]
    if saved != ours:
        raise CheckpointError(
            f"{path} was trained on classes {saved[:5]}{'...' if len(saved) > 5 else ''} "
            f"but the data set has {ours[:5]}{'...' if len(ours) > 5 else ''}"
        )


def class_table_of(checkpoint: dict[str, Any], path: str | Path) -> ClassTable:
    """The class table the checkpoint was trained with: its saved classes and its data config's
    dangerous and unknown supercategories (for running a model on images without a data set)."""
    categories = checkpoint.get("dfss_classes")
    if not categories:
        raise CheckpointError(f"{path} carries no class list (dfss_classes); use a checkpoint from train.py")
    data_config = checkpoint["dfss_config"].get("data", {})
    dangerous = data_config.get("dangerous_supercategories", DEFAULT_DANGEROUS_SUPERCATEGORIES)
    unknown = data_config.get("unknown_supercategories", DEFAULT_UNKNOWN_SUPERCATEGORIES)
    return ClassTable.from_categories(
        categories,
        dangerous_supercategories=dangerous,
        unknown_supercategories=unknown,
        source=f"{path} (dfss_classes)",
    )


def postprocess_config_of(checkpoint: dict[str, Any]) -> PostProcessConfig:
    """The post-processing settings the checkpoint's model was trained and validated with."""
    node = checkpoint["dfss_config"].get("model", {}).get("postprocess")
    return instantiate(node) if node else PostProcessConfig()


def quality_is_objectness(checkpoint: dict[str, Any]) -> bool:
    """Whether the model's quality output says "an object is here" on every point, which the unknown
    rule needs: YOLOX's objectness (trained on every point) and a DFSS student's centerness when the
    KD loc term taught it the teacher's objectness on every point (``lambda_loc > 0``,
    ``loc_points="all"``) do; a plain FCOS's centerness, trained on foreground points only, does not."""
    config = checkpoint["dfss_config"]
    if ".yolox." in config["model"]["net"]["_target_"]:
        return True
    distill = (config.get("loss") or {}).get("distill") or {}
    return float(distill.get("lambda_loc", 0.0)) > 0 and distill.get("loc_points", "all") == "all"


def warn_if_rule_without_objectness(
    checkpoint: dict[str, Any], config: PostProcessConfig, path: str | Path
) -> None:
    """A warning when the unknown rule is on for a model whose quality output is no objectness."""
    if config.unknown_threshold > 0 and not quality_is_objectness(checkpoint):
        log.warning(
            "the unknown rule (T=%g) takes the quality output as 'an object is here', but %s is an FCOS "
            "trained without the KD loc term: its centerness is trained on foreground points only and "
            "sits near 0.5 on background, so the rule flags background as unknown objects. Use a DFSS "
            "student (distilled with the loc term) or a YOLOX model for the rule.",
            config.unknown_threshold,
            path,
        )


def model_state(checkpoint: dict[str, Any], *, prefer_ema: bool = True) -> dict[str, torch.Tensor]:
    """The detector's weights from a module checkpoint: the EMA average when it has one."""
    state = checkpoint["state_dict"]
    for prefix in ("ema.module.", "model.") if prefer_ema else ("model.",):
        picked = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if picked:
            return picked
    raise CheckpointError("the checkpoint holds no 'model.' or 'ema.module.' weights")


def build_model_from_checkpoint(
    checkpoint: dict[str, Any], num_classes: int, path: str | Path, *, prefer_ema: bool = True
) -> nn.Module:
    """Rebuild the checkpoint's detector from its saved config and load its weights (strict)."""
    net_config = checkpoint["dfss_config"]["model"]["net"]
    model = instantiate(net_config, num_classes=num_classes)
    missing, unexpected = model.load_state_dict(model_state(checkpoint, prefer_ema=prefer_ema), strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{path} does not fit {net_config['_target_']}: "
            f"missing keys {missing[:5]}, unexpected {unexpected[:5]}"
        )
    return model


def load_teacher(ckpt_path: str | Path, model_config: Any, class_table: ClassTable) -> nn.Module:
    """The frozen teacher: a TeacherModule checkpoint (EMA weights), or an official YOLOX ``.pth``
    built from ``model_config`` (a ``_target_`` node) with its class head re-initialised if needed."""
    checkpoint = read_checkpoint(ckpt_path)
    if is_dfss_checkpoint(checkpoint):
        check_classes(checkpoint, class_table, ckpt_path)
        model = build_model_from_checkpoint(checkpoint, class_table.num_classes, ckpt_path)
    else:
        if model_config is None:
            raise CheckpointError(
                f"{ckpt_path} is not a DFSS checkpoint; set teacher.model to its architecture"
            )
        from dfss.models.yolox.weights import load_official_checkpoint

        model = instantiate(model_config, num_classes=class_table.num_classes)
        load_official_checkpoint(model, ckpt_path)
    return model.eval().requires_grad_(False)
