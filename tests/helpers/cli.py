"""Running the project's command-line programs from tests, as a user would."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

TRAIN_PY = Path(__file__).parents[2] / "train.py"


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
