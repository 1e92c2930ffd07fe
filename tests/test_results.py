"""The results pipeline: plans compose into real runs, the targets' rules, and a tiny plan run end
to end (real training, evaluation, T re-scoring, report with plots and a W&B offline run)."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import statistics
from importlib import resources
from pathlib import Path

import pytest
import torch
import yaml
from hydra.utils import instantiate
from PIL import Image

from dfss.config import compose_config
from dfss.errors import ConfigError
from dfss.models.checkpoints import read_checkpoint
from dfss.precision import native_bf16
from dfss.report.collect import Results, ResultsError, Run, load_results
from dfss.report.targets import best_alpha, best_T, verdicts
from dfss.results.plan import expand, load_plan, plan_from_mapping
from dfss.results.runner import environment, run_plan
from dfss.synth.config import load_preset
from tests.helpers.scripts import bench_script

KD_OPTIONS = (
    "kd_loc_only",
    "kd_cls_only",
    "kd_bbox_only",
    "kd_no_loc",
    "kd_no_cls",
    "kd_no_bbox",
    "kd_softmax",
)


@pytest.mark.integration
@pytest.mark.parametrize("name", ["gpu", "cpu", "cpu_benchmark"])
def test_every_run_of_the_packaged_plans_composes_to_the_intended_config(name, tmp_path):
    plan = load_plan(name)
    specs = expand(plan)
    assert [s.name for s in specs][:1] == ["teacher_s1"]  # the teacher first: the students need it
    assert {s.name for s in specs} >= {
        "student_s1",
        "student_s2",
        "distill_s1",
        "distill_s2",
        "weighted_a4_s2",
    }
    schedules, student_models = set(), []
    for spec in specs:
        overrides = [f"experiment={spec.experiment}", *spec.overrides]
        if spec.teacher:
            overrides.append(f"teacher.ckpt_path={tmp_path / spec.teacher / 'last.ckpt'}")
        cfg = compose_config("train", overrides, tmp_path / spec.name)
        assert cfg.seed == spec.seed
        if spec.role != "teacher":
            student_models.append(cfg.model)
        has_kd = cfg.loss.get("distill") is not None
        assert has_kd == (spec.role not in ("teacher", "student")), spec.name
        if spec.role == "weighted":
            assert cfg.loss.dangerous_weight == spec.alpha
        elif spec.role != "teacher":
            assert cfg.loss.dangerous_weight == 1.0
        if spec.role == "ablation":
            kd = instantiate(cfg.loss.distill)
            lambdas = {"loc": kd.lambda_loc, "cls": kd.lambda_cls, "bbox": kd.lambda_bbox}
            option = spec.variant
            if option.endswith("_only"):
                assert [k for k, v in lambdas.items() if v > 0] == [option[3:-5]]
            elif option.startswith("kd_no_"):
                assert [k for k, v in lambdas.items() if v == 0] == [option[6:]]
            else:
                assert option == "kd_softmax" and kd.cls_mode == "softmax" and min(lambdas.values()) > 0
        if spec.role != "teacher":  # one schedule and one backbone recipe for every student
            net = cfg.model.net
            schedules.add((cfg.trainer.max_epochs, net.get("norm"), net.get("trainable_backbone_layers")))
    assert len(schedules) == 1
    if name == "gpu":  # FCOS-R50 from random init: learning batch norm, every stage trained
        assert schedules == {(12, "bn", 5)}
    if name == "cpu_benchmark":
        # the frozen benchmark; the calibration's teacher stage; one deployable student everywhere;
        # scored in float32 on every machine; three seeds, the ablations at one
        assert plan.synth_preset == "results" and "precision=32-true" in plan.eval
        assert plan.seeds == (1, 2, 3) and plan.seeds_of("ablation") == (1,)
        teachers = [
            compose_config("train", [f"experiment={t.experiment}", *t.overrides], tmp_path / p.name)
            for p in (plan, load_plan("gpu"))
            for t in expand(p)[:1]
        ]
        assert (
            cfg_tuple(teachers[0]) == cfg_tuple(teachers[1]) == ("dfss.models.yolox.yolox_s", 30, 25, 32, 320)
        )
        assert teachers[0].data.mosaic_prob == teachers[1].data.mosaic_prob == 1.0
        assert {(n.net._target_, n.net.fpn_channels) for n in student_models} == {
            ("dfss.models.fcos.fcos_mobilenetv3", 64)
        }
    assert sorted({s.variant for s in specs if s.role == "ablation"}) == sorted(KD_OPTIONS)


def cfg_tuple(cfg) -> tuple:
    """A teacher config's model, epochs, L1 epoch, batch and image size."""
    return (
        cfg.model.net._target_,
        cfg.trainer.max_epochs,
        cfg.module.l1_from_epoch,
        cfg.data.batch_size,
        cfg.data.image_size,
    )


def test_dry_run_prints_the_teacher_file_the_students_will_distil_from(tmp_path, capsys):
    from dfss.results.cli import main

    args = ["--plan", "cpu_benchmark", "--out", str(tmp_path), "--dry-run"]
    args += ["--only", "^(teacher|distill)_s1$"]
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["teacher_s1", "distill_s1"]
    assert lines[1].endswith(f"teacher.ckpt_path={tmp_path}/teacher_s1/checkpoints/last.ckpt")
    (tmp_path / "teacher_s1").mkdir()
    (tmp_path / "teacher_s1" / "weights.pt").write_bytes(b"")  # a finished teacher leaves its weights
    assert main(args) == 0
    weights = f"teacher.ckpt_path={tmp_path}/teacher_s1/weights.pt"
    assert capsys.readouterr().out.splitlines()[1].endswith(weights)


