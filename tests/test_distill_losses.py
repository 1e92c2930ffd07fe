"""The distillation loss: alignment, the three KL terms, point selection and the criterion.

Hand-built ``DenseOutputs`` on a 32×32 input: the FCOS student has levels 4×4, 2×2, 1×1, 1×1, 1×1
(strides 8..128, points at ``(i + 0.5)·s``), the YOLOX teacher 4×4, 2×2, 1×1 (strides 8/16/32,
points at ``i·s``).
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from dfss.distill import (
    DistillationLoss,
    align_points,
    bernoulli_kl_with_logits,
    gaussian_target,
    kd_bbox_loss,
    kd_cls_loss,
    kd_giou_loss,
    kd_loc_loss,
    level_strides,
    ltrb_distances,
    point_weights,
    representable,
    softmax_kl_with_logits,
    two_hot_target,
)
from dfss.models.outputs import DenseOutputs, decode_boxes

STUDENT_STRIDES = (8, 16, 32, 64, 128)
TEACHER_STRIDES = (8, 16, 32)
NUM_BINS = 8
NUM_CLASSES = 3
ALL_POINTS = {"loc_points": "all", "cls_points": "all", "bbox_points": "all"}


def grid(size: int, strides: tuple[int, ...], offset: float):
    points, strides_per_point, counts = [], [], []
    for s in strides:
        n = math.ceil(size / s)
        coords = (torch.arange(n, dtype=torch.float32) + offset) * s
        ys, xs = torch.meshgrid(coords, coords, indexing="ij")
        points.append(torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=-1))
        strides_per_point.append(torch.full((n * n,), float(s)))
        counts.append(n * n)
    return torch.cat(points), torch.cat(strides_per_point), tuple(counts)


def make_teacher(seed=0, size=32, strides=TEACHER_STRIDES, batch=2, scale=2.0) -> DenseOutputs:
    """Random YOLOX outputs whose boxes (2–4 strides wide, centre within 0.3 stride of the grid point)
    contain the aligned FCOS point, which sits half a stride off."""
    g = torch.Generator().manual_seed(seed)
    points, strides_pp, counts = grid(size, strides, 0.0)
    n = points.shape[0]
    box = torch.cat(
        [
            (torch.rand(batch, n, 2, generator=g) - 0.5) * 0.6,
            torch.log(2 + 2 * torch.rand(batch, n, 2, generator=g)),
        ],
        dim=-1,
    )
    return DenseOutputs(
        points=points,
        strides=strides_pp,
        num_points_per_level=counts,
        cls_logits=scale * torch.randn(batch, n, NUM_CLASSES, generator=g),
        box_regression=box,
        quality_logits=scale * torch.randn(batch, n, generator=g),
        box_format="yolox",
    )


def make_student(
    seed=1, size=32, strides=STUDENT_STRIDES, batch=2, distribution=True, offset=0.5
) -> DenseOutputs:
    g = torch.Generator().manual_seed(seed)
    points, strides_pp, counts = grid(size, strides, offset)
    n = points.shape[0]
    logits = torch.randn(batch, n, 4, NUM_BINS, generator=g) if distribution else None
    if distribution:
        box = (logits.softmax(-1) * torch.arange(NUM_BINS, dtype=torch.float32)).sum(-1)
    else:
        box = 3 * torch.rand(batch, n, 4, generator=g)
    return DenseOutputs(
        points=points,
        strides=strides_pp,
        num_points_per_level=counts,
        cls_logits=torch.randn(batch, n, NUM_CLASSES, generator=g),
        box_regression=box,
        quality_logits=torch.randn(batch, n, generator=g),
        box_format="ltrb",
        box_distribution_logits=logits,
    )


def student_copying_teacher(
    student: DenseOutputs, teacher: DenseOutputs, shift_cls: float = 0.0
) -> DenseOutputs:
    """The student whose distributions equal the teacher's at every aligned point."""
    aligned = align_points(student, teacher)
    s, t = aligned.student_index, aligned.teacher_index
    quality = student.quality_logits.clone()
    quality[:, s] = teacher.quality_logits[:, t]
    cls = student.cls_logits.clone()
    cls[:, s] = teacher.cls_logits[:, t] + shift_cls
    distances = ltrb_distances(decode_boxes(teacher)[:, t], student.points[s], student.strides[s])
    assert (distances > 0).all() and (distances < NUM_BINS - 1).all()
    box = student.box_regression.clone()
    box[:, s] = distances
    logits = student.box_distribution_logits
    if logits is not None:
        logits = logits.clone()
        logits[:, s] = two_hot_target(distances, NUM_BINS).clamp_min(1e-30).log()
    return replace(
        student, quality_logits=quality, cls_logits=cls, box_regression=box, box_distribution_logits=logits
    )


