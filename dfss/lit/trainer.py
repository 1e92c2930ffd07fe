"""Lightning's Trainer with DFSS's speed switches: ``trainer.precision: auto``, ``trainer.compile``,
``trainer.channels_last``, ``trainer.float32_matmul_precision`` (on in ``trainer=gpu`` / ``trainer=ddp``).

``precision: auto`` (``trainer=cpu``) is ``bf16-mixed`` where the accelerator computes bf16
natively (:func:`dfss.precision.native_bf16`: a CPU with AVX512-BF16 or AMX) and ``32-true``
elsewhere; ``channels_last: auto`` follows it (channels_last pays with bf16 kernels, not in float32
on a CPU). ``trainer.precision=32-true`` turns both off.
"""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
import torch
from torch import nn

from dfss.precision import AUTO, resolve_precision, uses_bf16

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
        ema = getattr(pl_module, "ema", None)  # the EMA copy evaluates: same memory format (not compiled)
        if self.channels_last and isinstance(ema, nn.Module):
            ema.to(memory_format=torch.channels_last)


def accelerator_device(accelerator: Any) -> str:
    """The device type a Trainer ``accelerator`` setting runs on (``auto``: CUDA when there is one)."""
    name = str(accelerator).lower()
    if name in ("gpu", "cuda") or (name == "auto" and torch.cuda.is_available()):
        return "cuda"
    return "cpu"


class Trainer(L.Trainer):
    """``L.Trainer`` plus ``precision="auto"``, ``compile``, ``channels_last`` (a bool or ``"auto"``),
    ``compile_mode`` and ``float32_matmul_precision``."""

    def __init__(
        self,
        *args: Any,
        compile: bool = False,
        channels_last: bool | str = False,
        compile_mode: str | None = None,
        float32_matmul_precision: str | None = None,
        **kwargs: Any,
    ) -> None:
        callbacks = list(kwargs.pop("callbacks", None) or [])
        precision = kwargs.get("precision")
        if precision is not None and str(precision) == AUTO:
            device = accelerator_device(kwargs.get("accelerator", "auto"))
            kwargs["precision"] = precision = resolve_precision(AUTO, device)
            log.info("precision auto on %s: %s", device, precision)
        if channels_last == AUTO:
            channels_last = precision is not None and uses_bf16(precision)
        if compile or channels_last:
            callbacks.append(Accelerate(compile, channels_last, compile_mode))
        if float32_matmul_precision is not None:
            torch.set_float32_matmul_precision(float32_matmul_precision)
        super().__init__(*args, callbacks=callbacks, **kwargs)
