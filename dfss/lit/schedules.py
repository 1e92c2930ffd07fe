"""Learning-rate schedules, built as ``LambdaLR`` over optimizer steps."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def warmup_cosine(
    optimizer: Optimizer,
    total_steps: int,
    *,
    warmup_steps: int = 0,
    warmup_fraction: float = 0.0,
    min_lr_ratio: float = 0.05,
) -> LambdaLR:
    """Quadratic warm-up (YOLOX) to the base lr, then cosine decay to ``min_lr_ratio`` × base.

    The warm-up lasts ``max(warmup_steps, warmup_fraction · total_steps)`` optimizer steps.
    """
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    warmup = min(total_steps, max(int(warmup_steps), int(warmup_fraction * total_steps)))

    def factor(step: int) -> float:
        if step < warmup:
            return ((step + 1) / warmup) ** 2
        progress = (step - warmup) / max(1, total_steps - warmup)
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return LambdaLR(optimizer, factor)
