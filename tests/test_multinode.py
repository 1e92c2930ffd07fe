"""Two nodes rehearsed on one host: two train.py processes launched as nodes 0 and 1 (master on
127.0.0.1, gloo on CPU), as torchrun or SLURM would set their environment."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dfss.config import compose_config
from dfss.evaluate import run as evaluate
from dfss.train import run as train
from tests.helpers.cli import TRAIN_PY, cli_env

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def teacher(synth_tiny, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("teacher")
    overrides = [
        "experiment=demo_teacher",
        f"data.root={synth_tiny}",
        "data.image_size=128",
        "data.batch_size=2",
        "data.num_workers=0",
        "data.mosaic_prob=0",
        "data.mixup_prob=0",
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=2",
        "+trainer.limit_val_batches=1",
        "test=false",
        "logger=none",
    ]
    train(compose_config("train", overrides, out))
    return out / "checkpoints" / "last.ckpt"


def _overrides(synth_tiny: Path, teacher: Path, run_dir: Path, epochs: int, *extra: str) -> list[str]:
    return [
        "experiment=demo_distill",
        f"teacher.ckpt_path={teacher}",
        f"data.root={synth_tiny}",
        "data.image_size=128",
        "data.batch_size=2",
        "data.num_workers=0",
        "trainer=cpu",
        "trainer.precision=32-true",
        "trainer.num_nodes=2",
        "trainer.strategy=ddp",
        f"trainer.max_epochs={epochs}",
        "test=false",
        f"hydra.run.dir={run_dir}",
        *extra,
    ]


def _start_nodes(overrides: list[str], cwd: Path, **env: str) -> list[subprocess.Popen]:
    port = str(_free_port())
    nodes = []
    for rank in (0, 1):
        node_env = cli_env(
            MASTER_ADDR="127.0.0.1", MASTER_PORT=port, NODE_RANK=str(rank), WORLD_SIZE="2", **env
        )
        nodes.append(
            subprocess.Popen(
                [sys.executable, str(TRAIN_PY), *overrides],
                cwd=cwd,
                env=node_env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
        )
    return nodes


def _finish(nodes: list[subprocess.Popen], timeout: float = 300) -> list[tuple[int, str]]:
    results = []
    for node in nodes:
        try:
            output, _ = node.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for n in nodes:
                os.killpg(n.pid, signal.SIGKILL)
            pytest.fail(f"a node was still running after {timeout} s")
        results.append((node.returncode, output))
    return results


def test_two_nodes_train_into_one_run_folder_validate_like_one_process_and_resume(
    synth_tiny, teacher, tmp_path
):
    run_dir = tmp_path / "run"
    overrides = _overrides(synth_tiny, teacher, run_dir, 2, "logger=wandb")
    results = _finish(_start_nodes(overrides, tmp_path, WANDB_MODE="offline", WANDB_SILENT="true"))
    assert [code for code, _ in results] == [0, 0], results[0][1][-3000:] + results[1][1][-3000:]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in results[1][1]  # node 1 really was rank 1 of 2
    # one run folder: one set of checkpoints and one W&B run, written by global rank 0 only
    assert (run_dir / "checkpoints" / "last.ckpt").is_file() and not list(run_dir.rglob("*rank_1*"))
    assert len(list((run_dir / "wandb").glob("offline-run-*"))) == 1
    history = [json.loads(line) for line in (run_dir / "metrics_history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [0, 1]
    # the last validation, run across the two nodes (each image scored once, the sampler's padding
    # removed), equals one process evaluating the saved checkpoint on the same split
    last = run_dir / "checkpoints" / "last.ckpt"
    single = evaluate(
        compose_config("eval", [f"ckpt_path={last}", "split=val", "data.num_workers=0"], tmp_path / "e")
    )
    assert history[-1]["val/num_images"] == 4  # the val split, each image once
    shared = [k for k in single if f"val/{k}" in history[-1] and k.startswith(("map", "recall50"))]
    assert {"map50", "map", "map50_normal"} <= set(shared)
    for key in shared:
        assert history[-1][f"val/{key}"] == pytest.approx(single[key], abs=1e-6), key
    step = torch.load(last, weights_only=True, map_location="cpu")["global_step"]

    # resumed across the two nodes, the run continues where it was
    resumed = _overrides(synth_tiny, teacher, run_dir, 3, "logger=csv", "ckpt_path=last")
    results = _finish(_start_nodes(resumed, tmp_path))
    assert [code for code, _ in results] == [0, 0], results[0][1][-3000:]
    history = [json.loads(line) for line in (run_dir / "metrics_history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [0, 1, 2]
    assert torch.load(last, weights_only=True, map_location="cpu")["global_step"] == step * 3 // 2


def test_a_node_that_dies_ends_the_other_within_seconds_naming_the_lost_rank(synth_tiny, teacher, tmp_path):
    run_dir = tmp_path / "run"
    node0, node1 = _start_nodes(_overrides(synth_tiny, teacher, run_dir, 200, "logger=csv"), tmp_path)
    deadline = time.monotonic() + 240
    while not (run_dir / "metrics_history.jsonl").is_file():  # training is under way on both nodes
        assert time.monotonic() < deadline and node0.poll() is None, "the two nodes never trained"
        time.sleep(0.5)
    os.killpg(node1.pid, signal.SIGKILL)
    killed = time.monotonic()
    (code, output), _ = _finish([node0, node1], timeout=120)
    assert time.monotonic() - killed < 60  # bounded: gloo sees the closed connection at once
    assert code == 2 and "Traceback" not in output, output[-3000:]
    assert "PeerLostError: rank 0 of 2 lost rank 1 of the run" in output