def test_plan_errors_name_the_problem(tmp_path):
    with pytest.raises(
        ConfigError, match=r"no results plan 'gpx'; available: \['cpu', 'cpu_benchmark', 'gpu'\]"
    ):
        load_plan("gpx")
    bad = tmp_path / "plan.yaml"
    bad.write_text("name: x\nseeds: [1\n")
    with pytest.raises(ConfigError, match="not valid yaml"):
        load_plan(str(bad))
    mapping = yaml.safe_load(resources.files("dfss.results").joinpath("plans", "cpu.yaml").read_text())
    with pytest.raises(ConfigError, match=r"unknown keys \['epochs'\]"):
        plan_from_mapping({**mapping, "epochs": 3})
    with pytest.raises(ConfigError, match=r"unknown\.alpha=3\.0 is not 1 or one of weighted\.alphas"):
        plan_from_mapping({**mapping, "unknown": {"alpha": 3, "T": [0.1]}})
    with pytest.raises(ConfigError, match=r"release names unknown roles \['teachers'\]"):
        plan_from_mapping({**mapping, "release": ["teachers"]})
    assert plan_from_mapping({**mapping, "release": ["distill"]}).release == ("teacher", "distill")
    with pytest.raises(ConfigError, match="jobs must be at least 1, not 0"):
        plan_from_mapping({**mapping, "jobs": 0})
    without_jobs = {k: v for k, v in mapping.items() if k != "jobs"}
    assert (
        plan_from_mapping(without_jobs).jobs == 1
        and load_plan("gpu").jobs == 4
        and load_plan("cpu").jobs == 2
    )


def _run(name: str, role: str, seed: int, alpha: float = 1.0, sweep=None, **metrics: float) -> Run:
    return Run(name, role, seed, alpha, None, Path(name), metrics, (), {}, (), sweep or {})


def _hand_made_results() -> Results:
    plan = {
        "name": "hand",
        "stages": {"weighted": {"alphas": [2.0, 4.0]}, "ablation": {"options": []}},
        "unknown_T": [0.1, 0.3],
    }
    runs = [
        _run("teacher_s1", "teacher", 1, map50=0.70),
        _run("student_s1", "student", 1, map50=0.50),
        _run("student_s2", "student", 2, map50=0.52),
        _run("distill_s1", "distill", 1, map50=0.60, map50_dangerous=0.40, map50_normal=0.70),
        _run("distill_s2", "distill", 2, map50=0.62, map50_dangerous=0.42, map50_normal=0.72),
        # alpha 2: +4.9 points dangerous, -0.3 normal; alpha 4: +10 dangerous but -3 normal
        _run(
            "weighted_a2_s1",
            "weighted",
            1,
            2.0,
            map50_dangerous=0.459,
            map50_normal=0.707,
            map50_known=0.60,
            sweep={
                0.1: {"map50_unknown": 0.35, "map50_known": 0.595},
                0.3: {"map50_unknown": 0.50, "map50_known": 0.55},
            },
        ),
        _run("weighted_a4_s1", "weighted", 1, 4.0, map50_dangerous=0.51, map50_normal=0.68),
    ]
    return Results(Path("."), {"plan": plan}, tuple(runs))


def test_best_alpha_and_T_follow_the_targets_rules_and_verdicts_use_the_means():
    results = _hand_made_results()
    choice = best_alpha(results)
    # alpha 4 gains more but costs 3 normal points: the rule picks alpha 2 (within 0.5 points).
    assert choice.alpha == 2.0
    assert choice.dangerous_gain == pytest.approx(0.049) and choice.normal_change == pytest.approx(-0.003)
    t = best_T(results)
    # T=0.3 has the better unknown AP50 but costs 5 known points; T=0.1 costs 0.5: T=0.1.
    assert t.T == 0.1 and t.unknown_ap50 == pytest.approx(0.35) and t.known_change == pytest.approx(-0.005)
    by_target = {v.target: v for v in verdicts(results)}
    gain = next(v for t, v in by_target.items() if t.startswith("distillation gain"))
    # 0.61 - 0.51, the same +10 points for both seeds: a zero-width interval above 0
    assert gain.met is True and "+10.0 [+10.0, +10.0] points (2 seeds)" in gain.measured
    ratio = next(v for t, v in by_target.items() if t.startswith("DFSS >="))
    # 0.61 / 0.70 against the paper's own ratio 0.609 / 0.662; the interval is over the DFSS seeds
    # (0.60 / 0.70, 0.62 / 0.70: mean 0.871 +- 12.706 x 0.0202 / sqrt 2)
    assert ratio.target.startswith("DFSS >= 0.92 x teacher")
    assert ratio.met is False and ratio.measured.startswith("0.87 x [0.69, 1.05] (0.610 vs 0.700)")
    weighted = next(v for t, v in by_target.items() if t.startswith("weighted loss"))
    assert weighted.met is False and "alpha=2" in weighted.measured  # +4.9 points < +5
    unknown = next(v for t, v in by_target.items() if t.startswith("unknown AP50"))
    assert unknown.met is True
    seeds = next(v for t, v in by_target.items() if t.startswith("each headline"))
    assert seeds.met is False and "alpha=4: 1" in seeds.measured


