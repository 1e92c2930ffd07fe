"""Procedural dangerous items: knife, pliers, scissors, lighter, bottle, razor, screwdriver, gun.

Each builder takes a numpy Generator and returns the object's parts in cm, lying roughly along +x
around the origin at real-world size; pose and scale are applied when it is rasterised.
"""

from __future__ import annotations

import numpy as np

from dfss.synth.geometry import Part, arc, ellipse, mirror_y, points, rect, rounded_rect, transform
from dfss.synth.materials import Material

Parts = tuple[Part, ...]


def _handle_material(rng: np.random.Generator) -> Material:
    return Material.PLASTIC if rng.random() < 0.6 else Material.ORGANIC


def knife(rng: np.random.Generator) -> Parts:
    blade_len, blade_w = rng.uniform(8.5, 14.0), rng.uniform(1.8, 3.4)
    handle_len, handle_w = rng.uniform(9.0, 12.0), rng.uniform(1.8, 2.6)
    belly = rng.uniform(0.25, 0.55)
    blade = points(
        [
            (0, -blade_w / 2),
            (0.82 * blade_len, -blade_w / 2),
            (blade_len, -blade_w * 0.42),
            (0.9 * blade_len, blade_w * (0.5 - belly)),
            (0.62 * blade_len, blade_w / 2),
            (0, blade_w / 2),
        ]
    )
    steel = rng.uniform(0.12, 0.3)
    parts = [Part(Material.STEEL, steel, blade)]
    handle_t = rng.uniform(1.4, 2.2)
    parts.append(
        Part(
            _handle_material(rng),
            handle_t,
            rounded_rect(handle_len, handle_w, handle_w * 0.4, -handle_len / 2, 0),
            rounding_cm=handle_w * 0.4,
        )
    )
    if rng.random() < 0.65:  # full tang with rivets, seen through the handle
        parts.append(
            Part(Material.STEEL, steel, rect(handle_len * 0.92, handle_w * 0.45, -handle_len * 0.48, 0))
        )
        for x in np.linspace(-0.2, -0.8, int(rng.integers(2, 4))) * handle_len:
            parts.append(Part(Material.STEEL, handle_t * 0.8, ellipse(0.22, 0.22, x, 0, n=10)))
    else:  # short tang
        parts.append(
            Part(Material.STEEL, steel, rect(handle_len * 0.5, handle_w * 0.3, -handle_len * 0.25, 0))
        )
    if rng.random() < 0.5:  # bolster
        parts.append(Part(Material.STEEL, 0.9, rect(0.7, handle_w * 1.05, -0.35, 0), rounding_cm=0.2))
    return tuple(parts)


def pliers(rng: np.random.Generator) -> Parts:
    jaw_len, handle_len = rng.uniform(4.0, 6.5), rng.uniform(10.0, 14.0)
    spread, opening = rng.uniform(1.2, 2.4), rng.uniform(0.0, 14.0)
    long_nose = rng.random() < 0.35
    parts = [Part(Material.STEEL, 1.6, ellipse(0.9, 0.9, 0, 0, n=14), rounding_cm=0.4)]
    grip_material = _handle_material(rng)
    for side in (1.0, -1.0):
        if long_nose:
            jaw = points([(0, -0.8), (jaw_len * 1.3, -0.15), (jaw_len * 1.3, 0.12), (0, 0.3)])
        else:
            jaw = points([(0, -1.0), (jaw_len * 0.7, -0.75), (jaw_len, -0.35), (jaw_len, 0.05), (0, 0.3)])
        handle = points([(0, 0), (-handle_len * 0.35, -spread * 0.55), (-handle_len, -spread)])
        if side < 0:
            jaw, handle = mirror_y(jaw), mirror_y(handle)
        turn = side * opening / 2
        parts.append(Part(Material.STEEL, 1.0, transform(jaw, -turn), rounding_cm=0.3))
        parts.append(Part(Material.STEEL, 0.7, transform(handle, turn), line_width_cm=0.9, rounding_cm=0.3))
        grip = transform(handle[1:], turn)
        parts.append(Part(grip_material, 1.4, grip, line_width_cm=1.7, rounding_cm=0.6))
    return tuple(parts)


