"""Training that survives bad numbers and untrusted files: real NaN injected into real training
runs, real pickled payloads, checkpoints of another model."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import re
import resource
import shutil
import signal
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra.utils import instantiate

from dfss.config import compose_config
from dfss.data.datamodule import XrayDataModule
from dfss.data.errors import DataError
from dfss.errors import ConfigError
from dfss.evaluate import run as run_evaluate
from dfss.lit.guards import NonFiniteLossError
from dfss.models.checkpoints import CheckpointError, read_checkpoint
from dfss.models.fcos import fcos_r18, load_torchvision_fcos_weights
from dfss.models.weights import WeightsError
from dfss.models.yolox import load_official_checkpoint, yolox_nano
from dfss.train import build_module, run
from tests.helpers.cli import cli_env, train_cli

ROOT = Path(__file__).parents[1]


def _module_and_trainer(synth_tiny, tmp_path, max_steps):
    overrides = [
        f"data.root={synth_tiny}",
        "data.image_size=128",
        "data.batch_size=2",
        "data.num_workers=0",
        "experiment=demo_student",
        "model.net.fpn_channels=32",
    ]
    cfg = compose_config("train", overrides, tmp_path)
    datamodule = instantiate(cfg.data)
    module = build_module(cfg, datamodule)
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=max_steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        limit_val_batches=0,
        default_root_dir=str(tmp_path),
    )
    return module, trainer, datamodule


def _poison(module, steps_to_poison, where="loss"):
    """Real NaN on the chosen calls: in the class logits (a forward hook: the loss is NaN), or in one
    weight's gradient (a tensor hook: the loss stays finite, the gradient does not)."""
    calls = itertools.count(1)
    if where == "loss":

        def hook(_model, _inputs, outputs):
            if next(calls) in steps_to_poison:
                return dataclasses.replace(outputs, cls_logits=outputs.cls_logits * float("nan"))
            return outputs

        return module.model.register_forward_hook(hook)
    weight = next(p for n, p in module.model.named_parameters() if n.endswith("cls_logits.weight"))
    return weight.register_hook(lambda grad: grad * float("nan") if next(calls) in steps_to_poison else grad)


@pytest.mark.integration
@pytest.mark.parametrize("where", ["loss", "gradient"])
def test_nan_steps_leave_the_weights_untouched_and_are_counted(where, synth_tiny, tmp_path):
    module, trainer, datamodule = _module_and_trainer(synth_tiny, tmp_path, max_steps=2)
    before = {k: v.clone() for k, v in module.model.named_parameters()}
    _poison(module, {1, 2}, where)
    trainer.fit(module, datamodule=datamodule)
    assert module.nonfinite.total == 2
    assert all(torch.equal(before[k], v) for k, v in module.model.named_parameters())
    assert not trainer.optimizers[0].state  # SGD never stepped: no momentum buffers


@pytest.mark.integration
def test_training_goes_on_after_a_nan_step(synth_tiny, tmp_path):
    module, trainer, datamodule = _module_and_trainer(synth_tiny, tmp_path, max_steps=3)
    before = {k: v.clone() for k, v in module.model.named_parameters()}
    _poison(module, {1})
    trainer.fit(module, datamodule=datamodule)
    assert module.nonfinite.total == 1 and module.nonfinite.consecutive == 0
    assert any(not torch.equal(before[k], v) for k, v in module.model.named_parameters())
    assert all(torch.isfinite(p).all() for p in module.model.parameters())


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


@pytest.mark.integration
@pytest.mark.parametrize(
    ("where", "message"),
    [
        (
            "loss",
            r"3 training steps in a row gave a NaN/Inf loss .*step 2, image ids \[\d+, \d+\], "
            r"non-finite parts \[.*'loss_cls'",
        ),
        (
            "gradient",
            r"3 training steps in a row gave a NaN/Inf gradient .*step 2, image ids \[\d+, \d+\], "
            r"non-finite gradients of \['head\.classification_head\.cls_logits\.weight'\]",
        ),
    ],
)
def test_persistent_nan_stops_with_an_error_naming_step_images_and_parts(
    where, message, synth_tiny, tmp_path
):
    module, trainer, datamodule = _module_and_trainer(synth_tiny, tmp_path, max_steps=20)
    module.nonfinite.max_consecutive = 2
    _poison(module, set(range(1, 100)), where)
    with pytest.raises(NonFiniteLossError, match=message):
        trainer.fit(module, datamodule=datamodule)


