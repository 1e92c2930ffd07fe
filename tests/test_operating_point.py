"""Screening figures: the image alarm's ROC and dangerous-object recall at false positives per image."""

import math

import numpy as np
import pytest

from dfss.data.classes import ClassTable
from dfss.data.coco import coco_from_dict
from dfss.eval.coco_metrics import evaluate_coco
from dfss.eval.operating_point import dangerous_object_curve, image_alarm_roc, recall_at_fppi
from tests.helpers.data import (
    CATEGORIES,  # knife 3 (dangerous), phone 7 / keys 11 (normal), mystery 20 (unknown)
)

SCISSORS = {"id": 5, "name": "scissors", "supercategory": "dangerous"}


def test_alarm_roc_on_a_hand_checked_case():
    # By falling score: 0.9 threat, 0.8 clean, 0.7 threat, 0.6 clean, 0.0 threat (no dangerous detection).
    roc = image_alarm_roc([0.9, 0.8, 0.7, 0.0, 0.6], [True, False, True, True, False])
    assert roc.fpr == pytest.approx((0, 0, 0.5, 0.5, 1, 1))
    assert roc.tpr == pytest.approx((0, 1 / 3, 1 / 3, 2 / 3, 2 / 3, 1))
    assert roc.thresholds[1:] == pytest.approx((0.9, 0.8, 0.7, 0.6, 0.0))
    assert roc.auc == pytest.approx(0.5)  # 3 of the 6 (threat, clean) pairs ranked right
    assert roc.tpr_at(0.01) == pytest.approx(1 / 3) and roc.tpr_at(0.5) == pytest.approx(2 / 3)
    assert roc.score_at(0.05) == pytest.approx((0.9, 1 / 3, 0.0))
    assert roc.score_at(0.5) == pytest.approx((0.7, 2 / 3, 0.5))  # the lowest s with FPR <= 0.5


def test_alarm_auc_is_the_probability_a_threat_image_outranks_a_clean_one():
    rng = np.random.default_rng(0)
    scores = np.round(rng.random(300), 2)  # rounded: many ties, which count one half
    positive = rng.random(300) < scores  # higher scores are more often threats
    roc = image_alarm_roc(scores.tolist(), positive.tolist())
    pos, neg = scores[positive][:, None], scores[~positive][None, :]
    want = ((pos > neg).sum() + 0.5 * (pos == neg).sum()) / (pos.size * neg.size)
    assert roc.auc == pytest.approx(want)
    assert roc.fpr[-1] == 1.0 and roc.tpr[-1] == 1.0 and all(np.diff(roc.fpr) >= 0)


def _gt():
    images = [{"id": i, "file_name": f"{i}.png", "width": 100, "height": 100} for i in (1, 2, 3)]

    def ann(ann_id, image_id, cat, box, crowd=0):
        return {
            "id": ann_id,
            "image_id": image_id,
            "category_id": cat,
            "bbox": box,
            "area": box[2] * box[3],
            "iscrowd": crowd,
        }

    annotations = [
        ann(1, 1, 3, [10, 10, 20, 20]),  # knife A
        ann(2, 1, 3, [60, 60, 30, 30], crowd=1),  # a crowd of knives
        ann(3, 2, 5, [40, 40, 20, 20]),  # scissors B
        ann(4, 3, 7, [10, 10, 20, 20]),  # a phone: image 3 holds nothing dangerous
    ]
    return coco_from_dict(
        {"images": images, "annotations": annotations, "categories": [*CATEGORIES, SCISSORS]}
    )


DETECTIONS = [
    {"image_id": 1, "category_id": 3, "bbox": [10, 10, 20, 20], "score": 0.9},  # knife on A: TP
    {"image_id": 1, "category_id": 3, "bbox": [11, 10, 20, 20], "score": 0.8},  # duplicate on A: FP
    {"image_id": 1, "category_id": 3, "bbox": [62, 62, 25, 25], "score": 0.7},  # on the crowd: ignored
    {"image_id": 1, "category_id": 5, "bbox": [10, 10, 20, 20], "score": 0.6},  # scissors on a knife: FP
    {"image_id": 2, "category_id": 5, "bbox": [41, 40, 20, 20], "score": 0.5},  # scissors on B: TP
    {"image_id": 3, "category_id": 7, "bbox": [10, 10, 20, 20], "score": 0.95},  # a phone: not dangerous
    {"image_id": 3, "category_id": 3, "bbox": [70, 70, 10, 10], "score": 0.3},  # a false knife: FP
]