# --- alignment ------------------------------------------------------------------------------------


def test_align_picks_exactly_the_shared_stride_points():
    student, teacher = make_student(), make_teacher()
    aligned = align_points(student, teacher)
    assert student.num_points_per_level == (16, 4, 1, 1, 1)
    assert aligned.strides_per_level == (8.0, 16.0, 32.0)
    assert aligned.num_points_per_level == (16, 4, 1)
    assert torch.equal(aligned.student_index, torch.arange(21))  # P6/P7 (indices 21, 22) left out
    assert torch.equal(aligned.teacher_index, torch.arange(21))
    stride = student.strides[aligned.student_index]
    assert torch.equal(stride, teacher.strides[aligned.teacher_index])
    offset = student.points[aligned.student_index] - teacher.points[aligned.teacher_index]
    assert torch.allclose(offset, 0.5 * stride[:, None])  # same cell, half a stride apart


def test_align_pairs_levels_by_stride_not_by_position():
    student = make_student()
    teacher = make_teacher(strides=(32, 16, 8))  # levels in another order
    aligned = align_points(student, teacher)
    # teacher layout: stride 32 at [0], stride 16 at [1:5], stride 8 at [5:21]
    expected_teacher = torch.cat([torch.arange(5, 21), torch.arange(1, 5), torch.tensor([0])])
    assert torch.equal(aligned.teacher_index, expected_teacher)
    assert torch.equal(student.strides[aligned.student_index], teacher.strides[aligned.teacher_index])


def test_align_errors_on_mismatched_grids():
    with pytest.raises(ValueError, match="same input size"):
        align_points(make_student(size=32), make_teacher(size=64))
    with pytest.raises(ValueError, match="share no level"):
        align_points(make_student(strides=(64, 128)), make_teacher())
    teacher = make_teacher()
    with pytest.raises(ValueError, match="sums to"):
        align_points(make_student(), replace(teacher, num_points_per_level=(16, 4)))
    with pytest.raises(ValueError, match="inside a level"):
        level_strides(replace(teacher, num_points_per_level=(15, 5, 1)))


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
def test_kl_gradient_is_tau_times_the_difference_of_tempered_probabilities(temperature):
    g = torch.Generator().manual_seed(5)
    s = torch.randn(3, 7, generator=g, requires_grad=True)
    t = torch.randn(3, 7, generator=g)
    bernoulli_kl_with_logits(s, t, temperature).sum().backward()
    expected = temperature * (torch.sigmoid(s / temperature) - torch.sigmoid(t / temperature))
    torch.testing.assert_close(s.grad, expected.detach(), rtol=1e-5, atol=1e-6)
    s.grad = None
    softmax_kl_with_logits(s, t, temperature).sum().backward()
    expected = temperature * ((s / temperature).softmax(-1) - (t / temperature).softmax(-1))
    torch.testing.assert_close(s.grad, expected.detach(), rtol=1e-5, atol=1e-6)


# --- the terms: sign, zero, gradient, non-zero ----------------------------------------------------


@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_elementwise_terms_are_non_negative(temperature):
    g = torch.Generator().manual_seed(3)
    s, t = 4 * torch.randn(500, NUM_CLASSES, generator=g), 4 * torch.randn(500, NUM_CLASSES, generator=g)
    assert (bernoulli_kl_with_logits(s, t, temperature) >= 0).all()
    assert (softmax_kl_with_logits(s, t, temperature) >= 0).all()
    logits = torch.randn(500, 4, NUM_BINS, generator=g)
    distances = 10 * torch.rand(500, 4, generator=g)
    for target in ("two_hot", "gaussian"):
        loss = kd_bbox_loss(logits, distances, temperature=temperature, target=target)
        assert loss > 0


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("cls_mode", ["bernoulli", "softmax"])
def test_criterion_terms_positive_for_random_outputs(seed, cls_mode):
    loss = DistillationLoss(cls_mode=cls_mode, **ALL_POINTS)(make_student(seed), make_teacher(seed + 10))
    # The released code's loc term was identically 0; ours must not be.
    for key in ("loss_kd_loc", "loss_kd_cls", "loss_kd_bbox", "loss_kd"):
        assert torch.isfinite(loss[key]) and loss[key] > 1e-3, key


