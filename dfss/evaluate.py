"""Evaluation task: COCO metrics of predictions on a data split, written to the run folder.

Writes ``metrics.json`` (overall, per supercategory), ``per_class.csv`` (AP, AP50, AP75 per class)
and prints a table. The ground truth is the split's json as the data module validates it, so the
figures describe exactly the images and annotations a model would be evaluated on.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import asdict
from pathlib import Path

import hydra
from omegaconf import DictConfig

from dfss.data.datamodule import XrayDataModule
from dfss.data.errors import DataError
from dfss.eval.coco_metrics import CocoMetrics, evaluate_coco

log = logging.getLogger(__name__)


def load_predictions(path: str | Path) -> list[dict]:
    """A COCO results json (a list of detections), with a clear error for anything else."""
    path = Path(path)
    try:
        predictions = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"predictions file not found: {path}") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid json ({exc})") from None
    if not isinstance(predictions, list):
        raise DataError(f"{path}: a COCO results file is a json list of detections")
    for i, p in enumerate(predictions):
        if not isinstance(p, dict) or not {"image_id", "category_id", "bbox", "score"} <= p.keys():
            raise DataError(f"{path}: entry {i} lacks one of image_id, category_id, bbox, score")
    return predictions


def write_results(result: CocoMetrics, output_dir: str | Path) -> None:
    """``metrics.json`` and ``per_class.csv`` in ``output_dir``."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "metrics.json").write_text(json.dumps(result.metrics, indent=2))
    rows = [asdict(c) for c in result.per_class]
    with open(output_dir / "per_class.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["name"])
        writer.writeheader()
        writer.writerows(rows)


def run(cfg: DictConfig) -> dict[str, float]:
    """Score ``cfg.predictions`` on ``cfg.split`` of ``cfg.data``; returns the metrics dict."""
    datamodule: XrayDataModule = hydra.utils.instantiate(cfg.data)
    stage = {"val": "validate", "test": "test"}[cfg.split]
    datamodule.setup(stage)
    gt = datamodule.datasets[cfg.split].coco
    predictions = load_predictions(cfg.predictions)
    known_images = set(gt.getImgIds())
    stray = sorted({p["image_id"] for p in predictions} - known_images)
    if stray:
        raise DataError(
            f"{cfg.predictions}: image ids {stray[:10]}{' ...' if len(stray) > 10 else ''} are not in the "
            f"{cfg.split} split ({datamodule.ann_path(cfg.split)})"
        )
    result = evaluate_coco(gt, predictions, datamodule.class_table, backend=cfg.backend)
    write_results(result, cfg.paths.output_dir)
    log.info("%s split, %d predictions:\n%s", cfg.split, len(predictions), result.table())
    log.info("metrics written to %s", Path(cfg.paths.output_dir) / "metrics.json")
    return result.metrics


@hydra.main(version_base="1.3", config_path="pkg://dfss.conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    run(cfg)