def test_a_gain_whose_interval_holds_zero_is_no_significant_difference_and_misses_its_target():
    results = _hand_made_results()
    runs = [r for r in results.runs if r.name != "student_s2"]
    runs.append(_run("student_s2", "student", 2, map50=0.62))  # differences +0.10 and 0.00
    results = Results(results.folder, results.index, tuple(runs))
    gain = next(v for v in verdicts(results) if v.target.startswith("distillation gain"))
    assert gain.met is False
    assert gain.measured.startswith("+5.0 [-58.5, +68.5] points (2 seeds): no significant difference")
    one_seed = Results(results.folder, results.index, tuple(r for r in runs if r.seed == 1))
    gain = next(v for v in verdicts(one_seed) if v.target.startswith("distillation gain"))
    assert gain.met is False and "(1 seed, no interval)" in gain.measured  # no matches50.npz here


# ---- a tiny plan, run for real --------------------------------------------------------------------
TINY_SYNTH = {
    "_target_": "dfss.synth.config.SynthConfig",
    "image_size": 128,
    "num_train": 6,
    "num_val": 3,
    "num_test": 5,
    "unknown_per_test_image": [1, 2],
    "image_format": "png",
}


@pytest.fixture(scope="module")
def tiny_results(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 shared cores: competing threads make training several times slower
    root = tmp_path_factory.mktemp("results")
    (root / "synth.yaml").write_text(yaml.safe_dump(TINY_SYNTH))
    common = [
        "data.root=${data_dir}",
        "data.image_size=128",
        "data.num_workers=0",
        "data.batch_size=3",
        "trainer.max_epochs=2",
        "++trainer.limit_train_batches=1",
        "logger=csv",
    ]
    plan = {
        "name": "tiny",
        "description": "test-sized",
        "synth_preset": str(root / "synth.yaml"),
        "data_dir": str(root / "data"),
        "seeds": [1, 2],
        "common": common,
        "eval": ["data.root=${data_dir}", "data.num_workers=0", "backend=faster_coco_eval"],
        "teacher": {"experiment": "demo_teacher", "seeds": [1]},
        "student": {"experiment": "demo_student"},
        "distill": {"experiment": "demo_distill"},
        "weighted": {"experiment": "demo_distill", "alphas": [2], "overrides": ["loss=distill_weighted"]},
        "ablation": {"experiment": "demo_distill", "seeds": [1], "options": ["kd_no_cls"]},
        "unknown": {"alpha": 2, "T": [0.5]},
        "release": ["distill"],
    }
    (root / "plan.yaml").write_text(yaml.safe_dump(plan))
    out = root / "out"
    try:
        index = run_plan(load_plan(str(root / "plan.yaml")), out)
    finally:
        torch.set_num_threads(threads)
    return root, out, index


@pytest.mark.integration
def test_a_plan_trains_evaluates_and_rescores_every_run(tiny_results):
    _, out, index = tiny_results
    names = {
        "teacher_s1",
        "student_s1",
        "student_s2",
        "distill_s1",
        "distill_s2",
        "weighted_a2_s1",
        "weighted_a2_s2",
        "ablation_kd_no_cls_s1",
    }
    assert set(index["runs"]) == names and index["finished"]
    assert json.loads((out / "index.json").read_text())["runs"].keys() == names
    for name in names:
        run_dir = out / name
        history = [json.loads(line) for line in (run_dir / "metrics_history.jsonl").read_text().splitlines()]
        assert [row["epoch"] for row in history] == [0, 1] and all("val/map50" in row for row in history)
        assert "val/map50" in json.loads((run_dir / "metrics.json").read_text())
        metrics = json.loads((run_dir / "eval" / "metrics.json").read_text())
        assert {"map50", "map50_dangerous", "recall50_unknown", "map50_known"} <= metrics.keys()
        checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
        cfg = checkpoint["dfss_config"]
        assert cfg["seed"] == index["runs"][name]["seed"]
        if name.startswith("weighted"):
            assert cfg["loss"]["dangerous_weight"] == 2.0
            assert cfg["teacher"]["ckpt_path"] == str(out / "teacher_s1" / "weights.pt")
        if name.startswith("ablation"):
            assert cfg["loss"]["distill"]["lambda_cls"] == 0.0
    # Only the alpha = 2 runs are re-scored, with the unknown rule at T = 0.5 and nothing else changed.
    rescored = {n for n, e in index["runs"].items() if "0.5" in e["evals"]}
    assert rescored == {"weighted_a2_s1", "weighted_a2_s2"}
    run = json.loads((out / "weighted_a2_s1" / "eval_T0.5" / "run.json").read_text())
    assert run["unknown_threshold"] == 0.5
    assert json.loads((out / "weighted_a2_s1" / "eval" / "run.json").read_text())["unknown_threshold"] == 0.0


@pytest.mark.integration
def test_a_finished_plan_is_not_run_again(tiny_results):
    root, out, _ = tiny_results
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/checkpoints/last.ckpt")}
    evals = {p: p.stat().st_mtime_ns for p in out.glob("*/eval*/metrics.json")}
    run_plan(load_plan(str(root / "plan.yaml")), out)
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/checkpoints/last.ckpt")} == stamps
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/eval*/metrics.json")} == evals


@pytest.mark.integration
def test_parallel_runs_equal_the_serial_ones(tiny_results, tmp_path, monkeypatch):
    """jobs=2: each run in its own process, a distilled run only after its teacher's; same seeds give
    the same test metrics as the in-process runs of the fixture (one torch thread in both)."""
    root, serial, _ = tiny_results
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    names = {"teacher_s1", "student_s1", "distill_s1"}
    out = tmp_path / "parallel"
    index = run_plan(load_plan(str(root / "plan.yaml")), out, only=lambda s: s.name in names, jobs=2)
    assert set(index["runs"]) == names and index["finished"]
    assert index["invocations"][-1]["jobs"] == 2 and index["invocations"][-1]["runs"] == 3
    for name in names:
        assert (out / "logs" / f"{name}.log").is_file()
        assert json.loads((out / name / "eval" / "metrics.json").read_text()) == json.loads(
            (serial / name / "eval" / "metrics.json").read_text()
        )
        assert index["runs"][name]["seconds_train"] > 0
        # where it trained, as the run's own process saw it (one thread, this machine's bf16)
        (machine,) = index["runs"][name]["trained_on"]
        assert machine["cpu_threads"] == 1 and machine["cpu_native_bf16"] == native_bf16("cpu")
    # A second invocation finds everything done and starts no process.
    again = run_plan(load_plan(str(root / "plan.yaml")), out, only=lambda s: s.name in names, jobs=2)
    assert again["runs"]["distill_s1"]["seconds_train"] == index["runs"]["distill_s1"]["seconds_train"]
    assert not list((out / "logs").glob("*.result.json")) and not list((out / "logs").glob("*.job.json"))


@pytest.mark.integration
def test_the_teacher_run_leaves_float16_weights_that_its_students_distil_from_and_release_roles_too(
    tiny_results,
):
    _, out, _ = tiny_results
    weights = out / "teacher_s1" / "weights.pt"
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert (out / "teacher_s1" / "weights.pt.sha256").read_text() == f"{digest}  weights.pt\n"
    released = torch.load(weights, map_location="cpu", weights_only=True)
    last = torch.load(out / "teacher_s1" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert released["global_step"] == last["global_step"] and released["dfss_release"]["weights"] == "ema"
    for key, value in released["state_dict"].items():
        assert key.startswith("ema.module.") and (
            not value.is_floating_point() or value.dtype == torch.float16
        )
    # runs of the plan's release roles leave them too (the model's own weights: students keep no EMA)
    assert (
        not (out / "student_s1" / "weights.pt").exists()
        and not (out / "weighted_a2_s1" / "weights.pt").exists()
    )
    student = torch.load(out / "distill_s2" / "weights.pt", map_location="cpu", weights_only=True)
    assert student["dfss_release"]["weights"] == "model" and all(
        k.startswith("model.") for k in student["state_dict"]
    )


@pytest.mark.integration
def test_a_plan_committed_without_checkpoints_finishes_elsewhere_from_the_teachers_weights(
    tiny_results, tmp_path
):
    """What git keeps of a plan folder (.gitignore: no checkpoints, CSV, logs or predictions) is enough
    to train a missing student on another machine: finished runs stay as they are."""
    root, serial, _ = tiny_results
    out = tmp_path / "clone"
    ignored = shutil.ignore_patterns("checkpoints", "csv", "logs", "predictions.json", "*.log")
    shutil.copytree(serial, out, ignore=ignored)
    shutil.rmtree(out / "distill_s2")  # not finished when the machine went away
    kept = {p: p.read_bytes() for p in out.glob("*/eval/metrics.json")}
    again = run_plan(load_plan(str(root / "plan.yaml")), out, only=lambda s: s.role != "ablation")
    assert again["finished"] and (out / "distill_s2" / "eval" / "metrics.json").is_file()
    assert {p: p.read_bytes() for p in kept} == kept  # nothing else trained or evaluated again
    assert not (out / "teacher_s1" / "checkpoints").exists()
    config = torch.load(out / "distill_s2" / "checkpoints" / "last.ckpt", weights_only=True)["dfss_config"]
    assert config["teacher"]["ckpt_path"] == str(out / "teacher_s1" / "weights.pt")
    # the same teacher weights, so the same run as in the original folder
    assert json.loads((out / "distill_s2" / "eval" / "metrics.json").read_text()) == json.loads(
        (serial / "distill_s2" / "eval" / "metrics.json").read_text()
    )


@pytest.mark.integration
def test_a_run_folder_deleted_to_redo_it_gets_its_new_times_not_the_old_ones_added(tiny_results, tmp_path):
    root, serial, _ = tiny_results
    out = tmp_path / "out"
    shutil.copytree(serial, out)
    index = json.loads((out / "index.json").read_text())
    for key in ("seconds_train", "seconds_eval"):  # the deleted run's old times, made unmistakable
        index["runs"]["student_s1"][key] = 1e6
    index["runs"]["student_s1"]["trained_on"] = [{"device": "an old machine"}]
    (out / "index.json").write_text(json.dumps(index))
    shutil.rmtree(out / "student_s1")
    again = run_plan(load_plan(str(root / "plan.yaml")), out, only=lambda s: s.name == "student_s1")
    entry = again["runs"]["student_s1"]
    assert 0 < entry["seconds_train"] < 1e5 and 0 < entry["seconds_eval"] < 1e5
    assert [m["device"] for m in entry["trained_on"]] == [environment()["device"]]
    assert (out / "student_s1" / "eval" / "metrics.json").is_file()


@pytest.mark.integration
def test_a_run_stopped_and_resumed_counts_the_training_time_and_machine_of_both_parts(tiny_results, tmp_path):
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    root, _, _ = tiny_results
    plan = yaml.safe_load((root / "plan.yaml").read_text())
    stopper = [
        "+callbacks.signal_at_step._target_=tests.helpers.signals.SignalAtStep",
        "+callbacks.signal_at_step.step=1",
    ]
    plan["student"]["overrides"] = stopper
    (tmp_path / "stopped.yaml").write_text(yaml.safe_dump(plan))
    out, only = tmp_path / "out", (lambda s: s.name == "student_s1")
    with pytest.raises(SIGTERMException):  # a real SIGTERM after step 1 of 2
        run_plan(load_plan(str(tmp_path / "stopped.yaml")), out, only=only)
    part = json.loads((out / "student_s1" / "stopped_parts.json").read_text())
    assert len(part) == 1 and part[0]["seconds_train"] > 0
    assert read_checkpoint(out / "student_s1" / "checkpoints" / "last.ckpt")["global_step"] == 1
    assert "seconds_train" not in json.loads((out / "index.json").read_text())["runs"]["student_s1"]
    part[0]["seconds_train"] = 1000.0  # the first part's time, made unmistakable
    (out / "student_s1" / "stopped_parts.json").write_text(json.dumps(part))

    index = run_plan(load_plan(str(root / "plan.yaml")), out, only=only)  # resumed to its end
    entry = index["runs"]["student_s1"]
    assert 1000 < entry["seconds_train"] < 1000 + 1e4
    assert len(entry["trained_on"]) == 2 and index["counts_stopped_parts"] is True
    assert not (out / "student_s1" / "stopped_parts.json").exists()
    assert (out / "student_s1" / "eval" / "metrics.json").is_file()


@pytest.mark.integration
def test_a_run_whose_evaluation_failed_keeps_its_training_time_for_the_call_that_evaluates_it(
    tiny_results, tmp_path
):
    from hydra.errors import ConfigCompositionException

    root, _, _ = tiny_results
    plan = yaml.safe_load((root / "plan.yaml").read_text())
    plan["eval"] = [*plan["eval"], "no_such_setting=1"]  # the evaluation fails after the training
    (tmp_path / "bad_eval.yaml").write_text(yaml.safe_dump(plan))
    out, only = tmp_path / "out", (lambda s: s.name == "student_s1")
    with pytest.raises(ConfigCompositionException):
        run_plan(load_plan(str(tmp_path / "bad_eval.yaml")), out, only=only)
    run_dir = out / "student_s1"
    assert (run_dir / "metrics.json").is_file() and not (run_dir / "eval" / "metrics.json").exists()
    trained = json.loads((run_dir / "trained.json").read_text())
    assert trained["seconds_train"] > 0 and trained["from_scratch"] is True
    trained["seconds_train"] = 1000.0  # the training's time, made unmistakable
    (run_dir / "trained.json").write_text(json.dumps(trained))

    index = run_plan(load_plan(str(root / "plan.yaml")), out, only=only)  # evaluates it, trains nothing
    entry = index["runs"]["student_s1"]
    assert entry["seconds_train"] == 1000.0 and entry["seconds_eval"] > 0
    assert [m["device"] for m in entry["trained_on"]] == [environment()["device"]]
    assert not (run_dir / "trained.json").exists()
    assert (run_dir / "eval" / "metrics.json").is_file()


@pytest.mark.integration
def test_a_failed_parallel_run_is_named_with_its_log_and_its_students_are_not_run(tiny_results, tmp_path):
    from dfss.results.runner import RunFailed

    root, _, _ = tiny_results
    plan = yaml.safe_load((root / "plan.yaml").read_text())
    plan["teacher"]["overrides"] = ["+trainer.no_such_trainer_flag=1"]
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan))
    out = tmp_path / "out"
    with pytest.raises(RunFailed) as caught:
        run_plan(
            load_plan(str(tmp_path / "plan.yaml")),
            out,
            jobs=2,
            only=lambda s: s.name in {"teacher_s1", "distill_s1"},
        )
    message = str(caught.value)
    assert "2 of 2 runs did not finish" in message
    assert f"teacher_s1: exit status 1, log {out / 'logs' / 'teacher_s1.log'}" in message
    assert "distill_s1: not run, its teacher run teacher_s1 failed" in message
    assert "no_such_trainer_flag" in (out / "logs" / "teacher_s1.log").read_text()
    assert (out / "logs" / "teacher_s1.job.json").is_file()  # what the failed run was given, kept
    index = json.loads((out / "index.json").read_text())
    assert "finished" not in index and index["invocations"][-1]["jobs"] == 2
    assert not (out / "distill_s1").exists()


