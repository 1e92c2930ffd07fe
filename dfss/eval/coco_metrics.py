"""COCO detection metrics with the library evaluators (pycocotools or faster-coco-eval).

One ``COCOeval`` run over all categories gives the overall figures (``map`` = AP@[.5:.95], the
paper's mmAP; ``map50``; ``map75``; size buckets) and the precision array from which per-class AP is
read. With ``useCats=1`` COCOeval scores every category independently (matching, ``maxDets`` and
precision are per image *per category*), so a supercategory's mAP — the mean AP over its categories
that have ground truth — equals COCOeval restricted to that supercategory's ``catIds``
(``tests/test_coco_metrics.py`` checks this against a restricted run). ``useCats=0`` would be wrong
(mmdetection#6704).

Keys: ``map, map50, map75, map_small, map_medium, map_large``; for every supercategory ``s`` in the
class table ``map_s, map50_s, recall50_s`` (``nan`` when ``s`` has no ground truth in this split);
and ``map_known, map50_known``, the mean over the known (not unknown) classes — what the unknown rule
must not cost; and the screening figures of :mod:`dfss.eval.operating_point` (``alarm_auc``,
``alarm_tpr_at_fpr_0.05``, ``alarm_score_at_fpr``, ``dangerous_recall_at_fppi_0.5``, ...).
"""

from __future__ import annotations

import contextlib
import gc
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from pycocotools.coco import COCO

from dfss.data.classes import ClassTable
from dfss.data.errors import DataError
from dfss.errors import ConfigError
from dfss.eval.operating_point import Roc, operating_point_metrics

BACKENDS = ("pycocotools", "faster_coco_eval")
_SUMMARY_KEYS = ("map", "map50", "map75", "map_small", "map_medium", "map_large")


@dataclass(frozen=True)
class ClassAP:
    name: str
    coco_id: int
    supercategory: str
    ap: float  # AP@[.5:.95]; nan without ground truth
    ap50: float
    ap75: float
    recall50: float  # recall at IoU 0.5 with up to 100 detections per image; nan without ground truth
    num_gt: int


RECALL_GRID = tuple(round(0.01 * i, 2) for i in range(101))  # COCO's 101 recall thresholds


@dataclass(frozen=True)
class CocoMetrics:
    metrics: dict[str, float]
    per_class: tuple[ClassAP, ...]
    # Precision at IoU 0.5 on RECALL_GRID (all areas, 100 detections), averaged over the classes
    # with ground truth: "all" and each supercategory that has some. The report's PR curves.
    pr50: dict[str, tuple[float, ...]] = field(default_factory=dict)
    roc: Roc | None = None  # the image alarm's ROC (dfss.eval.operating_point)

    def table(self) -> str:
        """A text table: per-class AP / AP50, then the summary keys."""
        lines = [f"{'class':<16} {'supercategory':<12} {'gt':>5} {'AP':>6} {'AP50':>6}"]
        for c in self.per_class:
            lines.append(f"{c.name:<16} {c.supercategory:<12} {c.num_gt:>5} {c.ap:>6.3f} {c.ap50:>6.3f}")
        lines.append("")
        for key, value in self.metrics.items():
            line = f"{key:<30} {value:.4f}"
            if key.startswith("alarm_auc") and self.roc is not None:  # an ROC of few images says little
                roc = self.roc
                line += (
                    f"   (of {roc.num_positive} images with a dangerous object, {roc.num_negative} without)"
                )
            lines.append(line)
        return "\n".join(lines)


@contextlib.contextmanager
def _no_gc():
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _faster_index(gt: COCO):
    """faster-coco-eval's index of the ground truth, built once per ``gt`` (every epoch reuses it)."""
    from faster_coco_eval import COCO as FCOCO

    cached = getattr(gt, "_dfss_faster_index", None)
    if cached is None or cached.dataset is not gt.dataset:
        cached = FCOCO()
        cached.dataset = gt.dataset
        cached.createIndex()
        gt._dfss_faster_index = cached
    return cached


def _faster_results(fgt, results: Sequence[dict]):
    """The results as a faster-coco-eval index, built directly: ``loadRes`` would also make a
    polygon per box (unused for bbox evaluation) and mutate the caller's dicts; this takes about a
    third of its time and copies instead."""
    from faster_coco_eval import COCO as FCOCO

    annotations = [
        {**r, "area": r["bbox"][2] * r["bbox"][3], "id": i, "iscrowd": 0}
        for i, r in enumerate(results, start=1)
    ]
    index = FCOCO()
    index.dataset = {
        "images": fgt.dataset["images"],
        "categories": fgt.dataset["categories"],
        "annotations": annotations,
    }
    index.createIndex()
    return index


