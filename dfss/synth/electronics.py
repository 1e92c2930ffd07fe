"""Procedural electronics: phone, laptop, charger, headphones (batteries, boards and magnets inside).

Same contract as :mod:`dfss.synth.threats`: ``builder(rng) -> parts`` in cm around the origin.
"""

from __future__ import annotations

import numpy as np

from dfss.synth.geometry import Part, arc, ellipse, points, rect, rounded_rect, transform, wiggle
from dfss.synth.materials import Material

Parts = tuple[Part, ...]


def _battery(w: float, h: float, cx: float, cy: float, depth: float) -> Parts:
    """A Li-ion pouch/cell: aluminium and copper foils rolled in electrolyte (greenish, fairly dense)."""
    outline = rounded_rect(w, h, min(w, h) * 0.15, cx, cy)
    return (
        Part(Material.ALUMINIUM, depth * 0.45, outline),
        Part(Material.COPPER, depth * 0.03, outline),
        Part(Material.ORGANIC, depth * 0.5, outline),
    )


def _chips(
    rng: np.random.Generator, w: float, h: float, cx: float, cy: float, count: int, size: float
) -> Parts:
    out = []
    for _ in range(count):
        cw, ch = rng.uniform(0.3, 1.0) * size, rng.uniform(0.3, 1.0) * size
        x, y = cx + rng.uniform(-0.5, 0.5) * (w - cw), cy + rng.uniform(-0.5, 0.5) * (h - ch)
        out.append(
            Part(
                rng.choice([Material.COPPER, Material.STEEL, Material.GLASS]),
                rng.uniform(0.03, 0.2),
                rect(cw, ch, x, y),
            )
        )
    return tuple(out)


def phone(rng: np.random.Generator) -> Parts:
    length, width = rng.uniform(13.5, 16.5), rng.uniform(6.6, 7.8)
    body = rounded_rect(length, width, rng.uniform(0.6, 1.1))
    frame = Material.ALUMINIUM if rng.random() < 0.7 else Material.STEEL
    parts = [
        Part(Material.GLASS, 0.25, body),
        Part(
            frame,
            0.7 if frame is Material.ALUMINIUM else 0.12,
            np.vstack([body, body[:1]]),
            line_width_cm=0.3,
        ),
    ]
    parts += _battery(length * 0.55, width * 0.78, -length * 0.1, 0, 0.5)
    parts.append(
        Part(Material.GLASS, 0.12, rect(length * 0.28, width * 0.8, length * 0.33, 0))
    )  # logic board
    parts += _chips(rng, length * 0.26, width * 0.75, length * 0.33, 0, int(rng.integers(4, 9)), 1.2)
    cam_x = length / 2 - 1.3
    for k in range(int(rng.integers(1, 4))):
        parts.append(
            Part(
                Material.STEEL,
                0.35,
                ellipse(0.5, 0.5, cam_x, width / 2 - 1.2 - 1.1 * k, n=12),
                holes=(ellipse(0.3, 0.3, cam_x, width / 2 - 1.2 - 1.1 * k, n=10),),
            )
        )
    parts.append(Part(Material.STEEL, 0.5, rect(0.9, 1.5, -length / 2 + 0.8, width * 0.25)))  # speaker magnet
    return tuple(parts)