@pytest.mark.integration
def test_cpu_calibration_trains_the_plans_own_teacher_and_judges_its_test_map50(tiny_results, tmp_path):
    calibrate = bench_script("calibrate_cpu", "experiments")
    root, serial, _ = tiny_results
    argv = [
        "--plan",
        str(root / "plan.yaml"),
        "--data-dir",
        str(root / "data"),
        "--out",
        str(tmp_path),
        "--name",
        "try1",
    ]
    summary = calibrate.main(argv)
    run = tmp_path / "try1"
    ours = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["dfss_config"]
    plans = torch.load(
        serial / "teacher_s1" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True
    )
    plans = plans["dfss_config"]
    # The plan's teacher stage, on the CPU: same model, schedule, seed and data set.
    assert ours["model"] == plans["model"] and ours["seed"] == plans["seed"] == 1
    assert (
        ours["trainer"]["max_epochs"] == plans["trainer"]["max_epochs"]
        and ours["trainer"]["accelerator"] == "cpu"
    )
    assert ours["data"]["root"] == plans["data"]["root"] and ours["data"]["num_workers"] == 1
    map50 = json.loads((run / "eval" / "metrics.json").read_text())["map50"]
    assert summary["teacher_test_map50"] == map50
    assert summary["verdict"].startswith("in range" if 0.60 <= map50 <= 0.75 else "out of range")
    assert json.loads((run / "calibration.json").read_text()) == summary
    # It names what it calibrates, so the report can tell a record of the frozen preset from older tries.
    assert summary["preset"] == str(root / "synth.yaml") and summary["preset_version"] == "1.0"
    # Called again, it does not train again: it only evaluates.
    stamp = (run / "checkpoints" / "last.ckpt").stat().st_mtime_ns
    assert calibrate.main(argv)["teacher_test_map50"] == map50
    assert (run / "checkpoints" / "last.ckpt").stat().st_mtime_ns == stamp


