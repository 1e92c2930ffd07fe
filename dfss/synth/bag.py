"""The bag every scan shows: fabric shell, piping, zips, and for trolleys a frame, handle and wheels."""

from __future__ import annotations

import numpy as np

from dfss.synth.geometry import Part, ellipse, points, rect, rounded_rect
from dfss.synth.materials import Material

Parts = tuple[Part, ...]


def _closed(xy: np.ndarray) -> np.ndarray:
    return np.vstack([xy, xy[:1]])


def bag(rng: np.random.Generator, width_cm: float, height_cm: float) -> Parts:
    """A bag of ``width_cm × height_cm`` centred on the origin (trolley or soft bag)."""
    w, h = width_cm, height_cm
    shell = rounded_rect(w, h, rng.uniform(2.5, 6.0), n_corner=6)
    parts = [
        Part(Material.PLASTIC, rng.uniform(0.4, 0.9), shell),  # both walls of the fabric
        Part(
            Material.PLASTIC, rng.uniform(1.2, 2.0), _closed(shell), line_width_cm=1.2, rounding_cm=0.5
        ),  # piping
        Part(
            Material.STEEL, 0.035, _closed(rounded_rect(w - 4.0, h - 4.0, 3.0, n_corner=6)), line_width_cm=0.5
        ),  # zip
    ]
    for _ in range(int(rng.integers(1, 3))):  # zip pullers
        x, y = rng.uniform(-0.45, 0.45) * w, (h - 4.0) / 2 * rng.choice([-1, 1])
        parts.append(Part(Material.STEEL, 0.25, rect(1.0, 2.2, x, y + 1.0 * np.sign(-y))))
    if rng.random() < 0.65:  # trolley: telescopic aluminium bars along one side, steel lock, wheels
        bar_x = rng.uniform(0.15, 0.3) * w
        for sx in (-1, 1):
            bar = points([(sx * bar_x, -h / 2 + 2.0), (sx * bar_x, h / 2 - 3.0)])
            parts.append(
                Part(Material.ALUMINIUM, 0.45, bar, line_width_cm=1.6, rounding_cm=0.7)
            )  # hollow tube
            parts.append(
                Part(
                    Material.STEEL,
                    0.3,
                    points([(sx * bar_x, -h / 2 + 2.5), (sx * bar_x, -h / 2 + 8.0)]),
                    line_width_cm=0.5,
                )
            )
        parts.append(Part(Material.STEEL, 0.15, rect(2 * bar_x + 2.0, 1.5, 0, -h / 2 + 2.2)))
        parts.append(
            Part(
                Material.PLASTIC,
                2.5,
                rounded_rect(2 * bar_x + 3.0, 2.5, 1.0, 0, -h / 2 + 1.3),
                rounding_cm=0.8,
            )
        )
        for sx in (-1, 1):
            cx, cy = sx * (w / 2 - 3.5), h / 2 - 2.8
            parts.append(Part(Material.PLASTIC, 3.5, ellipse(2.6, 2.6, cx, cy, n=20), rounding_cm=1.0))
            parts.append(Part(Material.STEEL, 2.5, ellipse(0.45, 0.45, cx, cy, n=10)))
            parts.append(
                Part(Material.PLASTIC, 2.0, rounded_rect(5.5, 3.5, 1.0, cx, cy - 2.0), rounding_cm=0.6)
            )  # wheel housing
    else:  # soft bag: carry handle with riveted ends, a buckle
        hx = rng.uniform(0.12, 0.22) * w
        parts.append(Part(Material.PLASTIC, 1.5, rect(2 * hx + 4.0, 3.0, 0, -h / 2 + 2.5), rounding_cm=0.6))
        for sx in (-1, 1):
            parts.append(Part(Material.STEEL, 0.4, ellipse(0.6, 0.6, sx * (hx + 1.2), -h / 2 + 2.5, n=10)))
        bx = rng.uniform(-0.3, 0.3) * w
        parts.append(
            Part(
                Material.STEEL, 0.3, rect(4.0, 3.0, bx, h / 2 - 3.0), holes=(rect(3.0, 1.8, bx, h / 2 - 3.0),)
            )
        )
    return tuple(parts)
