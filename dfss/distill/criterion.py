"""``DistillationLoss``: the paper's ``L_KD = λ0·L_loc_soft + λ1·L_cls_soft + λ2·L_bbox_soft``.

It aligns the student's and the teacher's points at the strides they share, picks for each term the
points it covers, and combines the pure terms of :mod:`dfss.distill.losses`. It holds no state and
no parameters; the teacher's outputs are detached inside the terms.

Defaults, and why:

- ``cls_mode="bernoulli"``: the teacher is sigmoid-trained (independent per-class probabilities with
  an absolute level); see :func:`~dfss.distill.losses.kd_cls_loss` for the comparison with softmax.
- ``loc_points="all"``: objectness is the teacher's "is there an object here" signal, and its
  "nothing here" on background points is knowledge too (the student's centerness is otherwise
  untrained off its positives). The Bernoulli KL is small where both agree on background, so the
  many background points cost little but are not ignored.
- ``cls_points="teacher_confident"`` and ``bbox_points="teacher_confident"`` (score
  ``σ(obj)·max σ(cls) ≥ confidence_threshold``, default 0.1): the teacher's class and box
  predictions carry information where it sees an object; averaged over all points the term would
  be dominated by background (and the teacher's box at a background point means nothing).
- ``bbox_mode="distribution"`` (a true KL, needs the student's ``box_head="distribution"``);
  ``"giou"`` is a documented non-KL alternative for a scalar box head.
- ``temperature=1``: applied to the loc and cls terms (logits vs logits, with the τ² factor).
  ``bbox_temperature=1``: the box target is built from a scalar box, not teacher logits, so a
  temperature would only sharpen the student's logits; soften the *target* with
  ``bbox_target="gaussian"`` and ``bbox_sigma`` instead.

Each term is normalised by the number of points it covers (sum of weights for
``"teacher_weighted"``) clamped at 1; with ``sync_normalizers`` that count is averaged over DDP
ranks (one ``all_reduce`` per computed term, no host sync), so the gradient is the global mean.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dfss.distill.align import AlignedPoints, align_points
from dfss.distill.losses import (
    BOX_TARGETS,
    CLS_MODES,
    POINT_MODES,
    kd_bbox_loss,
    kd_cls_loss,
    kd_giou_loss,
    kd_loc_loss,
    ltrb_distances,
    point_weights,
    representable,
    teacher_confidence,
)
from dfss.models.common import mean_across_ranks
from dfss.models.outputs import DenseOutputs, decode_boxes

BBOX_MODES = ("distribution", "giou")


class DistillationLoss(nn.Module):
    """Returns ``{"loss_kd_loc", "loss_kd_cls", "loss_kd_bbox", "loss_kd"}``: the unweighted parts
    (for logging) and their λ-weighted sum. A term with λ = 0 is neither computed nor returned (it
    needs nothing, e.g. no distribution head for ``lambda_bbox=0``)."""

    def __init__(
        self,
        lambda_loc: float = 1 / 3,
        lambda_cls: float = 1 / 3,
        lambda_bbox: float = 1 / 3,
        temperature: float = 1.0,
        cls_mode: str = "bernoulli",
        bbox_mode: str = "distribution",
        bbox_target: str = "two_hot",
        bbox_sigma: float = 1.0,
        bbox_temperature: float = 1.0,
        loc_points: str = "all",
        cls_points: str = "teacher_confident",
        bbox_points: str = "teacher_confident",
        confidence_threshold: float = 0.1,
        sync_normalizers: bool = True,
    ) -> None:
        super().__init__()
        for name, value in (
            ("lambda_loc", lambda_loc),
            ("lambda_cls", lambda_cls),
            ("lambda_bbox", lambda_bbox),
        ):
            if not value >= 0:  # also rejects NaN
                raise ValueError(f"{name} must be >= 0, got {value}")
        for name, value in (
            ("temperature", temperature),
            ("bbox_temperature", bbox_temperature),
            ("bbox_sigma", bbox_sigma),
        ):
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        _check_choice("cls_mode", cls_mode, CLS_MODES)
        _check_choice("bbox_mode", bbox_mode, BBOX_MODES)
        _check_choice("bbox_target", bbox_target, BOX_TARGETS)
        for name, value in (
            ("loc_points", loc_points),
            ("cls_points", cls_points),
            ("bbox_points", bbox_points),
        ):
            _check_choice(name, value, POINT_MODES)
        if not 0 <= confidence_threshold <= 1:
            raise ValueError(f"confidence_threshold must be in [0, 1], got {confidence_threshold}")
        self.lambda_loc = float(lambda_loc)
        self.lambda_cls = float(lambda_cls)
        self.lambda_bbox = float(lambda_bbox)
        self.temperature = float(temperature)
        self.cls_mode = cls_mode
        self.bbox_mode = bbox_mode
        self.bbox_target = bbox_target
        self.bbox_sigma = float(bbox_sigma)
        self.bbox_temperature = float(bbox_temperature)
        self.loc_points = loc_points
        self.cls_points = cls_points
        self.bbox_points = bbox_points
        self.confidence_threshold = float(confidence_threshold)
        self.sync_normalizers = bool(sync_normalizers)

    def forward(
        self, student: DenseOutputs, teacher: DenseOutputs, student_positive: Tensor | None = None
    ) -> dict[str, Tensor]:
        """``student_positive``: ``[B, N_student]`` mask of the student's foreground points (from its
        own assignment), needed only by terms with ``points="student_positive"``."""
        if student.num_images != teacher.num_images:
            raise ValueError(f"student has {student.num_images} images, teacher {teacher.num_images}")
        aligned = self._aligned(student, teacher)
        s_idx, t_idx = aligned.student_index, aligned.teacher_index
        teacher_quality = teacher.quality_logits[:, t_idx].detach()  # [B, M]
        teacher_cls = teacher.cls_logits[:, t_idx].detach()  # [B, M, C]
        score = teacher_confidence(teacher_quality, teacher_cls)  # [B, M]
        positive = None
        if student_positive is not None:
            expected = tuple(student.quality_logits.shape)
            if tuple(student_positive.shape) != expected:
                raise ValueError(
                    f"student_positive must be [B, N_student] = {expected}, "
                    f"got {tuple(student_positive.shape)}"
                )
            positive = student_positive[:, s_idx]

        def weights(mode: str) -> Tensor:
            return point_weights(mode, score, self.confidence_threshold, positive)

        parts: dict[str, Tensor] = {}
        if self.lambda_loc > 0:
            w = weights(self.loc_points)
            parts["loss_kd_loc"] = kd_loc_loss(
                student.quality_logits[:, s_idx], teacher_quality, w, self.temperature, self._normalizer(w)
            )
        if self.lambda_cls > 0:
            if student.num_classes != teacher.num_classes:
                raise ValueError(f"student has {student.num_classes} classes, teacher {teacher.num_classes}")
            w = weights(self.cls_points)
            parts["loss_kd_cls"] = kd_cls_loss(
                student.cls_logits[:, s_idx],
                teacher_cls,
                w,
                self.temperature,
                self.cls_mode,
                self._normalizer(w),
            )
        if self.lambda_bbox > 0:
            parts["loss_kd_bbox"] = self._bbox_term(student, teacher, aligned, weights(self.bbox_points))

        lambdas = {
            "loss_kd_loc": self.lambda_loc,
            "loss_kd_cls": self.lambda_cls,
            "loss_kd_bbox": self.lambda_bbox,
        }
        total = student.cls_logits.new_zeros((), dtype=torch.float32)
        for key, value in parts.items():
            total = total + lambdas[key] * value
        return {**parts, "loss_kd": total}

    def _aligned(self, student: DenseOutputs, teacher: DenseOutputs) -> AlignedPoints:
        """:func:`align_points`, computed once per input layout (it reads the strides back to the host,
        a sync the training step would otherwise pay every time)."""
        key = (
            tuple(int(n) for n in student.num_points_per_level),
            tuple(int(n) for n in teacher.num_points_per_level),
            student.strides.device,
        )
        cache = self.__dict__.setdefault("_alignment_cache", {})
        if key not in cache:
            cache[key] = align_points(student, teacher)
        return cache[key]

    def _bbox_term(
        self, student: DenseOutputs, teacher: DenseOutputs, aligned: AlignedPoints, weight: Tensor
    ) -> Tensor:
        s_idx, t_idx = aligned.student_index, aligned.teacher_index
        teacher_boxes = decode_boxes(teacher)[:, t_idx].detach()  # [B, M, 4] xyxy pixels
        if self.bbox_mode == "giou":
            student_boxes = decode_boxes(student)[:, s_idx]
            return kd_giou_loss(student_boxes, teacher_boxes, weight, self._normalizer(weight))
        if student.box_distribution_logits is None:
            raise ValueError(
                'bbox_mode="distribution" needs a student with box_head="distribution" '
                '(box_distribution_logits is None); use bbox_mode="giou" or lambda_bbox=0'
            )
        # Distances from the *student's* points (they may sit half a stride off the teacher's).
        distances = ltrb_distances(
            teacher_boxes, student.points[s_idx].float()[None], student.strides[s_idx].float()[None]
        )  # [B, M, 4] in student stride units
        logits = student.box_distribution_logits[:, s_idx]
        weight = weight * representable(distances, logits.shape[-1])  # boxes it cannot express: out
        return kd_bbox_loss(
            logits,
            distances,
            weight,
            self.bbox_temperature,
            self.bbox_target,
            self.bbox_sigma,
            self._normalizer(weight),
        )

    def _normalizer(self, weight: Tensor) -> Tensor:
        """Sum of the weights, averaged over DDP ranks when asked (clamped at 1 by the terms)."""
        total = weight.detach().sum()
        return mean_across_ranks(total) if self.sync_normalizers else total

    def extra_repr(self) -> str:
        return (
            f"lambda=({self.lambda_loc:.3g}, {self.lambda_cls:.3g}, {self.lambda_bbox:.3g}), "
            f"temperature={self.temperature}, cls_mode={self.cls_mode!r}, bbox_mode={self.bbox_mode!r}, "
            f"points=({self.loc_points!r}, {self.cls_points!r}, {self.bbox_points!r}), "
            f"confidence_threshold={self.confidence_threshold}"
        )


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
