"""Both detectors learn on the synthetic X-ray data on CPU: a few optimizer steps on one fixed batch.

The batch comes from the real generator (the session's ``synth_tiny`` set, 128 px) through the real
:class:`~dfss.data.datamodule.XrayDataModule`, with the deterministic letterbox as training transform
so the batch is fixed. Each model is trained with its real criterion and the data's class weights
(α = 2 on dangerous classes); the loss after the last step must be well below the first.

Adam, not SGD: with momentum SGD ``fcos_r18`` can diverge on a two-image batch. Learning rates and
step counts were chosen so the final/first ratio sits at 0.4–0.6 over several seeds (threshold 0.7).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch import nn

from dfss.data.batch import DetectionBatch
from dfss.data.datamodule import XrayDataModule
from dfss.data.transforms import build_eval_transforms
from dfss.models.fcos import FCOSCriterion, fcos_mobilenetv3, fcos_r18
from dfss.models.yolox import YOLOXCriterion, yolox_nano

IMAGE_SIZE = 128
BATCH_SIZE = 2
MAX_FINAL_OVER_FIRST = 0.7
DANGEROUS_WEIGHT = 2.0

# name -> (model builder, criterion class, Adam learning rate, steps)
MODELS: dict[str, tuple[Callable[[int], nn.Module], type[nn.Module], float, int]] = {
    "yolox_nano": (yolox_nano, YOLOXCriterion, 3e-3, 40),  # ~0.05 s/step; SimOTA makes it noisy
    "fcos_r18_distribution": (lambda k: fcos_r18(k, box_head="distribution"), FCOSCriterion, 5e-4, 15),
    "fcos_mobilenetv3": (fcos_mobilenetv3, FCOSCriterion, 5e-4, 15),
}


@pytest.fixture(scope="module")
def datamodule(synth_tiny) -> XrayDataModule:
    dm = XrayDataModule(
        synth_tiny,
        image_size=IMAGE_SIZE,
        batch_size=BATCH_SIZE,
        num_workers=0,
        pin_memory=False,
        train_transforms=build_eval_transforms(IMAGE_SIZE),  # no augmentation: a fixed batch
    )
    dm.setup("fit")
    return dm


@pytest.fixture(scope="module")
def fixed_batch(datamodule) -> DetectionBatch:
    torch.manual_seed(0)  # the shuffling sampler draws its order from the global generator
    return next(iter(datamodule.train_dataloader()))


def test_fixed_batch_is_real_training_data(datamodule, fixed_batch):
    assert fixed_batch.images.dtype == torch.uint8
    assert fixed_batch.images.shape == (BATCH_SIZE, 3, IMAGE_SIZE, IMAGE_SIZE)
    assert fixed_batch.num_boxes > 0
    num_classes = datamodule.class_table.num_classes
    for boxes, labels in zip(fixed_batch.boxes, fixed_batch.labels, strict=True):
        assert boxes.shape == (len(labels), 4)
        assert bool(((labels >= 0) & (labels < num_classes)).all())
        assert bool((boxes[:, 2:] > boxes[:, :2]).all()) and bool((boxes >= 0).all())
        assert bool((boxes <= IMAGE_SIZE).all())
    weights = datamodule.class_table.class_weights(DANGEROUS_WEIGHT)
    # The synthetic catalogue has both dangerous and normal classes, so α really weights something.
    assert set(weights.tolist()) == {1.0, DANGEROUS_WEIGHT}


@pytest.mark.integration
@pytest.mark.parametrize("name", list(MODELS))
def test_model_trains_on_synthetic_batch(name, datamodule, fixed_batch):
    builder, criterion_cls, lr, steps = MODELS[name]
    num_classes = datamodule.class_table.num_classes
    torch.manual_seed(0)
    model = builder(num_classes).train()
    criterion = criterion_cls(
        num_classes, class_weights=datamodule.class_table.class_weights(DANGEROUS_WEIGHT)
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)

    losses = []
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        parts = criterion(model(fixed_batch.images), fixed_batch.boxes, fixed_batch.labels)
        parts["loss"].backward()
        optimizer.step()
        assert all(math.isfinite(float(value.detach())) for value in parts.values()), parts
        losses.append(float(parts["loss"].detach()))

    first, final = losses[0], losses[-1]
    assert first > 0
    assert final < MAX_FINAL_OVER_FIRST * first, f"{name}: loss {first:.3f} -> {final:.3f}; all {losses}"