def test_report_quotes_the_calibration_record_of_the_frozen_preset_version_only(tmp_path):
    from dfss.report.targets import calibration

    results = Results(tmp_path / "cpu", {"plan": {"synth_preset": "small"}}, runs=())  # no teacher run yet
    version = load_preset("results").version
    records = {
        "try_a_too_easy": ("results", version, 0.771),
        "try_b_other_version": ("results", version + "-old", 0.70),
        "try_c_other_preset": ("small", version, 0.70),
        "try_d": ("results", version, 0.7312),
    }
    for name, (preset, ver, map50) in records.items():
        (tmp_path / "calibration" / name).mkdir(parents=True)
        record = {"teacher_test_map50": map50, "preset": preset, "preset_version": ver}
        (tmp_path / "calibration" / name / "calibration.json").write_text(json.dumps(record))
    (tmp_path / "calibration" / "try_0_unversioned").mkdir()  # written before records named a version
    (tmp_path / "calibration" / "try_0_unversioned" / "calibration.json").write_text(
        '{"teacher_test_map50": 0.7}'
    )
    verdict = calibration(results)
    # The cpu plan's set is not the benchmark: no verdict, but the benchmark's own calibration is quoted.
    assert verdict.met is None and "which is not calibrated" in verdict.measured
    assert f"version `{version}`" in verdict.measured
    assert (
        "test mAP50 0.731" in verdict.measured and str(tmp_path / "calibration" / "try_d") in verdict.measured
    )
    for other in ("try_a", "try_b", "try_c", "try_0"):
        assert other not in verdict.measured
    shutil.rmtree(tmp_path / "calibration" / "try_d")
    assert "no calibration record of that version" in calibration(results).measured
    (tmp_path / "calibration" / "try_a_too_easy" / "calibration.json").write_text("{not json")
    with pytest.raises(ResultsError, match=r"try_a_too_easy/calibration.json: not valid json"):
        calibration(results)


