"""The image bootstrap's AP50 is COCOeval's: on the sample itself, and on a resample whose repeated
images are written out as copies."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from dfss.eval.bootstrap import MatchRecord, image_counts, mean_over, percentile_interval, same_images


def _scene(seed: int, num_images: int = 12, num_classes: int = 4):
    """Ground truth (with a crowd box and a class absent from some images) and noisy detections:
    jittered true boxes, duplicates, misplaced boxes, wrong classes, tied scores."""
    rng = np.random.default_rng(seed)
    images = [
        {"id": 100 + i, "width": 200, "height": 200, "file_name": f"{i}.png"} for i in range(num_images)
    ]
    categories = [{"id": 10 + k, "name": f"c{k}", "supercategory": "normal"} for k in range(num_classes)]
    annotations, results = [], []
    for image in images:
        for _ in range(rng.integers(0, 5)):
            x, y, w, h = (float(v) for v in (*rng.uniform(0, 120, 2), *rng.uniform(15, 70, 2)))
            cat = int(rng.integers(10, 10 + num_classes))
            crowd = int(rng.random() < 0.08)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image["id"],
                    "category_id": cat,
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": crowd,
                }
            )
            for _ in range(rng.integers(0, 3)):  # 0 to 2 detections of it, jittered
                jitter = rng.normal(0, 0.15 * min(w, h), 4)
                wrong = rng.random() < 0.15
                results.append(
                    {
                        "image_id": image["id"],
                        "category_id": int(rng.integers(10, 10 + num_classes)) if wrong else cat,
                        "bbox": [
                            x + jitter[0],
                            y + jitter[1],
                            abs(w + jitter[2]) + 1,
                            abs(h + jitter[3]) + 1,
                        ],
                        "score": round(float(rng.random()), 1),  # ties
                    }
                )
        for _ in range(rng.integers(0, 3)):  # background detections
            results.append(
                {
                    "image_id": image["id"],
                    "category_id": int(rng.integers(10, 10 + num_classes)),
                    "bbox": [*(float(v) for v in rng.uniform(0, 150, 2)), 30.0, 30.0],
                    "score": float(rng.random()),
                }
            )
    return {"images": images, "categories": categories, "annotations": annotations}, results


def _index(dataset: dict) -> COCO:
    gt = COCO()
    gt.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt


def _coco_ap50(gt: COCO, results: list[dict]) -> np.ndarray:
    """Per class AP50 by COCOeval itself (nan without ground truth)."""
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = COCOeval(gt, gt.loadRes([dict(r) for r in results]), iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
    precision = evaluator.eval["precision"][0, :, :, 0, -1]  # [R, K]
    return np.array([p.mean() if (p > -1).any() else np.nan for p in precision.T])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_image_once_is_cocoevals_ap50(seed):
    dataset, results = _scene(seed)
    gt = _index(dataset)
    record = MatchRecord.from_coco(gt, results)
    ours = record.ap50()[0]
    np.testing.assert_allclose(ours, _coco_ap50(gt, results), rtol=0, atol=1e-12)
    assert np.isfinite(ours).sum() >= 3  # the scene has ground truth in most classes


@pytest.mark.parametrize("seed", [3, 4])
def test_a_resample_is_cocoeval_on_the_images_written_out_as_often_as_they_were_drawn(seed):
    dataset, results = _scene(seed)
    record = MatchRecord.from_coco(_index(dataset), results)
    counts = image_counts(len(record.image_ids), samples=3, seed=seed)
    assert (counts.sum(axis=1) == len(record.image_ids)).all() and (counts == 0).any() and (counts > 1).any()
    for row in counts:
        copies, copied_results, copied_annotations = [], [], []
        for image, times in zip(dataset["images"], row, strict=True):
            for copy in range(times):
                new_id = image["id"] * 100 + copy
                copies.append({**image, "id": new_id})
                copied_annotations += [
                    {**a, "image_id": new_id, "id": len(copied_annotations) + j + 1}
                    for j, a in enumerate(a for a in dataset["annotations"] if a["image_id"] == image["id"])
                ]
                copied_results += [{**r, "image_id": new_id} for r in results if r["image_id"] == image["id"]]
        copied = _index({**dataset, "images": copies, "annotations": copied_annotations})
        np.testing.assert_allclose(
            record.ap50(row[None])[0], _coco_ap50(copied, copied_results), rtol=0, atol=1e-12
        )


def test_saved_record_loads_equal_and_pairs_only_with_the_same_images(tmp_path):
    dataset, results = _scene(5)
    gt = _index(dataset)
    record = MatchRecord.from_coco(gt, results)
    record.save(tmp_path / "m.npz")
    loaded = MatchRecord.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(loaded.ap50(), record.ap50())
    same_images(record, loaded)
    fewer = MatchRecord.from_coco(gt, results, image_ids=[100, 101, 102])
    assert len(fewer.image_ids) == 3
    with pytest.raises(ValueError, match="same images"):
        same_images(record, fewer)


def test_the_interval_of_a_difference_of_a_run_with_itself_is_zero_and_widens_with_noise():
    dataset, results = _scene(6, num_images=40)
    gt = _index(dataset)
    record = MatchRecord.from_coco(gt, results)
    counts = image_counts(len(record.image_ids), samples=200, seed=0)
    base = mean_over(record.ap50(counts))
    assert percentile_interval(base - mean_over(record.ap50(counts))) == (0.0, 0.0)
    low, high = percentile_interval(base)
    full = mean_over(record.ap50())[0]
    assert low < full < high and high - low > 0.02
    rng = np.random.default_rng(0)
    moved = rng.random(len(results)) < 0.5  # half the boxes moved off their objects: a worse detector
    worse = [
        {**r, "bbox": [r["bbox"][0] + 90 * m, *r["bbox"][1:]]} for r, m in zip(results, moved, strict=True)
    ]
    other = MatchRecord.from_coco(gt, worse)
    diff = base - mean_over(other.ap50(counts))
    assert percentile_interval(diff)[0] > 0  # paired on the same resamples, the better one wins


def test_one_seed_pairs_get_an_image_interval_only_on_the_same_images(tmp_path):
    from pathlib import Path

    from dfss.report.collect import Run
    from dfss.report.stats import paired_difference

    dataset, results = _scene(7, num_images=30)
    gt = _index(dataset)
    per_class = tuple(
        {"name": c["name"], "supercategory": "normal", "coco_id": c["id"]} for c in dataset["categories"]
    )

    def run(name: str, records: MatchRecord) -> Run:
        folder = tmp_path / name / "eval"
        folder.mkdir(parents=True)
        records.save(folder / "matches50.npz")
        map50 = float(mean_over(records.ap50())[0])
        return Run(
            name,
            "x",
            1,
            1.0,
            None,
            Path(name),
            {"map50": map50},
            per_class,
            {},
            (),
            {},
            {},
            eval_folders={0.0: folder},
        )

    full = run("full", MatchRecord.from_coco(gt, results))
    moved = [{**r, "bbox": [r["bbox"][0] + 90, *r["bbox"][1:]]} for r in results[::2]] + results[1::2]
    worse = run("worse", MatchRecord.from_coco(gt, moved))
    difference = paired_difference([full], [worse], "map50")
    assert difference.method == "images" and difference.low <= difference.mean <= difference.high
    fewer = run("fewer", MatchRecord.from_coco(gt, results, image_ids=[100, 101, 102]))
    unpaired = paired_difference([full], [fewer], "map50")
    assert unpaired.method == "none" and "no interval" in unpaired.fmt()