@pytest.mark.parametrize("cls_mode", ["bernoulli", "softmax"])
@pytest.mark.parametrize("bbox_target", ["two_hot", "gaussian"])
def test_terms_are_zero_when_student_equals_teacher(cls_mode, bbox_target):
    teacher = make_teacher()
    student = student_copying_teacher(make_student(), teacher)
    if bbox_target == "gaussian":
        aligned = align_points(student, teacher)
        s, t = aligned.student_index, aligned.teacher_index
        distances = ltrb_distances(decode_boxes(teacher)[:, t], student.points[s], student.strides[s])
        logits = student.box_distribution_logits.clone()
        logits[:, s] = gaussian_target(distances, NUM_BINS, sigma=0.7).log()
        student = replace(student, box_distribution_logits=logits)
    criterion = DistillationLoss(
        cls_mode=cls_mode, bbox_target=bbox_target, bbox_sigma=0.7, temperature=2.0, **ALL_POINTS
    )
    loss = criterion(student, teacher)
    for key in ("loss_kd_loc", "loss_kd_cls", "loss_kd_bbox", "loss_kd"):
        assert 0 <= loss[key] <= 1e-6, key
    # and not because the P6/P7 points (no teacher) were compared: change them, still 0
    moved = replace(
        student, quality_logits=student.quality_logits.clone().index_fill_(1, torch.tensor([21, 22]), 9.0)
    )
    assert criterion(moved, teacher)["loss_kd_loc"] <= 1e-6


def test_giou_mode_is_zero_for_equal_boxes_and_needs_no_distribution_head():
    teacher = make_teacher()
    student = student_copying_teacher(make_student(distribution=False), teacher)
    criterion = DistillationLoss(bbox_mode="giou", **ALL_POINTS)
    assert criterion(student, teacher)["loss_kd_bbox"] <= 1e-6
    assert criterion(make_student(distribution=False), teacher)["loss_kd_bbox"] > 1e-3


def test_softmax_mode_is_blind_to_a_shift_of_all_class_logits_bernoulli_is_not():
    teacher = make_teacher()
    shifted = student_copying_teacher(make_student(), teacher, shift_cls=5.0)
    assert DistillationLoss(cls_mode="softmax", **ALL_POINTS)(shifted, teacher)["loss_kd_cls"] <= 1e-6
    assert DistillationLoss(cls_mode="bernoulli", **ALL_POINTS)(shifted, teacher)["loss_kd_cls"] > 0.1


@pytest.mark.parametrize("bbox_mode", ["distribution", "giou"])
def test_gradient_flows_into_the_student_only(bbox_mode):
    teacher, student = make_teacher(), make_student(distribution=bbox_mode == "distribution")
    teacher_leaves = [teacher.cls_logits, teacher.box_regression, teacher.quality_logits]
    student_leaves = [student.cls_logits, student.quality_logits]
    student_leaves.append(
        student.box_distribution_logits if bbox_mode == "distribution" else student.box_regression
    )
    for tensor in teacher_leaves + student_leaves:
        tensor.requires_grad_(True)
    DistillationLoss(bbox_mode=bbox_mode, **ALL_POINTS)(student, teacher)["loss_kd"].backward()
    assert all(t.grad is None for t in teacher_leaves)
    for tensor in student_leaves:
        assert tensor.grad is not None and tensor.grad.abs().sum() > 0
    # the levels without a teacher counterpart get no gradient
    assert student.quality_logits.grad[:, 21:].abs().sum() == 0


