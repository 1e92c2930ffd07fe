"""What a screening desk runs on: the image alarm's ROC and dangerous-object recall at a false-alarm rate.

*Image level.* An image alarms when any detection of a dangerous class (with ``alarm_on_unknown``,
also any detection of the unknown category: an object the model cannot name, which a screening desk
would usually want a look at) scores at least ``s``. Over
the images of a split, with "positive" meaning the image holds at least one dangerous object
(crowd boxes aside), every ``s`` gives a false-positive rate (clean images that alarm) and a
true-positive rate (images with a threat that alarm): the ROC curve. Reported: its area
(``alarm_auc``), the TPR at FPR 1 %, 5 % and 10 % (``alarm_tpr_at_fpr_0.01`` ...: the best TPR whose
FPR does not exceed the rate), and for a requested FPR the lowest score ``s`` that keeps the FPR
at or below it (``alarm_score_at_fpr``, with the ``alarm_tpr``/``alarm_fpr`` it gives). Both ways
are always reported as areas: ``alarm_auc_dangerous_only`` and ``alarm_auc_with_unknown``.

*Object level.* A dangerous detection is a true positive when it overlaps an unmatched dangerous
ground-truth box *of its class* with IoU >= 0.5 (greedy by score, as COCO matches; a detection
matching only a crowd box is ignored); every other dangerous detection is a false positive. Lowering
the score threshold trades recall of dangerous objects against false positives per image (FPPI):
``dangerous_recall_at_fppi_0.1`` / ``_0.5`` / ``_1`` is the best recall whose FPPI does not exceed it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pycocotools.coco import COCO

from dfss.data.classes import ClassTable

ALARM_FPRS = (0.01, 0.05, 0.10)
FPPI_POINTS = (0.1, 0.5, 1.0)
MATCH_IOU = 0.5


@dataclass(frozen=True)
class Roc:
    fpr: tuple[float, ...]  # rising, from (0, 0) to (1, 1)
    tpr: tuple[float, ...]
    thresholds: tuple[float, ...]  # alarm score s of each point (inf for the first: nothing alarms)
    num_positive: int  # images with a dangerous object
    num_negative: int

    @property
    def auc(self) -> float:
        if not self.num_positive or not self.num_negative:
            return math.nan
        return float(np.trapezoid(self.tpr, self.fpr))

    def tpr_at(self, max_fpr: float) -> float:
        if not self.num_positive or not self.num_negative:
            return math.nan
        return max(t for f, t in zip(self.fpr, self.tpr, strict=True) if f <= max_fpr + 1e-12)

    def score_at(self, max_fpr: float) -> tuple[float, float, float]:
        """(s, TPR, FPR) of the lowest alarm score whose FPR is at most ``max_fpr``."""
        if not self.num_positive or not self.num_negative:
            return math.nan, math.nan, math.nan
        best = max(i for i, f in enumerate(self.fpr) if f <= max_fpr + 1e-12)
        return self.thresholds[best], self.tpr[best], self.fpr[best]


def image_alarm_roc(image_scores: Sequence[float], image_positive: Sequence[bool]) -> Roc:
    """ROC of ``alarm = score >= s`` over images (``score`` = the image's best dangerous score, 0 if none)."""
    scores = np.asarray(image_scores, dtype=np.float64)
    positive = np.asarray(image_positive, dtype=bool)
    num_positive, num_negative = int(positive.sum()), int((~positive).sum())
    order = np.argsort(-scores, kind="stable")
    scores, positive = scores[order], positive[order]
    # One ROC point per distinct score: everything scoring >= it alarms.
    last_of_score = (
        np.r_[np.flatnonzero(np.diff(scores) != 0), len(scores) - 1] if len(scores) else np.array([], int)
    )
    tp = np.cumsum(positive)[last_of_score]
    fp = np.cumsum(~positive)[last_of_score]
    tpr = np.r_[0.0, tp / max(num_positive, 1)]
    fpr = np.r_[0.0, fp / max(num_negative, 1)]
    thresholds = np.r_[math.inf, scores[last_of_score]]
    return Roc(
        tuple(fpr.tolist()), tuple(tpr.tolist()), tuple(thresholds.tolist()), num_positive, num_negative
    )


def _xyxy(xywh: np.ndarray) -> np.ndarray:
    return np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)


