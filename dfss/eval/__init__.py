"""Evaluation: COCO metrics overall, per supercategory and per class."""

from dfss.eval.coco_metrics import CocoMetrics, evaluate_coco

__all__ = ["CocoMetrics", "evaluate_coco"]
