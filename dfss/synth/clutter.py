"""Unlabelled clutter (clothes, cables, small items) and the ``unknown`` class's irregular objects.

Same contract as the class builders: ``builder(rng) -> parts`` in cm around the origin.
"""

from __future__ import annotations

import numpy as np

from dfss.synth.geometry import Part, blob, ellipse, points, rect, rounded_rect, transform, wiggle
from dfss.synth.materials import Material

Parts = tuple[Part, ...]
_ALL_MATERIALS = tuple(Material)


def garment(rng: np.random.Generator) -> Parts:
    """Folded clothing: a few overlapping fabric layers with folds, seams and sometimes buttons or a zip."""
    size = rng.uniform(9.0, 17.0)
    parts = []
    for _ in range(int(rng.integers(2, 5))):
        layer = transform(
            blob(rng, size * rng.uniform(0.6, 1.0), 0.5, 20, aspect=rng.uniform(0.8, 1.6)),
            rng.uniform(0, 360),
            *rng.normal(0, size * 0.2, 2),
        )
        parts.append(
            Part(
                Material.ORGANIC if rng.random() < 0.5 else Material.PLASTIC,
                rng.uniform(0.15, 0.6),
                layer,
                rounding_cm=rng.uniform(0.5, 2.0),
            )
        )
    for _ in range(int(rng.integers(3, 7))):  # folds: ridges of doubled fabric
        start, end = rng.uniform(-0.6, 0.6, 2) * size, rng.uniform(-0.6, 0.6, 2) * size
        parts.append(
            Part(
                Material.PLASTIC,
                rng.uniform(0.3, 1.0),
                wiggle(rng, start, end, 6, 0.6),
                line_width_cm=rng.uniform(0.4, 1.5),
            )
        )
    extra = rng.random()
    if extra < 0.25:
        for _ in range(int(rng.integers(3, 7))):
            parts.append(
                Part(Material.PLASTIC, 0.35, ellipse(0.6, 0.6, *rng.uniform(-0.4, 0.4, 2) * size, n=10))
            )
    elif extra < 0.45:
        start, end = rng.uniform(-0.5, 0.5, 2) * size, rng.uniform(-0.5, 0.5, 2) * size
        parts.append(Part(Material.STEEL, 0.05, wiggle(rng, start, end, 5, 0.3), line_width_cm=0.5))
    elif extra < 0.6:  # jeans rivets
        for _ in range(int(rng.integers(2, 6))):
            parts.append(
                Part(Material.COPPER, 0.15, ellipse(0.35, 0.35, *rng.uniform(-0.5, 0.5, 2) * size, n=8))
            )
    return tuple(parts)


def cable(rng: np.random.Generator) -> Parts:
    length = rng.uniform(12.0, 40.0)
    end = transform(points([(length, 0)]), rng.uniform(0, 360))[0]
    path = wiggle(rng, (0, 0), end, n=int(length / 2) + 4, amplitude=rng.uniform(0.5, 1.5))
    width = rng.uniform(0.25, 0.5)
    parts = [
        Part(Material.PLASTIC, width, path, line_width_cm=width),
        Part(Material.COPPER, 0.06, path, line_width_cm=0.1),
    ]
    if rng.random() < 0.6:
        parts.append(Part(Material.STEEL, 0.3, rect(1.2, 0.7, *path[-1])))
    return tuple(parts)


def pen(rng: np.random.Generator) -> Parts:
    length = rng.uniform(12.0, 15.0)
    return (
        Part(Material.PLASTIC, 1.0, rounded_rect(length, 1.0, 0.45), rounding_cm=0.45),
        Part(Material.PLASTIC, 0.25, points([(-length * 0.4, 0), (length * 0.45, 0)]), line_width_cm=0.25),
        Part(Material.STEEL, 0.2, points([(length * 0.1, 0), (length * 0.3, 0)]), line_width_cm=0.3),
        Part(Material.STEEL, 0.3, rect(0.6, 0.3, length / 2 + 0.2, 0)),
    )


def battery_cell(rng: np.random.Generator) -> Parts:
    length, radius = (5.0, 0.72) if rng.random() < 0.6 else (4.4, 0.52)
    return (
        Part(Material.STEEL, 0.06, rect(length, 2 * radius)),
        Part(
            Material.ORGANIC,
            2 * radius,
            points([(-length / 2 + 0.2, 0), (length / 2 - 0.2, 0)]),
            line_width_cm=2 * radius - 0.1,
            rounding_cm=radius * 0.8,
        ),
        Part(Material.STEEL, 0.6, rect(0.3, radius, length / 2, 0)),
        Part(Material.STEEL, 0.8, rect(0.8, 0.25, 0, 0)),
    )