def test_pure_terms_detach_the_teacher_side_themselves():
    g = torch.Generator().manual_seed(5)
    student_logits = torch.randn(2, 6, NUM_CLASSES, generator=g, requires_grad=True)
    teacher_logits = torch.randn(2, 6, NUM_CLASSES, generator=g, requires_grad=True)
    distances = (5 * torch.rand(2, 6, 4, generator=g)).requires_grad_(True)
    bins = torch.randn(2, 6, 4, NUM_BINS, generator=g, requires_grad=True)
    teacher_boxes = torch.tensor([[[0.0, 0.0, 10.0, 10.0]]], requires_grad=True)
    student_boxes = torch.tensor([[[1.0, 1.0, 12.0, 9.0]]], requires_grad=True)
    total = (
        kd_loc_loss(student_logits[..., 0], teacher_logits[..., 0])
        + kd_cls_loss(student_logits, teacher_logits, mode="bernoulli")
        + kd_cls_loss(student_logits, teacher_logits, mode="softmax")
        + kd_bbox_loss(bins, distances)
        + kd_bbox_loss(bins, distances, target="gaussian")
        + kd_giou_loss(student_boxes, teacher_boxes)
    )
    total.backward()
    assert teacher_logits.grad is None and distances.grad is None and teacher_boxes.grad is None
    assert (
        student_logits.grad.abs().sum() > 0
        and bins.grad.abs().sum() > 0
        and student_boxes.grad.abs().sum() > 0
    )


# --- hand-computed values -------------------------------------------------------------------------


def _sigmoid(x):
    return 1 / (1 + math.exp(-x))


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_bernoulli_kl_by_hand(temperature):
    s, t = 0.5, 2.0
    ps, pt = _sigmoid(s / temperature), _sigmoid(t / temperature)
    expected = pt * math.log(pt / ps) + (1 - pt) * math.log((1 - pt) / (1 - ps))
    got = bernoulli_kl_with_logits(torch.tensor([s]), torch.tensor([t]), temperature)
    assert got.item() == pytest.approx(temperature**2 * expected, rel=1e-5)
    # kd_loc_loss on one point is the same number
    assert kd_loc_loss(
        torch.tensor([[s]]), torch.tensor([[t]]), temperature=temperature
    ).item() == pytest.approx(temperature**2 * expected, rel=1e-5)


def test_softmax_kl_by_hand_with_temperature_squared():
    s, t, tau = [1.0, 0.0, -1.0], [0.0, 2.0, 0.0], 2.0

    def softmax(z):
        e = [math.exp(v / tau) for v in z]
        return [v / sum(e) for v in e]

    ps, pt = softmax(s), softmax(t)
    expected = tau**2 * sum(b * math.log(b / a) for a, b in zip(ps, pt, strict=True))
    got = softmax_kl_with_logits(torch.tensor([s]), torch.tensor([t]), tau)
    assert got.item() == pytest.approx(expected, rel=1e-5)
    assert kd_cls_loss(torch.tensor([[s]]), torch.tensor([[t]]), temperature=tau, mode="softmax").item() == (
        pytest.approx(expected, rel=1e-5)
    )
    # bernoulli mode sums the per-class KLs
    per_class = [
        _sigmoid(b / tau) * math.log(_sigmoid(b / tau) / _sigmoid(a / tau))
        + (1 - _sigmoid(b / tau)) * math.log((1 - _sigmoid(b / tau)) / (1 - _sigmoid(a / tau)))
        for a, b in zip(s, t, strict=True)
    ]
    got = kd_cls_loss(torch.tensor([[s]]), torch.tensor([[t]]), temperature=tau, mode="bernoulli")
    assert got.item() == pytest.approx(tau**2 * sum(per_class), rel=1e-5)


def test_two_hot_and_gaussian_targets_by_hand():
    target = two_hot_target(torch.tensor([2.3, 0.0, 10.0, -1.0]), 5)
    assert torch.allclose(target[0], torch.tensor([0.0, 0.0, 0.7, 0.3, 0.0]), atol=1e-6)
    assert torch.allclose(target[1], torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0]))
    assert torch.allclose(
        target[2], torch.tensor([0.0, 0.0, 0.0, 1e-3, 1 - 1e-3]), atol=1e-5
    )  # clipped to R−1−ε
    assert torch.allclose(target[3], torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0]))  # clipped to 0
    assert torch.allclose((target * torch.arange(5.0)).sum(-1)[0], torch.tensor(2.3))
    gauss = gaussian_target(torch.tensor([2.0]), 5, sigma=1.0)[0]
    expected = torch.tensor([math.exp(-((i - 2) ** 2) / 2) for i in range(5)])
    assert torch.allclose(gauss, expected / expected.sum(), atol=1e-6)


