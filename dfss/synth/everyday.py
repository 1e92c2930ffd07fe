"""Procedural everyday items: keys, umbrella, coins, cup, wallet, glasses, toothbrush, stapler.

Same contract as :mod:`dfss.synth.threats`: ``builder(rng) -> parts`` in cm around the origin.
"""

from __future__ import annotations

import numpy as np

from dfss.synth.geometry import Part, arc, ellipse, points, rect, rounded_rect, teeth, transform
from dfss.synth.materials import Material

Parts = tuple[Part, ...]


def _key(rng: np.random.Generator) -> Parts:
    """One key lying along +x with the hole in its head at the origin."""
    head_r, blade_len = rng.uniform(1.0, 1.4), rng.uniform(3.2, 4.6)
    material = Material.COPPER if rng.random() < 0.5 else Material.STEEL  # brass keys are copper-like
    hx = head_r * 0.5  # head centre; the hole sits at the origin
    head = ellipse(head_r * rng.uniform(1.0, 1.3), head_r, hx, 0, n=18)
    tip = hx + head_r + blade_len
    cut = teeth(hx + head_r, tip - 0.5, 0.42, -0.35, int(rng.integers(4, 7)), rng)
    blade = np.vstack(
        [
            points([(hx + head_r * 0.8, -0.42), (tip, -0.42), (tip, 0.1)]),
            cut[::-1],
            points([(hx + head_r * 0.8, 0.42)]),
        ]
    )
    hole = ellipse(0.3, 0.3, 0, 0, n=10)
    parts = [Part(material, 0.22, head, holes=(hole,)), Part(material, 0.2, blade)]
    if rng.random() < 0.4:  # plastic head cover
        parts.append(
            Part(Material.PLASTIC, 0.5, ellipse(head_r * 1.4, head_r * 1.15, hx, 0, n=18), holes=(hole,))
        )
    return tuple(parts)


def keys(rng: np.random.Generator) -> Parts:
    ring_r = rng.uniform(1.1, 1.6)
    ring = ellipse(ring_r, ring_r, 0, 0, n=24)
    parts = [Part(Material.STEEL, 0.15, np.vstack([ring, ring[:1]]), line_width_cm=0.15)]
    angle = rng.uniform(0, 360)
    for _ in range(int(rng.integers(2, 4))):
        a = np.deg2rad(angle)
        dx, dy = ring_r * np.cos(a), ring_r * np.sin(a)
        for part in _key(rng):
            parts.append(
                Part(
                    part.material,
                    part.thickness_cm,
                    transform(part.outline, angle, dx, dy),
                    tuple(transform(h, angle, dx, dy) for h in part.holes),
                    part.line_width_cm,
                    part.rounding_cm,
                )
            )
        angle += rng.uniform(45, 110)
    if rng.random() < 0.5:  # fob
        parts.append(
            Part(Material.PLASTIC, 1.0, rounded_rect(3.0, 2.0, 0.8, -ring_r - 1.6, 0), rounding_cm=0.4)
        )
    return tuple(parts)


def umbrella(rng: np.random.Generator) -> Parts:
    length, canopy_w = rng.uniform(22.0, 32.0), rng.uniform(3.5, 5.5)
    canopy_len = length * rng.uniform(0.6, 0.72)
    x0 = -length / 2
    xs = np.linspace(0, canopy_len, 12)
    half = canopy_w / 2 * np.sin(np.pi * (0.15 + 0.85 * xs / canopy_len)) ** 0.7
    canopy = np.vstack([np.stack([x0 + 2 + xs, -half], 1), np.stack([x0 + 2 + xs[::-1], half[::-1]], 1)])
    parts = [
        Part(Material.PLASTIC, 1.4, canopy, rounding_cm=canopy_w * 0.35),
        Part(
            Material.STEEL,
            0.35,
            points([(x0, 0), (x0 + canopy_len + 5, 0)]),
            line_width_cm=0.35,
            rounding_cm=0.15,
        ),
    ]
    for k in range(int(rng.integers(5, 9))):  # ribs converge on the runner
        y = (k / 3.5 - 1.0) * canopy_w * 0.35
        parts.append(
            Part(
                Material.STEEL,
                0.08,
                points([(x0 + 2.5, y * 0.5), (x0 + 2 + canopy_len * 0.8, y)]),
                line_width_cm=0.12,
            )
        )
    for _ in range(3):  # fabric folds
        y = rng.uniform(-0.3, 0.3) * canopy_w
        parts.append(
            Part(
                Material.PLASTIC,
                0.5,
                points([(x0 + 3, y), (x0 + 1 + canopy_len, y * 0.6)]),
                line_width_cm=0.25,
            )
        )
    grip_x = x0 + canopy_len + 5
    if rng.random() < 0.55:  # J hook handle
        hook_r = rng.uniform(2.8, 4.0)
        parts.append(
            Part(
                Material.PLASTIC,
                1.6,
                np.vstack([points([(grip_x - 1, 0)]), arc(hook_r, 270, 90, grip_x + 3, hook_r, n=14)]),
                line_width_cm=1.6,
                rounding_cm=0.7,
            )
        )
    else:
        parts.append(
            Part(Material.PLASTIC, 2.6, rounded_rect(9.0, 2.8, 1.0, grip_x + 3.5, 0), rounding_cm=1.1)
        )
    parts.append(Part(Material.STEEL, 0.5, rect(1.0, 0.6, x0 - 0.3, 0)))  # ferrule
    return tuple(parts)


