"""Single-core speed of the synthetic scan generator against its I/O floor.

Full generator = compose scene + physics/palette + image encode and write, as ``dfss-synth`` does per
image. I/O floor = encoding and writing the very same images with the same format settings, measured in
the same run. Prints a table and one JSON line.

    python bench/synth_speed.py --num 50
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import tempfile
import time

from dfss.synth.catalog import load_categories
from dfss.synth.config import load_preset
from dfss.synth.writer import image_file_name, render_scan, save_image


def measure(config, categories, num: int) -> dict:
    """Full generator vs render only vs I/O floor for ``num`` images of ``config``."""
    render_scan(config, categories, "train", 10_000)  # warm-up (imports, allocator)
    with tempfile.TemporaryDirectory() as tmp:
        images, compose_render = [], 0.0
        start = time.perf_counter()
        for i in range(num):
            t0 = time.perf_counter()
            image, _ = render_scan(config, categories, "train", i)
            compose_render += time.perf_counter() - t0
            save_image(image, os.path.join(tmp, image_file_name(i, config)), config)
            images.append(image)
        full = time.perf_counter() - start
        size = sum(os.path.getsize(os.path.join(tmp, image_file_name(i, config))) for i in range(num)) / num
        start = time.perf_counter()
        for i, image in enumerate(images):
            save_image(image, os.path.join(tmp, "floor_" + image_file_name(i, config)), config)
        floor = time.perf_counter() - start
    return {
        "bench": "synth_speed",
        "image_size": config.image_size,
        "image_format": config.image_format,
        "num_images": num,
        "cores": 1,
        "generator_images_per_s": round(num / full, 2),
        "render_only_images_per_s": round(num / compose_render, 2),
        "io_floor_images_per_s": round(num / floor, 2),
        "generator_vs_floor": round(floor / full, 3),
        "file_kB": round(size / 1e3, 1),
        "photons_per_pixel": config.photons_per_pixel,
        "python": platform.python_version(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--num", type=int, default=50, help="images per measurement (default 50)")
    parser.add_argument("--preset", default="benchmark")
    parser.add_argument("--image-size", type=int, default=640)
    parser.add_argument("--formats", nargs="+", default=["jpg", "png"], help="image formats to measure")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core, as the target says
    categories = load_categories()
    results = []
    for image_format in args.formats:
        config = dataclasses.replace(
            load_preset(args.preset), image_size=args.image_size, image_format=image_format
        )
        results.append(measure(config, categories, args.num))
    print(
        f"{'format':<7}{'generator img/s':>17}{'render only':>13}"
        f"{'I/O floor':>11}{'floor/gen':>11}{'kB/image':>10}"
    )
    for r in results:
        print(
            f"{r['image_format']:<7}{r['generator_images_per_s']:>17.1f}"
            f"{r['render_only_images_per_s']:>13.1f}"
            f"{r['io_floor_images_per_s']:>11.1f}{r['generator_vs_floor']:>11.3f}{r['file_kB']:>10.1f}"
        )
    print(f"({args.num} images of {args.image_size}x{args.image_size} px each, one core; target >= 20 img/s)")
    for r in results:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
