"""Lightning's Trainer with DFSS's speed switches: ``trainer.compile``, ``trainer.channels_last``,
``trainer.float32_matmul_precision`` (on in ``trainer=gpu`` / ``trainer=ddp``, off on CPU)."""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
import torch
from torch import nn

log = logging.getLogger(__name__)


class Accelerate(L.Callback):
    """At set-up: the detector (and a distillation teacher) in channels_last memory format and/or
    compiled in place with ``nn.Module.compile`` — parameter names, hence checkpoints, unchanged."""

    def __init__(
        self, compile: bool = False, channels_last: bool = False, compile_mode: str | None = None
    ) -> None:
        self.compile = compile
        self.channels_last = channels_last
        self.compile_mode = compile_mode

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        for name in ("model", "teacher"):
            net = getattr(pl_module, name, None)
            if not isinstance(net, nn.Module) or getattr(net, "_dfss_accelerated", False):
                continue
            if self.channels_last:
                net.to(memory_format=torch.channels_last)
            if self.compile:
                net.compile(mode=self.compile_mode)
            net._dfss_accelerated = True
            log.info("%s: channels_last=%s, compiled=%s", name, self.channels_last, self.compile)


class Trainer(L.Trainer):
    """``L.Trainer`` plus ``compile``, ``channels_last``, ``compile_mode`` and ``float32_matmul_precision``."""

    def __init__(
        self,
        *args: Any,
        compile: bool = False,
        channels_last: bool = False,
        compile_mode: str | None = None,
        float32_matmul_precision: str | None = None,
        **kwargs: Any,
    ) -> None:
        callbacks = list(kwargs.pop("callbacks", None) or [])
        if compile or channels_last:
            callbacks.append(Accelerate(compile, channels_last, compile_mode))
        if float32_matmul_precision is not None:
            torch.set_float32_matmul_precision(float32_matmul_precision)
        super().__init__(*args, callbacks=callbacks, **kwargs)
