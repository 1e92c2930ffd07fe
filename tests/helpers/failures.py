"""Test-only Lightning callbacks that inject real failures into a training run (tests/test_failures.py).

They are added to a run from the command line or a composed config, as any callback is:
``+callbacks.fail._target_=tests.failure_helpers.FailOnRank +callbacks.fail.rank=1``.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from pathlib import Path

import lightning as L


class FailOnRank(L.Callback):
    """Raise ``RuntimeError("injected failure on rank <rank>")`` at the start of training batch
    ``batch`` on global rank ``rank`` only; every other rank goes on as if nothing happened."""

    def __init__(self, rank: int = 1, batch: int = 1) -> None:
        self.rank = int(rank)
        self.batch = int(batch)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_rank == self.rank and batch_idx == self.batch:
            raise RuntimeError(f"injected failure on rank {self.rank}")


class KillDataLoaderWorker(L.Callback):
    """SIGKILL one DataLoader worker process at the start of training batch ``batch``.

    The worker is one of this process's live daemonic multiprocessing children, as DataLoader workers
    are (with ``num_sanity_val_steps=0`` only the training loader's workers exist then). Its pid is
    written to ``pid_file`` before the kill, so the test can look for it in the error.
    """

    def __init__(self, pid_file: str, batch: int = 1) -> None:
        self.pid_file = Path(pid_file)
        self.batch = int(batch)
        self.killed: int | None = None

    def on_fit_start(self, trainer, pl_module) -> None:
        # Children of this process from before the fit (an earlier test's, still exiting on a loaded
        # machine) are not this run's workers.
        self._before = {p.pid for p in multiprocessing.active_children()}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx != self.batch or self.killed is not None:
            return
        # DataLoader workers are daemonic multiprocessing children of the main process.
        children = [
            p
            for p in multiprocessing.active_children()
            if p.daemon and p.pid is not None and p.pid not in self._before
        ]
        if not children:
            raise AssertionError("no DataLoader worker to kill: the loader runs in the main process")
        victim = children[0]
        self.killed = victim.pid
        self.pid_file.write_text(str(victim.pid))
        os.kill(victim.pid, signal.SIGKILL)
