"""A grid of generated scans with their boxes and class names, for the README and for eyeballing."""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

from dfss.synth.catalog import load_categories
from dfss.synth.config import SynthConfig
from dfss.synth.writer import render_scan

BOX_COLOURS = {"dangerous": (220, 20, 20), "normal": (20, 150, 40), "unknown": (235, 190, 0)}


def sample_grid(
    config: SynthConfig,
    *,
    num_images: int = 4,
    split: str = "test",
    columns: int = 2,
    tile_size: int | None = None,
) -> Image.Image:
    """Render images ``0..num_images-1`` of ``split`` (identical to the written set) with labelled boxes."""
    categories = load_categories()
    tile = tile_size or config.image_size
    scale = tile / config.image_size
    rows = -(-num_images // columns)
    grid = Image.new("RGB", (columns * tile + (columns - 1) * 4, rows * tile + (rows - 1) * 4), (40, 40, 40))
    font = ImageFont.load_default(size=max(10, tile // 40))
    for k in range(num_images):
        image, scene = render_scan(config, categories, split, k)
        scan = (
            Image.fromarray(image).resize((tile, tile), Image.Resampling.BILINEAR)
            if scale != 1
            else Image.fromarray(image)
        )
        draw = ImageDraw.Draw(scan)
        for obj in scene.objects:
            x, y, w, h = (v * scale for v in obj.bbox_xywh)
            colour = BOX_COLOURS.get(obj.category.supercategory, (255, 0, 255))
            draw.rectangle([x, y, x + w - 1, y + h - 1], outline=colour, width=2)
            left, top, right, bottom = draw.textbbox((x + 2, y + 1), obj.category.name, font=font)
            draw.rectangle([left - 1, top - 1, right + 1, bottom + 1], fill=colour)
            draw.text((x + 2, y + 1), obj.category.name, fill=(255, 255, 255), font=font)
        grid.paste(scan, ((k % columns) * (tile + 4), (k // columns) * (tile + 4)))
    return grid
