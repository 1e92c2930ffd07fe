"""Post-processing of raw dense outputs: scores, the unknown rule, top-k, decode, NMS, original coords.

Everything is batched over the images of a batch: candidates of all images go through one
``torchvision.ops.batched_nms`` call (image index and class together form the NMS group), and the
per-image ranking is done with sorts and scatters, not a Python loop over images.

Scores: FCOS ``sqrt(sigmoid(cls) * sigmoid(centerness))``, YOLOX ``sigmoid(objectness) * sigmoid(cls)``
(chosen from ``outputs.box_format`` unless ``score_mode`` says otherwise).

The unknown rule (paper §2.3), with threshold ``T`` = ``unknown_threshold``: a point whose quality
(objectness / centerness probability ``q``) is at least ``unknown_min_quality`` — something is there —
but whose best class probability ``p_max`` is below ``T`` — the model cannot name it — is *also*
emitted as the unknown class (label ``K``, one past the known classes), scored ``q · (1 − p_max)``:
"an object, and an unnamed one". The rule only adds: the known detections, their scores and their
cap (``max_detections``) are exactly those of the rule switched off, and the unknown detections have
a cap of their own (``unknown_max_detections``), so switching the rule on never costs a known
detection (a screening desk switches it on to add a warning, never to lose a knife). ``T = 0``
disables the rule. Map label ``K`` to the dataset's unknown category with
:func:`detections_to_coco`, which looks it up in the class table (never a hard-coded index).

What "quality" means per model family: YOLOX's objectness (trained on every point: is an object
here?); a DFSS student's centerness, which the KD loc term teaches to follow the teacher's
objectness on every point; a plain FCOS student's centerness is trained on foreground points only,
sits near 0.5 on background and is no objectness (measured in ``results/quality_separation``; the
tasks warn when the rule is on for such a model: :func:`dfss.models.checkpoints.quality_is_objectness`).

Two steps: :func:`decode` turns raw outputs into boxes in input pixels and probabilities
(:class:`DecodedOutputs`, fixed by the weights — what an exported model computes in its graph), and
:func:`postprocess_decoded` does the rest (scores, the unknown rule, top-k, NMS), whose settings a
deployment may change without re-exporting. :func:`postprocess` is the two in one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.ops import batched_nms

from dfss.data.classes import ClassTable
from dfss.data.transforms import letterbox_to_original
from dfss.errors import ConfigError
from dfss.models.outputs import DenseOutputs, decode_boxes

SCORE_MODES = ("sqrt_product", "product")
_DEFAULT_SCORE_MODE = {"ltrb": "sqrt_product", "yolox": "product"}


@dataclass(frozen=True)
class PostProcessConfig:
    score_threshold: float = 0.05  # score floor for candidates
    nms_iou: float = 0.6  # class-wise NMS IoU threshold
    topk_per_level: int = 1000  # candidates kept per pyramid level before NMS
    max_detections: int = 100  # known detections per image
    unknown_threshold: float = 0.0  # T of the unknown rule; 0 disables it
    unknown_min_quality: float = 0.5  # quality probability a point needs to count as an object
    unknown_max_detections: int = 100  # unknown detections per image, on top of max_detections
    score_mode: str | None = None  # "sqrt_product" (FCOS) | "product" (YOLOX) | None: from box_format

    def __post_init__(self) -> None:
        for name in ("score_threshold", "nms_iou", "unknown_threshold", "unknown_min_quality"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {value}")
        if self.topk_per_level <= 0 or self.max_detections <= 0 or self.unknown_max_detections <= 0:
            raise ConfigError("topk_per_level, max_detections and unknown_max_detections must be positive")
        if self.score_mode is not None and self.score_mode not in SCORE_MODES:
            raise ConfigError(f"score_mode must be one of {SCORE_MODES} or None, got {self.score_mode!r}")


@dataclass(frozen=True)
class UnknownRule:
    """The unknown rule's settings (the ``threshold`` config group): ``T = 0`` disables it."""

    T: float = 0.0
    min_quality: float = 0.5
    max_detections: int = 100  # unknown detections per image, on top of the known ones

    def __post_init__(self) -> None:
        if not 0.0 <= self.T <= 1.0:
            raise ConfigError(f"the unknown threshold T must be in [0, 1], got {self.T}")
        if not 0.0 <= self.min_quality <= 1.0:
            raise ConfigError(f"min_quality must be in [0, 1], got {self.min_quality}")
        if self.max_detections <= 0:
            raise ConfigError(f"threshold.max_detections must be positive, got {self.max_detections}")

    def apply(self, config: PostProcessConfig) -> PostProcessConfig:
        """``config`` with this rule's threshold, quality floor and cap."""
        return dataclasses.replace(
            config,
            unknown_threshold=self.T,
            unknown_min_quality=self.min_quality,
            unknown_max_detections=self.max_detections,
        )


