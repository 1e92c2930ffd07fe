"""The paper's three distillation terms as pure functions: each a true KL(teacher ‖ student).

Every term compares the student's output distribution at a point with the teacher's at the aligned
point (see :mod:`dfss.distill.align`), is ≥ 0, is exactly 0 when the two distributions are equal,
and sends gradient into the student only: the teacher-side argument (``target*``) is detached here,
whatever the caller did. Sums are computed in float32 whatever the input precision.

Temperature: logits are divided by τ and the KL is multiplied by τ² (Hinton et al.), so the size of
the gradient stays comparable as τ changes. This holds for the Bernoulli KL as for the softmax KL:
both have the gradient ``τ·(p_s − p_t)`` with respect to a student logit, where ``p_s``, ``p_t`` are
the probabilities of the logits divided by τ (``tests/test_distill_losses.py`` checks it).

Reduction (one rule for every term): ``sum(weight · kl) / clamp(normalizer, min=1)``, with the
normaliser ``sum(weight)`` (the number of covered points for a 0/1 weight) unless the caller passes
one (e.g. averaged over DDP ranks). It stays on the device: no ``.item()``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import generalized_box_iou_loss

CLS_MODES = ("bernoulli", "softmax")
BOX_TARGETS = ("two_hot", "gaussian")
POINT_MODES = ("all", "teacher_confident", "teacher_weighted", "student_positive")
_BIN_EPS = 1e-3  # distances are clipped to [0, R − 1 − ε] so the two-hot's right bin exists


# --- element-wise divergences -------------------------------------------------------------------


def bernoulli_kl_with_logits(pred_logits: Tensor, target_logits: Tensor, temperature: float = 1.0) -> Tensor:
    """Element-wise ``τ²·KL(Bern(σ(t/τ)) ‖ Bern(σ(s/τ)))`` for student logits ``s`` and teacher ``t``.

    Written as ``softplus(s') − softplus(t') + σ(t')·(t' − s')`` on the logits divided by τ
    (``s' = s/τ``, ``t' = t/τ``), which is the Bernoulli KL without any ``log(0)``; its gradient in
    ``s`` is ``τ·(σ(s/τ) − σ(t/τ))``.
    """
    s = pred_logits.float() / temperature
    t = target_logits.detach().float() / temperature
    kl = F.softplus(s) - F.softplus(t) + torch.sigmoid(t) * (t - s)
    return kl.clamp_min(0.0) * temperature**2  # clamp: rounding only, the KL itself is ≥ 0


def softmax_kl_with_logits(pred_logits: Tensor, target_logits: Tensor, temperature: float = 1.0) -> Tensor:
    """``τ²·KL(softmax(t/τ) ‖ softmax(s/τ))`` over the last dim; shape ``[...]`` for inputs ``[..., C]``."""
    log_p_student = F.log_softmax(pred_logits.float() / temperature, dim=-1)
    log_p_teacher = F.log_softmax(target_logits.detach().float() / temperature, dim=-1)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="none", log_target=True).sum(dim=-1)
    return kl.clamp_min(0.0) * temperature**2


def distribution_kl_with_logits(
    pred_logits: Tensor, target_probs: Tensor, temperature: float = 1.0
) -> Tensor:
    """``τ²·KL(q ‖ softmax(s/τ))`` over the last dim, for a target distribution ``q`` (zeros allowed)."""
    log_p_student = F.log_softmax(pred_logits.float() / temperature, dim=-1)
    kl = F.kl_div(log_p_student, target_probs.detach().float(), reduction="none").sum(dim=-1)
    return kl.clamp_min(0.0) * temperature**2


# --- box distances and their target distributions ------------------------------------------------


def ltrb_distances(boxes: Tensor, points: Tensor, strides: Tensor) -> Tensor:
    """Distances ``(l, t, r, b)`` from ``points [..., 2]`` to the sides of xyxy ``boxes [..., 4]``, in
    units of ``strides [...]``; a negative distance means the point lies outside the box."""
    stride = strides.to(boxes.dtype)[..., None]
    left_top = points.to(boxes.dtype) - boxes[..., :2]
    right_bottom = boxes[..., 2:] - points.to(boxes.dtype)
    return torch.cat([left_top, right_bottom], dim=-1) / stride


def representable(distances: Tensor, num_bins: int) -> Tensor:
    """``[...]`` 1.0 where the box of the distances ``[..., 4]`` contains its point and fits the bins
    ``0..R−1`` (every side in ``[0, R − 1]``), else 0.0: the points the box KD term covers."""
    distances = distances.detach()
    return ((distances >= 0) & (distances <= num_bins - 1)).all(dim=-1).float()


def two_hot_target(distances: Tensor, num_bins: int) -> Tensor:
    """``[..., R]`` distributions over the bins ``0..R−1``: the mass of each distance (clipped to
    ``[0, R − 1 − ε]``) split linearly between its floor and ceil bins, as GFL's DFL. The expectation
    is the clipped distance."""
    d = distances.detach().float().clamp(0.0, num_bins - 1 - _BIN_EPS)
    left = d.floor().long()
    weight_right = (d - left.float())[..., None]
    return F.one_hot(left, num_bins) * (1.0 - weight_right) + F.one_hot(left + 1, num_bins) * weight_right


def gaussian_target(distances: Tensor, num_bins: int, sigma: float = 1.0) -> Tensor:
    """``[..., R]`` discretised Gaussians ``∝ exp(−(i − d)²/2σ²)`` around each clipped distance ``d``
    (σ in bins), normalised over the bins; softer than the two-hot, its expectation is pulled
    towards the middle near the ends of the range."""
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    d = distances.detach().float().clamp(0.0, num_bins - 1 - _BIN_EPS)
    bins = torch.arange(num_bins, device=d.device, dtype=d.dtype)
    return torch.softmax(-((bins - d[..., None]) ** 2) / (2.0 * sigma**2), dim=-1)


# --- which points a term covers -----------------------------------------------------------------


def teacher_confidence(quality_logits: Tensor, cls_logits: Tensor) -> Tensor:
    """``[B, M]`` teacher detection score ``σ(objectness)·max_c σ(cls_c)`` (YOLOX's own score), detached."""
    quality = torch.sigmoid(quality_logits.detach().float())
    return quality * torch.sigmoid(cls_logits.detach().float()).amax(dim=-1)


def point_weights(
    mode: str,
    teacher_score: Tensor,
    threshold: float = 0.1,
    student_positive: Tensor | None = None,
) -> Tensor:
    """``[B, M]`` float weights of the points a term covers (detached).

    - ``"all"``: 1 everywhere.
    - ``"teacher_confident"``: 1 where ``teacher_score ≥ threshold``, else 0.
    - ``"teacher_weighted"``: the teacher's score itself (a soft version; normalised by its sum).
    - ``"student_positive"``: the caller's ``[B, M]`` mask of the student's foreground points.
    """
    if mode == "all":
        return torch.ones_like(teacher_score, dtype=torch.float32)
    if mode == "teacher_confident":
        return (teacher_score.detach() >= threshold).float()
    if mode == "teacher_weighted":
        return teacher_score.detach().float()
    if mode == "student_positive":
        if student_positive is None:
            raise ValueError('points="student_positive" needs the student_positive mask from the caller')
        if student_positive.shape != teacher_score.shape:
            raise ValueError(
                f"student_positive has shape {tuple(student_positive.shape)}, "
                f"expected {tuple(teacher_score.shape)}"
            )
        return student_positive.detach().float()
    raise ValueError(f"points must be one of {POINT_MODES}, got {mode!r}")


def _weighted_mean(values: Tensor, weight: Tensor | None, normalizer: Tensor | None) -> Tensor:
    """``sum(weight·values) / clamp(normalizer or sum(weight), 1)``, on the device."""
    if weight is None:
        weight = torch.ones_like(values)
    weight = weight.detach().to(values.dtype)
    total = (values * weight).sum()
    if normalizer is None:
        normalizer = weight.sum()
    return total / torch.as_tensor(normalizer, dtype=values.dtype, device=values.device).clamp_min(1.0)


# --- the three terms ------------------------------------------------------------------------------


def kd_loc_loss(
    pred_logits: Tensor,
    target_logits: Tensor,
    weight: Tensor | None = None,
    temperature: float = 1.0,
    normalizer: Tensor | None = None,
) -> Tensor:
    """``L_loc_soft``: Bernoulli KL of the teacher's objectness ``σ(o_t/τ)`` to the student's
    centerness ``σ(c_s/τ)``; logits ``[B, M]``, weight ``[B, M]``. (The released code took a softmax
    over this single logit, which is identically 1, so its term was identically 0.)"""
    return _weighted_mean(
        bernoulli_kl_with_logits(pred_logits, target_logits, temperature), weight, normalizer
    )


def kd_cls_loss(
    pred_logits: Tensor,
    target_logits: Tensor,
    weight: Tensor | None = None,
    temperature: float = 1.0,
    mode: str = "bernoulli",
    normalizer: Tensor | None = None,
) -> Tensor:
    """``L_cls_soft``: KL between the class distributions at each point; logits ``[B, M, C]``.

    - ``"bernoulli"`` (default): per-class Bernoulli KL on ``σ(z/τ)``, summed over classes — the KL
      of the joint distribution of ``C`` independent yes/no outcomes. The YOLOX teacher (and the
      FCOS student with its focal loss) are sigmoid-trained: each class probability is an
      independent "is it this class" with an absolute level, and low levels everywhere mean
      "nothing here". This mode transfers exactly that.
    - ``"softmax"``: Hinton's ``τ²·KL(softmax(t/τ) ‖ softmax(s/τ))``. A softmax is blind to a shift
      of all logits, so it discards the absolute level: a background point with every logit at −8
      and an object with every logit at +8 give the same target, and on background points it asks
      the student to copy the relative noise of near-zero scores. Kept for comparison with the paper.
    """
    if mode == "bernoulli":
        kl = bernoulli_kl_with_logits(pred_logits, target_logits, temperature).sum(dim=-1)
    elif mode == "softmax":
        kl = softmax_kl_with_logits(pred_logits, target_logits, temperature)
    else:
        raise ValueError(f"cls mode must be one of {CLS_MODES}, got {mode!r}")
    return _weighted_mean(kl, weight, normalizer)


def kd_bbox_loss(
    pred_logits: Tensor,
    target_distances: Tensor,
    weight: Tensor | None = None,
    temperature: float = 1.0,
    target: str = "two_hot",
    sigma: float = 1.0,
    normalizer: Tensor | None = None,
) -> Tensor:
    """``L_bbox_soft``: KL between per-side distance distributions, averaged over the 4 sides.

    ``pred_logits [B, M, 4, R]``: the student's logits over the bins ``0..R−1`` (stride units);
    ``target_distances [B, M, 4]``: the teacher's box as distances from the *student's* point in the
    student's stride units (:func:`ltrb_distances`), made a distribution by :func:`two_hot_target`
    or :func:`gaussian_target`. The mean over the sides puts the term on the scale of the student's
    own DFL (GFL averages its 4 sides too); a sum would weigh it 4x. Left out — of the sum and of
    the default normaliser — are points whose teacher box does not contain the student's point (a
    negative distance) and points whose box reaches past the last bin (a side over ``R − 1``
    strides): the student's distribution cannot express that box, and clipping it would teach a
    truncated one. FCOS's own assignment keeps every level's targets under 8 strides (P3–P6: the
    scale ranges), so with ``R = 17`` what is left out are the teacher's large boxes seen from
    fine levels. A caller passing ``normalizer`` must leave them out of it too.
    """
    num_bins = pred_logits.shape[-1]
    if target == "two_hot":
        target_probs = two_hot_target(target_distances, num_bins)
    elif target == "gaussian":
        target_probs = gaussian_target(target_distances, num_bins, sigma)
    else:
        raise ValueError(f"bbox target must be one of {BOX_TARGETS}, got {target!r}")
    kl = distribution_kl_with_logits(pred_logits, target_probs, temperature).mean(dim=-1)  # [B, M]
    inside = representable(target_distances, num_bins)
    weight = inside if weight is None else weight.detach().float() * inside
    return _weighted_mean(kl, weight, normalizer)


def kd_giou_loss(
    pred_boxes: Tensor,
    target_boxes: Tensor,
    weight: Tensor | None = None,
    normalizer: Tensor | None = None,
) -> Tensor:
    """Alternative box term (``bbox_mode="giou"``, not a KL): ``1 − GIoU`` between the student's and
    the teacher's decoded xyxy boxes ``[B, M, 4]``, for a student without a distribution head.
    Position-independent, so no point is left out. 0 for equal boxes, ≥ 0, at most 2."""
    loss = generalized_box_iou_loss(pred_boxes.float(), target_boxes.detach().float(), reduction="none")
    return _weighted_mean(loss, weight, normalizer)
