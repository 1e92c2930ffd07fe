"""``dfss-inspect``: run a data set through the data module and report what comes out.

Validates the splits (the same checks training does), prints the class table and split sizes,
iterates the chosen split's DataLoader with a progress bar, and reports loading throughput,
boxes per image and boxes per class; saves augmented samples with their boxes to
``<output_dir>/samples.png``. A Hydra app: ``dfss-inspect data=coco data.root=/my/xray``.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from omegaconf import DictConfig
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from dfss.config import data_of
from dfss.data.datamodule import STAGE_OF_SPLIT, XrayDataModule
from dfss.viz import draw_boxes, save_grid

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict[str, Any]:
    """Inspect ``cfg.data``'s ``cfg.split``; returns the figures it printed."""
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule: XrayDataModule = hydra.utils.instantiate(data_of(cfg, "dfss-inspect"))
    table = datamodule.class_table
    log.info("classes of %s:\n%s", datamodule.ann_path("train"), table.describe())
    datamodule.setup(STAGE_OF_SPLIT[cfg.split])
    loader = {
        "train": datamodule.train_dataloader,
        "val": datamodule.val_dataloader,
        "test": datamodule.test_dataloader,
    }[cfg.split]()
    total = len(loader) if cfg.num_batches is None else min(int(cfg.num_batches), len(loader))
    per_class: Counter[int] = Counter()
    num_images = num_boxes = 0
    samples = []
    start = time.perf_counter()
    columns = (TextColumn(f"loading {cfg.split}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=True) as progress:
        task = progress.add_task("load", total=total)
        for i, batch in enumerate(loader):
            if i >= total:
                break
            num_images += len(batch)
            num_boxes += batch.num_boxes
            for labels in batch.labels:
                per_class.update(labels.tolist())
            for j in range(len(batch)):
                if len(samples) < cfg.num_samples:
                    known = [table.known[k] for k in batch.labels[j].tolist()]
                    samples.append(
                        draw_boxes(
                            batch.images[j],
                            batch.boxes[j],
                            [c.name for c in known],
                            [c.supercategory for c in known],
                        )
                    )
            progress.advance(task)
    seconds = time.perf_counter() - start
    split_size = len(datamodule.datasets[cfg.split])
    figures = {
        "split": cfg.split,
        "split_images": split_size,
        "num_images": num_images,
        "num_boxes": num_boxes,
        "boxes_per_image": num_boxes / max(num_images, 1),
        "images_per_s": num_images / max(seconds, 1e-9),
        "num_workers": datamodule.num_workers,
        "boxes_per_class": {table.known[k].name: n for k, n in sorted(per_class.items())},
    }
    output_dir = Path(cfg.paths.output_dir)
    if samples:
        figures["samples"] = str(save_grid(samples, output_dir / "samples.png"))
    (output_dir / "inspect.json").write_text(json.dumps(figures, indent=2))
    log.info(
        "%s: %d images, %d boxes (%.1f per image), %.1f images/s with %d workers",
        cfg.split,
        num_images,
        num_boxes,
        figures["boxes_per_image"],
        figures["images_per_s"],
        datamodule.num_workers,
    )
    if num_images < split_size:
        cause = (
            f"num_batches={cfg.num_batches} loaded {total} of {len(loader)} batches"
            if total < len(loader)
            else f"training batches of {loader.batch_size} drop the last, partial one"
        )
        log.info("%d of the split's %d images were loaded: %s", num_images, split_size, cause)
    log.info("boxes per class: %s", figures["boxes_per_class"])
    if samples:
        log.info("augmented samples drawn to %s", figures["samples"])
    return figures


@hydra.main(version_base="1.3", config_path="pkg://dfss.conf", config_name="inspect")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