@dataclass(frozen=True)
class Detections:
    """Detections of ``B`` images, padded to ``D`` (``max_detections``, plus ``unknown_max_detections``
    with the unknown rule on); ``valid`` marks the real ones."""

    boxes: Tensor  # [B, D, 4] xyxy in original image pixels
    scores: Tensor  # [B, D] sorted descending within each image (valid ones first)
    labels: Tensor  # [B, D] int64: 0..K-1 known classes, K = unknown
    valid: Tensor  # [B, D] bool

    def per_image(self, index: int) -> tuple[Tensor, Tensor, Tensor]:
        """``(boxes [n, 4], scores [n], labels [n])`` of image ``index``."""
        keep = self.valid[index]
        return self.boxes[index][keep], self.scores[index][keep], self.labels[index][keep]


@dataclass(frozen=True)
class DecodedOutputs:
    """Decoded per-point outputs of ``B`` images with ``N`` points: what post-processing starts from."""

    boxes: Tensor  # [B, N, 4] float xyxy in input pixels, not clipped
    class_probs: Tensor  # [B, N, K] float sigmoid of the class logits
    quality: Tensor  # [B, N] float sigmoid of the centerness / objectness logits
    num_points_per_level: tuple[int, ...]  # sums to N
    box_format: str  # the model family's (``outputs.box_format``): picks the default score mode


def decode(outputs: DenseOutputs) -> DecodedOutputs:
    """Boxes in input pixels and probabilities from raw outputs (pure, batched, no thresholds)."""
    return DecodedOutputs(
        boxes=decode_boxes(outputs),
        class_probs=outputs.cls_logits.float().sigmoid(),
        quality=outputs.quality_logits.float().sigmoid(),
        num_points_per_level=outputs.num_points_per_level,
        box_format=outputs.box_format,
    )


def known_scores(class_probs: Tensor, quality: Tensor, box_format: str, config: PostProcessConfig) -> Tensor:
    """``[B, N, K]`` score per point and known class (the unknown rule never changes them)."""
    mode = config.score_mode or _DEFAULT_SCORE_MODE[box_format]
    product = class_probs * quality[..., None]
    return product.sqrt() if mode == "sqrt_product" else product


def unknown_scores(class_probs: Tensor, quality: Tensor, config: PostProcessConfig) -> Tensor:
    """``[B, N, 1]``: ``q · (1 − p_max)`` where the point is an object no class names, else 0."""
    best = class_probs.amax(dim=-1)
    flagged = (best < config.unknown_threshold) & (quality >= config.unknown_min_quality)
    return torch.where(flagged, quality * (1.0 - best), torch.zeros_like(quality))[..., None]


def _topk_per_level(scores: Tensor, num_points_per_level: tuple[int, ...], k: int) -> tuple[Tensor, Tensor]:
    """Top-``k`` (score, flat index into ``N * (K + 1)``) per level, concatenated: ``[B, sum k_l]``."""
    batch, _, width = scores.shape
    top_scores, top_indices = [], []
    start = 0
    for num_points in num_points_per_level:
        level = scores[:, start : start + num_points].reshape(batch, -1)
        values, indices = level.topk(min(k, level.shape[1]), dim=1)
        top_scores.append(values)
        top_indices.append(indices + start * width)
        start += num_points
    return torch.cat(top_scores, dim=1), torch.cat(top_indices, dim=1)


@torch.no_grad()
def postprocess(
    outputs: DenseOutputs,
    config: PostProcessConfig,
    input_size: int,
    orig_sizes: Tensor | None = None,
) -> Detections:
    """Detections per image from raw outputs on ``input_size x input_size`` letterboxed inputs.

    ``orig_sizes`` (``[B, 2]`` height, width) maps boxes back to the original images; without it
    boxes stay in input pixels (clipped to the canvas).
    """
    return postprocess_decoded(decode(outputs), config, input_size, orig_sizes)


@torch.no_grad()
def postprocess_decoded(
    decoded: DecodedOutputs,
    config: PostProcessConfig,
    input_size: int,
    orig_sizes: Tensor | None = None,
) -> Detections:
    """:func:`postprocess` from already decoded outputs (e.g. an exported model's)."""
    boxes = decoded.boxes.clamp(0, input_size)
    if orig_sizes is not None:
        boxes = letterbox_to_original(boxes, orig_sizes, input_size)
    known = known_scores(decoded.class_probs, decoded.quality, decoded.box_format, config)
    detections = _select(boxes, known, decoded.num_points_per_level, config, config.max_detections, 0)
    if config.unknown_threshold <= 0:
        return detections
    unknown = unknown_scores(decoded.class_probs, decoded.quality, config)
    flagged = _select(
        boxes, unknown, decoded.num_points_per_level, config, config.unknown_max_detections, known.shape[-1]
    )
    return _merge(detections, flagged)


