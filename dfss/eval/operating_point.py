"""What a screening desk runs on: the image alarm's ROC and dangerous-object recall at a false-alarm rate.

*Image level.* An image alarms when any detection of a dangerous class scores at least ``s``. Over
the images of a split, with "positive" meaning the image holds at least one dangerous object
(crowd boxes aside), every ``s`` gives a false-positive rate (clean images that alarm) and a
true-positive rate (images with a threat that alarm): the ROC curve. Reported: its area
(``alarm_auc``), the TPR at FPR 1 %, 5 % and 10 % (``alarm_tpr_at_fpr_0.01`` ...: the best TPR whose
FPR does not exceed the rate), and for a requested FPR the lowest score ``s`` that keeps the FPR
at or below it (``alarm_score_at_fpr``, with the ``alarm_tpr``/``alarm_fpr`` it gives).

*Object level.* A dangerous detection is a true positive when it overlaps an unmatched dangerous
ground-truth box *of its class* with IoU >= 0.5 (greedy by score, as COCO matches; a detection
matching only a crowd box is ignored); every other dangerous detection is a false positive. Lowering
the score threshold trades recall of dangerous objects against false positives per image (FPPI):
``dangerous_recall_at_fppi_0.1`` / ``_0.5`` / ``_1`` is the best recall whose FPPI does not exceed it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from pycocotools.coco import COCO
from torchvision.ops import box_iou

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


def _xyxy(boxes: list[list[float]]) -> torch.Tensor:
    t = torch.tensor(boxes, dtype=torch.float64).reshape(-1, 4)
    return torch.cat([t[:, :2], t[:, :2] + t[:, 2:]], dim=1)


def dangerous_object_curve(
    gt: COCO, results: Sequence[dict], dangerous_ids: set[int], image_ids: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(scores, recall, fppi, number of dangerous objects): one point per dangerous detection, by
    falling score."""
    detections: dict[tuple[int, int], list[dict]] = defaultdict(list)
    for r in results:
        if r["category_id"] in dangerous_ids:
            detections[(r["image_id"], r["category_id"])].append(r)
    wanted = set(image_ids)
    truth: dict[tuple[int, int], list[dict]] = defaultdict(list)
    for ann in gt.dataset["annotations"]:
        if ann["category_id"] in dangerous_ids and ann["image_id"] in wanted:
            truth[(ann["image_id"], ann["category_id"])].append(ann)
    num_objects = sum(1 for anns in truth.values() for a in anns if not a.get("iscrowd", 0))
    scored: list[tuple[float, int]] = []  # (score, 1 = TP, 0 = FP); ignored detections left out
    for key, dets in detections.items():
        if key[0] not in wanted:
            continue
        dets = sorted(dets, key=lambda d: -d["score"])
        anns = sorted(truth.get(key, []), key=lambda a: a.get("iscrowd", 0))  # real boxes first
        if not anns:
            scored.extend((d["score"], 0) for d in dets)
            continue
        iou = box_iou(_xyxy([d["bbox"] for d in dets]), _xyxy([a["bbox"] for a in anns])).numpy()
        crowd = np.array([bool(a.get("iscrowd", 0)) for a in anns])
        taken = np.zeros(len(anns), dtype=bool)
        for i, d in enumerate(dets):
            free = np.flatnonzero(~taken & ~crowd & (iou[i] >= MATCH_IOU))
            if free.size:
                taken[free[np.argmax(iou[i, free])]] = True
                scored.append((d["score"], 1))
            elif (crowd & (iou[i] >= MATCH_IOU)).any():
                continue  # a detection on a crowd region neither counts nor costs
            else:
                scored.append((d["score"], 0))
    scored.sort(key=lambda x: -x[0])
    scores = np.array([s for s, _ in scored], dtype=np.float64)
    hits = np.array([h for _, h in scored], dtype=np.int64)
    recall = np.cumsum(hits) / max(num_objects, 1)
    fppi = np.cumsum(1 - hits) / max(len(wanted), 1)
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
) -> tuple[dict[str, float], Roc]:
    """The image-alarm and object-recall figures (see the module doc) and the alarm ROC."""
    image_ids = list(image_ids) if image_ids is not None else list(gt.imgs)
    dangerous_ids = {c.coco_id for c in class_table.known if class_table.is_dangerous(c)}
    best = dict.fromkeys(image_ids, 0.0)
    for r in results:
        if r["category_id"] in dangerous_ids and r["image_id"] in best:
            best[r["image_id"]] = max(best[r["image_id"]], float(r["score"]))
    has_threat = dict.fromkeys(image_ids, False)
    for ann in gt.dataset["annotations"]:
        if (
            ann["category_id"] in dangerous_ids
            and ann["image_id"] in has_threat
            and not ann.get("iscrowd", 0)
        ):
            has_threat[ann["image_id"]] = True
    roc = image_alarm_roc([best[i] for i in image_ids], [has_threat[i] for i in image_ids])
    metrics = {"alarm_auc": roc.auc}
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
