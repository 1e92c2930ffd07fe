"""Where the unknown rule's detections go wrong: a diagnosis from an evaluation's predictions.

The unknown rule reports a point as ``unknown`` when its quality says *object* and its best class
probability is below ``T``. Its AP50 can be low for two reasons, which call for different fixes: the
rule misses the unknown objects (recall), or it finds them but ranks them among many false unknowns
(precision). This script reads the ``predictions.json`` that ``evaluate.py`` leaves in an evaluation
folder (one per ``T``: ``<run>/eval_T<T>/``) and the split's COCO json, and reports per folder:

- ``ap50`` / ``recall50``: the unknown supercategory's AP50 and recall (pycocotools, IoU 0.5, up to
  100 detections per image: the evaluation's own figures);
- ``ap50_ranked``: the AP50 the same detections would reach if the score ranked them perfectly (for
  each unknown object, its best-overlapping unknown detection put first): what a better unknown
  score could gain without finding any new object;
- where the unknown detections lie, by their best overlap with a ground-truth box: ``on_unknown``
  (IoU ≥ 0.5 with an unknown object), ``on_known`` (IoU ≥ 0.5 with a known one), ``on_part``
  (0.1 ≤ IoU < 0.5: a fragment or a loose box) and ``on_background`` (IoU < 0.1), as shares;
- ``named_known``: the share of unknown objects that a *known*-class detection covers (IoU ≥ 0.5) with
  a score of at least ``--known-score`` — objects the model names wrongly rather than doubts — and
  ``known_score_median``, the median of the best such score over every unknown object (0 if none);
- ``score_true`` / ``score_false``: the median score of the unknown detections on an unknown object
  and of the others;
- ``ap50_apart`` / ``recall50_apart``: AP50 and recall once every unknown detection that overlaps
  (IoU ≥ 0.5) a known-class detection scoring at least ``--known-score`` is removed — the obvious
  filter for "an object no class names", measured.

    python experiments/unknown_errors.py --annotations data/synth_results/annotations/test.json \\
        results/cpu_benchmark/weighted_a2_s1/eval_T0.1 results/cpu_benchmark/weighted_a2_s1/eval_T0.5

Writes a markdown table (stdout and ``--out``/unknown_errors.md) and the figures as json.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from dfss.data.classes import DEFAULT_UNKNOWN_SUPERCATEGORIES, ClassTable

COLUMNS = (
    "T",
    "unknown_dets",
    "ap50",
    "recall50",
    "ap50_ranked",
    "on_unknown",
    "on_known",
    "on_part",
    "on_background",
    "named_known",
    "known_score_median",
    "score_true",
    "score_false",
    "ap50_apart",
    "recall50_apart",
)


def _iou(boxes: list[list[float]], others: list[list[float]]) -> np.ndarray:
    """``[len(boxes), len(others)]`` IoU of xywh boxes (zeros when either list is empty)."""
    if not boxes or not others:
        return np.zeros((len(boxes), len(others)))
    return np.asarray(mask_utils.iou(boxes, others, [0] * len(others)), dtype=np.float64)


def unknown_ap50(gt: COCO, detections: list[dict[str, Any]], unknown_ids: list[int]) -> tuple[float, float]:
    """(AP50, recall50) of the unknown categories, as ``evaluate.py`` scores them (0 without detections)."""
    if not detections:
        return 0.0, 0.0
    with contextlib.redirect_stdout(io.StringIO()):
        coco_eval = COCOeval(gt, gt.loadRes(detections), "bbox")
        coco_eval.params.catIds = unknown_ids
        coco_eval.params.iouThrs = np.array([0.5])
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return max(float(coco_eval.stats[0]), 0.0), max(float(coco_eval.stats[8]), 0.0)


def diagnose(
    gt: COCO,
    predictions: list[dict[str, Any]],
    known_score: float = 0.3,
    unknown_supercategories: tuple[str, ...] = DEFAULT_UNKNOWN_SUPERCATEGORIES,
) -> dict[str, float]:
    """The figures of the module docstring for one evaluation's ``predictions``.

    The unknown categories are the class table's (``dfss.data.classes.ClassTable``): those whose
    supercategory is one of ``unknown_supercategories``, as in the data config's setting of that name.
    """
    table = ClassTable.from_categories(
        gt.loadCats(gt.getCatIds()), unknown_supercategories=unknown_supercategories
    )
    unknown_ids = sorted(table.unknown_ids)
    if not unknown_ids:
        raise SystemExit(f"the annotations have no category of supercategory {list(unknown_supercategories)}")
    unknown_set = set(unknown_ids)
    by_image: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for detection in predictions:
        by_image[detection["image_id"]].append(detection)

    places = {"on_unknown": 0, "on_known": 0, "on_part": 0, "on_background": 0}
    true_scores: list[float] = []
    false_scores: list[float] = []
    best_known: list[float] = []
    ranked: list[dict[str, Any]] = []
    apart: list[dict[str, Any]] = []
    for image_id in gt.getImgIds():
        anns = gt.loadAnns(gt.getAnnIds(imgIds=[image_id], iscrowd=False))
        is_unknown_gt = np.array([a["category_id"] in unknown_set for a in anns], dtype=bool)
        detections = by_image.get(image_id, [])
        unknown_dets = [d for d in detections if d["category_id"] in unknown_set]
        known_dets = [d for d in detections if d["category_id"] not in unknown_set]
        iou = _iou([d["bbox"] for d in unknown_dets], [a["bbox"] for a in anns])
        best = iou.max(axis=1) if anns else np.zeros(len(unknown_dets))
        best_gt = iou.argmax(axis=1) if anns else np.zeros(len(unknown_dets), dtype=int)
        for det, overlap, g in zip(unknown_dets, best, best_gt, strict=True):
            if overlap >= 0.5:
                place = "on_unknown" if is_unknown_gt[g] else "on_known"
            else:
                place = "on_part" if overlap >= 0.1 else "on_background"
            places[place] += 1
            (true_scores if place == "on_unknown" else false_scores).append(float(det["score"]))
        # perfect ranking: each unknown object's best-overlapping unknown detection first
        boosted: set[int] = set()
        for g in np.flatnonzero(is_unknown_gt):
            column = iou[:, g]
            order = [i for i in np.argsort(-column) if column[i] >= 0.5 and i not in boosted]
            if order:
                boosted.add(int(order[0]))
        for i, det in enumerate(unknown_dets):
            ranked.append({**det, "score": det["score"] + (1.0 if i in boosted else 0.0)})
        confident = [d["bbox"] for d in known_dets if d["score"] >= known_score]
        overlap_known = _iou([d["bbox"] for d in unknown_dets], confident)
        for det, row in zip(unknown_dets, overlap_known, strict=True):
            if not (row >= 0.5).any():
                apart.append(det)
        unknown_boxes = [a["bbox"] for a, u in zip(anns, is_unknown_gt, strict=True) if u]
        known_iou = _iou([d["bbox"] for d in known_dets], unknown_boxes)
        for g in range(len(unknown_boxes)):
            scores = [d["score"] for d, o in zip(known_dets, known_iou[:, g], strict=True) if o >= 0.5]
            best_known.append(max(scores, default=0.0))

    unknown_dets_all = [d for d in predictions if d["category_id"] in unknown_set]
    ap50, recall50 = unknown_ap50(gt, unknown_dets_all, unknown_ids)
    ranked_ap50, _ = unknown_ap50(gt, ranked, unknown_ids)
    apart_ap50, apart_recall50 = unknown_ap50(gt, apart, unknown_ids)
    total = max(len(unknown_dets_all), 1)
    return {
        "unknown_objects": len(best_known),
        "unknown_dets": len(unknown_dets_all),
        "ap50": ap50,
        "recall50": recall50,
        "ap50_ranked": ranked_ap50,
        **{place: count / total for place, count in places.items()},
        "named_known": sum(s >= known_score for s in best_known) / max(len(best_known), 1),
        "known_score_median": statistics.median(best_known) if best_known else 0.0,
        "score_true": statistics.median(true_scores) if true_scores else 0.0,
        "score_false": statistics.median(false_scores) if false_scores else 0.0,
        "ap50_apart": apart_ap50,
        "recall50_apart": apart_recall50,
    }


def _threshold(eval_dir: Path) -> float:
    run = eval_dir / "run.json"
    return float(json.loads(run.read_text())["unknown_threshold"]) if run.is_file() else float("nan")


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| evaluation | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for row in rows:
        cells = [
            str(row[c]) if c == "unknown_dets" else f"{row[c]:g}" if c == "T" else f"{row[c]:.3f}"
            for c in COLUMNS
        ]
        lines.append(f"| {row['evaluation']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("evals", nargs="+", type=Path, help="evaluation folders holding predictions.json")
    parser.add_argument("--annotations", type=Path, required=True, help="the evaluated split's COCO json")
    parser.add_argument(
        "--known-score",
        type=float,
        default=0.3,
        help="known-class score for named_known and *_apart (default 0.3)",
    )
    parser.add_argument(
        "--unknown-supercategory",
        action="append",
        dest="unknown_supercategories",
        metavar="NAME",
        help="supercategory of the unknown categories (repeatable; default: unknown)",
    )
    parser.add_argument("--out", type=Path, help="folder for unknown_errors.md and unknown_errors.json")
    args = parser.parse_args(argv)
    if not args.annotations.is_file():
        raise SystemExit(f"{args.annotations}: no such annotation file")
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(args.annotations))
    unknown = tuple(args.unknown_supercategories or DEFAULT_UNKNOWN_SUPERCATEGORIES)
    rows = []
    for eval_dir in args.evals:
        path = eval_dir / "predictions.json"
        if not path.is_file():
            raise SystemExit(f"{path}: no predictions (evaluate.py writes them into its output folder)")
        figures = diagnose(gt, json.loads(path.read_text()), args.known_score, unknown)
        rows.append({"evaluation": str(eval_dir), "T": _threshold(eval_dir), **figures})
        print(f"{eval_dir}: done", file=sys.stderr)
    table = markdown(rows)
    print(table)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "unknown_errors.md").write_text(table + "\n", encoding="utf-8")
        (args.out / "unknown_errors.json").write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return rows


if __name__ == "__main__":
    main()
