"""Small pieces every criterion shares: the class-weight vector check and the DDP normaliser."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

from dfss.errors import ConfigError


def check_class_weights(class_weights: Tensor | None, num_classes: int) -> Tensor | None:
    """α_c as a float ``[num_classes]`` tensor of finite, non-negative values (``None`` = all 1)."""
    if class_weights is None:
        return None
    class_weights = torch.as_tensor(class_weights, dtype=torch.float32)
    if class_weights.shape != (num_classes,):
        raise ConfigError(f"class_weights must have shape ({num_classes},), got {tuple(class_weights.shape)}")
    if not bool(torch.isfinite(class_weights).all()) or bool((class_weights < 0).any()):
        raise ConfigError(f"class_weights must be finite and >= 0, got {class_weights.tolist()}")
    return class_weights


def mean_across_ranks(value: Tensor) -> Tensor:
    """The mean of ``value`` over DDP ranks (identity when not distributed); no host sync."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        value = value.clone()
        dist.all_reduce(value)
        value = value / dist.get_world_size()
    return value
