"""COCO evaluation speed: DFSS's evaluator with the faster-coco-eval backend next to pycocotools.

One synthetic evaluation of the size a large X-ray test set gives — by default 16,000 images with
1–8 ground-truth boxes each over the synthetic benchmark's 21 categories, and 100 detections per
image (true positives jittered off the ground truth, the rest random, scores drawn so that true
positives tend to score higher) — scored by :func:`dfss.eval.coco_metrics.evaluate_coco` with
each backend, on ONE CPU core (the process is pinned, BLAS/OpenMP threads set to 1). The time is the
whole call: results loading, evaluate, accumulate, summarize and per-class AP. Both backends must
agree on every metric (the largest difference is printed).

    python bench/eval_speed.py                    # 16,000 images x 100 detections
    python bench/eval_speed.py --images 2000      # a quicker look
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from _common import load_average, machine, print_json_lines  # noqa: E402

from dfss.data.classes import ClassTable  # noqa: E402
from dfss.data.coco import coco_from_dict  # noqa: E402
from dfss.eval.coco_metrics import evaluate_coco  # noqa: E402

NUM_DANGEROUS, NUM_NORMAL = 8, 12  # as the synthetic benchmark's classes
BASELINE = "pycocotools"


def make_data(num_images: int, dets_per_image: int, seed: int = 0) -> tuple[dict, list[dict]]:
    rng = np.random.default_rng(seed)
    categories = [{"id": i + 1, "name": f"d{i}", "supercategory": "dangerous"} for i in range(NUM_DANGEROUS)]
    categories += [
        {"id": NUM_DANGEROUS + i + 1, "name": f"n{i}", "supercategory": "normal"} for i in range(NUM_NORMAL)
    ]
    categories.append({"id": 99, "name": "unknown", "supercategory": "unknown"})
    cat_ids = np.array([c["id"] for c in categories])
    size = 640
    images, annotations, results = [], [], []
    ann_id = 1
    for image_id in range(1, num_images + 1):
        images.append({"id": image_id, "file_name": f"{image_id:06d}.jpg", "width": size, "height": size})
        n_gt = int(rng.integers(1, 9))
        wh = rng.uniform(16, 200, (n_gt, 2))
        xy = rng.uniform(0, size - wh)
        gt_cats = rng.choice(cat_ids, n_gt)
        for k in range(n_gt):
            bbox = [float(xy[k, 0]), float(xy[k, 1]), float(wh[k, 0]), float(wh[k, 1])]
            annotations.append(
                {
                    "id": ann_id,
                    "image_id": image_id,
                    "category_id": int(gt_cats[k]),
                    "bbox": bbox,
                    "area": bbox[2] * bbox[3],
                    "iscrowd": 0,
                }
            )
            ann_id += 1
        # Detections: a jittered copy of each box (mostly the right class), the rest random.
        n_tp = min(n_gt, dets_per_image)
        jitter = rng.normal(0, 0.08, (n_tp, 4)) * np.concatenate([wh[:n_tp], wh[:n_tp]], axis=1)
        tp_boxes = np.concatenate([xy[:n_tp], wh[:n_tp]], axis=1) + jitter
        tp_cats = np.where(rng.random(n_tp) < 0.8, gt_cats[:n_tp], rng.choice(cat_ids, n_tp))
        n_fp = dets_per_image - n_tp
        fp_wh = rng.uniform(16, 200, (n_fp, 2))
        fp_boxes = np.concatenate([rng.uniform(0, size - fp_wh), fp_wh], axis=1)
        boxes = np.concatenate([tp_boxes, fp_boxes])
        boxes[:, 2:] = np.maximum(boxes[:, 2:], 1.0)
        cats = np.concatenate([tp_cats, rng.choice(cat_ids, n_fp)])
        scores = np.concatenate([rng.uniform(0.3, 1.0, n_tp), rng.uniform(0.0, 0.7, n_fp)])
        for box, cat, score in zip(boxes.tolist(), cats.tolist(), scores.tolist(), strict=True):
            results.append(
                {
                    "image_id": image_id,
                    "category_id": int(cat),
                    "bbox": [round(v, 2) for v in box],
                    "score": round(score, 4),
                }
            )
    return {"images": images, "annotations": annotations, "categories": categories}, results


def flat_metrics(metrics) -> dict[str, float]:
    out = dict(metrics.metrics)
    out.update({f"ap50/{c.name}": c.ap50 for c in metrics.per_class})
    return out


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=16_000)
    parser.add_argument("--dets", type=int, default=100, help="detections per image")
    parser.add_argument("--backends", nargs="+", default=["faster_coco_eval", BASELINE])
    parser.add_argument(
        "--core", type=int, default=None, help="CPU core to pin to (default: the first allowed)"
    )
    args = parser.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        core = args.core if args.core is not None else min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {core})
    dataset, results = make_data(args.images, args.dets)
    gt = coco_from_dict(dataset)
    table = ClassTable.from_categories(dataset["categories"])
    head = {
        "bench": "eval_speed_header",
        **machine(),
        "cores": 1,
        "images": args.images,
        "detections": len(results),
        "annotations": len(dataset["annotations"]),
    }
    rows, scored = [], {}
    for backend in args.backends:
        start = time.perf_counter()
        metrics = evaluate_coco(gt, results, table, backend=backend)
        seconds = time.perf_counter() - start
        scored[backend] = flat_metrics(metrics)
        rows.append(
            {
                "bench": "eval_speed",
                "backend": backend,
                "seconds": round(seconds, 3),
                "map": round(metrics.metrics["map"], 4),
                "map50": round(metrics.metrics["map50"], 4),
            }
        )
    if BASELINE in scored:
        base = next(r for r in rows if r["backend"] == BASELINE)
        for row in rows:
            row["x_pycocotools"] = round(base["seconds"] / row["seconds"], 2)
            theirs, ours = scored[BASELINE], scored[row["backend"]]
            diffs = [
                abs(ours[k] - theirs[k])
                for k in theirs
                if not (math.isnan(theirs[k]) and math.isnan(ours[k]))
            ]
            row["max_abs_metric_diff"] = float(f"{max(diffs):.2e}")
    head["load_avg_1m_at_end"] = load_average()
    print(
        f"# eval_speed  {head['date']}  one core  {args.images} images, {len(results)} detections, "
        f"{len(dataset['annotations'])} ground-truth boxes, {len(dataset['categories'])} categories"
    )
    print(f"{'backend':<20}{'seconds':>9}{'x pycoco':>10}{'mAP':>8}{'mAP50':>8}{'max |diff|':>12}")
    for r in rows:
        print(
            f"{r['backend']:<20}{r['seconds']:>9.2f}{r.get('x_pycocotools', float('nan')):>10.2f}"
            f"{r['map']:>8.4f}{r['map50']:>8.4f}{r.get('max_abs_metric_diff', float('nan')):>12.1e}"
        )
    print_json_lines(head, rows)
    return rows


if __name__ == "__main__":
    main()