def paper_clips(rng: np.random.Generator) -> Parts:
    parts = []
    for _ in range(int(rng.integers(1, 4))):
        w, h = 3.2, 0.9
        outline = rounded_rect(w, h, 0.44, n_corner=5)
        inner = rounded_rect(w * 0.7, h * 0.55, 0.24, -0.25, 0.0, n_corner=5)
        wire = transform(
            np.vstack([outline[: len(outline) * 3 // 4], inner[::-1]]),
            rng.uniform(0, 360),
            *rng.normal(0, 1.5, 2),
        )
        parts.append(Part(Material.STEEL, 0.09, wire, line_width_cm=0.09))
    return tuple(parts)


def book(rng: np.random.Generator) -> Parts:
    w, h = rng.uniform(13.0, 22.0), rng.uniform(10.0, 15.0)
    return (
        Part(Material.ORGANIC, rng.uniform(1.2, 3.0), rounded_rect(w, h, 0.3)),
        Part(Material.ORGANIC, 0.6, points([(-w / 2, -h / 2), (-w / 2, h / 2)]), line_width_cm=0.6),
    )


def shoe(rng: np.random.Generator) -> Parts:
    """Sole and upper with a steel shank and heel nails (notes §4)."""
    length = rng.uniform(24.0, 30.0)
    sole = blob(rng, length / 2, 0.12, 24, aspect=1.0) * np.array([1.0, 0.36])
    parts = [
        Part(Material.PLASTIC, 3.0, sole, rounding_cm=1.5),
        Part(Material.ORGANIC, 1.5, sole * 0.9, rounding_cm=1.0),
    ]
    if rng.random() < 0.7:
        parts.append(
            Part(Material.STEEL, 0.25, points([(-length * 0.3, 0), (-length * 0.05, 0)]), line_width_cm=0.9)
        )
    if rng.random() < 0.5:
        for _ in range(int(rng.integers(3, 7))):
            parts.append(
                Part(
                    Material.STEEL,
                    1.2,
                    ellipse(0.12, 0.12, -length * 0.42 + rng.uniform(-1, 1), rng.uniform(-1.5, 1.5), n=6),
                )
            )
    return tuple(parts)


def belt(rng: np.random.Generator) -> Parts:
    length = rng.uniform(25.0, 45.0)
    path = wiggle(rng, (0, 0), (length, rng.uniform(-8, 8)), n=10, amplitude=2.0)
    buckle = rect(4.5, 5.0, *path[0])
    return (
        Part(Material.ORGANIC, 0.8, path, line_width_cm=3.5),
        Part(Material.STEEL, 0.5, buckle, holes=(rect(3.3, 3.8, *path[0]),)),
        Part(Material.STEEL, 0.3, points([path[0] - (0, 2), path[0] + (0, 2)]), line_width_cm=0.3),
    )


SMALL_ITEMS = (pen, battery_cell, paper_clips, book, shoe, belt)


def unknown_object(rng: np.random.Generator) -> Parts:
    """Irregular lumps of random materials with holes and spikes, unlike any known class."""
    parts = []
    size = rng.uniform(2.5, 8.0)
    for _ in range(int(rng.integers(1, 4))):
        material = _ALL_MATERIALS[int(rng.integers(len(_ALL_MATERIALS)))]
        metal = material.kind == "metal"
        thickness = rng.uniform(0.05, 0.5) if metal else rng.uniform(0.4, 4.0)
        centre = rng.normal(0, size * 0.35, 2)
        if rng.random() < 0.35:  # spiky star
            n = int(rng.integers(5, 10))
            angle = np.linspace(0, 2 * np.pi, 2 * n, endpoint=False)
            radius = (
                np.where(
                    np.arange(2 * n) % 2 == 0, rng.uniform(0.8, 1.0, 2 * n), rng.uniform(0.25, 0.55, 2 * n)
                )
                * size
            )
            outline = np.stack([radius * np.cos(angle), radius * np.sin(angle)], 1) + centre
        else:
            outline = (
                blob(
                    rng, size * rng.uniform(0.5, 1.0), rng.uniform(0.6, 1.4), 22, aspect=rng.uniform(0.5, 1.8)
                )
                + centre
            )
        holes = ()
        if rng.random() < 0.4:
            holes = (blob(rng, size * rng.uniform(0.15, 0.3), 0.5, 14) + centre,)
        rounding = rng.uniform(0.3, 1.5) if (not metal and rng.random() < 0.5) else 0.0
        parts.append(Part(material, thickness, outline, holes, rounding_cm=rounding))
    return tuple(parts)
