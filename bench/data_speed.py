"""Data-loading speed: decoded + augmented training samples per second, per worker and per loader.

A set in the synthetic benchmark's format (640 px JPEG, its classes and object counts; generated
into a temporary folder unless ``--root`` names one) goes through DFSS's real training pipelines:

- ``student``: decode + letterbox/scale jitter + flip + photometric jitter (``build_train_transforms``),
- ``teacher``: the same after mosaic (4 images) and mixup (``MosaicMixup``, probabilities 1.0 / 0.5),

first in this process (= what one DataLoader worker delivers), then through the training
``DataLoader`` of :class:`~dfss.data.datamodule.XrayDataModule` (seeded sampler, collate, batches of
16) with ``--workers`` processes. ``--step-img-per-s`` (a training step's img/s from
``bench/steps_speed.py`` on the GPU) turns the per-worker figure into the number of workers that
step needs, next to the default worker count of ``data=synth_benchmark``.

    python bench/data_speed.py                          # 64 generated images, 2 workers
    python bench/data_speed.py --root data/synth_benchmark --workers 8 --step-img-per-s 300
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import tempfile
import time
from pathlib import Path

import torch
from _common import load_average, machine, print_json_lines
from omegaconf import OmegaConf

from dfss.data.datamodule import XrayDataModule
from dfss.synth.config import load_preset
from dfss.synth.writer import generate

DEFAULT_WORKERS = int(
    OmegaConf.load(Path(__file__).parents[1] / "dfss/conf/data/synth_benchmark.yaml").num_workers
)


def make_set(root: Path, num_images: int) -> Path:
    config = load_preset("benchmark")
    config = dataclasses.replace(config, num_train=num_images, num_val=1, num_test=1)
    generate(config, root, workers=max(1, min(4, os.cpu_count() or 1)))
    return root


def per_process_rate(dataset, samples: int) -> float:
    """Samples per second of ``dataset[i]`` in this process (warm-up excluded)."""
    for i in range(min(4, len(dataset))):
        dataset[i]
    start = time.perf_counter()
    for i in range(samples):
        dataset[i % len(dataset)]
    return samples / (time.perf_counter() - start)


def loader_rate(datamodule: XrayDataModule, batches: int) -> float:
    loader = datamodule.train_dataloader()
    iterator = iter(loader)
    next(iterator)  # workers started, first batch out
    start = time.perf_counter()
    count = 0
    for _ in range(batches):
        try:
            batch = next(iterator)
        except StopIteration:
            iterator = iter(loader)
            batch = next(iterator)
        count += len(batch)
    return count / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--root", type=Path, default=None, help="a synthetic-benchmark-format set (default: make one)"
    )
    parser.add_argument("--images", type=int, default=64, help="images to generate without --root")
    parser.add_argument("--samples", type=int, default=48, help="samples timed in-process per pipeline")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--batches", type=int, default=8, help="loader batches timed")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=640)
    parser.add_argument("--step-img-per-s", type=float, default=None, help="a training step's img/s to feed")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # as in a DataLoader worker

    with tempfile.TemporaryDirectory(prefix="dfss-data-speed-") as tmp:
        root = args.root or make_set(Path(tmp) / "set", args.images)
        rows = []
        for pipeline, mosaic, mixup in (("student", 0.0, 0.0), ("teacher", 1.0, 0.5)):
            datamodule = XrayDataModule(
                root,
                image_size=args.image_size,
                batch_size=args.batch_size,
                num_workers=args.workers,
                pin_memory=torch.cuda.is_available(),
                mosaic_prob=mosaic,
                mixup_prob=mixup,
                image_check="header",
                seed=0,
            )
            datamodule.setup("fit")
            one = per_process_rate(datamodule.datasets["train"], args.samples)
            total = loader_rate(datamodule, args.batches)
            row = {
                "bench": "data_speed",
                "pipeline": pipeline,
                "img_per_s_per_worker": round(one, 1),
                "loader_workers": args.workers,
                "loader_img_per_s": round(total, 1),
                "default_workers": DEFAULT_WORKERS,
                "default_workers_img_per_s_est": round(one * DEFAULT_WORKERS, 1),
            }
            if args.step_img_per_s:
                row["step_img_per_s"] = args.step_img_per_s
                row["workers_needed"] = math.ceil(args.step_img_per_s / one)
                row["data_bound_with_default_workers"] = one * DEFAULT_WORKERS < args.step_img_per_s
            rows.append(row)
    head = {
        "bench": "data_speed_header",
        **machine(),
        "image_size": args.image_size,
        "batch_size": args.batch_size,
        "root": str(args.root) if args.root else f"generated {args.images} images",
        "cpus": os.cpu_count(),
    }
    head["load_avg_1m_at_end"] = load_average()
    print(
        f"# data_speed  {head['date']}  {head['root']}  {args.image_size}px  batch {args.batch_size}  "
        f"{head['cpus']} cpus  load {head['load_avg_1m_at_start']} -> {head['load_avg_1m_at_end']}"
    )
    print(f"{'pipeline':<10}{'img/s/worker':>14}{'loader img/s':>14}{'workers':>9}{'est. default':>14}")
    for r in rows:
        print(
            f"{r['pipeline']:<10}{r['img_per_s_per_worker']:>14.1f}{r['loader_img_per_s']:>14.1f}"
            f"{r['loader_workers']:>9}{r['default_workers_img_per_s_est']:>10.1f} ({r['default_workers']}w)"
        )
    print_json_lines(head, rows)
    return rows


if __name__ == "__main__":
    main()
