"""The training pipeline for real: Hydra config -> Lightning Trainer -> checkpoints and metrics."""

from __future__ import annotations

import csv
import subprocess
import sys
import time
import warnings
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from hydra.utils import instantiate

from dfss.config import compose_config
from dfss.data.datamodule import XrayDataModule
from dfss.lit import DistillModule, StudentModule, TeacherModule
from dfss.models.checkpoints import read_checkpoint
from dfss.precision import native_bf16
from dfss.train import build_module, expected_lightning_warnings_off, run
from tests.helpers.cli import cli_env
from tests.helpers.data import tiny_train_overrides

ROOT = Path(__file__).parents[1]
EXPERIMENTS = sorted(p.stem for p in (ROOT / "dfss" / "conf" / "experiment").glob("*.yaml"))


def _tiny(root: Path, extra: list[str] = ()) -> list[str]:
    return tiny_train_overrides(root, extra)


@pytest.fixture(scope="module")
def teacher_ckpt(synth_tiny, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("teacher")
    # The teacher's own augmentation path: mosaic + mixup in epoch 0, closed (and L1 on) in epoch 1.
    teacher_aug = [
        "data.mosaic_prob=1.0",
        "data.mixup_prob=0.5",
        "data.close_mosaic_epoch=1",
        "module.l1_from_epoch=1",
        "trainer.max_epochs=2",
    ]
    run(
        compose_config(
            "train", _tiny(synth_tiny, ["experiment=demo_teacher", "test=false", *teacher_aug]), out
        )
    )
    return out / "checkpoints" / "last.ckpt"


@pytest.mark.integration
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_builds(experiment, synth_tiny, teacher_ckpt, tmp_path):
    assert {"teacher", "student", "distill", "distill_weighted"} <= set(EXPERIMENTS)
    cfg = compose_config(
        "train",
        [f"experiment={experiment}", f"data.root={synth_tiny}", f"teacher.ckpt_path={teacher_ckpt}"]
        if "distill" in experiment
        else [f"experiment={experiment}", f"data.root={synth_tiny}"],
        tmp_path,
    )
    datamodule = instantiate(cfg.data)
    assert isinstance(datamodule, XrayDataModule)
    if "distill" in experiment:
        # The benchmark experiments distil into FCOS-R50 from YOLOX-s; the tiny teacher is a nano one.
        cfg.teacher.ckpt_path = str(teacher_ckpt)
        cfg.model = compose_config("train", ["model=fcos_r18"], tmp_path).model
    module = build_module(cfg, datamodule)
    expected = (
        DistillModule
        if "distill" in experiment
        else TeacherModule
        if "teacher" in experiment
        else StudentModule
    )
    assert type(module) is expected
    assert cfg.trainer.max_epochs >= 1 and cfg.experiment_name == experiment
    for callback in cfg.callbacks.values():
        instantiate(callback)


@pytest.mark.integration
def test_teacher_checkpoint_holds_config_classes_and_ema(teacher_ckpt):
    checkpoint = read_checkpoint(teacher_ckpt)
    assert checkpoint["dfss_config"]["model"]["net"]["_target_"] == "dfss.models.yolox.yolox_nano"
    assert [c["name"] for c in checkpoint["dfss_classes"]][:3] == ["knife", "pliers", "scissors"]
    assert any(k.startswith("ema.module.") for k in checkpoint["state_dict"])


@pytest.mark.integration
def test_student_trains_validates_tests_and_logs_every_loss_part(synth_tiny, tmp_path):
    metrics = run(compose_config("train", _tiny(synth_tiny, ["experiment=demo_student"]), tmp_path))
    for key in ("train/loss_epoch", "val/map50", "val/map", "test/map50", "test/map50_dangerous"):
        assert key in metrics, key
    header = (tmp_path / "csv" / "version_0" / "metrics.csv").read_text().splitlines()[0].split(",")
    for part in (
        "train/loss_cls_epoch",
        "train/loss_box_epoch",
        "train/loss_ctr_epoch",
        "train/loss_dfl_epoch",
    ):
        assert part in header, part
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.integration
def test_distillation_trains_with_nonzero_kd_terms_and_no_teacher_in_checkpoints(
    synth_tiny, teacher_ckpt, tmp_path
):
    overrides = _tiny(
        synth_tiny, ["experiment=demo_distill", f"teacher.ckpt_path={teacher_ckpt}", "test=false"]
    )
    overrides.append("loss.distill.cls_points=all")  # an untrained teacher is confident nowhere
    overrides.append("loss.distill.bbox_points=all")
    run(compose_config("train", overrides, tmp_path))
    rows = (tmp_path / "csv" / "version_0" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    values = [dict(zip(header, row.split(","), strict=False)) for row in rows[1:]]
    logged = [r for r in values if r.get("train/loss_kd_loc_epoch")]
    assert logged, "the KD terms were not logged"
    for term in ("train/loss_kd_loc_epoch", "train/loss_kd_cls_epoch", "train/loss_kd_bbox_epoch"):
        assert float(logged[-1][term]) > 0, term
    state = read_checkpoint(tmp_path / "checkpoints" / "last.ckpt")["state_dict"]
    assert not any(k.startswith("teacher.") for k in state)
    assert any(k.startswith("model.") for k in state)
    # ... and such a checkpoint resumes (the teacher is put back from teacher.ckpt_path).
    resumed = [o for o in overrides if not o.startswith("trainer.max_epochs")] + [
        "trainer.max_epochs=2",
        "ckpt_path=last",
    ]
    run(compose_config("train", resumed, tmp_path))
    assert read_checkpoint(tmp_path / "checkpoints" / "last.ckpt")["global_step"] == 4


@pytest.mark.integration
def test_frozen_teacher_stays_frozen_and_in_eval_mode(synth_tiny, teacher_ckpt, tmp_path):
    cfg = compose_config(
        "train", _tiny(synth_tiny, ["experiment=demo_distill", f"teacher.ckpt_path={teacher_ckpt}"]), tmp_path
    )
    module = build_module(cfg, instantiate(cfg.data))
    module.train()
    assert not module.teacher.training and module.model.training
    assert not any(p.requires_grad for p in module.teacher.parameters())
    optimizer = module.optimizer_factory(
        __import__("dfss.lit.detection", fromlist=["param_groups"]).param_groups(module.model)
    )
    optimised = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert not optimised & {id(p) for p in module.teacher.parameters()}


@pytest.mark.integration
def test_resume_from_last_checkpoint_continues_the_run(synth_tiny, tmp_path):
    first = _tiny(synth_tiny, ["experiment=demo_student", "test=false"])
    run(compose_config("train", first, tmp_path))
    step_one = read_checkpoint(tmp_path / "checkpoints" / "last.ckpt")["global_step"]
    resumed = [o for o in first if not o.startswith("trainer.max_epochs")] + [
        "trainer.max_epochs=2",
        "ckpt_path=last",
    ]
    run(compose_config("train", resumed, tmp_path))
    checkpoint = read_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert checkpoint["global_step"] == 2 * step_one  # the second epoch ran on top of the first
    assert checkpoint["loops"]["fit_loop"]["epoch_progress"]["total"]["processed"] == 2


@pytest.mark.integration
def test_wandb_runs_offline_and_writes_its_run_files(synth_tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run(compose_config("train", _tiny(synth_tiny, ["experiment=demo_student", "logger=wandb"]), tmp_path))
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    assert list(runs[0].glob("run-*.wandb")), "no W&B run file written"
    # The test stage's image-alarm ROC went in as a table behind a line plot.
    tables = list((runs[0] / "files" / "media" / "table").rglob("*alarm_roc*.table.json"))
    assert len(tables) == 1 and "false_alarm_rate" in tables[0].read_text()


@pytest.mark.integration
def test_two_process_ddp_trains_checkpoints_and_evaluates_like_one_process(synth_tiny, tmp_path):
    """trainer=ddp_sim: 2 CPU processes train and checkpoint into ONE run folder; evaluating a
    checkpoint with 2 processes gives exactly the metrics of 1 process (each image scored once,
    the sampler's padding removed)."""
    base = _tiny(synth_tiny, ["experiment=demo_student", "test=false"])
    fit_and_test = [o for o in base if o != "test=false"] + ["trainer=ddp_sim"]
    run(compose_config("train", fit_and_test, tmp_path / "ddp_fit_test"))  # two spawned stages
    header = (tmp_path / "ddp_fit_test" / "csv" / "version_0" / "metrics.csv").read_text().splitlines()[0]
    assert "val/map50" in header and "test/map50" in header  # both stages' columns survive
    ckpt = tmp_path / "ddp_fit_test" / "checkpoints" / "last.ckpt"
    assert ckpt.is_file() and not (tmp_path / "ddp_fit_test" / "checkpoints" / "rank_1").exists()
    evaluate = [o for o in base if o != "test=false"] + [
        "train=false",
        f"ckpt_path={ckpt}",
        "trainer.limit_test_batches=1.0",
    ]
    single = run(compose_config("train", evaluate, tmp_path / "single_eval"))
    ddp = run(compose_config("train", [*evaluate, "trainer=ddp_sim"], tmp_path / "ddp_eval"))
    assert single["test/num_images"] == 5  # an odd split: the 2-rank sampler pads it with a repeat
    assert single["test/num_detections"] > 0
    keys = [k for k in single if k.startswith(("test/map", "test/num_"))]
    assert "test/map50" in keys
    assert {k: ddp[k] for k in keys} == {k: single[k] for k in keys}


@pytest.mark.integration
@pytest.mark.parametrize("trainer", ["cpu", "ddp_sim"])
def test_multirun_sweeps_alpha_from_the_command_line(trainer, synth_tiny, tmp_path):
    """A Hydra multirun over alpha, with single-process and with 2-process DDP jobs: one folder per job.
    (With DDP one job of the sweep: two of them would only time the same path twice.)"""
    overrides = [o for o in _tiny(synth_tiny, ["test=false"]) if o != "trainer=cpu"] + [f"trainer={trainer}"]
    alphas = ["1", "4"] if trainer == "cpu" else ["4"]
    command = [
        sys.executable,
        str(ROOT / "train.py"),
        "-m",
        "experiment=demo_student",
        f"loss.dangerous_weight={','.join(alphas)}",
        *overrides,
        f"hydra.sweep.dir={tmp_path}",
    ]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted(p for p in tmp_path.iterdir() if p.is_dir() and p.name.isdigit())
    assert [j.name for j in jobs] == [str(i) for i in range(len(alphas))]
    # every logged epoch figure is synced across the ranks (or the same on every rank): Lightning has
    # nothing to warn about (it printed 63 "use sync_dist=True" warnings for a ddp_sim run before)
    assert "sync_dist" not in proc.stdout + proc.stderr
    summary = list(csv.DictReader((tmp_path / "summary.csv").read_text().splitlines()))
    if len(alphas) > 1:  # a column per setting that differs between the jobs
        assert [(r["job"], r["loss.dangerous_weight"]) for r in summary] == [("0", "1"), ("1", "4")]
    assert len(summary) == len(alphas)
    assert all(r["status"] == "done" and float(r["val/map50"]) >= 0 for r in summary)
    weights = [
        yaml.safe_load((j / ".hydra" / "config.yaml").read_text())["loss"]["dangerous_weight"] for j in jobs
    ]
    assert weights == [int(a) for a in alphas]
    assert all((j / "checkpoints" / "last.ckpt").is_file() for j in jobs)
    for job in jobs:  # each job's log holds Lightning's messages and the run summary, not only the console
        text = (job / "train.log").read_text()
        assert "GPU available" in text and "run summary" in text and "val/map50" in text, text[-2000:]
        assert f"best checkpoint: {job}" in text


def test_official_yolox_weights_serve_as_teacher(synth_tiny, tmp_path):
    """teacher.ckpt_path may be an official Megvii-style file ({'model': state_dict}, 80 COCO classes):
    the teacher is built from teacher.model and its class head re-initialised for the data's classes."""
    from dfss.models.yolox import yolox_nano

    official = tmp_path / "yolox_nano.pth"
    torch.save({"model": yolox_nano(80).state_dict()}, official)
    cfg = compose_config(
        "train", _tiny(synth_tiny, ["experiment=demo_distill", f"teacher.ckpt_path={official}"]), tmp_path
    )
    module = build_module(cfg, instantiate(cfg.data))
    assert module.teacher.head.cls_preds[0].out_channels == 20
    assert not any(p.requires_grad for p in module.teacher.parameters())


def test_missing_teacher_checkpoint_is_a_clear_error(synth_tiny, tmp_path):
    from dfss.models.checkpoints import CheckpointError

    cfg = compose_config(
        "train",
        _tiny(synth_tiny, ["experiment=demo_distill", f"teacher.ckpt_path={tmp_path}/nope.ckpt"]),
        tmp_path,
    )
    with pytest.raises(CheckpointError, match=r"checkpoint not found: .*nope\.ckpt"):
        build_module(cfg, instantiate(cfg.data))


@pytest.mark.integration
def test_sweep_through_the_submitit_launcher(synth_tiny, tmp_path):
    """hydra/launcher=local schedules jobs with submitit, as hydra/launcher=slurm does on a cluster."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    command = [
        sys.executable,
        str(ROOT / "train.py"),
        "-m",
        "hydra/launcher=local",
        "experiment=demo_student",
        "loss.dangerous_weight=2",
        *_tiny(synth_tiny, ["test=false"]),
        f"hydra.sweep.dir={tmp_path}",
    ]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "0" / "checkpoints" / "last.ckpt").is_file()
    assert list((tmp_path / ".submitit").glob("*/*_result.pkl")), "submitit did not run the job"


@pytest.mark.integration
def test_optuna_search_runs_trials_and_reports_the_best(synth_tiny, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    command = [
        sys.executable,
        str(ROOT / "train.py"),
        "hparams_search=optuna",
        "experiment=demo_student",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.sampler.n_startup_trials=1",
        *_tiny(synth_tiny, ["test=false"]),
        f"hydra.sweep.dir={tmp_path}",
    ]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    alpha = results["best_params"]["loss.dangerous_weight"]
    assert alpha >= 1.0 and alpha <= 4.0  # inside the search interval
    assert (tmp_path / "1" / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.integration
def test_tensorboard_logger_writes_event_files_and_null_callbacks_are_off(synth_tiny, tmp_path):
    overrides = [o for o in _tiny(synth_tiny, ["experiment=demo_student", "test=false"]) if o != "logger=csv"]
    # A callback set to null on the command line is switched off (it crashed the Trainer before).
    off = [
        "callbacks.rich_progress_bar=null",
        "trainer.enable_progress_bar=false",
        "callbacks.metrics_history=null",
    ]
    run(compose_config("train", [*overrides, "logger=tensorboard", *off], tmp_path))
    assert list((tmp_path / "tensorboard").rglob("events.out.tfevents.*"))
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert not (tmp_path / "metrics_history.jsonl").exists()


@pytest.mark.integration
def test_speed_switches_put_the_detector_in_channels_last_without_changing_checkpoint_keys(
    synth_tiny, tmp_path
):
    """trainer.channels_last (on in trainer=gpu) converts the model at set-up; checkpoint keys stay."""
    cfg = compose_config(
        "train",
        _tiny(synth_tiny, ["experiment=demo_student", "test=false", "trainer.channels_last=true"]),
        tmp_path,
    )
    datamodule = instantiate(cfg.data)
    module = build_module(cfg, datamodule)
    trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    trainer.fit(module, datamodule=datamodule)
    conv = next(
        m for m in module.model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)
    )
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert not conv.weight.is_contiguous()  # really converted, not a 1x1 that is both
    assert set(module.state_dict()) == set(build_module(cfg, datamodule).state_dict())


@pytest.mark.integration
def test_trainer_cpu_picks_bf16_and_channels_last_where_native_and_one_override_turns_both_off(
    synth_tiny, tmp_path
):
    """trainer=cpu: precision auto -> bf16-mixed + channels_last on a CPU with native bf16, float32
    elsewhere; trainer.precision=32-true gives float32 and contiguous weights."""
    native = native_bf16("cpu")
    for extra, bf16 in (([], native), (["trainer.precision=32-true"], False)):
        cfg = compose_config(
            "train",
            _tiny(synth_tiny, ["experiment=demo_student", "test=false", "trainer=cpu", *extra]),
            tmp_path,
        )
        trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
        assert trainer.precision == ("bf16-mixed" if bf16 else "32-true"), extra
        datamodule = instantiate(cfg.data)
        module = build_module(cfg, datamodule)
        trainer.fit(module, datamodule=datamodule)
        conv = next(
            m for m in module.model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)
        )
        ema_conv = next(
            m
            for m in module.eval_model.modules()
            if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)
        )
        for weight in (conv.weight, ema_conv.weight):
            assert weight.is_contiguous(memory_format=torch.channels_last) == bf16, extra
            assert weight.dtype == torch.float32  # autocast casts per operation; weights stay float32


@pytest.mark.slow
def test_compiled_training_matches_eager_keys_and_trains(synth_tiny, tmp_path):
    """trainer.compile (on in trainer=gpu) compiles in place: same state-dict keys, training runs."""
    cfg = compose_config(
        "train",
        _tiny(synth_tiny, ["experiment=demo_student", "test=false", "trainer.compile=true"]),
        tmp_path,
    )
    run(cfg)
    checkpoint = read_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert not any("_orig_mod" in k for k in checkpoint["state_dict"])
    assert checkpoint["global_step"] == 2


class _SlowDataset(torch.utils.data.Dataset):
    """Each sample takes ``delay`` seconds more to load: a data pipeline slower than the step."""

    def __init__(self, dataset, delay: float) -> None:
        self.dataset, self.delay = dataset, delay

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index):
        time.sleep(self.delay)
        return self.dataset[index]


@pytest.mark.integration
@pytest.mark.parametrize("delay", [0.0, 0.25])
def test_iteration_timer_tells_data_waiting_from_step_time(delay, synth_tiny, tmp_path):
    from dfss.lit.callbacks import IterationTimer

    cfg = compose_config(
        "train",
        _tiny(
            synth_tiny,
            ["experiment=demo_student", "model.net.fpn_channels=32", "trainer.limit_train_batches=3"],
        ),
        tmp_path,
    )
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    datamodule.datasets["train"] = _SlowDataset(datamodule.datasets["train"], delay)
    module = build_module(cfg, datamodule)
    trainer = instantiate(
        cfg.trainer,
        callbacks=[IterationTimer()],
        logger=False,
        enable_checkpointing=False,
        limit_val_batches=0,
    )
    trainer.fit(module, datamodule=datamodule)
    data_ms = float(trainer.callback_metrics["time/data_ms_epoch"])
    step_ms = float(trainer.callback_metrics["time/step_ms_epoch"])
    assert step_ms > 0
    if delay:  # two samples per batch, loaded in this process between steps
        assert (
            data_ms >= 2 * 1e3 * delay * 0.9 and float(trainer.callback_metrics["time/data_frac_epoch"]) > 0.3
        )
    else:
        assert data_ms < 2 * 1e3 * 0.25 * 0.5


class _ToyModule(L.LightningModule):
    """A linear model beside a submodule in eval mode, named ``frozen_name``."""

    def __init__(self, frozen_name: str) -> None:
        super().__init__()
        self.model = torch.nn.Linear(2, 1)
        setattr(self, frozen_name, torch.nn.Linear(2, 1).eval())

    def training_step(self, batch, batch_idx):
        return self.model(batch[0]).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.model.parameters(), lr=0.1)


@pytest.mark.integration
@pytest.mark.parametrize("frozen_name, silenced", [("teacher", True), ("ema", True), ("head", False)])
def test_lightning_eval_mode_warning_is_silenced_only_for_the_teacher_and_ema(
    frozen_name, silenced, tmp_path
):
    module = _ToyModule(frozen_name)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(4, 2)), batch_size=2)
    trainer = L.Trainer(
        max_steps=1,
        default_root_dir=tmp_path,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with expected_lightning_warnings_off(module, datamodule=None):
            trainer.fit(module, train_dataloaders=data)
    warned = any("in eval mode at the start of training" in str(w.message) for w in caught)
    assert warned is not silenced


@pytest.mark.integration
def test_wandb_logger_does_not_print_wandbs_anonymous_setting_warning(tmp_path):
    # In a fresh process: wandb keeps its settings (WANDB_SILENT included) process-wide once set up.
    script = (
        "import sys, wandb\n"
        "from dfss.lit.loggers import WandbLogger\n"
        "logger = WandbLogger(project='dfss-test', save_dir=sys.argv[1])\n"
        "logger.experiment.log({'x': 1.0})\n"
        "wandb.finish()\n"
    )
    env = cli_env(WANDB_MODE="offline", WANDB_SILENT=None)
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], env=env, capture_output=True, text=True, timeout=120
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert list(tmp_path.glob("wandb/offline-run-*/run-*.wandb"))  # wandb.init ran, offline
    assert "wandb:" in output  # wandb did speak: the warning would have been seen
    assert "anonymous" not in output


def test_training_refuses_frozen_random_layers_and_defaults_to_learning_batch_norm(synth_tiny, tmp_path):
    """fcos_r50 without weights: learning BN and every stage trainable by default; frozen BN or frozen
    stages without a weights file are refused with a clear error, not trained silently."""
    from torchvision.ops.misc import FrozenBatchNorm2d

    from dfss.errors import ConfigError

    datamodule = None
    for extra, refused in (
        ([], False),
        (["model.net.norm=frozen_bn"], True),
        (["model.net.trainable_backbone_layers=3"], True),
    ):
        cfg = compose_config("train", _tiny(synth_tiny, ["model=fcos_r50", "test=false", *extra]), tmp_path)
        datamodule = datamodule or instantiate(cfg.data)
        if refused:
            with pytest.raises(
                ConfigError, match=r"without weights would train .*frozen.*model\.net\.norm=auto"
            ):
                build_module(cfg, datamodule)
            continue
        module = build_module(cfg, datamodule)
        assert all(p.requires_grad for p in module.model.parameters())
        assert not any(isinstance(m, FrozenBatchNorm2d) for m in module.model.modules())


@pytest.mark.integration
def test_last_checkpoint_is_the_last_epoch_even_when_it_did_not_improve(synth_tiny, tmp_path):
    """Lightning 2.6's save_last writes last.ckpt only when a top-k checkpoint is saved: a run whose
    last epoch does not beat the best kept an older last.ckpt (and would have resumed from there)."""
    overrides = _tiny(
        synth_tiny,
        [
            "experiment=demo_student",
            "test=false",
            "trainer.max_epochs=2",
            "callbacks.model_checkpoint.monitor=val/num_images",  # constant: only epoch 0 "improves"
        ],
    )
    run(compose_config("train", overrides, tmp_path))
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    best = torch.load(tmp_path / "checkpoints" / "epoch_000.ckpt", weights_only=True, map_location="cpu")
    assert (best["epoch"], last["epoch"]) == (0, 1) and last["global_step"] == 2 * best["global_step"]


def test_the_printed_checkpoint_path_is_never_folded_mid_name(capsys, monkeypatch, tmp_path):
    from dfss.train import print_summary

    monkeypatch.setenv("COLUMNS", "40")  # a narrow terminal
    best = "/runs/a_rather_long_run_folder_name_2026-12-06_23-55-46/checkpoints/epoch_012.ckpt"
    print_summary({"val/map50": 0.5}, "/runs/a_rather_long_run_folder_name_2026-12-06_23-55-46", best)
    assert f"best checkpoint: {best}" in capsys.readouterr().out.splitlines()
