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

    A step whose total loss or gradients hold a NaN/Inf (one check after backward, before the
    optimizer step) is skipped — no weight, optimizer or EMA update — and counted. After more than
    ``max_consecutive`` bad steps in a row training stops with an error naming the step, the batch's
    image ids and the loss parts or parameters that were not finite, instead of training on garbage.
    The check costs one scalar device-to-host sync per step.
    """

    max_consecutive: int = 10
    consecutive: int = 0
    total: int = 0

    def allows_step(
        self,
        losses: Mapping[str, Tensor],
        named_grads: Sequence[tuple[str, Tensor]],
        step: int,
        image_ids: Tensor | Sequence[int],
    ) -> bool:
        """False (and counted) when the total loss or any gradient holds a NaN/Inf.

        Run after backward, before the optimizer step: one device-to-host sync covers the loss and
        every gradient (a NaN loss back-propagates into NaN gradients, which are then dropped).
        """
        loss = losses["loss"].detach().float().reshape(())
        norms = [n.float() for n in torch._foreach_norm([g for _, g in named_grads])] if named_grads else []
        if bool(torch.isfinite(torch.stack([loss, *norms])).all()):
            return True
        where = f"step {step}, image ids {_ids(image_ids)}"
        if not bool(torch.isfinite(loss)):
            bad = sorted(
                k for k, v in losses.items() if k.startswith("loss") and not bool(torch.isfinite(v).all())
            )
            self._skip("loss", f"{where}, non-finite parts {bad}")
        else:
            bad = [name for name, g in named_grads if not bool(torch.isfinite(g).all())]
            shown = bad[:5] + ([f"... ({len(bad)} in all)"] if len(bad) > 5 else [])
            self._skip("gradient", f"{where}, non-finite gradients of {shown}")
        return False

    def step_done(self) -> None:
        """A step updated the weights: the run of bad steps is over."""
        self.consecutive = 0

    def _skip(self, what: str, where: str) -> None:
        self.consecutive += 1
        self.total += 1
        if self.consecutive > self.max_consecutive:
            raise NonFiniteLossError(
                f"{self.consecutive} training steps in a row gave a NaN/Inf {what} "
                f"(last: {where}); stopping. "
                "Lower the learning rate, check the data of these images, "
                "or raise module.max_nonfinite_steps."
            )
        log.warning(
            "skipped a training step with a NaN/Inf %s (%s); %d skipped so far", what, where, self.total
        )

    def state_dict(self) -> dict[str, int]:
        return {"consecutive": self.consecutive, "total": self.total}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        self.consecutive, self.total = int(state["consecutive"]), int(state["total"])
