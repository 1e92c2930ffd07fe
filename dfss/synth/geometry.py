"""Parts and the 2D shape helpers the procedural objects are built from (all lengths in cm).

An object is a tuple of :class:`Part`: a flat outline (or an open polyline with a width) of one
material with a thickness along the beam. ``rounding_cm`` gives the part a rounded cross-section:
the thickness rises from the edge to its full value over that distance (tubes, handles, liquid in a
bottle) instead of a flat slab. Coordinates are image-like: x right, y down, origin near the object's
centre; the rasteriser rotates, scales and places them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dfss.synth.materials import Material


@dataclass(frozen=True, eq=False)
class Part:
    """One homogeneous piece of an object."""

    material: Material
    thickness_cm: float  # along the beam, > 0
    outline: np.ndarray  # [N, 2] cm; closed polygon, or an open polyline when line_width_cm > 0
    holes: tuple[np.ndarray, ...] = ()  # polygons cut out of the outline (rings, handle loops)
    line_width_cm: float = 0.0
    rounding_cm: float = 0.0  # 0 = flat slab; else distance over which thickness rises from the edge


def points(xy) -> np.ndarray:
    """A float ``[N, 2]`` array from any sequence of (x, y) pairs."""
    return np.asarray(xy, dtype=np.float64).reshape(-1, 2)


def ellipse(rx: float, ry: float, cx: float = 0.0, cy: float = 0.0, n: int = 28) -> np.ndarray:
    angle = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    return np.stack([cx + rx * np.cos(angle), cy + ry * np.sin(angle)], axis=1)


def arc(
    r: float, start_deg: float, end_deg: float, cx: float = 0.0, cy: float = 0.0, n: int = 16
) -> np.ndarray:
    """Open polyline along a circle from ``start_deg`` to ``end_deg`` (y down, so positive = clockwise)."""
    angle = np.deg2rad(np.linspace(start_deg, end_deg, n))
    return np.stack([cx + r * np.cos(angle), cy + r * np.sin(angle)], axis=1)


def rect(w: float, h: float, cx: float = 0.0, cy: float = 0.0) -> np.ndarray:
    return points(
        [
            (cx - w / 2, cy - h / 2),
            (cx + w / 2, cy - h / 2),
            (cx + w / 2, cy + h / 2),
            (cx - w / 2, cy + h / 2),
        ]
    )


def rounded_rect(
    w: float, h: float, r: float, cx: float = 0.0, cy: float = 0.0, n_corner: int = 5
) -> np.ndarray:
    """Rectangle with circular corners of radius ``r`` (clamped to fit)."""
    r = min(r, w / 2, h / 2)
    corners = [
        (w / 2 - r, h / 2 - r, 0),
        (-w / 2 + r, h / 2 - r, 90),
        (-w / 2 + r, -h / 2 + r, 180),
        (w / 2 - r, -h / 2 + r, 270),
    ]
    pieces = [arc(r, a, a + 90, cx + x, cy + y, n_corner) for x, y, a in corners]
    return np.concatenate(pieces, axis=0)


def transform(
    xy: np.ndarray, angle_deg: float = 0.0, dx: float = 0.0, dy: float = 0.0, scale: float = 1.0
) -> np.ndarray:
    """Rotate about the origin, scale, then translate (returns a new array)."""
    a = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return (np.asarray(xy) @ rot.T) * scale + np.array([dx, dy])


def mirror_y(xy: np.ndarray) -> np.ndarray:
    return np.asarray(xy) * np.array([1.0, -1.0])


def blob(
    rng: np.random.Generator, radius: float, irregularity: float = 0.35, n: int = 24, aspect: float = 1.0
) -> np.ndarray:
    """A smooth random star-shaped outline: a circle whose radius is modulated by low harmonics."""
    angle = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    r = np.ones(n)
    for k in (2, 3, 4, 5):
        r += irregularity / k * rng.uniform(-1, 1) * np.cos(k * angle + rng.uniform(0, 2 * np.pi))
    r = np.clip(r, 0.35, None) * radius
    return np.stack([r * np.cos(angle) * aspect, r * np.sin(angle)], axis=1)


def wiggle(rng: np.random.Generator, start, end, n: int = 12, amplitude: float = 1.0) -> np.ndarray:
    """An open polyline from ``start`` to ``end`` that meanders sideways (cables, straps)."""
    start, end = np.asarray(start, float), np.asarray(end, float)
    t = np.linspace(0.0, 1.0, n)[:, None]
    line = start + t * (end - start)
    direction = end - start
    normal = np.array([-direction[1], direction[0]]) / (np.linalg.norm(direction) + 1e-9)
    offsets = np.cumsum(rng.normal(0.0, amplitude, n))
    offsets -= np.linspace(offsets[0], offsets[-1], n)  # keep both ends in place
    return line + offsets[:, None] * normal


def teeth(x0: float, x1: float, y: float, depth: float, count: int, rng: np.random.Generator) -> np.ndarray:
    """Open zig-zag from (x0, y) to (x1, y) with random tooth depths: the bitting of a key."""
    xs = np.linspace(x0, x1, 2 * count + 1)
    ys = np.full_like(xs, y)
    ys[1::2] = y + depth * rng.uniform(0.3, 1.0, count)
    return np.stack([xs, ys], axis=1)


def inset_directions(xy: np.ndarray) -> np.ndarray:
    """Per-vertex vectors ``d`` such that ``xy + inset * d`` moves every edge inwards by ``inset``.

    Vertex-normal (miter) offset, exact for convex polygons and close enough for the gently concave
    outlines used here; the miter is capped at 2x so sharp corners do not spike. Works for either
    orientation; a negative inset grows the polygon.
    """
    xy = np.asarray(xy, dtype=np.float64)
    nxt = np.concatenate([xy[1:], xy[:1]])
    edge = nxt - xy  # edge i runs from vertex i to i+1
    area2 = float(np.sum(xy[:, 0] * nxt[:, 1] - nxt[:, 0] * xy[:, 1]))
    normal = np.stack([-edge[:, 1], edge[:, 0]], axis=1) * (1.0 if area2 > 0 else -1.0)
    normal /= np.maximum(np.sqrt(np.sum(normal * normal, axis=1, keepdims=True)), 1e-12)
    n_in = np.concatenate([normal[-1:], normal[:-1]])  # normal of the edge arriving at each vertex
    bisector = n_in + normal
    bisector /= np.maximum(np.sqrt(np.sum(bisector * bisector, axis=1, keepdims=True)), 1e-12)
    cos_half = np.clip(np.sum(bisector * normal, axis=1, keepdims=True), 0.5, 1.0)
    return bisector / cos_half


def stroke_polygon(xy: np.ndarray, width: float) -> np.ndarray:
    """Outline of an open polyline drawn ``width`` wide with mitred bends and flat ends."""
    xy = np.asarray(xy, dtype=np.float64)
    segment = xy[1:] - xy[:-1]
    normal = np.stack([-segment[:, 1], segment[:, 0]], axis=1)
    normal /= np.maximum(np.sqrt(np.sum(normal * normal, axis=1, keepdims=True)), 1e-12)
    before = np.concatenate([normal[:1], normal])  # normal of the segment arriving at each vertex
    after = np.concatenate([normal, normal[-1:]])  # and of the one leaving it
    bisector = before + after
    bisector /= np.maximum(np.sqrt(np.sum(bisector * bisector, axis=1, keepdims=True)), 1e-12)
    cos_half = np.clip(np.sum(bisector * after, axis=1, keepdims=True), 0.5, 1.0)
    offset = bisector / cos_half * (width / 2)
    return np.concatenate([xy + offset, (xy - offset)[::-1]])
