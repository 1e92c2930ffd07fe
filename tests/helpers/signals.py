"""A callback that stops a real training with a real signal, as a scheduler or the plan's driver
does, at a known step (added to a run with ``+callbacks.signal_at_step._target_=...``)."""

from __future__ import annotations

import os
import signal

import lightning.pytorch as lp


class SignalAtStep(lp.Callback):
    def __init__(self, step: int, signal_name: str = "SIGTERM"):
        self.step, self.signum = step, getattr(signal, signal_name)

    def on_train_batch_end(self, trainer: lp.Trainer, *args) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)