def test_bbox_kl_by_hand_and_points_outside_the_box_or_the_bins_are_left_out():
    # uniform student over R=4 bins, target 1.5 on each side → q = [0, .5, .5, 0]: KL = ln 2 per side,
    # averaged over the 4 sides (the scale of the student's DFL): ln 2 per point
    logits = torch.zeros(1, 3, 4, 4)
    distances = torch.tensor(
        [[[1.5, 1.5, 1.5, 1.5], [-0.5, 1.5, 1.5, 1.5], [1.5, 1.5, 3.5, 1.5]]]
    )  # 2nd point outside its box, 3rd box past the last bin (3): both left out, not clipped
    loss = kd_bbox_loss(logits, distances)
    assert loss.item() == pytest.approx(math.log(2), rel=1e-5)  # one point counted, not three
    assert representable(distances, 4).tolist() == [[1.0, 0.0, 0.0]]


def test_ltrb_distances_by_hand():
    got = ltrb_distances(
        torch.tensor([10.0, 20.0, 50.0, 60.0]), torch.tensor([18.0, 28.0]), torch.tensor(8.0)
    )
    assert torch.allclose(got, torch.tensor([1.0, 1.0, 4.0, 4.0]))


def test_box_target_is_measured_from_the_students_point_not_the_teachers():
    # one stride-8 cell: teacher point (0, 0), box [0, 0, 16, 16]; student point (4, 4)
    teacher = DenseOutputs(
        points=torch.zeros(1, 2),
        strides=torch.tensor([8.0]),
        num_points_per_level=(1,),
        cls_logits=torch.full((1, 1, 1), 5.0),
        box_regression=torch.tensor([[[1.0, 1.0, math.log(2), math.log(2)]]]),
        quality_logits=torch.full((1, 1), 5.0),
        box_format="yolox",
    )
    from_student_point = torch.tensor([[[0.5, 0.5, 1.5, 1.5]]])
    student = DenseOutputs(
        points=torch.tensor([[4.0, 4.0]]),
        strides=torch.tensor([8.0]),
        num_points_per_level=(1,),
        cls_logits=torch.zeros(1, 1, 1),
        box_regression=from_student_point,
        quality_logits=torch.zeros(1, 1),
        box_format="ltrb",
        box_distribution_logits=two_hot_target(from_student_point, NUM_BINS)[None].clamp_min(1e-30).log()[0],
    )
    criterion = DistillationLoss(**ALL_POINTS)
    assert criterion(student, teacher)["loss_kd_bbox"] <= 1e-6
    from_teacher_point = torch.tensor([[[0.0, 0.0, 2.0, 2.0]]])
    wrong = replace(
        student, box_distribution_logits=two_hot_target(from_teacher_point, NUM_BINS).clamp_min(1e-30).log()
    )
    assert criterion(wrong, teacher)["loss_kd_bbox"] > 1.0


# --- which points, and normalisation --------------------------------------------------------------


def test_point_weights_select_what_they_should():
    score = torch.tensor([[0.05, 0.1, 0.5, 0.0]])
    assert torch.equal(point_weights("all", score), torch.ones(1, 4))
    assert torch.equal(point_weights("teacher_confident", score, 0.1), torch.tensor([[0.0, 1.0, 1.0, 0.0]]))
    assert torch.equal(point_weights("teacher_weighted", score), score)
    mask = torch.tensor([[True, False, False, True]])
    assert torch.equal(point_weights("student_positive", score, student_positive=mask), mask.float())
    with pytest.raises(ValueError, match="student_positive"):
        point_weights("student_positive", score)


def test_normaliser_is_count_clamped_at_one_or_given():
    s, t = torch.tensor([[0.0, 1.0, -1.0]]), torch.tensor([[2.0, -2.0, 0.5]])
    kl = bernoulli_kl_with_logits(s, t)[0]
    assert kd_loc_loss(s, t, weight=torch.tensor([[1.0, 0.0, 1.0]])) == pytest.approx(
        (kl[0] + kl[2]).item() / 2
    )
    # weights summing to 0.5 are divided by 1, not 0.5
    assert kd_loc_loss(s, t, weight=torch.tensor([[0.5, 0.0, 0.0]])) == pytest.approx(0.5 * kl[0].item())
    assert kd_loc_loss(s, t, normalizer=torch.tensor(6.0)) == pytest.approx(kl.sum().item() / 6)
    assert kd_loc_loss(s, t, weight=torch.zeros(1, 3)) == 0


