"""Evaluation task: COCO metrics of a trained model, or of a predictions file, on a data split.

Two modes, exactly one of which a run sets:

- ``ckpt_path=<DFSS checkpoint>`` (teacher, student or distilled): the model is rebuilt from the
  checkpoint's own config (EMA weights when it has them), its classes are checked against the data,
  and it runs over the split with the checkpoint's post-processing settings and *this* run's unknown
  rule (the ``threshold`` group), so ``-m threshold.T=0,0.05,0.1`` re-scores a model without
  retraining. The detections are written as ``predictions.json`` (COCO results format).
- ``predictions=<COCO results json>``: that file is scored as it is.

Both write ``metrics.json`` (overall, per supercategory, the alarm operating point),
``per_class.csv`` (AP, AP50, AP75, recall per class), ``pr_curves.json``, ``roc.json`` and
``run.json`` (what was evaluated: split, checkpoint or file, the unknown rule, detection counts), and
print a table; with ``model_card=true`` (checkpoint mode) also ``model_card.md``. The ground truth is
the split's json as the data module validates it, so the figures describe exactly the images and
annotations a model would be evaluated on.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from dfss import preflight
from dfss.config import run_hydra_app
from dfss.data.datamodule import STAGE_OF_SPLIT, XrayDataModule
from dfss.data.errors import DataError
from dfss.device import resolve_device
from dfss.errors import ConfigError, exit_on_user_error
from dfss.eval.bootstrap import FILE_NAME as MATCHES_FILE
from dfss.eval.bootstrap import MatchRecord
from dfss.eval.coco_metrics import RECALL_GRID, CocoMetrics, evaluate_coco
from dfss.eval.inference import EVAL_SPLITS, inference_facts, predict_split
from dfss.eval.model_card import measure_speed, render_model_card
from dfss.lit.loggers import ensure_wandb_mode, finish_wandb, group_sweep_runs
from dfss.models.checkpoints import (
    build_model_from_checkpoint,
    check_classes,
    postprocess_config_of,
    read_dfss_checkpoint,
    warn_if_rule_without_objectness,
    weights_kind,
)
from dfss.precision import prepare_for_inference

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
    """``metrics.json``, ``per_class.csv``, ``pr_curves.json`` (precision at IoU 0.5 on COCO's 101
    recall points, overall and per supercategory) and ``roc.json`` (the image alarm's ROC: fpr, tpr,
    alarm score per point) in ``output_dir``."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "metrics.json").write_text(json.dumps(result.metrics, indent=2))
    curves = {"recall": list(RECALL_GRID), "precision50": {k: list(v) for k, v in result.pr50.items()}}
    (output_dir / "pr_curves.json").write_text(json.dumps(curves))
    if result.roc is not None:
        roc = result.roc
        thresholds = [None if math.isinf(t) else t for t in roc.thresholds]  # None: nothing alarms
        document = {
            "fpr": roc.fpr,
            "tpr": roc.tpr,
            "thresholds": thresholds,
            "num_positive": roc.num_positive,
            "num_negative": roc.num_negative,
        }
        (output_dir / "roc.json").write_text(json.dumps(document))
    rows = [asdict(c) for c in result.per_class]
    with open(output_dir / "per_class.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["name"])
        writer.writeheader()
        writer.writerows(rows)


def data_config(cfg: DictConfig, checkpoint: dict[str, Any] | None) -> dict[str, Any]:
    """The data module's config: with ``data=checkpoint`` (the default) the checkpoint's own data
    config with every key the run sets replacing its value; any other data option as composed."""
    data = OmegaConf.to_container(cfg.data, resolve=True)
    if not data.pop("from_checkpoint", False):
        return data
    given = {key: value for key, value in data.items() if value is not None}
    if checkpoint is None:  # a predictions file: only what the run gives, XrayDataModule's defaults else
        if "root" not in given:
            raise ConfigError(
                "predictions=<file> is scored against a data set: give data.root=<set> (or data=<option>)"
            )
        return given
    saved = dict(checkpoint["dfss_config"]["data"])
    saved.pop("seed", None)  # evaluation does not shuffle or augment
    return {**saved, **given}


def _setup_split(cfg: DictConfig, datamodule: XrayDataModule) -> None:
    datamodule.setup(STAGE_OF_SPLIT[cfg.split])


def _score_file(cfg: DictConfig) -> tuple[XrayDataModule, list[dict], dict[str, Any], dict[str, Any]]:
    """The predictions file and the data it is scored on."""
    if float(cfg.threshold.T) > 0:
        log.warning("threshold.T=%s is ignored: a predictions file is scored as it is", cfg.threshold.T)
    datamodule: XrayDataModule = hydra.utils.instantiate(data_config(cfg, None))
    _setup_split(cfg, datamodule)
    predictions = load_predictions(cfg.predictions)
    known_images = set(datamodule.datasets[cfg.split].coco.getImgIds())
    stray = sorted({p["image_id"] for p in predictions} - known_images)
    if stray:
        raise DataError(
            f"{cfg.predictions}: image ids {stray[:10]}{' ...' if len(stray) > 10 else ''} are not in the "
            f"{cfg.split} split ({datamodule.ann_path(cfg.split)})"
        )
    return datamodule, predictions, {"predictions": str(cfg.predictions)}, {}


def _predict_checkpoint(
    cfg: DictConfig, checkpoint: dict[str, Any]
) -> tuple[XrayDataModule, list[dict], dict[str, Any], dict[str, Any]]:
    """Run ``checkpoint`` (read from ``cfg.ckpt_path``)'s model over the split with its post-processing
    and this run's unknown rule; also returns the model, the checkpoint and the post-processing (for
    the model card)."""
    path = cfg.ckpt_path
    train_config = checkpoint["dfss_config"]
    image_size = int(cfg.image_size or train_config["data"]["image_size"])
    overrides: dict[str, Any] = {"image_size": image_size}
    if cfg.batch_size is not None:
        overrides["eval_batch_size"] = int(cfg.batch_size)
    datamodule: XrayDataModule = hydra.utils.instantiate(data_config(cfg, checkpoint), **overrides)
    check_classes(checkpoint, datamodule.class_table, path)  # before the split is read and checked
    _setup_split(cfg, datamodule)

    postprocess_config = hydra.utils.instantiate(cfg.threshold).apply(postprocess_config_of(checkpoint))
    warn_if_rule_without_objectness(checkpoint, postprocess_config, path)
    device = resolve_device(cfg.device)
    model = build_model_from_checkpoint(checkpoint, datamodule.class_table.num_classes, path).eval()
    precision = prepare_for_inference(model, device, cfg.precision)
    log.info(
        "%s: %s (%s weights) on %s (%s), %s split at %d px",
        path,
        train_config["model"]["net"]["_target_"],
        weights_kind(checkpoint),
        device,
        precision,
        cfg.split,
        image_size,
    )
    predictions = predict_split(model, datamodule, cfg.split, postprocess_config, device, precision)
    facts = inference_facts(checkpoint, postprocess_config, device, image_size, precision)
    info = {"ckpt_path": str(path), **facts}
    return (
        datamodule,
        predictions,
        info,
        {"model": model, "checkpoint": checkpoint, "postprocess": postprocess_config},
    )


def write_model_card(
    cfg: DictConfig,
    result: CocoMetrics,
    info: dict[str, Any],
    datamodule: XrayDataModule,
    loaded: dict[str, Any],
    output_dir: Path,
) -> Path:
    """``model_card.md``: the checkpoint, its data, classes, figures, operating point and speed here."""
    model = loaded["model"]
    device = next(model.parameters()).device
    speed = measure_speed(model, info["image_size"], device, loaded["postprocess"], info["precision"])
    card = render_model_card(
        checkpoint=loaded["checkpoint"],
        ckpt_path=str(cfg.ckpt_path),
        result=result,
        info=info,
        ann_path=str(datamodule.ann_path(cfg.split)),
        num_images=len(datamodule.datasets[cfg.split].coco.getImgIds()),
        speed=speed,
        device=device,
        num_parameters=sum(p.numel() for p in model.parameters()),
    )
    path = output_dir / "model_card.md"
    path.write_text(card)
    return path


def run(cfg: DictConfig) -> dict[str, float]:
    """Score ``cfg.ckpt_path``'s model or ``cfg.predictions`` on ``cfg.split``; returns the metrics."""
    has_ckpt, has_predictions = cfg.get("ckpt_path") is not None, cfg.get("predictions") is not None
    if has_ckpt == has_predictions:
        raise ConfigError(
            "set exactly one of ckpt_path=<DFSS checkpoint> (run a model) and predictions=<COCO results "
            f"json> (score a file); {'both are' if has_ckpt else 'neither is'} set"
        )
    if cfg.split not in EVAL_SPLITS:
        raise ConfigError(f"split must be one of {EVAL_SPLITS}, got {cfg.split!r}")
    if cfg.get("model_card") and not has_ckpt:
        raise ConfigError(
            "model_card=true needs ckpt_path=<DFSS checkpoint> (a predictions file has no model)"
        )

    # the checkpoint, read once: by the start-up check (after it found the file), then for the model
    read: dict[str, dict[str, Any]] = {}

    def checkpoint() -> dict[str, Any]:
        if "checkpoint" not in read:
            read["checkpoint"] = read_dfss_checkpoint(cfg.ckpt_path, "evaluate")
        return read["checkpoint"]

    preflight.check(
        preflight.evaluation_problems(cfg, lambda: data_config(cfg, checkpoint() if has_ckpt else None))
    )
    if has_ckpt:
        datamodule, predictions, info, loaded = _predict_checkpoint(cfg, checkpoint())
    else:
        datamodule, predictions, info, loaded = _score_file(cfg)
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if has_ckpt:
        (output_dir / "predictions.json").write_text(json.dumps(predictions))
    gt = datamodule.datasets[cfg.split].coco
    result = evaluate_coco(
        gt,
        predictions,
        datamodule.class_table,
        backend=cfg.backend,
        alarm_fpr=float(cfg.alarm_fpr),
        alarm_on_unknown=bool(cfg.alarm_on_unknown),
    )
    write_results(result, output_dir)
    if cfg.get("bootstrap_record", True):  # the image bootstrap's input (dfss.eval.bootstrap)
        MatchRecord.from_coco(gt, predictions).save(output_dir / MATCHES_FILE)
    unknown_ids = set(datamodule.class_table.unknown_ids)
    num_unknown = sum(p["category_id"] in unknown_ids for p in predictions)
    info = {"split": cfg.split, **info, "num_detections": len(predictions), "num_unknown": num_unknown}
    (output_dir / "run.json").write_text(json.dumps(info, indent=2))

    log.info("%s split, %d detections:\n%s", cfg.split, len(predictions), result.table())
    rule = (
        f"unknown rule T={info['unknown_threshold']:g} (min quality {info['unknown_min_quality']:g})"
        if has_ckpt
        else "scored as given (no unknown rule applied)"
    )
    log.info("%s: %d of %d detections labelled unknown", rule, num_unknown, len(predictions))
    if cfg.get("model_card"):
        log.info(
            "model card written to %s", write_model_card(cfg, result, info, datamodule, loaded, output_dir)
        )
    log_to_wandb(cfg, result, info)
    log.info("results written to %s", output_dir)
    return result.metrics


def log_to_wandb(cfg: DictConfig, result: CocoMetrics, info: dict[str, Any]) -> None:
    """With ``logger=wandb``: the figures (``<split>/...``), the per-class table and the run's facts as
    a W&B run (offline without credentials; a sweep's runs grouped and named as training's)."""
    if "wandb" not in (cfg.get("logger") or {}):
        return
    ensure_wandb_mode(cfg)
    group_sweep_runs(cfg)
    logger = hydra.utils.instantiate(cfg.logger.wandb)
    logger.log_hyperparams({**OmegaConf.to_container(cfg, resolve=True), "run": info})
    logger.log_metrics(
        {f"{cfg.split}/{k}": v for k, v in result.metrics.items() if not math.isnan(v)}, step=0
    )
    columns = ["class", "supercategory", "num_gt", "ap", "ap50", "ap75"]
    rows = [[c.name, c.supercategory, c.num_gt, c.ap, c.ap50, c.ap75] for c in result.per_class]
    logger.log_table(key=f"{cfg.split}/per_class_ap", columns=columns, data=rows, step=0)
    finish_wandb([logger])


@hydra.main(version_base="1.3", config_path="pkg://dfss.conf", config_name="eval")
def _hydra_main(cfg: DictConfig) -> float | None:
    with exit_on_user_error():
        return run(cfg).get("map50")  # the value Hydra sweepers optimise


def main() -> None:
    """Console entry point; ``-m`` may come before or after the overrides."""
    run_hydra_app(_hydra_main, "eval")


if __name__ == "__main__":
    main()
