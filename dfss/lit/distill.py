"""The distilled FCOS student: detection loss on the labels + the paper's KD loss from a frozen teacher."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from dfss.data.batch import DetectionBatch
from dfss.lit.detection import DetectionModule
from dfss.models.outputs import DenseOutputs

TEACHER_PREFIX = "teacher."


class DistillModule(DetectionModule):
    """FCOS student + frozen YOLOX teacher.

    ``loss = detection loss (class-weighted) + distill_loss(student, teacher)`` where ``distill_loss``
    returns ``loss_kd`` (λ-weighted) and its unweighted parts, all logged. The teacher is explicit
    and frozen: ``requires_grad_(False)``, run under ``no_grad``, kept in eval mode whatever
    Lightning's ``train()`` calls, not in the optimizer (only the student's parameters are), and not
    saved in checkpoints (its weights come from ``teacher.ckpt_path``; on load they are put back).
    """

    def __init__(self, *args: Any, teacher: nn.Module, distill_loss: nn.Module, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.teacher = teacher.eval().requires_grad_(False)
        self.distill_loss = distill_loss

    def train(self, mode: bool = True) -> DistillModule:
        super().train(mode)
        self.teacher.eval()
        return self

    def compute_losses(self, outputs: DenseOutputs, batch: DetectionBatch) -> dict[str, Tensor]:
        targets = self.criterion.assign(outputs, batch.boxes, batch.labels)
        losses = self.criterion.loss_from_targets(outputs, targets)
        with torch.no_grad():
            teacher_outputs = self.teacher(batch.images)
        kd = self.distill_loss(outputs, teacher_outputs, student_positive=targets.foreground_mask)
        losses["loss_det"] = losses["loss"]
        losses.update(kd)
        losses["loss"] = losses["loss_det"] + kd["loss_kd"]
        return losses

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        state = checkpoint["state_dict"]
        for key in [k for k in state if k.startswith(TEACHER_PREFIX)]:
            del state[key]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["state_dict"]
        for key, value in self.teacher.state_dict().items():
            state.setdefault(TEACHER_PREFIX + key, value)
        super().on_load_checkpoint(checkpoint)  # the key check, RNG and NaN-guard states
