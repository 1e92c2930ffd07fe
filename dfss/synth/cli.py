"""``dfss-synth``: generate the synthetic dual-energy X-ray detection set, or a preview grid of it."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from dfss.synth.config import SynthConfig, load_preset, preset_names

EXAMPLES = """examples:
  dfss-synth --preset small --out data/synth_small              # CPU demo set (256 px, 240/60/80)
  dfss-synth --preset benchmark --out data/synth --workers 8     # 640 px, 4000/500/1000
  dfss-synth --preset small --out data/s --seed 3 --num-train 1000 --force
  dfss-synth --preset benchmark --samples docs/images/synth_samples.png   # preview grid only

Layout: OUT/images/<split>/<id:06d>.jpg (or .png), OUT/annotations/<split>.json (COCO), OUT/synth.yaml.
OUT/annotations/test.json is written last: its presence means the set is complete.
The `unknown` class appears only in the test split; every split lists all categories."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dfss-synth",
        description="Render a synthetic dual-energy X-ray baggage detection set (COCO json + images).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--preset",
        default="small",
        help=f"packaged preset ({', '.join(preset_names())}) or a yaml file path (default: small)",
    )
    parser.add_argument("--out", type=Path, help="output folder (required unless --samples)")
    parser.add_argument("--seed", type=int, help="override the preset's seed")
    parser.add_argument(
        "--workers", type=int, default=1, help="processes; output is identical for any count (default 1)"
    )
    parser.add_argument(
        "--image-size",
        type=int,
        help="square image side in pixels (objects keep real size: size/64 px per cm)",
    )
    parser.add_argument("--num-train", type=int, help="number of train images")
    parser.add_argument("--num-val", type=int, help="number of val images")
    parser.add_argument("--num-test", type=int, help="number of test images")
    parser.add_argument("--clutter", type=float, help="amount of unlabelled clutter, 0..1")
    parser.add_argument("--force", action="store_true", help="overwrite a complete existing set")
    parser.add_argument(
        "--samples", type=Path, metavar="PNG", help="write a grid of test-split scans with boxes and stop"
    )
    parser.add_argument("--num-samples", type=int, default=4, help="images in the --samples grid (default 4)")
    parser.add_argument("--sample-tile", type=int, help="pixel side of each grid tile (default: image size)")
    return parser


def config_from_args(args: argparse.Namespace) -> SynthConfig:
    config = load_preset(args.preset)
    overrides = {
        "seed": args.seed,
        "image_size": args.image_size,
        "num_train": args.num_train,
        "num_val": args.num_val,
        "num_test": args.num_test,
        "clutter": args.clutter,
    }
    return dataclasses.replace(config, **{k: v for k, v in overrides.items() if v is not None})


def _progress(split: str, done: int, total: int, started: dict[str, float]) -> None:
    started.setdefault(split, time.perf_counter())
    if done == total or done % max(1, total // 50) == 0:
        rate = done / max(time.perf_counter() - started[split], 1e-9)
        bar = "#" * (30 * done // max(total, 1))
        print(
            f"\r{split:>5} [{bar:<30}] {done}/{total} {rate:6.1f} img/s",
            end="\n" if done == total else "",
            file=sys.stderr,
            flush=True,
        )


def _summary_table(summaries) -> str:
    names = list(summaries[0].objects_per_category)
    lines = [f"{'class':<12}" + "".join(f"{s.split:>8}" for s in summaries)]
    lines += [
        f"{name:<12}" + "".join(f"{s.objects_per_category[name]:>8}" for s in summaries) for name in names
    ]
    lines.append(
        f"{'objects':<12}" + "".join(f"{sum(s.objects_per_category.values()):>8}" for s in summaries)
    )
    lines.append(f"{'images':<12}" + "".join(f"{s.num_images:>8}" for s in summaries))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as exc:
        print(f"dfss-synth: error: {exc}", file=sys.stderr)
        return 2
    from dfss.synth.writer import generate, is_complete  # heavy imports after argument parsing

    if args.samples is not None:
        from dfss.synth.preview import sample_grid

        grid = sample_grid(config, num_images=args.num_samples, tile_size=args.sample_tile)
        args.samples.parent.mkdir(parents=True, exist_ok=True)
        grid.quantize(colors=256).save(args.samples, optimize=True)  # palette PNG: README-sized
        print(f"wrote {args.samples} ({args.num_samples} test-split scans, {grid.width}x{grid.height})")
        return 0
    if args.out is None:
        print("dfss-synth: error: --out is required (or --samples PNG)", file=sys.stderr)
        return 2
    if is_complete(args.out) and not args.force:
        print(
            f"dfss-synth: {args.out} already holds a complete set; pass --force to overwrite", file=sys.stderr
        )
        return 1
    started: dict[str, float] = {}
    begin = time.perf_counter()
    summaries = generate(
        config,
        args.out,
        workers=max(1, args.workers),
        force=args.force,
        on_image=lambda split, done, total: _progress(split, done, total, started),
    )
    seconds = time.perf_counter() - begin
    images = sum(s.num_images for s in summaries)
    print(_summary_table(summaries))
    print(
        f"wrote {images} images ({', '.join(f'{s.split} {s.num_images}' for s in summaries)}) to {args.out} "
        f"in {seconds:.1f} s: {images / max(seconds, 1e-9):.1f} images/s with {args.workers} worker(s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
