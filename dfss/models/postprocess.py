"""Post-processing of raw dense outputs: scores, the unknown rule, top-k, decode, NMS, original coords.

Everything is batched over the images of a batch: candidates of all images go through one
``torchvision.ops.batched_nms`` call (image index and class together form the NMS group), and the
per-image ranking is done with sorts and scatters, not a Python loop over images.

Scores: FCOS ``sqrt(sigmoid(cls) * sigmoid(centerness))``, YOLOX ``sigmoid(objectness) * sigmoid(cls)``
(chosen from ``outputs.box_format`` unless ``score_mode`` says otherwise).

The unknown rule (paper §2.3), with threshold ``T`` = ``unknown_threshold``: a point whose quality
(objectness / centerness probability) is at least ``unknown_min_quality`` — something is there — but
whose best class probability is below ``T`` — the model cannot name it — is emitted as the unknown
class (label ``K``, one past the known classes) scored by its quality, *instead of* as a known class.
``T = 0`` disables the rule. Map label ``K`` to the dataset's unknown category with
:func:`detections_to_coco`, which looks it up in the class table (never a hard-coded index).

Two steps: :func:`decode` turns raw outputs into boxes in input pixels and probabilities
(:class:`DecodedOutputs`, fixed by the weights — what an exported model computes in its graph), and
:func:`postprocess_decoded` does the rest (scores, the unknown rule, top-k, NMS), whose settings a
deployment may change without re-exporting. :func:`postprocess` is the two in one.
"""

from __future__ import annotations

import dataclasses
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
    max_detections: int = 100  # per image
    unknown_threshold: float = 0.0  # T of the unknown rule; 0 disables it
    unknown_min_quality: float = 0.5  # quality probability a point needs to count as an object
    score_mode: str | None = None  # "sqrt_product" (FCOS) | "product" (YOLOX) | None: from box_format

    def __post_init__(self) -> None:
        for name in ("score_threshold", "nms_iou", "unknown_threshold", "unknown_min_quality"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {value}")
        if self.topk_per_level <= 0 or self.max_detections <= 0:
            raise ConfigError("topk_per_level and max_detections must be positive")
        if self.score_mode is not None and self.score_mode not in SCORE_MODES:
            raise ConfigError(f"score_mode must be one of {SCORE_MODES} or None, got {self.score_mode!r}")


@dataclass(frozen=True)
class UnknownRule:
    """The unknown rule's settings (the ``threshold`` config group): ``T = 0`` disables it."""

    T: float = 0.0
    min_quality: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.T <= 1.0:
            raise ConfigError(f"the unknown threshold T must be in [0, 1], got {self.T}")
        if not 0.0 <= self.min_quality <= 1.0:
            raise ConfigError(f"min_quality must be in [0, 1], got {self.min_quality}")

    def apply(self, config: PostProcessConfig) -> PostProcessConfig:
        """``config`` with this rule's threshold and quality floor."""
        return dataclasses.replace(config, unknown_threshold=self.T, unknown_min_quality=self.min_quality)


@dataclass(frozen=True)
class Detections:
    """Detections of ``B`` images, padded to ``D = max_detections``; ``valid`` marks the real ones."""

    boxes: Tensor  # [B, D, 4] xyxy in original image pixels
    scores: Tensor  # [B, D] sorted descending within each image
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


def _scores(class_probs: Tensor, quality: Tensor, box_format: str, config: PostProcessConfig) -> Tensor:
    mode = config.score_mode or _DEFAULT_SCORE_MODE[box_format]
    known = (
        (class_probs * quality[..., None]).sqrt()
        if mode == "sqrt_product"
        else class_probs * quality[..., None]
    )
    if config.unknown_threshold > 0:
        is_unknown = (class_probs.amax(dim=-1) < config.unknown_threshold) & (
            quality >= config.unknown_min_quality
        )
        known = known.masked_fill(is_unknown[..., None], 0.0)
        unknown = torch.where(is_unknown, quality, torch.zeros_like(quality))
    else:
        unknown = torch.zeros_like(quality)
    return torch.cat([known, unknown[..., None]], dim=-1)


def candidate_scores(outputs: DenseOutputs, config: PostProcessConfig) -> Tensor:
    """``[B, N, K + 1]`` scores per point and class; the last column is the unknown class."""
    cls_prob = outputs.cls_logits.float().sigmoid()  # [B, N, K]
    quality = outputs.quality_logits.float().sigmoid()  # [B, N]
    return _scores(cls_prob, quality, outputs.box_format, config)


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
    batch = decoded.boxes.shape[0]
    width = decoded.class_probs.shape[-1] + 1
    scores = _scores(decoded.class_probs, decoded.quality, decoded.box_format, config)
    top_scores, flat_index = _topk_per_level(scores, decoded.num_points_per_level, config.topk_per_level)
    point_index, labels = flat_index // width, flat_index % width
    boxes = decoded.boxes.gather(1, point_index[..., None].expand(-1, -1, 4)).clamp(0, input_size)
    if orig_sizes is not None:
        boxes = letterbox_to_original(boxes, orig_sizes, input_size)

    # One NMS over the candidates of all images: (image, class) is the NMS group.
    image_index = torch.arange(batch, device=boxes.device)[:, None].expand_as(labels)
    keep = (
        (top_scores > config.score_threshold)
        & (boxes[..., 2] > boxes[..., 0])
        & (boxes[..., 3] > boxes[..., 1])
    )
    cand_boxes, cand_scores = boxes[keep], top_scores[keep]
    cand_labels, cand_images = labels[keep], image_index[keep]
    kept = batched_nms(cand_boxes, cand_scores, cand_images * width + cand_labels, config.nms_iou)
    # batched_nms returns indices by descending score; a stable sort by image keeps that order per image.
    kept = kept[torch.sort(cand_images[kept], stable=True).indices]
    kept_images = cand_images[kept]
    counts = torch.bincount(kept_images, minlength=batch)
    first = torch.cumsum(counts, 0) - counts
    rank = torch.arange(len(kept), device=boxes.device) - first[kept_images]
    take = rank < config.max_detections
    kept, kept_images, rank = kept[take], kept_images[take], rank[take]

    d = config.max_detections
    out_boxes = boxes.new_zeros(batch, d, 4)
    out_scores = boxes.new_zeros(batch, d)
    out_labels = torch.full((batch, d), -1, dtype=torch.int64, device=boxes.device)
    valid = torch.zeros(batch, d, dtype=torch.bool, device=boxes.device)
    out_boxes[kept_images, rank] = cand_boxes[kept]
    out_scores[kept_images, rank] = cand_scores[kept]
    out_labels[kept_images, rank] = cand_labels[kept]
    valid[kept_images, rank] = True
    return Detections(out_boxes, out_scores, out_labels, valid)


def detections_to_coco(detections: Detections, image_ids: Tensor, class_table: ClassTable) -> list[dict]:
    """COCO results (``image_id``, ``category_id`` in the dataset's ids, ``bbox`` xywh, ``score``).

    Label ``K`` (the unknown rule) maps to the table's unknown category; an unknown detection with
    no unknown category in the table is an error.
    """
    category_of = list(class_table.coco_ids)
    unknown_id = class_table.unknown_ids[0] if class_table.unknown_ids else None
    results = []
    boxes = detections.boxes.detach().cpu()
    for b, image_id in enumerate(image_ids.tolist()):
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
