"""Run a trained detector over a data split: COCO results in the data set's ids and original pixels.

The split comes through the data module's evaluation loader (the deterministic letterbox, no
augmentation); raw outputs go through :func:`dfss.models.postprocess.postprocess` with the images'
original sizes, so boxes are in the pixels of the files on disk, and
:func:`~dfss.models.postprocess.detections_to_coco` maps labels to the json's category ids (the
unknown rule's label to the data set's unknown category).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import torch
from torch import nn

from dfss.data.datamodule import XrayDataModule
from dfss.errors import ConfigError
from dfss.models.checkpoints import weights_kind
from dfss.models.outputs import DenseOutputs
from dfss.models.postprocess import PostProcessConfig, detections_to_coco, postprocess
from dfss.precision import FP32, autocast

EVAL_SPLITS = ("val", "test")


def inference_facts(
    checkpoint: dict[str, Any],
    postprocess_config: PostProcessConfig,
    device: torch.device,
    image_size: int,
    precision: str = FP32,
) -> dict[str, Any]:
    """What a run of a checkpoint's model used: weights, device, precision, input size, post-processing."""
    return {
        "weights": weights_kind(checkpoint),
        "device": str(device),
        "precision": precision,
        "image_size": image_size,
        "unknown_threshold": postprocess_config.unknown_threshold,
        "unknown_min_quality": postprocess_config.unknown_min_quality,
        "postprocess": asdict(postprocess_config),
    }


def run_model(model: nn.Module, images: torch.Tensor, precision: str = FP32) -> DenseOutputs:
    """``model``'s raw outputs for ``images`` under ``precision`` (a resolved one: ``32-true`` or
    ``bf16-mixed``), returned in float32 for post-processing."""
    with autocast(images.device, precision):
        outputs = model(images)
    return outputs.float()


@torch.no_grad()
def predict_split(
    model: nn.Module,
    datamodule: XrayDataModule,
    split: str,
    postprocess_config: PostProcessConfig,
    device: torch.device,
    precision: str = FP32,
) -> list[dict]:
    """COCO results (``image_id``, ``category_id``, ``bbox`` xywh, ``score``) of ``model`` on ``split``.

    ``model`` must already be in eval mode on ``device`` (this function does not change it);
    ``datamodule`` must be set up for ``split``; ``precision`` as :func:`run_model` takes it.
    """
    if split not in EVAL_SPLITS:
        raise ConfigError(f"split must be one of {EVAL_SPLITS}, got {split!r}")
    if model.training:
        raise ValueError("predict_split needs the model in eval mode (call model.eval() first)")
    loader = datamodule.val_dataloader() if split == "val" else datamodule.test_dataloader()
    results: list[dict] = []
    for batch in loader:
        if not isinstance(batch.images, torch.Tensor):
            raise ValueError("evaluation images must share one size (the eval transforms letterbox them)")
        images = batch.images.to(device, non_blocking=True)  # uint8 [B, 3, S, S]; the model normalises
        detections = postprocess(
            run_model(model, images, precision),
            postprocess_config,
            input_size=images.shape[-1],
            orig_sizes=batch.orig_sizes,
        )
        results.extend(detections_to_coco(detections, batch.image_ids, datamodule.class_table))
    return results
