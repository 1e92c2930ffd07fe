"""Shared fixtures (helpers live in ``tests/helpers/``), the one-thread setting and the test tiers.

Tiers: a test that trains (a Lightning ``fit``, or ``train.py`` / ``dfss-results`` / ``dfss-demo``
in a subprocess) must carry ``@pytest.mark.integration``; ``make test-fast`` runs the others. The
marker is enforced, not trusted: an unmarked test that starts a training fails with the reason.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import lightning.pytorch as lp
import pytest
import torch

from tests.helpers.data import TEST_SPECS, TRAIN_SPECS, write_split

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# ---- tiers: a training outside an `integration` test is an error ----------------------------------
TRAINING_COMMANDS = (
    "train.py",
    "dfss.train",
    "dfss-train",
    "dfss-results",
    "dfss.results",
    "dfss-demo",
    "dfss.demo",
)
_running: list[pytest.Item] = []


def _refuse_unmarked(what: str) -> None:
    item = _running[-1] if _running else None
    if item is not None and item.get_closest_marker("integration") is None:
        pytest.fail(f"{item.nodeid} {what} but is not marked @pytest.mark.integration", pytrace=False)


def _guarded_fit(fit):
    def fit_if_marked(self, *args, **kwargs):
        _refuse_unmarked("trains (Trainer.fit)")
        return fit(self, *args, **kwargs)

    return fit_if_marked


class _GuardedPopen(subprocess.Popen):
    def __init__(self, args, *rest, **kwargs):
        words = [args] if isinstance(args, (str, os.PathLike)) else list(args)
        if any(str(w).endswith(TRAINING_COMMANDS) for w in words):
            _refuse_unmarked(f"runs {' '.join(str(w) for w in words[:4])}")
        super().__init__(args, *rest, **kwargs)


def pytest_configure(config: pytest.Config) -> None:
    lp.Trainer.fit = _guarded_fit(lp.Trainer.fit)
    subprocess.Popen = _GuardedPopen


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem):
    _running.append(item)  # session fixtures that train are set up inside their first user's protocol
    yield
    _running.pop()


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Every test runs with one intra-op thread: the tests' models and batches are tiny, and on 2
    shared cores competing OpenMP threads made training steps several times, and single forward
    passes up to a hundred times, slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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
    """A tiny real synthetic X-ray set made once per test session by the real generator: 128 px, 8 / 4 / 5
    images, 1–3 objects each, and 1–2 unknown objects on every test image."""
    from dfss.synth.config import SynthConfig
    from dfss.synth.writer import generate

    root = tmp_path_factory.mktemp("synth_tiny")
    config = SynthConfig(
        image_size=128,
        num_train=8,
        num_val=4,
        num_test=5,
        objects_per_image=(1, 3),
        unknown_per_test_image=(1, 2),
        seed=3,
    )
    generate(config, root)
    return root


@pytest.fixture(scope="session")
def student_ckpt(synth_tiny, tmp_path_factory) -> Path:
    """A real FCOS student checkpoint: ``train.run`` for two steps on the tiny set."""
    from dfss.config import compose_config
    from dfss.train import run as train_run

    output_dir = tmp_path_factory.mktemp("train")
    overrides = [
        "experiment=demo_student",
        f"data.root={synth_tiny}",
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