def test_criterion_teacher_confident_matches_a_hand_selection():
    teacher, student = make_teacher(scale=3.0), make_student()
    criterion = DistillationLoss(loc_points="teacher_confident", confidence_threshold=0.3)
    aligned = align_points(student, teacher)
    s, t = aligned.student_index, aligned.teacher_index
    score = torch.sigmoid(teacher.quality_logits[:, t]) * torch.sigmoid(teacher.cls_logits[:, t]).amax(-1)
    confident = score >= 0.3
    assert 0 < confident.sum() < confident.numel()  # a real selection
    kl = bernoulli_kl_with_logits(student.quality_logits[:, s], teacher.quality_logits[:, t])
    expected = kl[confident].sum() / confident.sum()
    assert criterion(student, teacher)["loss_kd_loc"] == pytest.approx(expected.item(), rel=1e-5)


def test_criterion_student_positive_mask():
    teacher, student = make_teacher(), make_student()
    aligned = align_points(student, teacher)
    positive = torch.zeros(2, 23, dtype=torch.bool)
    positive[0, 3] = positive[1, 17] = True
    criterion = DistillationLoss(loc_points="student_positive", cls_points="student_positive")
    out = criterion(student, teacher, student_positive=positive)
    kl = bernoulli_kl_with_logits(student.quality_logits[:, aligned.student_index], teacher.quality_logits)
    assert out["loss_kd_loc"] == pytest.approx(((kl[0, 3] + kl[1, 17]) / 2).item(), rel=1e-5)
    # positives only on P6/P7 (no teacher there): nothing covered, exactly 0
    only_unaligned = torch.zeros(2, 23, dtype=torch.bool)
    only_unaligned[:, 21:] = True
    assert criterion(student, teacher, student_positive=only_unaligned)["loss_kd_loc"] == 0
    with pytest.raises(ValueError, match="student_positive"):
        criterion(student, teacher)
    with pytest.raises(ValueError, match="N_student"):
        criterion(student, teacher, student_positive=positive[:, :21])


def test_all_background_batch_gives_exactly_zero_without_nan():
    teacher = make_teacher()
    background = replace(teacher, quality_logits=torch.full_like(teacher.quality_logits, -20.0))
    out = DistillationLoss()(make_student(), background)  # cls and bbox on teacher-confident points
    assert out["loss_kd_cls"] == 0 and out["loss_kd_bbox"] == 0
    assert all(torch.isfinite(v) for v in out.values())
    assert out["loss_kd_loc"] > 0  # loc covers all points by default: "nothing here" is knowledge


# --- the criterion --------------------------------------------------------------------------------


def test_criterion_lambda_weighting_and_keys():
    student, teacher = make_student(), make_teacher()
    out = DistillationLoss(lambda_loc=0.2, lambda_cls=0.3, lambda_bbox=0.5, **ALL_POINTS)(student, teacher)
    assert set(out) == {"loss_kd_loc", "loss_kd_cls", "loss_kd_bbox", "loss_kd"}
    expected = 0.2 * out["loss_kd_loc"] + 0.3 * out["loss_kd_cls"] + 0.5 * out["loss_kd_bbox"]
    assert out["loss_kd"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert out["loss_kd"].dim() == 0


def test_lambda_zero_skips_a_term():
    student, teacher = make_student(distribution=False), make_teacher()
    with pytest.raises(ValueError, match='box_head="distribution"'):
        DistillationLoss()(student, teacher)
    out = DistillationLoss(lambda_bbox=0.0, **ALL_POINTS)(student, teacher)  # no head needed
    assert set(out) == {"loss_kd_loc", "loss_kd_cls", "loss_kd"}
    assert out["loss_kd"].item() == pytest.approx(
        (out["loss_kd_loc"] + out["loss_kd_cls"]).item() / 3, rel=1e-6
    )
    out = DistillationLoss(lambda_loc=0.0, lambda_cls=0.0, lambda_bbox=0.0)(student, teacher)
    assert set(out) == {"loss_kd"} and out["loss_kd"] == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"lambda_loc": -0.1},
        {"lambda_bbox": float("nan")},
        {"temperature": 0.0},
        {"bbox_sigma": -1.0},
        {"cls_mode": "kl"},
        {"bbox_mode": "l1"},
        {"bbox_target": "one_hot"},
        {"loc_points": "positives"},
        {"confidence_threshold": 1.5},
    ],
)
def test_bad_config_raises(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        DistillationLoss(**kwargs)