def scissors(rng: np.random.Generator) -> Parts:
    blade_len, opening = rng.uniform(7.0, 11.0), rng.uniform(4.0, 30.0)
    ring_r = rng.uniform(1.1, 1.7)
    steel = rng.uniform(0.18, 0.3)
    ring_material = _handle_material(rng) if rng.random() < 0.8 else Material.STEEL
    ring_t = 0.8 if ring_material is not Material.STEEL else 0.35
    parts = [Part(Material.STEEL, 0.7, ellipse(0.35, 0.35, 0, 0, n=10))]
    for side in (1.0, -1.0):
        blade = points(
            [(-2.2, -0.45), (0, -0.7), (blade_len, -0.06), (blade_len * 0.96, 0.18), (0, 0.35), (-2.2, 0.3)]
        )
        ring_c = (-3.2 - ring_r, -0.9 - ring_r * 0.6)
        ring = ellipse(ring_r * 1.25, ring_r, *ring_c, n=22)
        hole = ellipse(ring_r * 1.25 - 0.45, ring_r - 0.45, *ring_c, n=22)
        shank = points([(-2.0, 0), ring_c])
        if side < 0:
            blade, ring, hole, shank = mirror_y(blade), mirror_y(ring), mirror_y(hole), mirror_y(shank)
        turn = side * opening / 2
        parts.append(Part(Material.STEEL, steel, transform(blade, turn)))
        parts.append(Part(Material.STEEL, steel * 1.5, transform(shank, turn), line_width_cm=0.5))
        parts.append(
            Part(
                ring_material, ring_t, transform(ring, turn), holes=(transform(hole, turn),), rounding_cm=0.2
            )
        )
    return tuple(parts)


def lighter(rng: np.random.Generator) -> Parts:
    length, width = rng.uniform(6.5, 8.0), rng.uniform(2.2, 2.7)
    body_len = length * 0.8
    body = rounded_rect(body_len, width, 0.35, -length * 0.1, 0)
    fill = rng.uniform(0.25, 0.95) * (body_len - 0.4)
    parts = [
        Part(Material.PLASTIC, 1.1, body, rounding_cm=0.4),
        Part(
            Material.ORGANIC, 0.9, rect(fill, width - 0.35, -length / 2 + 0.2 + fill / 2, 0), rounding_cm=0.35
        ),
        Part(
            Material.STEEL, 0.12, rect(length * 0.2, width * 0.95, length * 0.4, 0)
        ),  # cap (sheet, both sides)
        Part(Material.STEEL, 0.5, ellipse(0.42, 0.42, length * 0.42, 0, n=12)),  # flint wheel
        Part(Material.STEEL, 0.15, points([(-length * 0.45, 0.3), (length * 0.3, 0.3)]), line_width_cm=0.12),
    ]
    return tuple(parts)


