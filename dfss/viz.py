"""Drawing boxes on scans: dangerous red, normal green, unknown yellow."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from torchvision.utils import draw_bounding_boxes, make_grid

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


def save_grid(images: Sequence[torch.Tensor], path: str | Path, nrow: int = 4) -> Path:
    """Save ``uint8 [3, H, W]`` images (same size) as one PNG grid."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid = make_grid(list(images), nrow=nrow, padding=4, pad_value=0)
    Image.fromarray(grid.permute(1, 2, 0).numpy()).save(path)
    return path