@pytest.mark.integration
def test_report_tables_plots_and_wandb_come_from_the_runs(tiny_results, tmp_path, monkeypatch):
    from dfss.report.cli import main as report_main
    from dfss.report.stats import paired_difference

    _, out, _ = tiny_results
    monkeypatch.setenv("WANDB_MODE", "offline")
    report = tmp_path / "docs" / "results.md"
    assert report_main(["--results", str(out), "--out", str(report)]) == 0
    text = report.read_text()
    for heading in (
        "## Targets",
        "(1)–(3) Teacher, FCOS, DFSS",
        "(4) Class-weighted loss",
        "(5) Unknown threshold T",
        "(6) KD ablations",
        "## Per-class AP50",
        "## Precision–recall",
        "## Learning curves",
    ):
        assert heading in text
    calls = json.loads((out / "index.json").read_text())["invocations"]
    minutes = sum(c["seconds"] for c in calls) / 60
    assert f"wall clock {minutes:.1f} min over {len(calls)} invocation" in text
    assert "(a run stopped and resumed counts every part)" in text  # a plan begun by this runner
    # Every embedded plot exists next to the report and is a real PNG.
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(images) == 6
    for image in images:
        with Image.open(report.parent / image) as picture:
            assert picture.format == "PNG" and picture.size[0] > 300
    # The FCOS row is the mean and spread of the two student runs' test mAP50.
    values = [
        json.loads((out / f"student_s{s}" / "eval" / "metrics.json").read_text())["map50"] for s in (1, 2)
    ]
    assert f"| FCOS (no KD) | {statistics.fmean(values):.3f} ± {statistics.stdev(values):.3f} |" in text
    # Each target is judged, and the judgement agrees with the measured means.
    targets = json.loads((report.parent / "results" / "targets.json").read_text())
    results = load_results(out)
    distill = statistics.fmean(r.metrics["map50"] for r in results.arm("distill"))
    gain = next(t for t in targets if t["target"].startswith("distillation gain"))
    difference = paired_difference(results.arm("distill"), results.arm("student"), "map50")
    assert difference.method == "seeds" and difference.mean == pytest.approx(
        distill - statistics.fmean(values)
    )
    assert gain["met"] == (difference.mean >= 0.065 and difference.low > 0)
    assert "| DFSS − FCOS | difference (95 % interval) |" in text and difference.fmt() in text
    # The one-seed ablation's Δ has an image-bootstrap interval from the two evaluations' matches50.npz.
    ablation = paired_difference(results.arm("ablation"), results.arm("distill"), "map50")
    assert ablation.method == "images" and ablation.low <= ablation.high
    assert "(1 seed, image bootstrap)" in ablation.fmt() and ablation.fmt() in text
    assert all(f"| {t['target']} |" in text for t in targets)
    # The one-seed ablations are read against DFSS's own spread over its seeds.
    low, high = sorted(r.metrics["map50"] for r in results.arm("distill"))
    assert f"{(high - low) * 100:.1f} points apart: a Δ smaller than that is within seed-to-seed" in text
    # A demo-scale plan is not the benchmark: the report says which version of the benchmark preset
    # is current.
    version = load_preset("results").version
    assert f"the benchmark preset 'results' is version `{version}`" in text
    # One W&B offline run with the plots.
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))
    assert len(list((runs[0] / "files" / "media" / "images").rglob("*.png"))) == 6


