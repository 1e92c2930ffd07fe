"""A multirun's summary table: one row per job, the swept settings, the key metrics."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import yaml

from dfss.sweeps import write_sweep_summary


def _job(sweep: Path, num: int, overrides: list[str], metrics: dict | None) -> None:
    job = sweep / str(num)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if metrics is not None:
        (job / "metrics.json").write_text(json.dumps(metrics))


def test_the_summary_lists_each_job_its_swept_values_and_key_metrics(tmp_path):
    same = ["experiment=demo_distill", "data.root=/data/set"]
    _job(
        tmp_path, 0, [*same, "loss.dangerous_weight=1"], {"val/map50": 0.2, "val/map": 0.1, "train/loss": 3.0}
    )
    _job(tmp_path, 10, [*same, "loss.dangerous_weight=4"], {"val/map50": 0.25, "val/map50_dangerous": 0.3})
    _job(tmp_path, 2, [*same, "loss.dangerous_weight=2"], None)  # a job that failed
    path = write_sweep_summary(tmp_path)
    rows = list(csv.DictReader((tmp_path / "summary.csv").read_text().splitlines()))
    assert [r["job"] for r in rows] == ["0", "2", "10"]  # in job order, not name order
    assert [r["loss.dangerous_weight"] for r in rows] == ["1", "2", "4"]
    assert "experiment" not in rows[0] and "data.root" not in rows[0]  # the same in every job
    assert list(rows[0]) == [
        "job",
        "loss.dangerous_weight",
        "val/map50",
        "val/map",
        "val/map50_dangerous",
        "status",
    ]
    assert rows[0]["val/map50"] == "0.2000" and rows[2]["val/map50_dangerous"] == "0.3000"
    assert rows[1]["status"].startswith("no metrics.json") and rows[1]["val/map50"] == ""
    assert path.read_text().splitlines()[0] == "| " + " | ".join(rows[0]) + " |"


def test_test_figures_win_over_validation_and_evaluate_runs_have_no_prefix(tmp_path):
    trained = tmp_path / "train"
    _job(trained, 0, ["seed=1"], {"val/map50": 0.2, "test/map50": 0.3, "test/map50_unknown": 0.05})
    _job(trained, 1, ["seed=2"], {"val/map50": 0.4, "test/map50": 0.35})
    write_sweep_summary(trained)
    rows = list(csv.DictReader((trained / "summary.csv").read_text().splitlines()))
    assert list(rows[0]) == ["job", "seed", "test/map50", "test/map50_unknown", "status"]
    scored = tmp_path / "eval"
    _job(scored, 0, ["threshold.T=0"], {"map50": 0.3, "map50_unknown": 0.0, "map50_known": 0.3})
    _job(scored, 1, ["threshold.T=0.1"], {"map50": 0.3, "map50_unknown": 0.1, "map50_known": 0.3})
    write_sweep_summary(scored)
    rows = list(csv.DictReader((scored / "summary.csv").read_text().splitlines()))
    assert [(r["threshold.T"], r["map50_unknown"]) for r in rows] == [("0", "0.0000"), ("0.1", "0.1000")]


def test_wandb_runs_of_a_sweep_share_a_job_type_and_carry_their_settings_in_their_names(tmp_path):
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import open_dict

    from dfss.lit.loggers import group_sweep_runs

    overrides = [
        "experiment=demo_student",
        "logger=wandb",
        "loss.dangerous_weight=4",
        f"data.root={tmp_path}",
    ]
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="dfss.conf", version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):  # what a multirun's job 2 sees
        cfg.hydra.mode = RunMode.MULTIRUN
        cfg.hydra.sweep.dir = str(tmp_path / "2026-12-06_10-00-00")
        cfg.hydra.job.num = 2
        cfg.hydra.runtime.output_dir = str(tmp_path)
        cfg.paths.output_dir = str(tmp_path)
    HydraConfig.instance().set_config(cfg)
    try:
        group_sweep_runs(cfg)
    finally:
        HydraConfig.instance().cfg = None
    wandb = cfg.logger.wandb
    assert wandb.job_type == "sweep_2026-12-06_10-00-00" and "sweep_2026-12-06_10-00-00" in wandb.tags
    expected = "sweep_2026-12-06_10-00-00/2 experiment=demo_student logger=wandb loss.dangerous_weight=4"
    assert wandb.name == expected  # the data path is left out of the name
