"""The ``bench/`` and ``experiments/`` scripts, imported as modules."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def bench_script(name: str, folder: str = "bench"):
    """``<folder>/<name>.py`` (``bench/`` or ``experiments/``) imported as a module (the scripts are
    not a package), to call its ``main`` or read its tables in-process."""
    spec = importlib.util.spec_from_file_location(name, ROOT / folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def script_rows(folder: str, script: str, *args: str, timeout: int = 600) -> list[dict]:
    """The JSON lines ``<folder>/<script>`` prints, run as a user runs it (one thread, from its folder)."""
    done = subprocess.run(
        [sys.executable, str(ROOT / folder / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT / folder,
        env={"OMP_NUM_THREADS": "1", "PATH": ""},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