# ---- untrusted checkpoints ---------------------------------------------------------------------
class _Payload:
    """Pickles as a call to ``os.system``: loading it with plain pickle would run the command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.integration
@pytest.mark.parametrize("loader", ["resume", "teacher", "evaluate", "fcos_weights", "yolox_weights"])
def test_a_pickled_payload_is_refused_not_executed(loader, synth_tiny, tmp_path):
    marker = tmp_path / "payload-ran"
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "model": {}, "x": _Payload(marker)}, evil)
    tiny = [f"data.root={synth_tiny}", "data.image_size=128", "data.num_workers=0", "experiment=demo_student"]
    if loader == "resume":
        call, error = (
            lambda: run(compose_config("train", [*tiny, f"ckpt_path={evil}"], tmp_path)),
            CheckpointError,
        )
    elif loader == "teacher":
        overrides = [*tiny, "experiment=demo_distill", f"teacher.ckpt_path={evil}"]
        call, error = lambda: run(compose_config("train", overrides, tmp_path)), CheckpointError
    elif loader == "evaluate":
        overrides = [f"data.root={synth_tiny}", "data.image_size=128", f"ckpt_path={evil}"]
        call, error = lambda: run_evaluate(compose_config("eval", overrides, tmp_path)), CheckpointError
    elif loader == "fcos_weights":
        call, error = lambda: load_torchvision_fcos_weights(fcos_r18(3), evil), WeightsError
    else:
        call, error = lambda: load_official_checkpoint(yolox_nano(3), evil), WeightsError
    with pytest.raises(error, match=r"weights_only=True.*refused") as refused:
        call()
    assert not marker.exists()
    # the reason is torch's (the unsafe global), without torch's advice to load it with weights_only=False
    assert "_Payload" in str(refused.value) or "GLOBAL" in str(refused.value)
    assert "False" not in str(refused.value) and "arbitrary code" not in str(refused.value)
    # The same file really carries code: an unsafe load runs it (this is what the loaders prevent).
    torch.load(evil, weights_only=False)
    assert marker.exists()


@pytest.mark.integration
def test_resuming_with_another_models_checkpoint_names_the_mismatched_keys(synth_tiny, tmp_path):
    tiny = [
        f"data.root={synth_tiny}",
        "data.image_size=128",
        "data.batch_size=2",
        "data.num_workers=0",
        "experiment=demo_student",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=1",
        "trainer.limit_val_batches=1",
        "test=false",
        "logger=none",
    ]
    run(compose_config("train", [*tiny, "model.net.fpn_channels=32"], tmp_path / "small"))
    ckpt = tmp_path / "small" / "checkpoints" / "last.ckpt"
    with pytest.raises(
        CheckpointError,
        match=r"does not fit this run's model .*shape mismatches \(\d+\): model\.backbone\.fpn\..*"
        r"checkpoint \(32, .*\) vs model \(64, ",
    ):
        run(
            compose_config(
                "train", [*tiny, "model.net.fpn_channels=64", f"ckpt_path={ckpt}"], tmp_path / "big"
            )
        )
    assert not (tmp_path / "big" / "checkpoints" / "last.ckpt").exists()  # stopped before training


# ---- bad configuration: one clear line before any work -----------------------------------------
def _cli(*overrides: str, cwd: Path, preexec=None) -> tuple[int, str]:
    """``train.py`` writing into ``cwd``."""
    return train_cli(
        [f"hydra.run.dir={cwd}", f"paths.log_dir={cwd}", *overrides],
        ROOT,
        cli_env(WANDB_MODE="offline"),
        preexec=preexec,
    )


@pytest.mark.integration
@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("trainer.max_epoch=3", "'trainer.max_epoch' is not a setting; did you mean trainer.max_epochs=3"),
        ("model=fcos_r5", "Could not find 'model/fcos_r5'"),
    ],
)
def test_misspelt_override_or_unknown_model_says_what_would_be_right(override, expected, tmp_path):
    code, output = _cli(override, cwd=tmp_path)
    assert code == 1 and expected in output and "Traceback" not in output
    if override.startswith("model="):
        assert "fcos_r50" in output and "yolox_s" in output  # the available models are listed
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.integration
def test_a_bad_setting_is_one_line_on_the_command_line(synth_tiny, tmp_path):
    code, output = _cli(f"data.root={synth_tiny}", "data.dangerous_supercategories=[dangerus]", cwd=tmp_path)
    assert code == 2 and "Traceback" not in output, output[-3000:]
    message = "dangerous supercategory ['dangerus'] matches no category; the supercategories present are"
    assert output.count(message) == 1
    assert not list((tmp_path / "checkpoints").glob("*.ckpt"))


def test_global_batch_size_not_divisible_by_devices_fails_before_any_process_starts(synth_tiny, tmp_path):
    overrides = [
        f"data.root={synth_tiny}",
        "data.image_size=128",
        "experiment=demo_student",
        "trainer=ddp_sim",
        "data.global_batch_size=3",
    ]
    with pytest.raises(
        ConfigError, match=r"global_batch_size=3 cannot be split over 2 devices .* such as 2 or 4"
    ):
        run(compose_config("train", overrides, tmp_path))
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir())


def test_global_batch_size_is_split_over_the_devices(synth_tiny):
    datamodule = XrayDataModule(synth_tiny, batch_size=5, global_batch_size=8)
    assert datamodule.batch_size_for(1) == 8 and datamodule.batch_size_for(4) == 2


# ---- disk --------------------------------------------------------------------------------------
def test_an_unwritable_run_folder_is_reported_before_any_work(synth_tiny, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    overrides = [f"data.root={synth_tiny}", "experiment=demo_student"]
    with pytest.raises(ConfigError, match=r"cannot write the run folder .*a-file/run \(Not a directory\)"):
        run(compose_config("train", overrides, blocker / "run"))


@pytest.mark.integration
def test_a_full_disk_during_checkpointing_is_reported_and_keeps_the_previous_checkpoint(synth_tiny, tmp_path):
    """A file-size limit (RLIMIT_FSIZE: writes past it fail with EFBIG) stands in for a full disk:
    the first run checkpoints normally; the resumed run's checkpoint writes fail."""
    tiny = [
        f"data.root={synth_tiny}",
        "data.image_size=128",
        "data.batch_size=2",
        "data.num_workers=0",
        "experiment=demo_student",
        "model.net.fpn_channels=32",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        "test=false",
        "logger=csv",
    ]
    code, output = _cli(*tiny, "trainer.max_epochs=1", cwd=tmp_path)
    assert code == 0, output[-2000:]
    last = tmp_path / "checkpoints" / "last.ckpt"
    before = last.read_bytes()

    def small_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write instead of a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (len(before) // 2, len(before) // 2))

    code, output = _cli(*tiny, "trainer.max_epochs=2", "ckpt_path=last", cwd=tmp_path, preexec=small_files)
    assert code == 2 and "Traceback" not in output, output[-3000:]
    assert re.search(r"could not write checkpoint .*\.ckpt \(File too large\)", output)
    assert last.read_bytes() == before  # the previous checkpoint is intact ...
    assert read_checkpoint(last)["global_step"] == 2  # ... and loadable
    assert not list((tmp_path / "checkpoints").glob(".*.tmp-*"))  # no partial file left behind


# ---- bad data during training ------------------------------------------------------------------
@pytest.fixture
def decays_after_checks(synth_tiny, tmp_path) -> tuple[Path, str, int]:
    """A copy of the tiny set whose first training image is truncated behind an intact header: it
    passes a header-only check at set-up and fails when training decodes it."""
    root = tmp_path / "data"
    shutil.copytree(synth_tiny, root)
    info = json.loads((root / "annotations" / "train.json").read_text())["images"][0]
    image = root / "images" / "train" / info["file_name"]
    image.write_bytes(image.read_bytes()[: image.stat().st_size // 2])
    return root, info["file_name"], info["id"]


def _fit_one_epoch(root: Path, out: Path, on_error: str) -> None:
    overrides = [
        f"data.root={root}",
        "data.image_size=128",
        "data.batch_size=2",
        "data.num_workers=0",
        "data.image_check=header",
        f"data.on_error={on_error}",
        "experiment=demo_student",
        "model.net.fpn_channels=32",
        "trainer.max_epochs=1",
        "trainer.limit_val_batches=1",
        "test=false",
        "logger=none",
    ]
    run(compose_config("train", overrides, out))


@pytest.mark.integration
def test_an_image_unreadable_during_training_fails_naming_it(decays_after_checks, tmp_path):
    root, file_name, image_id = decays_after_checks
    with pytest.raises(
        DataError, match=rf"unreadable or corrupt image file .*{file_name} \(image id {image_id}\)"
    ):
        _fit_one_epoch(root, tmp_path / "run", "fail")


@pytest.mark.integration
def test_an_image_unreadable_during_training_is_skipped_and_reported(decays_after_checks, tmp_path):
    root, file_name, image_id = decays_after_checks
    _fit_one_epoch(root, tmp_path / "run", "skip")
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()  # the epoch completed
    events = [json.loads(line) for line in (tmp_path / "run" / "data_skipped_during_training.jsonl").open()]
    assert (
        len(events) == 1 and file_name in events[0]["error"] and f"image id {image_id}" in events[0]["error"]
    )


def test_a_refused_file_is_explained_without_torchs_advice_to_load_it_unsafely(tmp_path):
    from dfss.models.checkpoints import read_checkpoint

    evil, text, other = tmp_path / "evil.ckpt", tmp_path / "notes.txt", tmp_path / "version.pt"
    torch.save({"x": _Payload(tmp_path / "ran")}, evil)
    text.write_text("not a checkpoint\n")
    torch.save({"v": torch.__version__}, other)  # a torch object outside the weights-only allow list
    for path, reason in ((evil, "GLOBAL"), (text, "Unsupported operand"), (other, "TorchVersion")):
        with pytest.raises(CheckpointError) as refused:
            read_checkpoint(path)
        message = str(refused.value)
        assert str(path) in message and reason in message, message
        assert "False" not in message and "trusted source" not in message, message
    assert not (tmp_path / "ran").exists()