def laptop(rng: np.random.Generator) -> Parts:
    length, width = rng.uniform(30.0, 36.0), rng.uniform(20.5, 24.5)
    body = rounded_rect(length, width, 1.0)
    shell = Material.ALUMINIUM if rng.random() < 0.6 else Material.PLASTIC
    parts = [Part(shell, 0.35 if shell is Material.ALUMINIUM else 0.8, body), Part(Material.GLASS, 0.2, body)]
    cells = int(rng.integers(3, 7))
    cell_w = (length * 0.7) / cells
    for k in range(cells):
        parts += _battery(cell_w * 0.92, width * 0.22, -length * 0.35 + cell_w * (k + 0.5), width * 0.33, 0.7)
    kb_w, kb_h = length * 0.78, width * 0.38
    kb_cx, kb_cy = 0.0, -width * 0.08
    keys = []
    rows, cols = 5, 13
    key_w, key_h = kb_w / cols, kb_h / rows
    for r in range(rows):
        for c in range(cols):
            keys.append(
                rect(
                    key_w * 0.72,
                    key_h * 0.7,
                    kb_cx - kb_w / 2 + key_w * (c + 0.5),
                    kb_cy - kb_h / 2 + key_h * (r + 0.5),
                )
            )
    parts.append(
        Part(Material.STEEL, 0.05, rect(kb_w, kb_h, kb_cx, kb_cy), holes=tuple(keys))
    )  # keyboard plate
    board_y = -width * 0.36
    parts.append(Part(Material.GLASS, 0.15, rect(length * 0.6, width * 0.18, length * 0.1, board_y)))
    parts += _chips(rng, length * 0.55, width * 0.16, length * 0.1, board_y, int(rng.integers(5, 10)), 2.0)
    parts.append(
        Part(
            Material.COPPER,
            0.25,
            points([(-length * 0.25, board_y), (length * 0.1, board_y)]),
            line_width_cm=0.6,
        )
    )
    fan_x = -length * 0.3
    parts.append(
        Part(
            Material.PLASTIC,
            0.8,
            ellipse(2.8, 2.8, fan_x, board_y + 0.5),
            holes=(ellipse(1.0, 1.0, fan_x, board_y + 0.5, n=14),),
        )
    )
    for sx in (-1, 1):
        parts.append(Part(Material.STEEL, 0.6, rect(3.5, 1.0, sx * length * 0.3, -width / 2 + 0.7)))  # hinges
    return tuple(parts)


def charger(rng: np.random.Generator) -> Parts:
    w, h = rng.uniform(4.0, 6.5), rng.uniform(3.0, 4.8)
    parts = [
        Part(Material.PLASTIC, 2.6, rounded_rect(w, h, 0.6), rounding_cm=0.8),
        Part(Material.GLASS, 0.15, rect(w * 0.8, h * 0.75)),
        Part(Material.STEEL, 1.1, rect(1.3, 1.3, -w * 0.15, 0)),  # transformer core
        Part(
            Material.COPPER,
            0.4,
            ellipse(1.1, 1.1, -w * 0.15, 0, n=16),
            holes=(ellipse(0.7, 0.7, -w * 0.15, 0, n=12),),
        ),
    ]
    for k in range(int(rng.integers(1, 4))):  # electrolytic capacitors
        parts.append(Part(Material.ALUMINIUM, 0.9, ellipse(0.45, 0.45, w * 0.25, (k - 1) * 1.0, n=12)))
    for sy in (-0.7, 0.7):  # prongs
        parts.append(Part(Material.STEEL, 0.2, rect(1.8, 0.35, -w / 2 - 0.9, sy)))
    cable_len = rng.uniform(7.0, 16.0)
    end = transform(points([(cable_len, 0)]), rng.uniform(-70, 70))[0] + (w / 2, 0)
    path = np.vstack([points([(w / 2, 0)]), wiggle(rng, (w / 2 + 0.5, 0), end, n=14, amplitude=0.7)])
    parts += [
        Part(Material.PLASTIC, 0.35, path, line_width_cm=0.35, rounding_cm=0.15),
        Part(Material.COPPER, 0.05, path, line_width_cm=0.1),
        Part(Material.STEEL, 0.25, rect(1.2, 0.8, *end)),
    ]
    return tuple(parts)


def headphones(rng: np.random.Generator) -> Parts:
    r, spread = rng.uniform(7.0, 9.0), rng.uniform(150, 200)
    band = arc(r, 270 - spread / 2, 270 + spread / 2, 0, 0, n=20)
    parts = [
        Part(Material.PLASTIC, 1.2, band, line_width_cm=2.4, rounding_cm=0.6),
        Part(Material.STEEL, 0.12, band, line_width_cm=0.6),
    ]
    for end in (band[0], band[-1]):
        cx, cy = end[0] * 1.02, end[1] + 3.0
        parts += [
            Part(Material.PLASTIC, 3.0, ellipse(3.6, 4.2, cx, cy), rounding_cm=1.6),
            Part(Material.STEEL, 0.15, ellipse(2.0, 2.0, cx, cy, n=18)),
            Part(Material.STEEL, 0.9, ellipse(0.9, 0.9, cx, cy, n=14), rounding_cm=0.3),
        ]
    return tuple(parts)


BUILDERS = {"phone": phone, "laptop": laptop, "charger": charger, "headphones": headphones}