@pytest.mark.integration
def test_a_second_plan_follows_as_a_section_with_its_own_plots(tiny_results, tmp_path):
    from dfss.report.cli import main as report_main

    _, out, _ = tiny_results
    report = tmp_path / "results.md"
    assert report_main(["--results", str(out), "--also", str(out), "--out", str(report), "--no-wandb"]) == 0
    text = report.read_text()
    main, _, section = text.partition("\n\n## DFSS results on the synthetic X-ray benchmark")
    assert section and "## Targets" in main and "### Targets" in section and "\n## " not in section
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", section)
    assert len(images) == 6 and all(image.startswith(f"results/{out.name}/") for image in images)
    assert all((tmp_path / image).is_file() for image in images)


@pytest.mark.integration
def test_a_plan_still_under_way_is_reported_from_its_finished_runs_with_partial_only(
    tiny_results, tmp_path, capsys
):
    from dfss.report.cli import main as report_main

    _, out, index = tiny_results
    # The index lists every run of the plan, begun or not, with its role and seed.
    assert index["plan_runs"] == [
        {"name": s.name, "role": s.role, "seed": s.seed}
        for s in expand(load_plan(str(out.parent / "plan.yaml")))
    ]
    folder = tmp_path / "under_way"
    shutil.copytree(out, folder, ignore=shutil.ignore_patterns("*.ckpt", "wandb"))
    edited = json.loads((folder / "index.json").read_text())
    del edited["runs"]["student_s2"]["evals"]  # stopped before its evaluation
    del edited["runs"]["weighted_a2_s2"]  # not begun: known to the index only as a run of the plan
    (folder / "index.json").write_text(json.dumps(edited))
    report = tmp_path / "results.md"
    arguments = ["--results", str(folder), "--out", str(report), "--no-wandb"]
    assert report_main(arguments) == 2
    assert "run student_s2 in" in capsys.readouterr().err and not report.exists()
    assert report_main([*arguments, "--partial"]) == 0
    text = report.read_text()
    assert "6 of its 8 runs have finished; not yet: `student_s2`, `weighted_a2_s2`." in text
    assert "| student_s2 | student | 2 | - | - | not finished |" in text
    assert "| weighted_a2_s2 | weighted | 2 | - | - | not finished |" in text
    # The FCOS row is seed 1 alone; the T sweep is the one alpha = 2 run that finished.
    student = json.loads((out / "student_s1" / "eval" / "metrics.json").read_text())["map50"]
    assert f"| FCOS (no KD) | {student:.3f} | " in text
    assert "The runs with alpha = 2 (weighted_a2_s1), evaluated again" in text
    # A finished plan's report has no such banner.
    assert (
        report_main(["--results", str(out), "--out", str(tmp_path / "full.md"), "--no-wandb", "--partial"])
        == 0
    )
    assert "still under way" not in (tmp_path / "full.md").read_text()


def test_report_of_an_incomplete_folder_is_a_clear_error(tmp_path, capsys):
    from dfss.report.cli import main as report_main

    assert report_main(["--results", str(tmp_path), "--out", str(tmp_path / "r.md"), "--no-wandb"]) == 2
    assert f"{tmp_path / 'index.json'} is missing" in capsys.readouterr().err