def coins(rng: np.random.Generator) -> Parts:
    parts = []
    for _ in range(int(rng.integers(3, 9))):
        r = rng.uniform(0.8, 1.4)
        cx, cy = rng.normal(0, 1.6, 2)
        material = Material.COPPER if rng.random() < 0.35 else Material.STEEL
        parts.append(Part(material, rng.uniform(0.14, 0.24), ellipse(r, r, cx, cy, n=20)))
        if rng.random() < 0.25:  # bi-metal centre
            parts.append(Part(Material.COPPER, 0.04, ellipse(r * 0.6, r * 0.6, cx, cy, n=16)))
    return tuple(parts)


def cup(rng: np.random.Generator) -> Parts:
    height, diameter = rng.uniform(8.0, 12.0), rng.uniform(7.0, 9.0)
    ceramic = rng.random() < 0.6
    material, wall = (Material.GLASS, 0.4) if ceramic else (Material.STEEL, 0.05)
    body = rounded_rect(height, diameter, 0.5)
    parts = [
        Part(material, 2 * wall, body),
        Part(material, 6 * wall, np.vstack([body, body[:1]]), line_width_cm=0.4),
        Part(
            material,
            3 * wall,
            points([(-height / 2 + 0.4, -diameter / 2), (-height / 2 + 0.4, diameter / 2)]),
            line_width_cm=0.5,
        ),
    ]
    if ceramic:
        handle_c = (0.0, diameter / 2 + 1.2)
        parts.append(
            Part(
                material,
                1.0,
                ellipse(height * 0.3, 2.0, *handle_c),
                holes=(ellipse(height * 0.3 - 0.8, 1.2, *handle_c),),
                rounding_cm=0.4,
            )
        )
    else:  # travel mug lid
        parts.append(
            Part(
                Material.PLASTIC,
                diameter * 0.8,
                rect(2.0, diameter, -height / 2 - 1.0, 0),
                rounding_cm=diameter * 0.3,
            )
        )
    if rng.random() < 0.3:
        fill = rng.uniform(0.2, 0.7) * height
        axis = points([(height / 2 - 0.3 - fill, 0), (height / 2 - 0.3, 0)])
        parts.append(
            Part(
                Material.ORGANIC,
                diameter - 0.6,
                axis,
                line_width_cm=diameter - 0.6,
                rounding_cm=diameter * 0.45,
            )
        )
    return tuple(parts)


def wallet(rng: np.random.Generator) -> Parts:
    w, h = (
        (rng.uniform(10.5, 12.0), rng.uniform(8.5, 9.8))
        if rng.random() < 0.7
        else (rng.uniform(18, 20), rng.uniform(9, 10))
    )
    parts = [Part(Material.ORGANIC, rng.uniform(0.6, 1.0), rounded_rect(w, h, 0.6), rounding_cm=0.3)]
    for _ in range(int(rng.integers(2, 6))):  # cards
        cx, cy = rng.uniform(-0.12, 0.12) * w, rng.uniform(-0.1, 0.1) * h
        parts.append(Part(Material.PLASTIC, 0.08, rounded_rect(8.56, 5.4, 0.3, cx, cy)))
        if rng.random() < 0.6:
            parts.append(Part(Material.COPPER, 0.02, rect(1.1, 0.9, cx - 2.5, cy)))
    if rng.random() < 0.4:
        parts.append(Part(Material.STEEL, 0.6, ellipse(0.55, 0.55, w / 2 - 1.0, 0, n=12)))  # snap
    if rng.random() < 0.5:
        for _ in range(int(rng.integers(1, 4))):
            parts.append(
                Part(Material.STEEL, 0.18, ellipse(1.0, 1.0, *rng.uniform(-0.3, 0.3, 2) * (w, h), n=16))
            )
    return tuple(parts)