def _run_cocoeval(gt: COCO, results: Sequence[dict], backend: str, image_ids: Sequence[int] | None):
    """Evaluate + accumulate + summarize quietly; returns the evaluator."""
    with contextlib.redirect_stdout(io.StringIO()):
        if backend == "pycocotools":
            from pycocotools.cocoeval import COCOeval

            dt = (
                gt.loadRes([dict(r) for r in results]) if results else COCO()
            )  # loadRes writes into its input
            evaluator = COCOeval(gt, dt, iouType="bbox")
        else:
            from faster_coco_eval import COCOeval_faster

            fgt = _faster_index(gt)
            evaluator = COCOeval_faster(fgt, _faster_results(fgt, results), iouType="bbox")
        if image_ids is not None:
            evaluator.params.imgIds = sorted(image_ids)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


def _mean_ap(precision: np.ndarray) -> float:
    """Mean of the valid (> -1) entries, nan when there are none."""
    valid = precision[precision > -1]
    return float(valid.mean()) if valid.size else math.nan


def evaluate_coco(
    gt: COCO,
    results: Sequence[dict],
    class_table: ClassTable,
    *,
    backend: str = "pycocotools",
    image_ids: Sequence[int] | None = None,
    alarm_fpr: float = 0.05,
    alarm_on_unknown: bool = False,
) -> CocoMetrics:
    """Score COCO-format ``results`` against ``gt`` (a pycocotools index of the ground-truth json).

    ``image_ids`` restricts the evaluation to those images (e.g. the part of a split a shortened run
    evaluated); by default every image of ``gt`` counts. ``alarm_fpr`` is the false-alarm rate whose
    alarm score is reported; ``alarm_on_unknown`` lets unknown detections raise the image alarm too.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {BACKENDS}, got {backend!r}")
    gt_cat_ids = set(gt.getCatIds())
    bad = sorted({r["category_id"] for r in results} - gt_cat_ids)
    if bad:
        raise DataError(f"predictions use category ids {bad} that the ground truth does not define")
    stray = sorted({r["image_id"] for r in results} - set(gt.imgs))
    if stray:
        raise DataError(f"predictions for image ids {stray[:10]} that the ground truth does not have")
    with _no_gc():  # millions of small dicts: the cyclic collector would rescan them again and again
        evaluator = _run_cocoeval(gt, results, backend, image_ids)
    stats = [float(s) for s in evaluator.stats[: len(_SUMMARY_KEYS)]]
    metrics = {k: (math.nan if s < 0 else s) for k, s in zip(_SUMMARY_KEYS, stats, strict=True)}
    precision = evaluator.eval["precision"]  # [T, R, K, A, M]; area "all" = 0, maxDets 100 = -1
    recall = evaluator.eval["recall"]  # [T, K, A, M]
    cat_index = {cat_id: k for k, cat_id in enumerate(evaluator.params.catIds)}
    per_class = []
    for info in (*class_table.known, *class_table.unknown):
        if info.coco_id not in cat_index:
            continue
        p = precision[:, :, cat_index[info.coco_id], 0, -1]
        per_class.append(
            ClassAP(
                name=info.name,
                coco_id=info.coco_id,
                supercategory=info.supercategory,
                ap=_mean_ap(p),
                ap50=_mean_ap(p[0]),
                ap75=_mean_ap(p[5]),
                recall50=_mean_ap(recall[0, cat_index[info.coco_id], 0, -1]),
                num_gt=len(gt.getAnnIds(imgIds=image_ids or [], catIds=[info.coco_id], iscrowd=False)),
            )
        )
    pr50 = {}
    for supercategory in (None, *class_table.supercategories):
        members = [
            c
            for c in per_class
            if (supercategory is None or c.supercategory == supercategory) and not math.isnan(c.ap)
        ]
        if supercategory is not None:
            metrics[f"map_{supercategory}"] = float(np.mean([c.ap for c in members])) if members else math.nan
            metrics[f"map50_{supercategory}"] = (
                float(np.mean([c.ap50 for c in members])) if members else math.nan
            )
            metrics[f"recall50_{supercategory}"] = (
                float(np.mean([c.recall50 for c in members])) if members else math.nan
            )
        if members:
            curves = precision[0, :, :, 0, -1][:, [cat_index[c.coco_id] for c in members]]  # [R, members]
            pr50[supercategory or "all"] = tuple(float(v) for v in np.clip(curves, 0, None).mean(axis=1))
    unknown_names = {c.name for c in class_table.unknown}
    known = [c for c in per_class if c.name not in unknown_names and not math.isnan(c.ap)]
    metrics["map_known"] = float(np.mean([c.ap for c in known])) if known else math.nan
    metrics["map50_known"] = float(np.mean([c.ap50 for c in known])) if known else math.nan
    screening, roc = operating_point_metrics(gt, results, class_table, image_ids, alarm_fpr, alarm_on_unknown)
    metrics.update(screening)
    return CocoMetrics(metrics, tuple(per_class), pr50, roc)
