"""Which torch device a run uses, and how it is described in run records and model cards."""

from __future__ import annotations

import os
import platform

import torch

from dfss.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """``auto`` is the GPU when there is one, else the CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name} but no CUDA device is available; use device=cpu or device=auto")
    return device


def describe_device(device: torch.device) -> str:
    """The GPU's name, or the CPU with its core and torch thread counts."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    processor = platform.processor() or platform.machine()
    return f"CPU ({processor}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"
