"""Exponential moving average of a model's weights (YOLOX-style warm-up of the decay)."""

from __future__ import annotations

import copy

import torch
from torch import nn

from dfss.errors import ConfigError


class ModelEMA(nn.Module):
    """An EMA copy of ``model``: ``ema = d·ema + (1 − d)·model`` after each optimizer step.

    The decay ramps up as ``d = decay·(1 − exp(−updates / ramp))`` (YOLOX), so early, noisy weights
    fade fast. Floating-point parameters *and* buffers (BatchNorm statistics) are averaged; integer
    buffers are copied. The copy is frozen and in eval mode; it is a registered submodule, so it is
    saved in and restored from checkpoints with its update count.
    """

    def __init__(self, model: nn.Module, decay: float = 0.9998, ramp: float = 2000.0) -> None:
        super().__init__()
        if not 0.0 < decay < 1.0:
            raise ConfigError(f"EMA decay must be in (0, 1), got {decay}")
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = decay
        self.ramp = ramp
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.float64))

    def train(self, mode: bool = True) -> ModelEMA:
        super().train(mode)
        self.module.eval()  # the average is never in training mode (BN statistics stay averaged)
        return self

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.num_updates += 1
        decay = (self.decay * (1.0 - torch.exp(-self.num_updates / self.ramp))).float()
        ema_state, model_state = self.module.state_dict(), model.state_dict()
        ema_float, model_float = [], []
        for name, ema_value in ema_state.items():
            value = model_state[name].detach()
            if ema_value.dtype.is_floating_point:
                ema_float.append(ema_value)
                model_float.append(value.to(ema_value.dtype))
            else:
                ema_value.copy_(value)
        torch._foreach_mul_(ema_float, decay.to(ema_float[0].device))
        torch._foreach_add_(ema_float, torch._foreach_mul(model_float, (1.0 - decay).to(ema_float[0].device)))

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)
