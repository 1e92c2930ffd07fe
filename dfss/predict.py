"""``dfss-predict``: a trained model run over scans on disk, with boxes drawn and alarms raised.

``dfss-predict ckpt=<model.ckpt> input=<image, folder or glob> output=<folder>`` rebuilds the model
from its checkpoint (EMA weights when it has them) with the checkpoint's class table and
post-processing settings and *this* run's unknown rule (the ``threshold`` group, as in evaluation),
reads the images as evaluation does (same reader, same letterbox), runs them in batches and maps the
boxes back to the pixels of the files. It writes into ``output``:

- each image with its boxes drawn (dangerous red, normal green, unknown yellow; ``name score``;
  boxes scoring at least ``draw_score``), under the file's name (PNG and JPEG keep their format,
  other formats get ``.png`` appended), sub-folders of a glob kept;
- ``predictions.json``: every detection in the COCO results format (``image_id``, ``category_id``
  in the checkpoint's class ids, ``bbox`` xywh in original pixels, ``score``), as ``dfss-eval``
  writes it;
- ``images.json``: what the ids mean, a COCO image list (``id`` = position in the sorted input,
  from 1; ``file_name`` = the path read; ``width``, ``height``) with the checkpoint's ``categories``;
- ``summary.jsonl``: per image, in input order, ``file``, ``image_id``, ``alarm`` (true when a
  dangerous detection scores at least ``alarm_score``), the ``dangerous`` items behind it (name,
  score, bbox xywh) and detection counts; the first ``table_rows`` are printed as a table;
- ``run.json``: the checkpoint, weights, device, input size, post-processing and thresholds used.
"""

from __future__ import annotations

import json
import logging
import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from torch.utils.data import DataLoader

from dfss import preflight
from dfss.config import run_hydra_app
from dfss.data.classes import ClassInfo, ClassTable
from dfss.data.transforms import build_eval_transforms
from dfss.device import resolve_device
from dfss.errors import ConfigError, exit_on_user_error
from dfss.eval.image_files import ImageFiles, collate_images, find_images, image_entries
from dfss.eval.inference import inference_facts, run_model
from dfss.fileio import write_json_atomic, write_text_atomic
from dfss.models.checkpoints import (
    build_model_from_checkpoint,
    class_table_of,
    postprocess_config_of,
    read_dfss_checkpoint,
    warn_if_rule_without_objectness,
)
from dfss.models.postprocess import PostProcessConfig, detections_to_coco, postprocess
from dfss.precision import prepare_for_inference
from dfss.viz import draw_detections, save_image

log = logging.getLogger(__name__)
KEPT_FORMATS = (".png", ".jpg", ".jpeg")


def relative_names(paths: Sequence[Path]) -> list[Path]:
    """Each path below the inputs' deepest common folder (a folder's images: their file names)."""
    absolute = [Path(os.path.abspath(p)) for p in paths]
    root = Path(os.path.commonpath([p.parent for p in absolute]))
    return [p.relative_to(root) for p in absolute]


def drawn_image_paths(paths: Sequence[Path], output_dir: Path) -> list[Path]:
    """Where each input's drawing goes: its :func:`relative_names` path inside ``output_dir``; PNG and
    JPEG keep their name, other formats get ``.png`` appended (``scan.tif`` -> ``scan.tif.png``)."""
    drawn = []
    for relative in relative_names(paths):
        name = relative.name if relative.suffix.lower() in KEPT_FORMATS else f"{relative.name}.png"
        drawn.append(Path(os.path.abspath(output_dir / relative.parent / name)))
    overwritten = sorted(set(drawn) & {Path(os.path.abspath(p)) for p in paths})
    if overwritten:
        raise ConfigError(
            f"output={output_dir} would overwrite the input image {overwritten[0]}; "
            "choose another output folder"
        )
    return drawn


