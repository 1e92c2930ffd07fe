"""Guarding training against non-finite losses and gradients: skip and count, then stop clearly."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from dfss.errors import UserError

log = logging.getLogger(__name__)


class NonFiniteLossError(UserError, RuntimeError):
    """Training kept producing NaN/Inf losses or gradients."""


def _ids(image_ids: Tensor | Sequence[int]) -> list[int]:
    return image_ids.tolist() if isinstance(image_ids, Tensor) else list(image_ids)


@dataclass
class NonFiniteGuard:
    """Decides per step whether a step may update the weights.

    A step whose total loss is NaN/Inf (checked before backward) or whose gradients hold a NaN/Inf
    (checked before the optimizer step) is skipped — no weight, optimizer or EMA update — and
    counted. After more than ``max_consecutive`` bad steps in a row training stops with an error
    naming the step, the batch's image ids and the loss parts or parameters that were not finite,
    instead of training on garbage. Each check costs one scalar device-to-host sync per step.
    """

    max_consecutive: int = 10
    consecutive: int = 0
    total: int = 0

    def allows(self, losses: Mapping[str, Tensor], step: int, image_ids: Tensor | Sequence[int]) -> bool:
        """False (and counted) when the total loss is not finite."""
        if bool(torch.isfinite(losses["loss"]).all()):
            return True
        bad = sorted(
            k for k, v in losses.items() if k.startswith("loss") and not bool(torch.isfinite(v).all())
        )
        self._skip("loss", f"step {step}, image ids {_ids(image_ids)}, non-finite parts {bad}")
        return False

    def allows_gradients(
        self, named_grads: Sequence[tuple[str, Tensor]], step: int, image_ids: Tensor | Sequence[int]
    ) -> bool:
        """False (and counted) when any gradient holds a NaN/Inf."""
        if not named_grads:
            return True
        norms = torch._foreach_norm([g for _, g in named_grads])
        if bool(torch.isfinite(torch.stack(norms)).all()):
            return True
        bad = [name for name, g in named_grads if not bool(torch.isfinite(g).all())]
        shown = bad[:5] + ([f"... ({len(bad)} in all)"] if len(bad) > 5 else [])
        self._skip("gradient", f"step {step}, image ids {_ids(image_ids)}, non-finite gradients of {shown}")
        return False

    def step_done(self) -> None:
        """A step updated the weights: the run of bad steps is over."""
        self.consecutive = 0

    def _skip(self, what: str, where: str) -> None:
        self.consecutive += 1
        self.total += 1
        if self.consecutive > self.max_consecutive:
            raise NonFiniteLossError(
                f"{self.consecutive} training steps in a row gave a NaN/Inf {what} (last: {where}); stopping. "
                "Lower the learning rate, check the data of these images, or raise module.max_nonfinite_steps."
            )
        log.warning(
            "skipped a training step with a NaN/Inf %s (%s); %d skipped so far", what, where, self.total
        )

    def state_dict(self) -> dict[str, int]:
        return {"consecutive": self.consecutive, "total": self.total}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        self.consecutive, self.total = int(state["consecutive"]), int(state["total"])
