"""Training that survives bad numbers: real NaN injected into a real training run."""

from __future__ import annotations

import dataclasses

import lightning as L
import pytest
import torch
from hydra.utils import instantiate

from dfss.config import compose_config
from dfss.lit.guards import NonFiniteLossError
from dfss.train import build_module


def _module_and_trainer(synth_tiny, tmp_path, max_steps):
    overrides = [f"data.root={synth_tiny}", "data.image_size=128", "data.batch_size=2", "data.num_workers=0",
                 "experiment=demo_student", "model.net.fpn_channels=32"]  # fmt: skip
    cfg = compose_config("train", overrides, tmp_path)
    datamodule = instantiate(cfg.data)
    module = build_module(cfg, datamodule)
    trainer = L.Trainer(accelerator="cpu", max_steps=max_steps, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, limit_val_batches=0, default_root_dir=str(tmp_path))  # fmt: skip
    return module, trainer, datamodule


def _poison(module, steps_to_poison):
    """A forward hook that turns the model's class logits into NaN on the chosen forward calls."""
    calls = {"n": 0}

    def hook(_model, _inputs, outputs):
        calls["n"] += 1
        if calls["n"] in steps_to_poison:
            return dataclasses.replace(outputs, cls_logits=outputs.cls_logits * float("nan"))
        return outputs

    return module.model.register_forward_hook(hook)


def test_nan_steps_leave_the_weights_untouched_and_are_counted(synth_tiny, tmp_path):
    module, trainer, datamodule = _module_and_trainer(synth_tiny, tmp_path, max_steps=2)
    before = {k: v.clone() for k, v in module.model.named_parameters()}
    _poison(module, {1, 2})
    trainer.fit(module, datamodule=datamodule)
    assert module.nonfinite.total == 2
    assert all(torch.equal(before[k], v) for k, v in module.model.named_parameters())


def test_training_goes_on_after_a_nan_step(synth_tiny, tmp_path):
    module, trainer, datamodule = _module_and_trainer(synth_tiny, tmp_path, max_steps=3)
    before = {k: v.clone() for k, v in module.model.named_parameters()}
    _poison(module, {1})
    trainer.fit(module, datamodule=datamodule)
    assert module.nonfinite.total == 1 and module.nonfinite.consecutive == 0
    assert any(not torch.equal(before[k], v) for k, v in module.model.named_parameters())
    assert all(torch.isfinite(p).all() for p in module.model.parameters())


def test_persistent_nan_stops_with_an_error_naming_step_images_and_parts(synth_tiny, tmp_path):
    module, trainer, datamodule = _module_and_trainer(synth_tiny, tmp_path, max_steps=20)
    module.nonfinite.max_consecutive = 2
    _poison(module, set(range(1, 100)))
    with pytest.raises(
        NonFiniteLossError,
        match=r"3 training steps in a row .*step 2, image ids \[\d+, \d+\], non-finite parts \[.*'loss_cls'",
    ):
        trainer.fit(module, datamodule=datamodule)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("loss.dangerous_weight=-1", r"dangerous_weight must be >= 0, got -1"),
        ("threshold.T=1.5", r"the unknown threshold T must be in \[0, 1\], got 1.5"),
    ],
)
def test_bad_settings_fail_while_building_with_the_reason(override, message, synth_tiny, tmp_path):
    """The module is built before the Trainer exists, so these stop a run before any training."""
    cfg = compose_config("train", [f"data.root={synth_tiny}", "experiment=demo_student", override], tmp_path)
    with pytest.raises(Exception, match=message):
        build_module(cfg, instantiate(cfg.data))
