"""The start-up check: every problem a run's settings show before any work, reported at once."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from dfss.config import compose_config
from dfss.evaluate import run as evaluate
from dfss.preflight import StartupError, check, data_problems, training_problems
from dfss.train import run as train
from tests.helpers.cli import cli_env, train_cli
from tests.helpers.data import tiny_train_overrides

NO_GPU = not torch.cuda.is_available()


def test_the_briefs_command_on_a_cpu_machine_names_every_problem_at_once(tmp_path):
    cfg = compose_config(
        "train", ["experiment=distill", "trainer.devices=8", f"data.root={tmp_path / 'none'}"], tmp_path
    )
    problems = training_problems(cfg)
    assert any("data.root=" in p and "does not exist" in p for p in problems)
    assert any(p.startswith("teacher.ckpt_path is not set") for p in problems)
    if NO_GPU:
        assert any(
            "asks for 8 GPU(s)" in p and "trainer=cpu" in p and "trainer=ddp_sim" in p for p in problems
        )
    assert len(problems) == 2 + NO_GPU
    with pytest.raises(StartupError, match=rf"{len(problems)} problems before starting; nothing was run"):
        train(cfg)


def test_values_out_of_range_are_listed_together(synth_tiny, tmp_path):
    overrides = tiny_train_overrides(
        synth_tiny, ["threshold=unknown", "threshold.T=2", "loss.dangerous_weight=0"]
    )
    problems = training_problems(compose_config("train", overrides, tmp_path))
    assert problems == [
        "threshold.T=2 is out of range: it must be [0, 1]",
        "loss.dangerous_weight=0 is out of range: it must be >= 1e-12",
    ]


def test_data_problems_name_each_missing_file_and_untagged_categories(synth_tiny, tmp_path):
    root = tmp_path / "set"
    shutil.copytree(synth_tiny, root)
    (root / "annotations" / "val.json").unlink()
    shutil.rmtree(root / "images" / "test")
    train_json = root / "annotations" / "train.json"
    data = json.loads(train_json.read_text())
    data["categories"][0].pop("supercategory")
    train_json.write_text(json.dumps(data))
    cfg = compose_config("train", tiny_train_overrides(root), tmp_path)
    problems = data_problems(cfg.data, ("train", "val", "test"))
    first = data["categories"][0]
    assert problems == [
        f"data: categories {first['id']} ({first['name']}) of {train_json} have no supercategory; DFSS needs "
        "one per category (dangerous, unknown or normal)",
        f"data: the val split's annotation file {root / 'annotations' / 'val.json'} does not exist",
        f"data: the test split's image folder {root / 'images' / 'test'} does not exist",
    ]


def test_evaluation_checks_its_checkpoint_and_values_before_reading_anything(tmp_path):
    cfg = compose_config(
        "eval", [f"ckpt_path={tmp_path / 'nope.ckpt'}", "threshold=unknown", "threshold.T=2"], tmp_path
    )
    with pytest.raises(StartupError) as error:
        evaluate(cfg)
    assert str(error.value).splitlines()[1:] == [
        "  - threshold.T=2 is out of range: it must be [0, 1]",
        f"  - ckpt_path: DFSS checkpoint not found: {tmp_path / 'nope.ckpt'}",
    ]


def test_no_problem_no_error():
    check([])  # nothing raised


@pytest.mark.integration
def test_on_the_command_line_every_problem_is_one_line_exit_2_and_the_run_log_keeps_them(tmp_path):
    run_dir = tmp_path / "run"
    overrides = [
        "experiment=demo_distill",
        f"data.root={tmp_path / 'none'}",
        "threshold.T=2",
        f"hydra.run.dir={run_dir}",
    ]
    code, output = train_cli(overrides, tmp_path, cli_env(), timeout=120)
    assert code == 2 and "Traceback" not in output, output[-3000:]
    lines = [line for line in output.splitlines() if line.startswith("  - ")]
    assert len(lines) == 3  # data root, teacher, T
    log = (run_dir / "train.log").read_text()
    assert all(line in log for line in lines)  # the run folder says why it stopped
    assert sorted(p.name for p in run_dir.iterdir()) == [".hydra", "train.log"]  # and holds nothing else
