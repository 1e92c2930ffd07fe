"""Numeric precision on the machine at hand: bf16 autocast + channels_last where it is native.

``precision: auto`` (``trainer=cpu``, evaluation, ``dfss-predict``) means bf16 mixed precision
(``torch.autocast`` with ``bfloat16``: convolutions and matmuls in bf16, everything else in float32)
with channels_last weights where the hardware computes bf16 natively — a CPU with AVX512-BF16 or
AMX, a GPU of compute capability 8.0 or later — and float32 elsewhere. ``32-true`` forces float32
and ``bf16-mixed`` forces bf16 (emulated, hence slow, where it is not native).

Whatever the precision of the network, boxes in pixels are float32 everywhere (decoding,
assignment, losses, distillation targets, post-processing): see
:func:`dfss.models.outputs.decode_boxes`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from dfss.errors import ConfigError

AUTO = "auto"
FP32 = "32-true"
BF16 = "bf16-mixed"
PRECISIONS = (AUTO, FP32, BF16)


def native_bf16(device: torch.device | str) -> bool:
    """Whether ``device`` computes bf16 natively (torch's own capability queries, not a CPU name)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    return False


def resolve_precision(precision: str | int, device: torch.device | str) -> str:
    """``auto`` -> ``bf16-mixed`` where ``device`` has native bf16, else ``32-true``; others unchanged."""
    precision = str(precision)
    if precision == AUTO:
        return BF16 if native_bf16(device) else FP32
    return precision


def uses_bf16(precision: str | int) -> bool:
    """Whether a (resolved) Lightning precision string computes in bf16."""
    return str(precision).startswith("bf16")


def check_inference_precision(precision: str) -> str:
    if str(precision) not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return str(precision)


@contextlib.contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """bf16 autocast on ``device`` for a resolved bf16 precision, nothing otherwise."""
    if uses_bf16(precision):
        with torch.autocast(device.type, dtype=torch.bfloat16):
            yield
    else:
        yield


def prepare_for_inference(model: nn.Module, device: torch.device, precision: str) -> str:
    """Move ``model`` to ``device`` (channels_last under bf16); returns the resolved precision.

    The weights stay float32 (autocast casts per operation), so outputs and checkpoints are unchanged
    in kind; callers run the forward under :func:`autocast` and post-process in float32.
    """
    resolved = resolve_precision(check_inference_precision(precision), device)
    model.to(device)
    if uses_bf16(resolved):
        model.to(memory_format=torch.channels_last)
    return resolved