def _select(
    boxes: Tensor,
    scores: Tensor,
    num_points_per_level: tuple[int, ...],
    config: PostProcessConfig,
    cap: int,
    first_label: int,
) -> Detections:
    """Top-k per level, score floor, class-wise NMS and at most ``cap`` per image, for ``scores``
    ``[B, N, W]`` of labels ``first_label .. first_label + W − 1`` at the points' ``boxes [B, N, 4]``."""
    batch, width = scores.shape[0], scores.shape[-1]
    top_scores, flat_index = _topk_per_level(scores, num_points_per_level, config.topk_per_level)
    point_index, labels = flat_index // width, flat_index % width + first_label
    boxes = boxes.gather(1, point_index[..., None].expand(-1, -1, 4))

    # One NMS over the candidates of all images: (image, class) is the NMS group.
    image_index = torch.arange(batch, device=boxes.device)[:, None].expand_as(labels)
    keep = (
        (top_scores > config.score_threshold)
        & (boxes[..., 2] > boxes[..., 0])
        & (boxes[..., 3] > boxes[..., 1])
    )
    cand_boxes, cand_scores = boxes[keep], top_scores[keep]
    cand_labels, cand_images = labels[keep], image_index[keep]
    groups = cand_images * (first_label + width) + cand_labels
    kept = batched_nms(cand_boxes, cand_scores, groups, config.nms_iou)
    # batched_nms returns indices by descending score; a stable sort by image keeps that order per image.
    kept = kept[torch.sort(cand_images[kept], stable=True).indices]
    kept_images = cand_images[kept]
    counts = torch.bincount(kept_images, minlength=batch)
    first = torch.cumsum(counts, 0) - counts
    rank = torch.arange(len(kept), device=boxes.device) - first[kept_images]
    take = rank < cap
    kept, kept_images, rank = kept[take], kept_images[take], rank[take]

    out_boxes = boxes.new_zeros(batch, cap, 4)
    out_scores = boxes.new_zeros(batch, cap)
    out_labels = torch.full((batch, cap), -1, dtype=torch.int64, device=boxes.device)
    valid = torch.zeros(batch, cap, dtype=torch.bool, device=boxes.device)
    out_boxes[kept_images, rank] = cand_boxes[kept]
    out_scores[kept_images, rank] = cand_scores[kept]
    out_labels[kept_images, rank] = cand_labels[kept]
    valid[kept_images, rank] = True
    return Detections(out_boxes, out_scores, out_labels, valid)


def _merge(first: Detections, second: Detections) -> Detections:
    """Both sets per image, sorted by score (valid ones first)."""
    boxes = torch.cat([first.boxes, second.boxes], dim=1)
    scores = torch.cat([first.scores, second.scores], dim=1)
    labels = torch.cat([first.labels, second.labels], dim=1)
    valid = torch.cat([first.valid, second.valid], dim=1)
    order = torch.where(valid, scores, torch.full_like(scores, -1.0)).argsort(
        dim=1, descending=True, stable=True
    )
    return Detections(
        boxes.gather(1, order[..., None].expand(-1, -1, 4)),
        scores.gather(1, order),
        labels.gather(1, order),
        valid.gather(1, order),
    )


def detections_to_coco(
    detections: Detections, image_ids: Tensor | Sequence[int], class_table: ClassTable
) -> list[dict]:
    """COCO results (``image_id``, ``category_id`` in the dataset's ids, ``bbox`` xywh, ``score``);
    ``image_ids`` one per image of the batch, a tensor or a list.

    Label ``K`` (the unknown rule) maps to the table's unknown category; an unknown detection with
    no unknown category in the table is an error.
    """
    category_of = list(class_table.coco_ids)
    unknown_id = class_table.unknown_ids[0] if class_table.unknown_ids else None
    results = []
    boxes = detections.boxes.detach().cpu()
    ids = image_ids.tolist() if isinstance(image_ids, Tensor) else [int(i) for i in image_ids]
    if len(ids) != detections.boxes.shape[0]:
        raise ValueError(f"{len(ids)} image ids for a batch of {detections.boxes.shape[0]} images")
    for b, image_id in enumerate(ids):
        valid = detections.valid[b].cpu()
        for (x1, y1, x2, y2), score, label in zip(
            boxes[b][valid].tolist(),
            detections.scores[b][valid].tolist(),
            detections.labels[b][valid].tolist(),
            strict=True,
        ):
            if label == len(category_of):
                if unknown_id is None:
                    raise ValueError(
                        "the unknown rule emitted a detection but the data set has no category whose "
                        f"supercategory is one of {list(class_table.unknown_supercategories)}"
                    )
                category_id = unknown_id
            else:
                category_id = category_of[label]
            results.append(
                {
                    "image_id": image_id,
                    "category_id": category_id,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": score,
                }
            )
    return results
