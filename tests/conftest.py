"""Shared fixtures: tiny but real COCO X-ray data sets written to tmp_path."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import dfss.config as dfss_config

os.environ.setdefault("WANDB_MODE", "offline")
TRAIN_PY = Path(__file__).parents[1] / "train.py"
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Sparse, unordered ids on purpose: the class table must not depend on id order or density.
CATEGORIES = [
    {"id": 11, "name": "keys", "supercategory": "normal"},
    {"id": 3, "name": "knife", "supercategory": "dangerous"},
    {"id": 20, "name": "mystery", "supercategory": "unknown"},
    {"id": 7, "name": "phone", "supercategory": "normal"},
]
# A distinct, saturated colour per box index, so a test can find where a box's content went.
PALETTE = [(255, 0, 0), (0, 200, 0), (0, 0, 255), (255, 0, 255), (0, 200, 200), (200, 200, 0)]


def write_split(root: Path, split: str, specs: list[dict], categories=CATEGORIES) -> Path:
    """Write images and ``annotations/<split>.json``.

    ``specs``: one dict per image with ``size`` ``(w, h)`` and ``boxes``: list of
    ``(x, y, w, h, category_id[, iscrowd])``. Box ``k`` of an image is painted ``PALETTE[k]`` on white.
    """
    image_dir = root / "images" / split
    image_dir.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    ann_id = 1
    for image_id, spec in enumerate(specs, start=1):
        width, height = spec["size"]
        pixels = np.full((height, width, 3), 255, dtype=np.uint8)
        for k, box in enumerate(spec["boxes"]):
            x, y, w, h, cat = box[:5]
            pixels[int(y) : int(y + h), int(x) : int(x + w)] = PALETTE[k % len(PALETTE)]
            annotations.append(
                {
                    "id": ann_id,
                    "image_id": image_id,
                    "category_id": cat,
                    "bbox": [float(x), float(y), float(w), float(h)],
                    "area": float(w * h),
                    "iscrowd": int(box[5]) if len(box) > 5 else 0,
                }
            )
            ann_id += 1
        file_name = f"{image_id:04d}.png"
        Image.fromarray(pixels).save(image_dir / file_name)
        images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
    ann_path = root / "annotations" / f"{split}.json"
    ann_path.parent.mkdir(parents=True, exist_ok=True)
    ann_path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return ann_path


TRAIN_SPECS = [
    {"size": (96, 64), "boxes": [(8, 8, 20, 12, 3), (50, 30, 30, 20, 7)]},
    {"size": (64, 96), "boxes": [(10, 40, 16, 30, 11)]},
    {"size": (80, 80), "boxes": []},  # a negative
    {"size": (96, 64), "boxes": [(4, 4, 24, 24, 7), (60, 10, 20, 40, 3, 1)]},  # second is a crowd box
    {"size": (72, 72), "boxes": [(30, 30, 20, 20, 3), (5, 50, 20, 12, 11), (50, 5, 16, 16, 7)]},
    {"size": (96, 64), "boxes": [(20, 10, 40, 30, 11)]},
]
TEST_SPECS = [
    {"size": (96, 64), "boxes": [(8, 8, 20, 12, 3), (50, 30, 30, 20, 20)]},  # an unknown object
    {"size": (64, 64), "boxes": [(10, 10, 30, 30, 7)]},
]


@pytest.fixture
def tiny_xray(tmp_path: Path) -> Path:
    """A data set root with train/val/test splits in the layout `dfss-synth` writes."""
    root = tmp_path / "tiny"
    write_split(root, "train", TRAIN_SPECS)
    write_split(root, "val", TRAIN_SPECS[:3])
    write_split(root, "test", TEST_SPECS)
    return root


@pytest.fixture(scope="session")
def synth_tiny(tmp_path_factory) -> Path:
    """A tiny real synthetic X-ray set (128 px) made once per test session by the real generator."""
    from dfss.synth.config import SynthConfig
    from dfss.synth.writer import generate

    root = tmp_path_factory.mktemp("synth_tiny")
    config = SynthConfig(image_size=128, num_train=8, num_val=4, num_test=5, objects_per_image=(1, 3), seed=3)
    generate(config, root)
    return root


compose_config = dfss_config.compose_config  # re-exported for the tests


def tiny_train_overrides(root: Path, extra: list[str] = ()) -> list[str]:
    """Overrides that shrink any training experiment to seconds on a CPU."""
    return [
        f"data.root={root}",
        "data.image_size=128",
        "data.batch_size=2",
        "data.num_workers=0",
        "data.mosaic_prob=0.0",
        "data.mixup_prob=0.0",
        "trainer=cpu",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=2",
        "trainer.limit_test_batches=1",
        "logger=csv",
        *extra,
    ]


@pytest.fixture
def one_thread():
    """One torch thread: on 2 shared cores, competing threads make training tests several times slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def bench_script(name: str, folder: str = "bench"):
    """``<folder>/<name>.py`` (``bench/`` or ``experiments/``) imported as a module (the scripts are
    not a package), to call its ``main`` or read its tables in-process."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, Path(__file__).parents[1] / folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def cli_env(**changes: str | None) -> dict[str, str]:
    """This process's environment for a CLI subprocess: one thread, unbuffered, ``changes`` applied
    (``None`` removes a variable)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("HYDRA_FULL_ERROR", None)
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def train_cli(overrides: Sequence[str], cwd: Path, env: dict[str, str], timeout: float = 180, preexec=None):
    """``python train.py <overrides>`` with a timeout; on timeout its process group (all DDP ranks)
    is killed and the test fails with the output so far. Returns (returncode, stdout+stderr)."""
    command = [sys.executable, str(TRAIN_PY), *overrides]
    proc = subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,  # a login prompt must not wait for a keyboard
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        preexec_fn=preexec,
    )
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail(f"train.py hung: still running after {timeout} s; output tail:\n{output[-4000:]}")
    return proc.returncode, output


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    """A tiny set from the real generator (128 px; its test split has unknown objects)."""
    from dfss.synth.config import SynthConfig
    from dfss.synth.writer import generate

    root = tmp_path_factory.mktemp("synth") / "set"
    config = SynthConfig(
        image_size=128, num_train=6, num_val=3, num_test=5, unknown_per_test_image=(1, 2), image_format="png"
    )
    generate(config, root)
    return root


@pytest.fixture(scope="session")
def student_ckpt(synth_root, tmp_path_factory) -> Path:
    """A real FCOS student checkpoint: ``train.run`` for two steps on the tiny set."""
    from dfss.config import compose_config
    from dfss.train import run as train_run

    output_dir = tmp_path_factory.mktemp("train")
    overrides = [
        "experiment=demo_student",
        f"data.root={synth_root}",
        "data.image_size=128",  # a multiple of FCOS's largest stride
        "data.num_workers=0",
        "data.batch_size=2",
        "trainer.max_epochs=1",
        "++trainer.limit_train_batches=2",
        "++trainer.limit_val_batches=1",
        "test=false",
        "logger=none",
    ]
    train_run(compose_config("train", overrides, output_dir))
    return output_dir / "checkpoints" / "last.ckpt"