def _paired_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of ``a[i]`` with ``b[i]`` (xyxy rows), computed as torchvision's ``box_iou`` does."""
    lt = np.maximum(a[:, :2], b[:, :2])
    wh = np.clip(np.minimum(a[:, 2:], b[:, 2:]) - lt, 0, None)
    inter = wh[:, 0] * wh[:, 1]
    union = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / union


def dangerous_object_curve(
    gt: COCO, results: Sequence[dict], dangerous_ids: set[int], image_ids: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(scores, recall, fppi, number of dangerous objects): one point per dangerous detection, by
    falling score.

    Matching is greedy per (image, class) in falling score (ties: the order of ``results``); only
    the detections that overlap a box of their class at IoU >= 0.5 go through the sequential
    loop, every IoU is computed at once (a split of 16,000 images x 100 detections takes well under
    a second)."""
    wanted_set = set(image_ids)
    wanted = np.fromiter(wanted_set, np.int64, len(wanted_set))
    dangerous = np.fromiter(dangerous_ids, np.int64, len(dangerous_ids))
    n = len(results)
    image = np.fromiter((r["image_id"] for r in results), np.int64, n)
    category = np.fromiter((r["category_id"] for r in results), np.int64, n)
    kept = np.flatnonzero(np.isin(category, dangerous) & np.isin(image, wanted))
    score = np.fromiter((results[i]["score"] for i in kept), np.float64, len(kept))
    boxes = _xyxy(np.array([results[i]["bbox"] for i in kept], dtype=np.float64).reshape(-1, 4))
    stride = int(max(category.max(initial=0), max(dangerous_ids, default=0))) + 1
    key = image[kept] * stride + category[kept]  # one (image, class) group per key
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    # Falling score; ties in the order of ``results`` (group of first appearance, then position),
    # which is also each group's greedy order.
    order = np.lexsort((np.arange(len(kept)), first[inverse], -score))
    score, boxes, key = score[order], boxes[order], key[order]

    anns = [
        a
        for a in gt.dataset["annotations"]
        if a["category_id"] in dangerous_ids and a["image_id"] in wanted_set
    ]
    crowd = np.array([bool(a.get("iscrowd", 0)) for a in anns], dtype=bool)
    num_objects = int((~crowd).sum())
    gt_key = np.array([a["image_id"] * stride + a["category_id"] for a in anns], dtype=np.int64)
    gt_order = np.lexsort((np.arange(len(anns)), crowd, gt_key))  # by group, real boxes first
    gt_key, crowd = gt_key[gt_order], crowd[gt_order]
    gt_boxes = _xyxy(np.array([anns[i]["bbox"] for i in gt_order], dtype=np.float64).reshape(-1, 4))

    # Every (detection, box of its group) pair, detection by detection.
    begin = np.searchsorted(gt_key, key, side="left")
    count = np.searchsorted(gt_key, key, side="right") - begin
    pair_det = np.repeat(np.arange(len(key)), count)
    offsets = np.r_[0, np.cumsum(count)]
    pair_gt = begin[pair_det] + np.arange(len(pair_det)) - offsets[pair_det]
    iou = _paired_iou(boxes[pair_det], gt_boxes[pair_gt])
    over = iou >= MATCH_IOU
    real = over & ~crowd[pair_gt]
    on_real = np.zeros(len(key), dtype=bool)
    on_real[pair_det[real]] = True
    on_crowd = np.zeros(len(key), dtype=bool)
    on_crowd[pair_det[over & crowd[pair_gt]]] = True

    hit = np.zeros(len(key), dtype=np.int8)  # 1 TP, 0 FP, -1 ignored (only a crowd region matched)
    taken: set[int] = set()
    real_list, iou_list, gt_list = real.tolist(), iou.tolist(), pair_gt.tolist()
    for d in np.flatnonzero(on_real).tolist():  # falling score: each group's greedy order
        best, best_iou = -1, -1.0
        for p in range(offsets[d], offsets[d + 1]):
            if real_list[p] and gt_list[p] not in taken and iou_list[p] > best_iou:
                best, best_iou = gt_list[p], iou_list[p]
        if best >= 0:
            taken.add(best)
            hit[d] = 1
    hit[(hit == 0) & on_crowd] = -1
    counted = hit >= 0
    scores, hits = score[counted], hit[counted].astype(np.int64)
    recall = np.cumsum(hits) / max(num_objects, 1)
    fppi = np.cumsum(1 - hits) / max(len(wanted_set), 1)
    return scores, recall, fppi, num_objects


def recall_at_fppi(recall: np.ndarray, fppi: np.ndarray, max_fppi: float) -> float:
    within = recall[fppi <= max_fppi + 1e-12]
    return float(within.max()) if within.size else 0.0


def operating_point_metrics(
    gt: COCO,
    results: Sequence[dict],
    class_table: ClassTable,
    image_ids: Sequence[int] | None = None,
    alarm_fpr: float = 0.05,
    alarm_on_unknown: bool = False,
) -> tuple[dict[str, float], Roc]:
    """The image-alarm and object-recall figures (see the module doc) and the alarm ROC."""
    image_ids = list(image_ids) if image_ids is not None else list(gt.imgs)
    dangerous_ids = {c.coco_id for c in class_table.known if class_table.is_dangerous(c)}
    with_unknown = dangerous_ids | set(class_table.unknown_ids)

    def alarm_scores(alarm_ids: set[int]) -> list[float]:
        best = dict.fromkeys(image_ids, 0.0)
        for r in results:
            if r["category_id"] in alarm_ids and r["image_id"] in best:
                best[r["image_id"]] = max(best[r["image_id"]], float(r["score"]))
        return [best[i] for i in image_ids]

    has_threat = dict.fromkeys(image_ids, False)
    for ann in gt.dataset["annotations"]:
        if (
            ann["category_id"] in dangerous_ids
            and ann["image_id"] in has_threat
            and not ann.get("iscrowd", 0)
        ):
            has_threat[ann["image_id"]] = True
    positive = [has_threat[i] for i in image_ids]
    rocs = {
        ids_are_unknown: image_alarm_roc(alarm_scores(ids), positive)
        for ids_are_unknown, ids in ((False, dangerous_ids), (True, with_unknown))
    }
    roc = rocs[alarm_on_unknown]
    metrics = {
        "alarm_auc": roc.auc,
        "alarm_on_unknown": float(alarm_on_unknown),
        "alarm_auc_dangerous_only": rocs[False].auc,
        "alarm_auc_with_unknown": rocs[True].auc,
    }
    for rate in ALARM_FPRS:
        metrics[f"alarm_tpr_at_fpr_{rate:g}"] = roc.tpr_at(rate)
    score, tpr, fpr = roc.score_at(alarm_fpr)
    if math.isinf(score):  # only "never alarm" keeps the FPR that low: no usable alarm score
        score = math.nan
    metrics.update(alarm_fpr_target=alarm_fpr, alarm_score_at_fpr=score, alarm_tpr=tpr, alarm_fpr=fpr)
    _, recall, fppi, num_objects = dangerous_object_curve(gt, results, dangerous_ids, image_ids)
    for point in FPPI_POINTS:
        metrics[f"dangerous_recall_at_fppi_{point:g}"] = (
            recall_at_fppi(recall, fppi, point) if num_objects else math.nan
        )
    return metrics, roc
