"""The Hydra configs compose, instantiate, and drive the real apps."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.utils import instantiate

from dfss.config import compose_config
from dfss.data.datamodule import XrayDataModule
from dfss.inspect import run as inspect_run

# data=checkpoint (evaluate.py's default: the checkpoint's own data) has no data set of its own
DATA_OPTIONS = sorted(
    p.stem
    for p in (Path(__file__).parents[1] / "dfss" / "conf" / "data").glob("*.yaml")
    if p.stem != "checkpoint"
)


_compose = compose_config


@pytest.mark.parametrize("option", DATA_OPTIONS)
def test_every_data_option_composes_and_instantiates(option, tmp_path):
    assert {"synth_small", "synth_benchmark", "coco"} <= set(DATA_OPTIONS)
    cfg = _compose("inspect", [f"data={option}", f"data.root={tmp_path}"], tmp_path)
    dm = instantiate(cfg.data)
    assert isinstance(dm, XrayDataModule)
    assert dm.root == tmp_path and dm.batch_size > 0 and dm.on_error == "fail"


def test_inspect_runs_the_data_module_end_to_end(tiny_xray, tmp_path):
    overrides = [f"data.root={tiny_xray}", "data.image_size=64", "data.batch_size=2", "data.num_workers=0"]
    cfg = _compose("inspect", overrides, tmp_path)
    figures = inspect_run(cfg)
    assert figures["num_images"] == 6 and figures["num_boxes"] == 8
    assert figures["boxes_per_class"] == {"knife": 2, "phone": 3, "keys": 3}
    assert (tmp_path / "samples.png").stat().st_size > 0
    assert json.loads((tmp_path / "inspect.json").read_text())["num_boxes"] == 8


def test_inspect_says_when_a_partial_training_batch_was_dropped(tiny_xray, tmp_path, caplog):
    overrides = [f"data.root={tiny_xray}", "data.image_size=64", "data.batch_size=4", "data.num_workers=0"]
    with caplog.at_level("INFO", logger="dfss.inspect"):
        figures = inspect_run(_compose("inspect", [*overrides, "split=train"], tmp_path))
    assert figures["num_images"] == 4 and figures["split_images"] == 6
    assert (
        "4 of the split's 6 images were loaded: training batches of 4 drop the last, partial one"
        in caplog.text
    )


def test_data_checkpoint_is_refused_where_there_is_no_checkpoint(tmp_path):
    from dfss.errors import ConfigError

    with pytest.raises(
        ConfigError, match=r"data=checkpoint .* is for evaluate.py; dfss-inspect needs one of: coco"
    ):
        inspect_run(_compose("inspect", ["data=checkpoint"], tmp_path))


@pytest.mark.integration
def test_inspect_cli_help_lists_the_config_groups():
    out = subprocess.run(
        [sys.executable, "-m", "dfss.inspect", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "data: checkpoint, coco, synth_benchmark, synth_results, synth_small" in out


@pytest.mark.integration
def test_hydra_flags_may_follow_the_overrides():
    from dfss.config import hoist_flags

    argv = ["evaluate.py", "ckpt_path=a.ckpt", "-m", "threshold.T=0,0.1"]
    assert hoist_flags(argv) == ["evaluate.py", "-m", "ckpt_path=a.ckpt", "threshold.T=0,0.1"]
    with_value = ["train.py", "--cfg", "job", "experiment=distill"]
    assert hoist_flags(with_value) == with_value
    # A flag with a value moves with it (its value was taken for an override before).
    after = ["train.py", "experiment=distill", "--cfg", "job", "seed=3", "--info", "config"]
    assert hoist_flags(after) == [
        "train.py",
        "--cfg",
        "job",
        "--info",
        "config",
        "experiment=distill",
        "seed=3",
    ]
    bare_info = ["train.py", "seed=3", "--info", "-m", "loss.dangerous_weight=1,2"]
    assert hoist_flags(bare_info) == ["train.py", "--info", "-m", "seed=3", "loss.dangerous_weight=1,2"]
    train_py = Path(__file__).parents[1] / "train.py"
    proc = subprocess.run(
        [sys.executable, str(train_py), "experiment=teacher", "--cfg", "job", "seed=5"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "seed: 5" in proc.stdout and "yolox" in proc.stdout


def test_kd_balance_options_change_only_what_they_name(tmp_path):
    def kd(option: str):
        return instantiate(compose_config("train", [f"loss={option}"], tmp_path).loss.distill)

    base, summed, student = kd("distill"), kd("kd_bbox_sum"), kd("kd_student_points")
    assert summed.lambda_bbox == pytest.approx(4 * base.lambda_bbox)  # the old sum over the 4 sides
    assert (summed.lambda_loc, summed.lambda_cls) == (base.lambda_loc, base.lambda_cls)
    assert (student.cls_points, student.bbox_points) == ("student_positive", "student_positive")
    assert (base.cls_points, base.bbox_points) == ("teacher_confident", "teacher_confident")
    assert student.loc_points == base.loc_points and student.lambda_bbox == base.lambda_bbox


@pytest.mark.parametrize(
    ("overrides", "criterion", "setting", "value"),
    [
        (["experiment=demo_student", "loss.criterion.focal_gamma=1.5"], "FCOSCriterion", "focal_gamma", 1.5),
        (
            ["experiment=demo_teacher", "loss.criterion.center_radius=1.5"],
            "YOLOXCriterion",
            "center_radius",
            1.5,
        ),
        (["experiment=demo_student"], "FCOSCriterion", "focal_gamma", 2.0),  # the default
    ],
)
def test_the_loss_group_holds_the_criterions_settings(overrides, criterion, setting, value, tmp_path):
    from dfss.train import build_criterion

    cfg = _compose("train", overrides, tmp_path)
    built = build_criterion(cfg, num_classes=3, class_weights=None)
    assert type(built).__name__ == criterion and getattr(built, setting) == value


def test_a_criterion_setting_of_the_other_model_family_is_refused_with_the_valid_ones(tmp_path):
    from dfss.errors import ConfigError
    from dfss.train import build_criterion

    cfg = _compose("train", ["experiment=demo_student", "+loss.criterion.center_radius=2.5"], tmp_path)
    with pytest.raises(
        ConfigError, match=r"loss.criterion.center_radius is not a setting of .*FCOSCriterion"
    ):
        build_criterion(cfg, num_classes=3, class_weights=None)


def test_a_run_config_from_before_loss_criterion_still_builds(tmp_path):
    from omegaconf import open_dict

    from dfss.train import build_criterion

    cfg = _compose("train", ["experiment=demo_student"], tmp_path)
    with open_dict(cfg):  # as checkpoints written before the loss group held it: model.criterion
        del cfg.loss["criterion"]
        cfg.model.criterion = {"_target_": "dfss.models.fcos.FCOSCriterion", "focal_gamma": 1.0}
    built = build_criterion(cfg, num_classes=3, class_weights=None)
    assert type(built).__name__ == "FCOSCriterion" and built.focal_gamma == 1.0


def test_plans_and_presets_live_outside_the_hydra_tree():
    from dfss.results.plan import load_plan, plan_names
    from dfss.synth.config import load_preset, preset_names

    conf = Path(__file__).parents[1] / "dfss" / "conf"
    assert not (conf / "results").exists() and not (conf / "synth").exists()
    assert plan_names() == ["cpu", "cpu_benchmark", "gpu"] and load_plan("cpu").name == "cpu"
    assert {"small", "benchmark", "results"} <= set(preset_names()) and load_preset("results").version


def test_misspelt_groups_options_and_keys_get_did_you_mean():
    from dfss.config import suggest_overrides

    lines = suggest_overrides(
        "train", ["modle=fcos_r18", "model=fcos_r5", "trainer.max_epoch=3", "loss=kd_no_bbx", "seed=1"]
    )
    assert any(line.startswith("'modle' is not a setting") and "model=fcos_r18" in line for line in lines)
    assert any("model has no option 'fcos_r5'" in line and "model=fcos_r50" in line for line in lines)
    assert any("trainer.max_epochs=3" in line for line in lines)
    assert any("loss=kd_no_bbox" in line for line in lines)
    assert len(lines) == 4  # seed=1 is a setting: nothing to say


@pytest.mark.parametrize("trainer", ["cpu", "gpu", "ddp", "ddp_sim"])
def test_nodes_and_strategy_are_settings_of_every_trainer_and_slurm_follows_the_nodes(trainer):
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    overrides = [f"trainer={trainer}", "trainer.num_nodes=2", "trainer.strategy=ddp", "hydra/launcher=slurm"]
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="dfss.conf", version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)  # no '+' needed
    assert cfg.trainer.num_nodes == 2 and cfg.trainer.strategy == "ddp"
    assert cfg.hydra.launcher.nodes == 2 and cfg.hydra.launcher.tasks_per_node == cfg.trainer.devices
