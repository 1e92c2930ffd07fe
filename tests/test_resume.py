"""Kill and resume, for real: a training process is SIGKILLed (or SIGTERMed) mid-epoch, resumed from
its last checkpoint with ``ckpt_path=last``, and must end bit-identical to a run never interrupted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dfss.models.checkpoints import CheckpointError, read_checkpoint
from tests.helpers.cli import TRAIN_PY, cli_env, train_cli

pytestmark = pytest.mark.integration  # every test here trains or runs train.py

ROOT = Path(__file__).parents[1]
STEPS_PER_EPOCH = 4  # 8 training images, batch 2
EPOCHS = 3


def _overrides(data: Path, run_dir: Path, *extra: str) -> list[str]:
    return [
        f"hydra.run.dir={run_dir}",
        f"paths.log_dir={run_dir}",
        f"data.root={data}",
        "data.image_size=128",
        "data.batch_size=2",
        "data.num_workers=2",  # workers prefetch ahead of training: the resume must not count those
        "experiment=demo_student",
        "model.net.fpn_channels=32",
        "module.ema_decay=0.99",  # EMA state must be resumed too
        f"trainer.max_epochs={EPOCHS}",
        "test=false",
        "logger=csv",
        "callbacks.resume_checkpoint.every_n_train_steps=1",
        *extra,
    ]


def _env() -> dict[str, str]:
    return cli_env(WANDB_MODE="offline")


def _train(data: Path, run_dir: Path, *extra: str) -> str:
    code, output = train_cli(_overrides(data, run_dir, *extra), ROOT, _env(), timeout=300)
    assert code == 0, output[-6000:]
    return output


def _step_of(checkpoint: Path) -> int:
    try:
        return int(read_checkpoint(checkpoint)["global_step"])
    except CheckpointError:
        return -1  # not there yet


def _start_and_stop(data: Path, run_dir: Path, sig: int, at_step: int) -> tuple[int, int]:
    """Start training, send ``sig`` once last.ckpt reached ``at_step``; (exit status, step at signal).

    The signal goes to the whole process group, the data workers included, as SLURM, Kubernetes,
    systemd and ``kill -- -PGID`` send it (the main process gets it either way)."""
    process = subprocess.Popen(
        [sys.executable, str(TRAIN_PY), *_overrides(data, run_dir)],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
        start_new_session=True,
    )
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 240
    try:
        while (step := _step_of(last)) < at_step:
            assert process.poll() is None, "training ended before it could be interrupted"
            assert time.monotonic() < deadline, "training made no progress"
            time.sleep(0.05)
        os.killpg(process.pid, sig)
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        process.stdout.close()
    return process.returncode, step


def _final_state(run_dir: Path) -> dict:
    checkpoint = read_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert checkpoint["global_step"] == EPOCHS * STEPS_PER_EPOCH
    return checkpoint


def _assert_same_training(resumed: dict, reference: dict) -> None:
    assert resumed["state_dict"].keys() == reference["state_dict"].keys()
    different = [
        k for k, v in reference["state_dict"].items() if not torch.equal(resumed["state_dict"][k], v)
    ]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"
    assert any(k.startswith("ema.module.") for k in reference["state_dict"])
    for ours, theirs in zip(
        resumed["optimizer_states"][0]["state"].values(),
        reference["optimizer_states"][0]["state"].values(),
        strict=True,
    ):
        assert torch.equal(ours["momentum_buffer"], theirs["momentum_buffer"])
    assert resumed["lr_schedulers"] == reference["lr_schedulers"]


@pytest.fixture(scope="module")
def uninterrupted(synth_tiny, tmp_path_factory) -> dict:
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    _train(synth_tiny, run_dir)
    return _final_state(run_dir)


def test_sigkill_mid_epoch_then_resume_ends_identical_to_an_uninterrupted_run(
    synth_tiny, tmp_path, uninterrupted
):
    returncode, step = _start_and_stop(synth_tiny, tmp_path, signal.SIGKILL, at_step=STEPS_PER_EPOCH + 1)
    assert returncode == -signal.SIGKILL
    killed_at = read_checkpoint(tmp_path / "checkpoints" / "last.ckpt")  # complete, never truncated
    assert step <= killed_at["global_step"] < EPOCHS * STEPS_PER_EPOCH  # killed mid-run, not at the end
    output = _train(synth_tiny, tmp_path, "ckpt_path=last")
    assert not list((tmp_path / "checkpoints").glob(".*.tmp-*"))  # a kill mid-save leaves none behind
    # Lightning's warnings about what is on purpose here stay quiet: the data module resumes
    # mid-epoch exactly (asserted below), and the modules in eval mode are the EMA copy's.
    assert "dataloader is not resumable" not in output
    assert "in eval mode at the start of training" not in output
    assert "not supported by the model summary" not in output  # bf16-mixed: the weights are float32
    _assert_same_training(_final_state(tmp_path), uninterrupted)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1], ids=["SIGTERM", "SIGUSR1"])
def test_preemption_signal_saves_a_checkpoint_and_the_resumed_run_is_identical(
    sig, synth_tiny, tmp_path, uninterrupted
):
    # The data workers die of it too: that is the stop, not a "DataLoader worker is killed" failure.
    returncode, step = _start_and_stop(synth_tiny, tmp_path, sig, at_step=STEPS_PER_EPOCH + 2)
    assert returncode == 143  # "terminated": schedulers see the job did not finish
    saved = read_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    # The signal's checkpoint is the step the run was in when the signal came, not an older one.
    assert step <= saved["global_step"] < EPOCHS * STEPS_PER_EPOCH
    _train(synth_tiny, tmp_path, "ckpt_path=last")
    _assert_same_training(_final_state(tmp_path), uninterrupted)


def test_resuming_a_missing_last_checkpoint_is_a_one_line_error(synth_tiny, tmp_path):
    code, output = train_cli(_overrides(synth_tiny, tmp_path, "ckpt_path=last"), ROOT, _env(), timeout=120)
    assert code == 2
    assert "Traceback" not in output
    assert output.count(f"ckpt_path=last, but {tmp_path}/checkpoints/last.ckpt does not exist") == 1


SAVE_FOREVER = """
import sys, torch
from dfss.lit.checkpoint_io import save_atomic
path = sys.argv[1]
save_atomic({"global_step": 1, "w": torch.zeros(10)}, path)
print("first saved", flush=True)
big = {"global_step": 2, "w": torch.randn(64, 1024, 1024)}  # 256 MB: a save takes a while
while True:
    save_atomic(big, path)
"""


def test_sigkill_during_a_checkpoint_save_leaves_the_previous_file_intact(tmp_path):
    target = tmp_path / "last.ckpt"
    process = subprocess.Popen(
        [sys.executable, "-c", SAVE_FOREVER, str(target)],
        env=_env(),
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert process.stdout.readline().strip() == "first saved"
        deadline = time.monotonic() + 60
        while not any(p.stat().st_size > 1_000_000 for p in tmp_path.glob(".last.ckpt.tmp-*")):
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.001)
        process.send_signal(signal.SIGKILL)  # in the middle of writing the 256 MB checkpoint
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        process.stdout.close()
    assert list(tmp_path.glob(".last.ckpt.tmp-*")), "the kill did not land during a save"
    checkpoint = read_checkpoint(target)  # complete and loadable: the first save
    assert checkpoint["global_step"] == 1 and checkpoint["w"].shape == (10,)
