"""COCO metrics on a hand-checked case, per supercategory equal to a catIds-restricted COCOeval."""

import contextlib
import io
import math

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from dfss.data.classes import ClassTable
from dfss.data.coco import coco_from_dict
from dfss.data.errors import DataError
from dfss.eval.coco_metrics import evaluate_coco
from tests.helpers.data import (
    CATEGORIES,  # knife 3 (dangerous), phone 7 / keys 11 (normal), mystery 20 (unknown)
)


def _gt() -> COCO:
    images = [{"id": i, "file_name": f"{i}.png", "width": 100, "height": 100} for i in (1, 2)]

    def ann(ann_id, image_id, cat, box):
        return {
            "id": ann_id,
            "image_id": image_id,
            "category_id": cat,
            "bbox": box,
            "area": box[2] * box[3],
            "iscrowd": 0,
        }

    annotations = [
        ann(1, 1, 3, [10, 10, 20, 20]),  # knife
        ann(2, 1, 7, [50, 50, 10, 10]),  # phone
        ann(3, 2, 11, [5, 5, 30, 30]),  # keys, never detected
        ann(4, 2, 20, [60, 60, 20, 20]),  # an unknown object
    ]
    return coco_from_dict({"images": images, "annotations": annotations, "categories": CATEGORIES})


PREDICTIONS = [
    {"image_id": 1, "category_id": 3, "bbox": [10, 10, 20, 20], "score": 0.9},  # knife: exact
    {"image_id": 1, "category_id": 7, "bbox": [50, 50, 10, 7.2], "score": 0.8},  # phone: IoU 0.72
    {"image_id": 2, "category_id": 20, "bbox": [60, 60, 20, 20], "score": 0.7},  # unknown: exact
]


@pytest.mark.parametrize("backend", ["pycocotools", "faster_coco_eval"])
def test_hand_checked_case(backend):
    table = ClassTable.from_categories(CATEGORIES)
    result = evaluate_coco(_gt(), PREDICTIONS, table, backend=backend)
    ap = {c.name: c.ap for c in result.per_class}
    ap50 = {c.name: c.ap50 for c in result.per_class}
    # IoU 0.72 matches at thresholds 0.50..0.70: 5 of 10 -> AP 0.5, AP50 1.
    assert ap == pytest.approx({"knife": 1.0, "phone": 0.5, "keys": 0.0, "mystery": 1.0})
    assert ap50 == pytest.approx({"knife": 1.0, "phone": 1.0, "keys": 0.0, "mystery": 1.0})
    m = result.metrics
    assert m["map"] == pytest.approx((1.0 + 0.5 + 0.0 + 1.0) / 4)
    assert m["map50"] == pytest.approx(0.75)
    assert m["map_dangerous"] == pytest.approx(1.0) and m["map50_dangerous"] == pytest.approx(1.0)
    assert m["map_normal"] == pytest.approx(0.25) and m["map50_normal"] == pytest.approx(0.5)
    assert m["map_unknown"] == pytest.approx(1.0)
    # Recall at IoU 0.5: knife, phone, mystery found, keys not.
    assert {c.name: c.recall50 for c in result.per_class} == pytest.approx(
        {"knife": 1.0, "phone": 1.0, "keys": 0.0, "mystery": 1.0}
    )
    assert m["recall50_normal"] == pytest.approx(0.5) and m["recall50_unknown"] == pytest.approx(1.0)
    # Known = every class but the unknown one: knife, phone, keys.
    assert m["map50_known"] == pytest.approx(2 / 3) and m["map_known"] == pytest.approx(0.5)
    # PR curves at IoU 0.5: knife and phone are each found first (precision 1 up to recall 1); the
    # normal curve averages phone (1 everywhere) and keys (never found: 0).
    assert result.pr50["dangerous"] == pytest.approx((1.0,) * 101)
    assert result.pr50["normal"] == pytest.approx((0.5,) * 101)
    assert result.pr50["all"] == pytest.approx((0.75,) * 101)


def _restricted_map(gt, predictions, cat_ids):
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = COCOeval(gt, gt.loadRes(predictions), iouType="bbox")
        evaluator.params.catIds = cat_ids
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    recall50 = evaluator.eval["recall"][0, :, 0, -1]  # IoU 0.5, all areas, 100 detections
    return evaluator.stats[0], evaluator.stats[1], recall50[recall50 > -1].mean()


