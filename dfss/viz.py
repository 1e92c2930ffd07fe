"""Drawing boxes on scans: dangerous red, normal green, unknown yellow."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torchvision.utils import draw_bounding_boxes, make_grid

from dfss.data.classes import ClassInfo, ClassTable

SUPERCATEGORY_COLOURS = {"dangerous": (230, 25, 25), "normal": (20, 170, 40), "unknown": (240, 200, 0)}
OTHER_COLOUR = (120, 120, 120)


def draw_boxes(
    image: torch.Tensor,
    boxes: torch.Tensor,
    names: Sequence[str],
    supercategories: Sequence[str],
    scores: Sequence[float] | None = None,
    width: int = 2,
) -> torch.Tensor:
    """``uint8 [3, H, W]`` copy of ``image`` with labelled boxes, coloured by supercategory."""
    if scores is not None:
        names = [f"{n} {s:.2f}" for n, s in zip(names, scores, strict=True)]
    colours = [SUPERCATEGORY_COLOURS.get(s, OTHER_COLOUR) for s in supercategories]
    if len(boxes) == 0:
        return image.clone()
    return draw_bounding_boxes(image, boxes.float(), labels=list(names), colors=colours, width=width)


def colour_key(info: ClassInfo, class_table: ClassTable) -> str:
    """``dangerous``, ``unknown`` or ``normal``: which colour a category's boxes get, by its
    supercategory in the table (any supercategory neither dangerous nor unknown is drawn as normal)."""
    if class_table.is_dangerous(info):
        return "dangerous"
    return "unknown" if info.supercategory in class_table.unknown_supercategories else "normal"


def _label_font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1 with FreeType
    except TypeError:
        return ImageFont.load_default()


def draw_detections(
    image: torch.Tensor,
    boxes: torch.Tensor,
    scores: Sequence[float],
    categories: Sequence[ClassInfo],
    class_table: ClassTable,
) -> torch.Tensor:
    """``uint8 [3, H, W]`` copy of ``image`` with detections (``boxes [n, 4]`` xyxy pixels): dangerous
    red, normal green, unknown yellow, each labelled ``name score`` on a tag of its colour (above the
    box, or inside it at the top edge of the image). The most confident box is drawn last, on top;
    lines and text grow with the image."""
    height, width = image.shape[-2:]
    line = max(2, round(max(height, width) / 400))
    font = _label_font(max(10, round(max(height, width) / 40)))
    canvas = Image.fromarray(image.permute(1, 2, 0).cpu().numpy())
    draw = ImageDraw.Draw(canvas)
    for i in sorted(range(len(scores)), key=lambda i: scores[i]):
        colour = SUPERCATEGORY_COLOURS[colour_key(categories[i], class_table)]
        x1, y1, x2, y2 = (int(v) for v in boxes[i].tolist())
        draw.rectangle((x1, y1, x2, y2), outline=colour, width=line)
        text = f"{categories[i].name} {scores[i]:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tag_w, tag_h = right - left + 4, bottom - top + 4
        tag_y = y1 - tag_h if y1 - tag_h >= 0 else y1  # the tag's top row
        draw.rectangle((x1, tag_y, x1 + tag_w, tag_y + tag_h), fill=colour)
        luminance = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
        ink = (0, 0, 0) if luminance > 140 else (255, 255, 255)
        draw.text((x1 + 2 - left, tag_y + 2 - top), text, fill=ink, font=font)
    return torch.from_numpy(np.asarray(canvas).copy()).permute(2, 0, 1).contiguous()


def save_image(image: torch.Tensor, path: str | Path) -> Path:
    """Save ``uint8 [3, H, W]`` as PNG or JPEG (quality 95), by ``path``'s suffix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(path, quality=95)
    return path


def save_grid(images: Sequence[torch.Tensor], path: str | Path, nrow: int = 4) -> Path:
    """Save ``uint8 [3, H, W]`` images (same size) as one PNG grid."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid = make_grid(list(images), nrow=nrow, padding=4, pad_value=0)
    Image.fromarray(grid.permute(1, 2, 0).numpy()).save(path)
    return path
