"""Guarding training against non-finite losses: skip and count, then stop with a clear error."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """Training kept producing NaN/Inf losses."""


@dataclass
class NonFiniteGuard:
    """Decides per step whether the loss may be back-propagated.

    A step whose total loss is NaN/Inf is skipped (no backward, no optimizer step) and counted;
    after more than ``max_consecutive`` such steps in a row training stops with an error naming
    the step, the batch's image ids and the loss parts that were not finite — instead of training
    on garbage. The check costs one scalar device-to-host sync per step.
    """

    max_consecutive: int = 10
    consecutive: int = 0
    total: int = 0

    def allows(self, losses: Mapping[str, Tensor], step: int, image_ids: Tensor | Sequence[int]) -> bool:
        if bool(torch.isfinite(losses["loss"]).all()):
            self.consecutive = 0
            return True
        bad = sorted(
            k for k, v in losses.items() if k.startswith("loss") and not bool(torch.isfinite(v).all())
        )
        self.consecutive += 1
        self.total += 1
        ids = image_ids.tolist() if isinstance(image_ids, Tensor) else list(image_ids)
        where = f"step {step}, image ids {ids}, non-finite parts {bad}"
        if self.consecutive > self.max_consecutive:
            raise NonFiniteLossError(
                f"{self.consecutive} training steps in a row gave a NaN/Inf loss (last: {where}); stopping. "
                "Lower the learning rate, check the data of these images, or raise module.max_nonfinite_steps."
            )
        log.warning("skipped a training step with a NaN/Inf loss (%s); %d skipped so far", where, self.total)
        return False
