"""Training callbacks: ``last.ckpt`` every N steps and on preemption signals; where step time goes;
the per-epoch metrics history."""

from __future__ import annotations

import json
import logging
import math
import signal
import threading
import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)


def is_data_worker_death(error: BaseException) -> bool:
    """PyTorch's "DataLoader worker (pid X) is killed by signal" / "exited unexpectedly" error."""
    message = str(error)
    return (
        isinstance(error, RuntimeError)
        and "DataLoader worker" in message
        and ("exited unexpectedly" in message or "killed" in message)
    )


def mute_data_worker_deaths() -> None:
    """Called when a stop signal arrives: the run is stopping, so a data worker's death is no error.

    Schedulers (SLURM, Kubernetes, systemd) and ``kill -- -PGID`` signal a job's whole process
    group, and the data workers die of it. PyTorch's ``SIGCHLD`` handler would then raise "DataLoader
    worker is killed" anywhere in the main process, in the middle of the step (even of the optimizer
    update), before the loop reaches its stop and saves. With it off, the step finishes and the loop
    stops after it. It stays off: the process is about to exit. (Making the workers ignore
    ``SIGTERM`` instead hangs the exit: ``multiprocessing`` joins its daemon processes after
    terminating them with ``SIGTERM``.)
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)


def _muting_worker_deaths(handler: Any) -> Any:
    def muting(signum: int, frame: Any) -> None:
        mute_data_worker_deaths()
        handler(signum, frame)

    return muting


class ResumeCheckpoint(ModelCheckpoint):
    """Writes ``<dirpath>/last.ckpt`` every ``every_n_train_steps`` steps, at the end of every epoch
    (after its validation) and when the job is stopped: the one writer of ``last.ckpt``.

    * Mid-epoch checkpoints hold the data module's position in the epoch, the optimizer, scheduler,
      EMA and RNG states, so ``ckpt_path=last`` continues exactly where the run was (a ``SIGKILL``
      loses at most ``every_n_train_steps`` steps).
    * ``SIGTERM`` (what cluster schedulers send before killing a job) and ``SIGUSR1`` (SLURM's
      ``--signal=USR1@90``; submitit) finish the current step, write ``last.ckpt`` and stop the run;
      the command then exits with status 143. Under SLURM with Lightning's auto-requeue on,
      Lightning's own ``SIGUSR1`` handler (checkpoint + requeue) is left in place. Sent to the
      whole process group, as schedulers do, the signal also kills the data workers; that is part
      of the stop, not an error (:func:`mute_data_worker_deaths`).

    The file is written atomically by the trainer's checkpoint I/O (see
    :mod:`dfss.lit.checkpoint_io`), so a kill during the save leaves the previous ``last.ckpt``.
    """

    def __init__(
        self, dirpath: str | Path, every_n_train_steps: int = 500, signals: tuple[str, ...] = ("SIGUSR1",)
    ):
        super().__init__(
            dirpath=dirpath,
            save_top_k=0,
            save_last=True,
            every_n_train_steps=max(int(every_n_train_steps), 0),
            enable_version_counter=False,
        )
        self.signals = tuple(getattr(signal, name) for name in signals)
        self._previous_handlers: dict[int, Any] = {}
        self.stopped_by: int | None = None

    @property
    def state_key(self) -> str:
        return self._generate_state_key(role="resume", every_n_train_steps=self._every_n_train_steps)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if trainer.is_global_zero and self.dirpath is not None:  # left by a kill during a save
            for stale in Path(self.dirpath).glob(".*.tmp-*"):
                stale.unlink(missing_ok=True)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in dict.fromkeys((signal.SIGTERM, *self.signals)):
            previous = signal.getsignal(signum)
            if previous in (signal.SIG_DFL, None):  # not claimed (SIGUSR1, unless SLURM requeue has it)
                handler = self._stop_handler(trainer)
            elif callable(previous):  # Lightning's (SIGTERM; SIGUSR1 with SLURM requeue): kept, wrapped
                handler = _muting_worker_deaths(previous)
            else:
                continue
            self._previous_handlers[signum] = signal.signal(signum, handler)

    def _stop_handler(self, trainer: L.Trainer) -> Any:
        def handler(signum: int, frame: Any) -> None:
            mute_data_worker_deaths()
            log.info("received %s: finishing this step, then saving last.ckpt", signal.Signals(signum).name)
            self.stopped_by = signum
            # Lightning's SIGTERM path: the loop raises SIGTERMException after this batch, on every rank.
            trainer._signal_connector.received_sigterm = True

        return handler

    def _restore_handlers(self) -> None:
        for signum, previous in self._previous_handlers.items():
            signal.signal(signum, previous)
        self._previous_handlers = {}

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """``last.ckpt`` at every epoch end, whatever the epoch's score. Lightning's own ``save_last``
        (2.6) writes it only at a step where a top-k checkpoint was saved, so a run whose last epochs did
        not improve the monitored metric would end with an older ``last.ckpt``, and resume from there."""
        super().on_train_epoch_end(trainer, pl_module)
        if not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore_handlers()

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._restore_handlers()
        # A signal to the whole process group also kills the data workers, and the loader may notice
        # a dead one at a fetch before the loop's own stop: the same stop, between two steps.
        stopped = isinstance(exception, SIGTERMException) or (
            trainer.received_sigterm and is_data_worker_death(exception)
        )
        if not stopped or trainer.sanity_checking:
            return
        self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        if trainer.is_global_zero:
            log.warning(
                "stopped by a signal at epoch %d, step %d: saved %s; resume with ckpt_path=last "
                "(and hydra.run.dir=<this run's folder>)",
                trainer.current_epoch,
                trainer.global_step,
                self.last_model_path,
            )


class IterationTimer(L.Callback):
    """Logs where a training step's wall time goes, as mmdetection's ``data_time`` / ``time``:

    * ``time/data_ms``: waiting for the batch (from the end of the previous step to the start of
      this one — loading, collation, transfer not overlapped by the workers),
    * ``time/step_ms``: the step itself (forward, losses, backward, optimizer),
    * ``time/data_frac``: the share of the two spent waiting — near 0 means the data keeps up,
      a large share means more ``data.num_workers`` (or a cheaper pipeline) would speed training up,
    * ``time/img_per_s``: images per second of wall time.

    No device synchronisation is added: on a GPU the step's time settles into the step that
    waits for it (DFSS's NaN guard reads one value per step), so the averages are right.
    """

    def __init__(self) -> None:
        self._last_end: float | None = None
        self._start = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last_end = None  # the wait after validation is not data loading

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._start = time.perf_counter()
        self._data_s = None if self._last_end is None else self._start - self._last_end

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._last_end = time.perf_counter()
        step_s = self._last_end - self._start
        size = len(batch)
        values = {"time/step_ms": 1e3 * step_s}
        if self._data_s is not None:
            values.update(
                {
                    "time/data_ms": 1e3 * self._data_s,
                    "time/data_frac": self._data_s / max(self._data_s + step_s, 1e-9),
                    "time/img_per_s": size / max(self._data_s + step_s, 1e-9),
                }
            )
        pl_module.log_dict(values, on_step=True, on_epoch=True, batch_size=size, sync_dist=True)  # rank mean


class MetricsHistory(L.Callback):
    """Appends each validation's metrics to ``<output_dir>/metrics_history.jsonl`` (rank 0).

    One json line per validation run: ``epoch``, ``step`` and every finite ``val/*`` figure (the
    epoch's ``train/*_epoch`` means are not final yet at that point, so they are left to the loggers).
    It is the run's learning curve,
    independent of the logger chosen (the results report draws mAP-vs-epoch from it). A resumed run
    appends to the same file; the sanity check is not recorded.
    """

    def __init__(self, output_dir: str | Path, filename: str = "metrics_history.jsonl") -> None:
        self.path = Path(output_dir) / filename

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        row: dict[str, Any] = {"epoch": trainer.current_epoch, "step": trainer.global_step}
        for key, value in trainer.callback_metrics.items():
            if key.startswith("val/"):
                number = float(value)
                if math.isfinite(number):
                    row[key] = number
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")


def read_metrics_history(path: str | Path) -> list[dict[str, float]]:
    """The rows of a ``metrics_history.jsonl``; of an epoch validated twice (a resumed run), the last."""
    rows: dict[int, dict[str, float]] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            rows[int(row["epoch"])] = row
    return [rows[e] for e in sorted(rows)]