@pytest.mark.integration
def test_shipping_copies_the_teacher_and_the_best_dfss_run_by_val_map50_with_sha256_and_model_card(
    tiny_results, tmp_path
):
    from dfss.results.ship import chosen_runs, ship

    _, out, _ = tiny_results
    val = {
        n: json.loads((out / n / "metrics.json").read_text())["val/map50"]
        for n in ("distill_s1", "distill_s2")
    }
    best = max(sorted(val), key=val.get)  # ties: the lower seed
    assert chosen_runs(out) == [("teacher", "teacher_s1"), ("dfss", best)]
    shipped = ship(out, tmp_path / "weights")
    assert [p.name for p in shipped] == ["teacher_yolox_nano.pt", "dfss_fcos_r18_64.pt"]
    for path, run in zip(shipped, ("teacher_s1", best), strict=True):
        assert path.read_bytes() == (out / run / "weights.pt").read_bytes()
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert path.with_name(path.name + ".sha256").read_text() == f"{digest}  {path.name}\n"
        card = path.with_suffix(".md").read_text()
        # the card is of the shipped file, scored on the plan's test split
        assert str(path) in card and "test" in card
    # a plan under way, no DFSS run finished: the teacher alone; without a finished teacher: an error
    clone = tmp_path / "under_way"
    shutil.copytree(out, clone, ignore=shutil.ignore_patterns("checkpoints", "csv", "logs"))
    for run in ("distill_s1", "distill_s2"):
        (clone / run / "weights.pt").unlink()
    assert chosen_runs(clone) == [("teacher", "teacher_s1")]
    (clone / "teacher_s1" / "weights.pt").unlink()
    with pytest.raises(ConfigError, match=r"no finished teacher run with weights\.pt \(\['teacher_s1'\]\)"):
        chosen_runs(clone)


def test_a_run_that_will_resume_is_expected_to_take_only_the_rest(tmp_path):
    from dfss.results.plan import RunSpec
    from dfss.results.runner import expected_seconds

    runs = {  # two finished distillations: the longer one, training and evaluation, predicts the others
        "distill_s1": {"role": "distill", "seconds_train": 5000.0, "seconds_eval": 60.0},
        "distill_s2": {"role": "distill", "seconds_train": 5500.0, "seconds_eval": 70.0},
    }
    spec = RunSpec("weighted_a2_s1", "weighted", "distill_weighted", 1, (), alpha=2.0)
    assert expected_seconds(runs, spec, tmp_path) == 5570.0  # not begun
    run_dir = tmp_path / "weighted_a2_s1"
    (run_dir / "checkpoints").mkdir(parents=True)
    parts = [{"seconds_train": 2000.0, "trained_on": {}}, {"seconds_train": 1000.0, "trained_on": {}}]
    (run_dir / "stopped_parts.json").write_text(json.dumps(parts))
    assert expected_seconds(runs, spec, tmp_path) == 5570.0  # no last.ckpt: it will start again
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"")
    assert expected_seconds(runs, spec, tmp_path) == 2570.0  # resumes: the rest of the training, and eval
    parts.append({"seconds_train": 4000.0, "trained_on": {}})  # slower than the longest run so far
    (run_dir / "stopped_parts.json").write_text(json.dumps(parts))
    assert expected_seconds(runs, spec, tmp_path) == 70.0  # its evaluation at least
    assert expected_seconds(runs, spec) == 5570.0  # no folder given: the whole run


@pytest.mark.integration
def test_a_time_budget_starts_only_runs_expected_to_end_within_it(tiny_results, tmp_path):
    from dfss.results.runner import expected_seconds

    root, serial, _ = tiny_results
    out = tmp_path / "budget"
    shutil.copytree(serial, out)
    index = json.loads((out / "index.json").read_text())
    for entry in index["runs"].values():  # FCOS runs take an hour here, distillations a second
        for key in [k for k in entry if k.startswith("seconds_")]:
            entry[key] = 3600.0 if entry["role"] == "student" else 1.0
    (out / "index.json").write_text(json.dumps(index))
    for name in ("student_s1", "distill_s2"):
        shutil.rmtree(out / name)
    specs = {s.name: s for s in expand(load_plan(str(root / "plan.yaml")))}
    assert expected_seconds(index["runs"], specs["student_s1"]) == 3600 * 2  # training and its one eval
    # a distillation's: the longest, the alpha = 2 run re-scored at T = 0.5 (training and 2 evaluations)
    assert expected_seconds(index["runs"], specs["ablation_kd_no_cls_s1"]) == 3.0
    assert expected_seconds({}, specs["student_s1"]) is None
    again = run_plan(load_plan(str(root / "plan.yaml")), out, time_budget=600)
    assert again["not_started"] == ["student_s1"] and "finished" not in again
    assert not (out / "student_s1").exists() and (out / "distill_s2" / "eval" / "metrics.json").is_file()
    # with room for it, the next call trains it and the plan is finished
    index = json.loads((out / "index.json").read_text())
    for name in ("student_s1", "student_s2"):
        index["runs"][name]["seconds_train"] = index["runs"][name]["seconds_eval"] = 1.0
    (out / "index.json").write_text(json.dumps(index))
    final = run_plan(load_plan(str(root / "plan.yaml")), out, time_budget=600, jobs=1)
    assert "not_started" not in final and final["finished"] and (out / "student_s1" / "eval").is_dir()