def glasses(rng: np.random.Generator) -> Parts:
    rx, ry, gap = rng.uniform(2.3, 2.9), rng.uniform(1.6, 2.2), rng.uniform(1.6, 2.2)
    metal_frame = rng.random() < 0.5
    lens_material = Material.GLASS if rng.random() < 0.35 else Material.PLASTIC
    parts = []
    for sx in (-1, 1):
        cx = sx * (gap / 2 + rx)
        lens = ellipse(rx, ry, cx, 0, n=24)
        parts.append(Part(lens_material, 0.25, lens))
        rim = np.vstack([lens, lens[:1]])
        parts.append(
            Part(Material.STEEL, 0.15, rim, line_width_cm=0.15)
            if metal_frame
            else Part(Material.PLASTIC, 0.6, rim, line_width_cm=0.55)
        )
        hinge_x = sx * (gap / 2 + 2 * rx + 0.2)
        temple = points(
            [
                (hinge_x, -ry * 0.5),
                (hinge_x - sx * 2 * rx * 0.9, -ry * 0.2),
                (hinge_x - sx * 2 * rx * 1.05, ry * 0.3),
            ]
        )
        parts.append(
            Part(
                Material.STEEL if metal_frame else Material.PLASTIC,
                0.12 if metal_frame else 0.4,
                temple,
                line_width_cm=0.15 if metal_frame else 0.4,
            )
        )
        parts.append(Part(Material.STEEL, 0.3, rect(0.4, 0.5, hinge_x, -ry * 0.5)))
    parts.append(
        Part(
            Material.STEEL if metal_frame else Material.PLASTIC,
            0.2 if metal_frame else 0.6,
            arc(gap / 2, 200, 340, 0, 0.2, n=8),
            line_width_cm=0.2 if metal_frame else 0.5,
        )
    )
    return tuple(parts)


def toothbrush(rng: np.random.Generator) -> Parts:
    length = rng.uniform(17.0, 20.0)
    electric = rng.random() < 0.3
    grip_w = 2.6 if electric else rng.uniform(1.0, 1.4)
    handle = points(
        [
            (-length / 2, -grip_w / 2),
            (length * 0.1, -grip_w / 2),
            (length / 2 - 3.0, -0.4),
            (length / 2 - 3.0, 0.4),
            (length * 0.1, grip_w / 2),
            (-length / 2, grip_w / 2),
        ]
    )
    parts = [
        Part(Material.PLASTIC, 1.0 if not electric else 2.6, handle, rounding_cm=grip_w * 0.4),
        Part(Material.PLASTIC, 1.0, rounded_rect(3.0, 1.2, 0.5, length / 2 - 1.6, 0), rounding_cm=0.3),
    ]
    for y in (-0.35, 0.0, 0.35):
        row = points([(length / 2 - 2.8, y), (length / 2 - 0.4, y)])
        parts += [
            Part(Material.PLASTIC, 1.0, row, line_width_cm=0.25),
            Part(Material.STEEL, 0.02, row, line_width_cm=0.08),
        ]
    if electric:
        parts += [
            Part(Material.STEEL, 0.1, rounded_rect(5.0, 1.45, 0.3, -length * 0.25, 0)),
            Part(Material.ORGANIC, 1.0, rect(4.8, 1.2, -length * 0.25, 0)),
            Part(Material.COPPER, 0.6, rect(2.0, 1.0, -length * 0.02, 0)),
        ]
    return tuple(parts)


def stapler(rng: np.random.Generator) -> Parts:
    length, width = rng.uniform(12.5, 17.0), rng.uniform(3.0, 4.2)
    angle = rng.uniform(0.0, 12.0)
    hinge = np.array([-length / 2 + 1.0, -0.6])
    arm = transform(rounded_rect(length * 0.95, 1.9, 0.7, length * 0.47, -1.0), -angle) + hinge
    magazine = transform(rect(length * 0.72, 0.8, length * 0.5, -0.5), -angle) + hinge
    staples = transform(points([(length * 0.2, -0.5), (length * 0.86, -0.5)]), -angle) + hinge
    spring = transform(teeth(length * 0.05, length * 0.2, -0.7, 0.5, 4, rng), -angle) + hinge
    arm_material = Material.PLASTIC if rng.random() < 0.6 else Material.STEEL
    return (
        Part(Material.STEEL, 0.25, rect(length, 0.8, 0, 0.4)),  # base channel (sheet walls)
        Part(
            Material.ORGANIC, width * 0.5, rect(length * 0.96, 0.5, 0, 1.05), rounding_cm=0.2
        ),  # rubber foot
        Part(arm_material, width if arm_material is Material.PLASTIC else 0.2, arm, rounding_cm=0.5),
        Part(Material.STEEL, 0.3, magazine),
        Part(Material.STEEL, 0.4, staples, line_width_cm=0.35),
        Part(Material.STEEL, 0.15, spring, line_width_cm=0.1),
        Part(Material.STEEL, 0.8, ellipse(0.35, 0.35, *hinge, n=10)),
        Part(Material.STEEL, 0.5, rect(1.2, 0.3, length / 2 - 1.0, 0.15)),  # anvil
    )


BUILDERS = {
    "keys": keys,
    "umbrella": umbrella,
    "coins": coins,
    "cup": cup,
    "wallet": wallet,
    "glasses": glasses,
    "toothbrush": toothbrush,
    "stapler": stapler,
}