def image_summary(
    entry: dict,
    detections: Sequence[dict],
    category_of: dict[int, ClassInfo],
    table: ClassTable,
    alarm_score: float,
) -> dict[str, Any]:
    """One ``summary.jsonl`` line: the image alarms when a dangerous detection scores ``>= alarm_score``."""
    dangerous = [
        {"name": category_of[d["category_id"]].name, "score": d["score"], "bbox": d["bbox"]}
        for d in sorted(detections, key=lambda d: -d["score"])
        if d["score"] >= alarm_score and table.is_dangerous(category_of[d["category_id"]])
    ]
    unknown_ids = set(table.unknown_ids)
    return {
        "file": entry["file_name"],
        "image_id": entry["id"],
        "alarm": bool(dangerous),
        "dangerous": dangerous,
        "num_detections": len(detections),
        "num_unknown": sum(d["category_id"] in unknown_ids for d in detections),
    }


def draw_image(
    original: torch.Tensor,
    detections: Sequence[dict],
    category_of: dict[int, ClassInfo],
    table: ClassTable,
    min_score: float,
) -> torch.Tensor:
    """``original`` with the detections scoring at least ``min_score`` drawn."""
    shown = [d for d in detections if d["score"] >= min_score]
    boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (d["bbox"] for d in shown)]).reshape(-1, 4)
    return draw_detections(
        original, boxes, [d["score"] for d in shown], [category_of[d["category_id"]] for d in shown], table
    )


def _load_model(cfg: DictConfig) -> tuple[torch.nn.Module, ClassTable, PostProcessConfig, dict[str, Any]]:
    """The checkpoint's model in eval mode on the device, its classes, post-processing and run facts."""
    checkpoint = read_dfss_checkpoint(cfg.ckpt, "use")
    table = class_table_of(checkpoint, cfg.ckpt)
    postprocess_config = hydra.utils.instantiate(cfg.threshold).apply(postprocess_config_of(checkpoint))
    warn_if_rule_without_objectness(checkpoint, postprocess_config, cfg.ckpt)
    if postprocess_config.unknown_threshold > 0 and not table.unknown_ids:
        raise ConfigError(
            f"threshold.T={postprocess_config.unknown_threshold} labels detections unknown, but {cfg.ckpt} "
            f"has no category of supercategory {list(table.unknown_supercategories)}; use threshold=none"
        )
    train_config = checkpoint["dfss_config"]
    image_size = int(cfg.image_size or train_config["data"]["image_size"])
    device = resolve_device(cfg.device)
    model = build_model_from_checkpoint(checkpoint, table.num_classes, cfg.ckpt).eval()
    precision = prepare_for_inference(model, device, cfg.precision)
    info = {
        "ckpt": str(cfg.ckpt),
        "model": train_config["model"]["net"]["_target_"],
        **inference_facts(checkpoint, postprocess_config, device, image_size, precision),
    }
    return model, table, postprocess_config, info


def print_summary(summaries: Sequence[dict], names: Sequence[Path], rows: int, console: Console) -> None:
    """The first ``rows`` images: file (``names``), alarm yes/no, the dangerous items behind it."""
    if rows > 0:
        table = Table(title="dfss-predict", show_header=True)
        for column in ("file", "alarm", "dangerous items (score)", "detections"):
            table.add_column(column)
        for s, name in zip(summaries[:rows], names, strict=False):
            items = ", ".join(f"{d['name']} {d['score']:.2f}" for d in s["dangerous"])
            alarm = "[bold red]yes[/]" if s["alarm"] else "no"
            table.add_row(str(name), alarm, items or "-", str(s["num_detections"]))
        console.print(table)
    if len(summaries) > rows:
        console.print(f"{len(summaries) - max(rows, 0)} more images in summary.jsonl")


def write_results(
    output_dir: Path, predictions: list[dict], entries: list[dict], summaries: list[dict], table: ClassTable
) -> None:
    """``predictions.json``, ``images.json`` (what the image ids mean) and ``summary.jsonl``."""
    categories = [
        {"id": c.coco_id, "name": c.name, "supercategory": c.supercategory}
        for c in (*table.known, *table.unknown)
    ]
    write_json_atomic(output_dir / "predictions.json", predictions)
    write_json_atomic(output_dir / "images.json", {"images": entries, "categories": categories}, indent=1)
    write_text_atomic(output_dir / "summary.jsonl", "".join(json.dumps(s) + "\n" for s in summaries))