def bottle(rng: np.random.Generator) -> Parts:
    body_len, radius = rng.uniform(12.0, 20.0), rng.uniform(2.8, 4.2)
    shoulder, neck_len, neck_r = rng.uniform(2.0, 5.0), rng.uniform(2.0, 6.0), rng.uniform(0.9, 1.4)
    glass = rng.random() < 0.55
    outline = points(
        [
            (0, -radius * 0.88),
            (0.7, -radius),
            (body_len, -radius),
            (body_len + shoulder, -neck_r),
            (body_len + shoulder + neck_len, -neck_r),
            (body_len + shoulder + neck_len, neck_r),
            (body_len + shoulder, neck_r),
            (body_len, radius),
            (0.7, radius),
            (0, radius * 0.88),
        ]
    )
    outline = outline - (outline.max(axis=0) + outline.min(axis=0)) / 2
    x_start = outline[:, 0].min()
    wall_material, wall = (Material.GLASS, rng.uniform(0.25, 0.5)) if glass else (Material.PLASTIC, 0.06)
    parts = [
        Part(wall_material, 2 * wall, outline),
        Part(wall_material, 4 * wall, np.vstack([outline, outline[:1]]), line_width_cm=0.35),
    ]
    fill = rng.uniform(0.3, 1.0) * body_len
    liquid_axis = points(
        [(x_start + 0.15, 0), (x_start + 0.15 + fill, 0)]
    )  # a lying cylinder: round across only
    parts.append(
        Part(
            Material.ORGANIC,
            2 * radius - 0.3,
            liquid_axis,
            line_width_cm=2 * radius - 0.3,
            rounding_cm=radius - 0.15,
        )
    )
    cap_x = outline[:, 0].max()
    cap_material = Material.STEEL if (glass and rng.random() < 0.5) else Material.PLASTIC
    parts.append(
        Part(
            cap_material,
            0.3 if cap_material is Material.STEEL else 1.5,
            rect(1.2, 2 * neck_r + 0.3, cap_x - 0.4, 0),
        )
    )
    return tuple(parts)


def razor(rng: np.random.Generator) -> Parts:
    if rng.random() < 0.5:  # snap-off utility knife
        body_len, width = rng.uniform(12.0, 16.0), rng.uniform(1.6, 2.0)
        out = rng.uniform(1.5, 4.0)
        tip = points(
            [
                (body_len / 2, -width * 0.35),
                (body_len / 2 + out, -width * 0.35),
                (body_len / 2 + out - 0.9, width * 0.3),
                (body_len / 2, width * 0.3),
            ]
        )
        parts = [
            Part(Material.PLASTIC, 1.3, rounded_rect(body_len, width, 0.4), rounding_cm=0.35),
            Part(Material.STEEL, 0.06, rect(body_len * 0.75, width * 0.62, body_len * 0.1, -0.02)),
            Part(Material.STEEL, 0.06, tip),
            Part(Material.STEEL, 0.25, rect(body_len * 0.9, 0.25, 0, width * 0.35)),  # rail
        ]
        for x in np.arange(body_len / 2 + out - 1.2, -body_len * 0.3, -1.0):  # snap lines
            parts.append(
                Part(
                    Material.STEEL,
                    0.03,
                    points([(x, -width * 0.3), (x - 0.5, width * 0.28)]),
                    line_width_cm=0.08,
                )
            )
        return tuple(parts)
    handle_len = rng.uniform(8.0, 10.5)  # safety razor: T shape
    head_w = rng.uniform(4.0, 4.6)
    handle_material = Material.STEEL if rng.random() < 0.6 else Material.ALUMINIUM
    return (
        Part(handle_material, 1.0, rounded_rect(handle_len, 1.0, 0.3, -handle_len / 2, 0), rounding_cm=0.45),
        Part(Material.STEEL, 0.35, rounded_rect(1.3, head_w, 0.3, 0.5, 0)),
        Part(Material.STEEL, 0.02, rect(2.2, head_w + 0.25, 0.55, 0)),  # blade
        Part(Material.STEEL, 0.6, rect(0.5, 1.2, -0.2, 0)),
    )


def screwdriver(rng: np.random.Generator) -> Parts:
    handle_len, handle_w = rng.uniform(8.5, 11.5), rng.uniform(2.5, 3.3)
    shaft_len, shaft_w = rng.uniform(7.0, 15.0), rng.uniform(0.45, 0.75)
    handle_material = _handle_material(rng)
    tip = points(
        [
            (shaft_len, -shaft_w / 2),
            (shaft_len + 0.8, -shaft_w * 0.15),
            (shaft_len + 0.8, shaft_w * 0.15),
            (shaft_len, shaft_w / 2),
        ]
    )
    parts = [
        Part(
            handle_material,
            handle_w,
            rounded_rect(handle_len, handle_w, handle_w * 0.45, -handle_len / 2, 0),
            rounding_cm=handle_w * 0.45,
        ),
        Part(
            Material.STEEL,
            shaft_w,
            points([(-3.5, 0), (shaft_len, 0)]),
            line_width_cm=shaft_w,
            rounding_cm=shaft_w / 2,
        ),
        Part(Material.STEEL, shaft_w * 0.5, tip),
    ]
    for k in range(int(rng.integers(3, 6))):  # fluted grip: ridges of extra material
        y = (k / 2.0 - 1.0) * handle_w * 0.3
        ridge = points([(-handle_len * 0.85, y), (-handle_len * 0.25, y)])
        parts.append(Part(handle_material, handle_w * 0.25, ridge, line_width_cm=0.35))
    if rng.random() < 0.5:
        parts.append(Part(Material.ALUMINIUM, 0.8, rect(0.8, handle_w * 0.7, -0.3, 0), rounding_cm=0.3))
    return tuple(parts)


