"""Pairing a student's points with a teacher's points of the same pyramid cell.

Teacher and student see the same letterboxed input, so at every stride both models have, their
grids have the same ``H × W`` and the same row-major order: student level of stride ``s`` ↔ teacher
level of stride ``s``, point ``k`` ↔ point ``k``. Levels of one model with no counterpart in the
other (FCOS's strides 64 and 128 against YOLOX's 8/16/32) get no distillation.

The paired points are the same *cell*, not always the same *position*: FCOS may put its points at
``(i + 0.5)·s`` while YOLOX puts them at ``i·s``. Anything geometric must therefore be compared on
decoded absolute boxes (see :func:`dfss.distill.losses.ltrb_distances`), never on raw box outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from dfss.models.outputs import DenseOutputs


@dataclass(frozen=True)
class AlignedPoints:
    """Index tensors pairing ``M`` student points with ``M`` teacher points, level by level."""

    student_index: Tensor  # [M] long, indices into the student's N_s points
    teacher_index: Tensor  # [M] long, indices into the teacher's N_t points
    strides_per_level: tuple[float, ...]  # the shared strides, in the student's level order
    num_points_per_level: tuple[int, ...]  # points of each shared level, sums to M

    @property
    def num_points(self) -> int:
        return int(self.student_index.shape[0])


def level_strides(outputs: DenseOutputs) -> tuple[float, ...]:
    """The stride of each level, read from ``outputs.strides`` (one tiny device→host copy).

    Raises ``ValueError`` when ``num_points_per_level`` does not cover ``strides`` exactly, when a
    level is empty, or when a level mixes strides.
    """
    counts = tuple(int(n) for n in outputs.num_points_per_level)
    strides = outputs.strides
    if strides.dim() != 1 or sum(counts) != strides.shape[0]:
        raise ValueError(
            f"num_points_per_level {counts} sums to {sum(counts)}, "
            f"but strides has shape {tuple(strides.shape)}"
        )
    if any(n <= 0 for n in counts):
        raise ValueError(f"every level needs at least one point, got num_points_per_level {counts}")
    counts_tensor = torch.tensor(counts, device=strides.device)
    starts = torch.cumsum(counts_tensor, 0) - counts_tensor
    first = strides[starts].double()  # [L]
    mixed = (strides.double() != first.repeat_interleave(counts_tensor)).any()
    values = torch.cat([first, mixed.double()[None]]).tolist()  # the only host sync
    if values[-1]:
        raise ValueError("each level's points must share one stride; strides vary inside a level")
    return tuple(values[:-1])


def align_points(student: DenseOutputs, teacher: DenseOutputs) -> AlignedPoints:
    """Pair the points of every stride the two models share (student's level order).

    Raises ``ValueError`` when a model has two levels of the same stride, when the models share no
    stride, or when a shared level has a different number of points in the two models (different
    input sizes, or a model that resizes its input inside ``forward``).
    """
    student_strides = level_strides(student)
    teacher_strides = level_strides(teacher)
    for name, strides in (("student", student_strides), ("teacher", teacher_strides)):
        if len(set(strides)) != len(strides):
            raise ValueError(f"the {name} has several levels of one stride: {strides}")

    teacher_level = {s: level for level, s in enumerate(teacher_strides)}
    teacher_starts = _starts(teacher.num_points_per_level)
    student_starts = _starts(student.num_points_per_level)

    student_parts, teacher_parts, shared, counts = [], [], [], []
    for level, stride in enumerate(student_strides):
        if stride not in teacher_level:
            continue  # e.g. FCOS P6/P7: no teacher counterpart, no distillation
        t_level = teacher_level[stride]
        num_student = int(student.num_points_per_level[level])
        num_teacher = int(teacher.num_points_per_level[t_level])
        if num_student != num_teacher:
            raise ValueError(
                f"stride {stride:g}: the student level has {num_student} points but the teacher level "
                f"has {num_teacher}; teacher and student must see the same input size"
            )
        student_parts.append(torch.arange(num_student, device=student.strides.device) + student_starts[level])
        teacher_parts.append(
            torch.arange(num_teacher, device=teacher.strides.device) + teacher_starts[t_level]
        )
        shared.append(stride)
        counts.append(num_student)

    if not shared:
        raise ValueError(
            f"student strides {student_strides} and teacher strides {teacher_strides} share no level"
        )
    return AlignedPoints(
        student_index=torch.cat(student_parts),
        teacher_index=torch.cat(teacher_parts),
        strides_per_level=tuple(shared),
        num_points_per_level=tuple(counts),
    )


def _starts(num_points_per_level: tuple[int, ...]) -> list[int]:
    starts, total = [], 0
    for n in num_points_per_level:
        starts.append(total)
        total += int(n)
    return starts
