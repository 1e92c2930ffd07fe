"""Reading scan images of any common mode into 8-bit RGB.

X-ray sets come as 8-bit RGB JPEG/PNG, as grayscale, as RGBA exports and as 16-bit PNG/TIFF raw
scans. Everything is converted to ``uint8 [H, W, 3]``: grayscale is replicated, alpha is composited
over white (a transparent pixel is free belt, which scans show as white), 16-bit integer images are
scaled linearly from their full range (``v / 257``), float images from ``[0, 1]``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from dfss.data.errors import DataError


def _where(path: Path, image_id: int | None) -> str:
    return f"{path}" if image_id is None else f"{path} (image id {image_id})"


def read_image_size(path: str | Path, image_id: int | None = None) -> tuple[int, int]:
    """``(width, height)`` from the file header, without decoding the pixels."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            return img.size
    except FileNotFoundError:
        raise DataError(f"missing image file: {_where(path, image_id)}") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"unreadable image file {_where(path, image_id)}: {exc}") from None


def to_rgb_uint8(img: Image.Image) -> np.ndarray:
    """Convert a decoded PIL image of any supported mode to ``uint8 [H, W, 3]``."""
    mode = img.mode
    if mode == "RGB":
        return np.array(img, dtype=np.uint8)  # a writable copy (torch refuses read-only arrays)
    if mode in ("L", "P", "CMYK", "YCbCr", "LAB", "HSV", "1"):
        if mode == "P" and "transparency" in img.info:
            return to_rgb_uint8(img.convert("RGBA"))
        return np.asarray(img.convert("RGB"), dtype=np.uint8)
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32)
        alpha = rgba[..., 3:4] / 255.0
        rgb = rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)
        return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    if mode.startswith("I;16") or mode == "I":
        # 16-bit PNG/TIFF (PIL reports 16-bit PNGs as "I" or "I;16"); 32-bit int is taken as 16-bit range.
        raw = np.asarray(img).astype(np.float32)
        if raw.ndim == 3:  # a few plugins give [H, W, 1]
            raw = raw[..., 0]
        gray = np.clip(np.rint(raw / 257.0), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode == "F":
        raw = np.asarray(img, dtype=np.float32)
        gray = np.clip(np.rint(raw * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    raise ValueError(f"unsupported image mode {mode!r}")


def load_rgb(path: str | Path, image_id: int | None = None) -> np.ndarray:
    """Decode an image file fully into ``uint8 [H, W, 3]``.

    Raises :class:`DataError` naming the file (and image id) when the file is missing, not an
    image, truncated or corrupt, or of a mode that cannot be converted.
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()  # full decode: truncated files raise here ("image file is truncated")
            return to_rgb_uint8(img)
    except FileNotFoundError:
        raise DataError(f"missing image file: {_where(path, image_id)}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"unreadable or corrupt image file {_where(path, image_id)}: {exc}") from None