def gun(rng: np.random.Generator) -> Parts:
    length, slide_h = rng.uniform(16.0, 21.0), rng.uniform(2.6, 3.4)
    grip_angle, grip_len, grip_w = rng.uniform(100.0, 112.0), rng.uniform(9.0, 11.5), rng.uniform(2.8, 3.4)
    polymer = rng.random() < 0.5
    slide = rounded_rect(length, slide_h, 0.3, length / 2, slide_h / 2)
    grip_axis = np.deg2rad(grip_angle)
    direction = np.array([np.cos(grip_axis), np.sin(grip_axis)])
    start = np.array([grip_w * 0.45, slide_h])
    normal = np.array([-direction[1], direction[0]])
    grip = points(
        [
            start - normal * grip_w / 2,
            start + direction * grip_len - normal * grip_w / 2,
            start + direction * grip_len + normal * grip_w / 2,
            start + normal * grip_w / 2 + (grip_w * 0.5, 0),
        ]
    )
    magazine = points(
        [
            start - normal * grip_w * 0.3 + direction * 0.5,
            start + direction * (grip_len + 0.3) - normal * grip_w * 0.3,
            start + direction * (grip_len + 0.3) + normal * grip_w * 0.25,
            start + normal * grip_w * 0.25 + direction * 0.5,
        ]
    )
    guard_c = start + np.array([grip_w * 0.9, 1.4])
    parts = [
        Part(Material.STEEL, rng.uniform(1.8, 2.6), slide, rounding_cm=0.6),
        Part(
            Material.STEEL,
            1.2,
            points([(0.5, slide_h * 0.45), (length + 0.2, slide_h * 0.45)]),
            line_width_cm=1.0,
        ),
        Part(Material.PLASTIC if polymer else Material.STEEL, 2.8 if polymer else 1.4, grip, rounding_cm=0.8),
        Part(Material.STEEL, 0.5, magazine),
        Part(
            Material.PLASTIC if polymer else Material.STEEL,
            1.0 if polymer else 0.5,
            arc(1.5, -10, 190, *guard_c, n=14),
            line_width_cm=0.45,
        ),
        Part(
            Material.STEEL,
            0.6,
            points([(guard_c[0] - 0.2, slide_h + 0.1), (guard_c[0] + 0.1, guard_c[1] + 0.3)]),
            line_width_cm=0.35,
        ),
        Part(Material.STEEL, 0.7, rect(0.6, 0.6, length - 0.8, -0.2)),  # front sight
    ]
    if not polymer:
        parts.append(Part(Material.ORGANIC, 1.0, grip * 0.96 + grip.mean(axis=0) * 0.04))  # grip panels
    center = np.array([length / 2, slide_h + grip_len / 3])
    return tuple(
        Part(
            p.material,
            p.thickness_cm,
            p.outline - center,
            tuple(h - center for h in p.holes),
            p.line_width_cm,
            p.rounding_cm,
        )
        for p in parts
    )


BUILDERS = {
    "knife": knife,
    "pliers": pliers,
    "scissors": scissors,
    "lighter": lighter,
    "bottle": bottle,
    "razor": razor,
    "screwdriver": screwdriver,
    "gun": gun,
}
