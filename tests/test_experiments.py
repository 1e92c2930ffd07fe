"""The experiment scripts' statistics (``experiments/``), on the committed CPU-plan results."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from tests.helpers.scripts import bench_script

CPU_RESULTS = Path(__file__).parents[1] / "results" / "cpu"


def test_compare_arms_pairs_seeds_and_calls_an_interval_with_zero_no_difference(capsys):
    compare = bench_script("compare_arms", "experiments")
    assert compare.t_975(1) == 12.706 and compare.t_975(11) == 2.228 and compare.t_975(100) == 1.96
    mean, low, high = compare.interval([0.1, 0.3])  # mean 0.2, sd 0.1414, t(1) 12.706
    assert mean == pytest.approx(0.2) and high - mean == pytest.approx(12.706 * 0.1414214 / 2**0.5, rel=1e-5)
    assert low == pytest.approx(2 * mean - high)
    compare.main([f"--arm=fcos={CPU_RESULTS}:student", f"--arm=dfss={CPU_RESULTS}:distill"])
    out = capsys.readouterr().out
    student = compare.parse_arm(f"fcos={CPU_RESULTS}:student").runs
    distill = compare.parse_arm(f"dfss={CPU_RESULTS}:distill").runs
    diff = statistics.fmean(distill[s].metrics["map50"] - student[s].metrics["map50"] for s in (1, 2))
    assert f"{diff:+.3f} [" in out and "no significant difference" in out  # 2 seeds: a wide interval