def test_dangerous_recall_at_false_positives_per_image():
    table = ClassTable.from_categories([*CATEGORIES, SCISSORS])
    dangerous = {c.coco_id for c in table.known if table.is_dangerous(c)}
    scores, recall, fppi, num_objects = dangerous_object_curve(_gt(), DETECTIONS, dangerous, [1, 2, 3])
    assert num_objects == 2  # the crowd box is not an object to find
    assert scores.tolist() == [0.9, 0.8, 0.6, 0.5, 0.3]
    assert recall.tolist() == pytest.approx([0.5, 0.5, 0.5, 1.0, 1.0])
    assert fppi.tolist() == pytest.approx([0, 1 / 3, 2 / 3, 2 / 3, 1])
    assert recall_at_fppi(recall, fppi, 0.1) == 0.5
    assert recall_at_fppi(recall, fppi, 0.5) == 0.5
    assert recall_at_fppi(recall, fppi, 1.0) == 1.0


def _reference_curve(gt, results, dangerous_ids, image_ids):
    """The matching rule written the plain way: per (image, class), detections by falling score
    (ties in input order) take the best-IoU free real box at IoU >= 0.5; a detection matching only
    a crowd box is ignored; then all points by falling score (ties: group, then input order)."""
    import torch
    from torchvision.ops import box_iou

    def xyxy(b):
        t = torch.tensor(b, dtype=torch.float64).reshape(-1, 4)
        return torch.cat([t[:, :2], t[:, :2] + t[:, 2:]], dim=1)

    groups = {}
    for r in results:
        if r["category_id"] in dangerous_ids and r["image_id"] in image_ids:
            groups.setdefault((r["image_id"], r["category_id"]), []).append(r)
    truth = {}
    for a in gt.dataset["annotations"]:
        if a["category_id"] in dangerous_ids and a["image_id"] in image_ids:
            truth.setdefault((a["image_id"], a["category_id"]), []).append(a)
    num_objects = sum(not a.get("iscrowd", 0) for anns in truth.values() for a in anns)
    points = []
    for group_key, dets in groups.items():
        dets = sorted(dets, key=lambda d: -d["score"])
        anns = sorted(truth.get(group_key, []), key=lambda a: a.get("iscrowd", 0))
        if not anns:
            points += [(d["score"], 0) for d in dets]
            continue
        iou = box_iou(xyxy([d["bbox"] for d in dets]), xyxy([a["bbox"] for a in anns])).numpy()
        crowd = np.array([bool(a.get("iscrowd", 0)) for a in anns])
        taken = np.zeros(len(anns), dtype=bool)
        for i, d in enumerate(dets):
            free = np.flatnonzero(~taken & ~crowd & (iou[i] >= 0.5))
            if free.size:
                taken[free[np.argmax(iou[i, free])]] = True
                points.append((d["score"], 1))
            elif not (crowd & (iou[i] >= 0.5)).any():
                points.append((d["score"], 0))
    points.sort(key=lambda x: -x[0])
    hits = np.array([h for _, h in points], dtype=np.int64)
    return (
        np.array([s for s, _ in points]),
        np.cumsum(hits) / max(num_objects, 1),
        np.cumsum(1 - hits) / max(len(set(image_ids)), 1),
        num_objects,
    )


