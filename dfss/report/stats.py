"""Differences between experiment arms with a 95 % interval, as the report states them.

Paired by seed when the two arms share two or more seeds: the mean of the per-seed differences with
Student's t interval. With one shared seed (the one-seed ablations), an image bootstrap of that
pair on the test images (:mod:`dfss.eval.bootstrap`, from each evaluation's ``matches50.npz``),
the same resamples for both runs. An interval that contains 0 is "no significant difference",
never a gain.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from dfss.eval.bootstrap import (
    FILE_NAME,
    MatchRecord,
    image_counts,
    mean_over,
    percentile_interval,
    same_images,
)
from dfss.report.collect import Run

# Two-sided 95 % quantiles of Student's t, by degrees of freedom (the normal's 1.96 past 30).
# A table: it reads better as one, so the formatter leaves it alone.
# fmt: off
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
         10: 2.228, 12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042}
# fmt: on
BOOTSTRAP_SAMPLES = 1000


def t_975(df: int) -> float:
    """The table's quantile for ``df`` or the next smaller df listed (a slightly wider interval)."""
    return 1.96 if df > 30 else T_975[max(k for k in T_975 if k <= df)]


def interval(differences: list[float]) -> tuple[float, float, float]:
    """Mean and 95 % t-interval of paired differences (nan bounds for fewer than 2)."""
    mean = statistics.fmean(differences)
    if len(differences) < 2:
        return mean, math.nan, math.nan
    half = t_975(len(differences) - 1) * statistics.stdev(differences)
    half /= math.sqrt(len(differences))
    return mean, mean - half, mean + half


@dataclass(frozen=True)
class Difference:
    mean: float
    low: float
    high: float
    n: int  # shared seeds
    method: str  # "seeds" (t interval), "images" (bootstrap of one seed's pair), "none"

    @property
    def significant(self) -> bool:
        return not math.isnan(self.low) and (self.low > 0 or self.high < 0)

    def fmt(self) -> str:
        """``+1.2 [-0.3, +2.7] points (3 seeds): no significant difference``."""
        if math.isnan(self.mean):
            return "-"
        where = {"seeds": f"{self.n} seeds", "images": "1 seed, image bootstrap"}.get(self.method)
        if where is None:
            return f"{100 * self.mean:+.1f} points (1 seed, no interval)"
        verdict = "" if self.significant else ": no significant difference"
        bounds = f"[{100 * self.low:+.1f}, {100 * self.high:+.1f}]"
        return f"{100 * self.mean:+.1f} {bounds} points ({where}){verdict}"


def _value(run: Run, key: str, T: float | None) -> float:
    metrics = run.metrics if not T else run.sweep.get(T, {})
    value = metrics.get(key)
    return math.nan if value is None else float(value)


def paired_difference(a: list[Run], b: list[Run], key: str, T: float | None = None) -> Difference:
    """``key`` of arm ``a`` minus arm ``b`` (both at the unknown rule's ``T``), paired by seed."""
    by_seed = {r.seed: r for r in b}
    pairs = [(r, by_seed[r.seed]) for r in a if r.seed in by_seed]
    diffs = [_value(x, key, T) - _value(y, key, T) for x, y in pairs]
    pairs = [p for p, d in zip(pairs, diffs, strict=True) if not math.isnan(d)]
    diffs = [d for d in diffs if not math.isnan(d)]
    if not diffs:
        return Difference(math.nan, math.nan, math.nan, 0, "none")
    if len(diffs) >= 2:
        return Difference(*interval(diffs), len(diffs), "seeds")
    low, high = image_interval(*pairs[0], key, T)
    return Difference(diffs[0], low, high, 1, "none" if math.isnan(low) else "images")


def image_interval(x: Run, y: Run, key: str, T: float | None = None) -> tuple[float, float]:
    """95 % interval of ``key`` of ``x`` minus ``y`` from one image bootstrap of both (nan when an
    evaluation has no ``matches50.npz``, the two were scored on different images, or ``key`` is not
    an AP50 the records give)."""
    paths = [_record_path(run, T) for run in (x, y)]
    columns = [_columns(run, key) for run in (x, y)]
    if any(p is None for p in paths) or any(c is None for c in columns):
        return math.nan, math.nan
    records = [_load(p) for p in paths]
    try:
        same_images(*records)
    except ValueError:  # evaluated on different test sets: nothing to pair
        return math.nan, math.nan
    counts = image_counts(len(records[0].image_ids), BOOTSTRAP_SAMPLES, seed=0)
    samples = [mean_over(r.ap50(counts), c) for r, c in zip(records, columns, strict=True)]
    return percentile_interval(samples[0] - samples[1])


def _record_path(run: Run, T: float | None) -> Path | None:
    folder = run.eval_folders.get(float(T or 0))
    path = None if folder is None else folder / FILE_NAME
    return path if path is not None and path.is_file() else None


@cache
def _load(path: Path) -> MatchRecord:
    return MatchRecord.load(path)


def _columns(run: Run, key: str) -> np.ndarray | None:
    """The record's columns (classes, by COCO id order) that ``key`` averages over."""
    if not key.startswith("map50"):
        return None
    suffix = key.removeprefix("map50").removeprefix("_")
    ids = []
    for row in run.per_class:
        unknown = row["supercategory"] == "unknown"
        if suffix in ("", row["supercategory"]) or (suffix == "known" and not unknown):
            ids.append(int(row["coco_id"]))
    if not ids:
        return None
    path = _record_path(run, None)
    if path is None:
        return None
    class_ids = _load(path).class_ids.tolist()
    return np.array([class_ids.index(i) for i in ids if i in class_ids])