def test_supercategory_map_equals_cocoeval_restricted_to_its_category_ids():
    gt = _gt()
    table = ClassTable.from_categories(CATEGORIES)
    # Noisy predictions: shifted boxes, wrong classes, several per image.
    predictions = [*PREDICTIONS]
    for k, (cat, dx) in enumerate([(3, 3), (7, 1), (11, 4), (11, 0), (3, 30), (7, 2)]):
        predictions.append(
            {"image_id": 1 + k % 2, "category_id": cat, "bbox": [5 + dx, 5, 30, 28], "score": 0.1 * (k + 1)}
        )
    result = evaluate_coco(gt, predictions, table)
    for supercategory in ("dangerous", "normal", "unknown"):
        want_map, want_map50, want_recall50 = _restricted_map(
            gt, predictions, table.coco_ids_of(supercategory)
        )
        assert result.metrics[f"map_{supercategory}"] == pytest.approx(want_map)
        assert result.metrics[f"map50_{supercategory}"] == pytest.approx(want_map50)
        assert result.metrics[f"recall50_{supercategory}"] == pytest.approx(want_recall50)
    known_ids = table.coco_ids_of("dangerous") + table.coco_ids_of("normal")
    want_map, want_map50, _ = _restricted_map(gt, predictions, known_ids)
    assert result.metrics["map_known"] == pytest.approx(want_map)
    assert result.metrics["map50_known"] == pytest.approx(want_map50)


def test_empty_predictions_score_zero_and_bad_category_ids_are_refused():
    table = ClassTable.from_categories(CATEGORIES)
    result = evaluate_coco(_gt(), [], table)
    assert result.metrics["map"] == 0.0 and all(c.ap == 0.0 for c in result.per_class)
    with pytest.raises(DataError, match=r"category ids \[99\]"):
        evaluate_coco(_gt(), [{"image_id": 1, "category_id": 99, "bbox": [0, 0, 1, 1], "score": 1.0}], table)


def test_supercategory_without_ground_truth_is_nan():
    gt = _gt()
    data = dict(gt.dataset)
    data["annotations"] = [a for a in data["annotations"] if a["category_id"] != 20]
    result = evaluate_coco(coco_from_dict(data), PREDICTIONS[:2], ClassTable.from_categories(CATEGORIES))
    assert math.isnan(result.metrics["map_unknown"])
    assert result.metrics["map_dangerous"] == pytest.approx(1.0)


def test_backends_agree_on_a_random_crowded_set_and_inputs_are_not_modified():
    """faster-coco-eval (results index built by DFSS) gives pycocotools' numbers on 40 images with
    up to 60 detections each, and neither backend changes the caller's prediction dicts."""
    rng = np.random.default_rng(0)
    images = [{"id": i, "file_name": f"{i}.png", "width": 200, "height": 150} for i in range(1, 41)]
    cat_ids = [c["id"] for c in CATEGORIES]
    annotations, predictions = [], []
    for image in images:
        for _ in range(int(rng.integers(0, 6))):
            x, y, w, h = rng.uniform(0, 120), rng.uniform(0, 90), rng.uniform(4, 80), rng.uniform(4, 60)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image["id"],
                    "iscrowd": 0,
                    "category_id": int(rng.choice(cat_ids)),
                    "bbox": [x, y, w, h],
                    "area": w * h,
                }
            )
            jitter = rng.normal(0, 3, 4)
            predictions.append(
                {
                    "image_id": image["id"],
                    "category_id": annotations[-1]["category_id"],
                    "bbox": [x + jitter[0], y + jitter[1], w, h],
                    "score": float(rng.uniform(0.2, 1)),
                }
            )
        for _ in range(int(rng.integers(0, 60))):
            predictions.append(
                {
                    "image_id": image["id"],
                    "category_id": int(rng.choice(cat_ids)),
                    "bbox": [*rng.uniform(0, 100, 2), *rng.uniform(4, 60, 2)],
                    "score": float(rng.random()),
                }
            )
    gt = coco_from_dict({"images": images, "annotations": annotations, "categories": CATEGORIES})
    table = ClassTable.from_categories(CATEGORIES)
    before = [dict(p) for p in predictions]
    ours = evaluate_coco(gt, predictions, table, backend="faster_coco_eval")
    theirs = evaluate_coco(gt, predictions, table, backend="pycocotools")
    assert predictions == before
    assert ours.metrics == pytest.approx(theirs.metrics, abs=1e-12, nan_ok=True)
    assert 0.05 < ours.metrics["map50"] < 0.95  # a non-trivial case
    assert [c.ap for c in ours.per_class] == pytest.approx([c.ap for c in theirs.per_class], abs=1e-12)


def test_predictions_for_unknown_images_are_refused_by_both_backends():
    table = ClassTable.from_categories(CATEGORIES)
    stray = [{"image_id": 999, "category_id": 3, "bbox": [1, 1, 5, 5], "score": 0.5}]
    for backend in ("faster_coco_eval", "pycocotools"):
        with pytest.raises(DataError, match=r"image ids \[999\]"):
            evaluate_coco(_gt(), stray, table, backend=backend)