@torch.no_grad()
def run(cfg: DictConfig) -> dict[str, Any]:
    """Predict on ``cfg.input`` with ``cfg.ckpt``'s model, writing into ``cfg.output``; returns the
    run's facts (what ``run.json`` holds)."""
    problems = preflight.inference_problems(cfg)
    if OmegaConf.is_missing(cfg, "input"):
        problems.append("input is not set: input=<image, folder or glob>")
    for name in ("draw_score", "alarm_score"):
        if not 0.0 <= float(cfg[name]) <= 1.0:
            problems.append(f"{name}={cfg[name]} is out of range: it must be [0, 1]")
    preflight.check(problems)
    draw_score, alarm_score = float(cfg.draw_score), float(cfg.alarm_score)
    if int(cfg.batch_size) <= 0:
        raise ConfigError(f"batch_size must be positive, got {cfg.batch_size}")
    paths = find_images(cfg.input)
    entries = image_entries(paths)  # every header read before the model is built
    output_dir = Path(cfg.output)
    drawn_paths = drawn_image_paths(paths, output_dir) if cfg.draw else []
    model, table, postprocess_config, info = _load_model(cfg)
    device = torch.device(info["device"])
    log.info(
        "%s (%s weights) on %s at %d px: %d image(s) from %s",
        cfg.ckpt,
        info["weights"],
        device,
        info["image_size"],
        len(paths),
        cfg.input,
    )
    category_of = {c.coco_id: c for c in (*table.known, *table.unknown)}
    dataset = ImageFiles(paths, build_eval_transforms(info["image_size"]), with_originals=bool(cfg.draw))
    loader = DataLoader(
        dataset, batch_size=int(cfg.batch_size), num_workers=int(cfg.num_workers), collate_fn=collate_images
    )
    predictions: list[dict] = []
    summaries: list[dict] = []
    columns = (TextColumn("predicting"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=True) as progress:
        task = progress.add_task("predict", total=len(paths))
        for batch in loader:
            images = batch.images.to(device, non_blocking=True)
            detections = postprocess(
                run_model(model, images, info["precision"]),
                postprocess_config,
                input_size=images.shape[-1],
                orig_sizes=batch.orig_sizes,
            )
            results = detections_to_coco(detections, batch.indices + 1, table)
            per_image: dict[int, list[dict]] = defaultdict(list)
            for result in results:
                per_image[result["image_id"]].append(result)
            for j, index in enumerate(batch.indices.tolist()):
                found = per_image[index + 1]
                summaries.append(image_summary(entries[index], found, category_of, table, alarm_score))
                if cfg.draw:
                    drawing = draw_image(batch.originals[j], found, category_of, table, draw_score)
                    save_image(drawing, drawn_paths[index])
            predictions.extend(results)
            progress.advance(task, len(batch))

    write_results(output_dir, predictions, entries, summaries, table)
    info = {
        **info,
        "input": str(cfg.input),
        "num_images": len(paths),
        "num_detections": len(predictions),
        "num_alarms": sum(s["alarm"] for s in summaries),
        "draw_score": draw_score,
        "alarm_score": alarm_score,
    }
    write_json_atomic(output_dir / "run.json", info, indent=2)
    print_summary(summaries, relative_names(paths), int(cfg.table_rows), Console())
    log.info(
        "%d of %d image(s) alarm (a dangerous detection scoring >= %g); results written to %s",
        info["num_alarms"],
        len(paths),
        info["alarm_score"],
        output_dir,
    )
    return info


@hydra.main(version_base="1.3", config_path="pkg://dfss.conf", config_name="predict")
def _hydra_main(cfg: DictConfig) -> None:
    with exit_on_user_error():
        run(cfg)


def main() -> None:
    """Console entry point."""
    run_hydra_app(_hydra_main, "predict")


if __name__ == "__main__":
    main()