@pytest.mark.parametrize("seed", range(4))
def test_vectorised_matching_equals_the_plain_rule(seed):
    """Random scenes with crowd boxes, look-alike classes, duplicates and tied scores (rounded to
    0.1): the vectorised curve equals the plain per-group loop point for point."""
    rng = np.random.default_rng(seed)
    categories = [*CATEGORIES, SCISSORS]
    cat_ids = [c["id"] for c in categories]
    images, annotations, results = [], [], []
    for image_id in range(1, 41):
        images.append({"id": image_id, "file_name": f"{image_id}.png", "width": 100, "height": 100})
        boxes = []
        for _ in range(int(rng.integers(0, 5))):
            box = [*rng.uniform(0, 60, 2).round(1).tolist(), *rng.uniform(5, 40, 2).round(1).tolist()]
            boxes.append(box)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(rng.choice([3, 5, 7])),
                    "bbox": box,
                    "area": box[2] * box[3],
                    "iscrowd": int(rng.random() < 0.15),
                }
            )
        for _ in range(int(rng.integers(0, 12))):
            if boxes and rng.random() < 0.6:  # near a real box, often twice
                base = boxes[int(rng.integers(len(boxes)))]
                box = [v + float(rng.normal(0, 2)) for v in base]
            else:
                box = [*rng.uniform(0, 60, 2).tolist(), *rng.uniform(5, 40, 2).tolist()]
            results.append(
                {
                    "image_id": image_id,
                    "category_id": int(rng.choice([3, 5, 7, *cat_ids])),
                    "bbox": box,
                    "score": round(float(rng.random()), 1),
                }
            )
    gt = coco_from_dict({"images": images, "annotations": annotations, "categories": categories})
    dangerous = {3, 5}
    for image_ids in ([i for i in range(1, 41)], [i for i in range(1, 41, 3)]):
        ours = dangerous_object_curve(gt, results, dangerous, image_ids)
        reference = _reference_curve(gt, results, dangerous, image_ids)
        assert ours[3] == reference[3]
        for a, b in zip(ours[:3], reference[:3], strict=True):
            assert a.tolist() == b.tolist()
        assert reference[0].size > 20 and 0 < reference[1][-1] < 1  # the scenes are not trivial


def test_screening_figures_are_in_the_coco_metrics():
    table = ClassTable.from_categories([*CATEGORIES, SCISSORS])
    m = evaluate_coco(_gt(), DETECTIONS, table, alarm_fpr=0.05).metrics
    # Image best dangerous scores: 1 -> 0.9 (threat), 2 -> 0.5 (threat), 3 -> 0.3 (clean): perfect ranking.
    assert m["alarm_auc"] == pytest.approx(1.0)
    assert m["alarm_tpr_at_fpr_0.01"] == pytest.approx(1.0) and m["alarm_tpr_at_fpr_0.1"] == pytest.approx(
        1.0
    )
    assert m["alarm_score_at_fpr"] == pytest.approx(0.5) and m["alarm_fpr"] == 0.0 and m["alarm_tpr"] == 1.0
    assert m["dangerous_recall_at_fppi_0.5"] == pytest.approx(0.5) and m["dangerous_recall_at_fppi_1"] == 1.0
    # Restricted to images 1 and 3: one threat image; the curve counts only their detections.
    m13 = evaluate_coco(_gt(), [d for d in DETECTIONS if d["image_id"] != 2], table, image_ids=[1, 3]).metrics
    assert m13["dangerous_recall_at_fppi_0.5"] == 1.0  # knife A at FPPI 0, then 1 FP per 2 images
    # Without any clean image the ROC has no false-positive axis.
    one = evaluate_coco(_gt(), DETECTIONS, table, image_ids=[1, 2]).metrics
    assert math.isnan(one["alarm_auc"]) and math.isnan(one["alarm_score_at_fpr"])


def test_alarm_on_unknown_lets_unknown_detections_raise_the_alarm_and_both_ways_are_reported():
    table = ClassTable.from_categories([*CATEGORIES, SCISSORS])
    # An unknown detection (mystery, id 20) at 0.7 on the clean image 3 outranks threat image 2's 0.5.
    detections = [*DETECTIONS, {"image_id": 3, "category_id": 20, "bbox": [0, 0, 5, 5], "score": 0.7}]
    plain = evaluate_coco(_gt(), detections, table).metrics
    assert plain["alarm_on_unknown"] == 0.0 and plain["alarm_auc"] == pytest.approx(1.0)
    with_unknown = evaluate_coco(_gt(), detections, table, alarm_on_unknown=True).metrics
    # Image scores 0.9 (threat), 0.5 (threat), 0.7 (clean): the clean image outranks one threat image.
    assert with_unknown["alarm_on_unknown"] == 1.0 and with_unknown["alarm_auc"] == pytest.approx(0.5)
    assert with_unknown["alarm_score_at_fpr"] == pytest.approx(0.9)  # only 0.9 keeps the clean image quiet
    for m in (plain, with_unknown):
        assert m["alarm_auc_dangerous_only"] == pytest.approx(1.0)
        assert m["alarm_auc_with_unknown"] == pytest.approx(0.5)
