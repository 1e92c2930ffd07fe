"""The paper's targets, each judged on the measured means and, for a gain, on its 95 % interval
(:mod:`dfss.report.stats`): met or missed, by how much."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from dfss.fileio import shown_path
from dfss.report import paper
from dfss.report.collect import Results, read_json, stat
from dfss.report.stats import interval, paired_difference

Candidate = TypeVar("Candidate")


@dataclass(frozen=True)
class Verdict:
    target: str
    measured: str
    met: bool | None  # None: could not be judged (a run is missing)

    @property
    def status(self) -> str:
        return "n/a" if self.met is None else ("met" if self.met else "**missed**")


def _points(x: float) -> str:
    return f"{100 * x:+.1f} points"


def _best_within(
    candidates: list[Candidate], within: Callable[[Candidate], bool], score: Callable[[Candidate], float]
) -> Candidate | None:
    """The best-scoring candidate among those ``within`` the allowed cost, or overall when none is."""
    pool = [c for c in candidates if within(c)] or candidates
    return max(pool, key=score) if pool else None


@dataclass(frozen=True)
class AlphaChoice:
    alpha: float
    dangerous_gain: float
    normal_change: float


def best_alpha(results: Results) -> AlphaChoice | None:
    """The alpha > 1 with the largest dangerous gain among those losing at most the allowed normal
    mAP50 (or, if none does, the largest dangerous gain), both against alpha = 1 (DFSS)."""
    base = results.arm("distill")
    choices = []
    for alpha in results.alphas[1:]:
        runs = results.arm("weighted", alpha=alpha)
        if not runs or not base:
            continue
        choices.append(
            AlphaChoice(
                alpha,
                stat(runs, "map50_dangerous").mean - stat(base, "map50_dangerous").mean,
                stat(runs, "map50_normal").mean - stat(base, "map50_normal").mean,
            )
        )
    return _best_within(
        choices, lambda c: c.normal_change >= -paper.TARGET_NORMAL_LOSS, lambda c: c.dangerous_gain
    )


@dataclass(frozen=True)
class TChoice:
    T: float
    unknown_ap50: float
    unknown_recall50: float
    known_change: float


def t_sweep(results: Results) -> list[TChoice]:
    """Mean over the swept runs, for each T (T = 0 is the evaluation without the rule)."""
    runs = results.sweep_runs
    if not runs:
        return []
    base = stat(runs, "map50_known").mean
    rows = []
    for T in results.unknown_T:
        rows.append(
            TChoice(
                T,
                stat(runs, "map50_unknown", T).mean,
                stat(runs, "recall50_unknown", T).mean,
                stat(runs, "map50_known", T).mean - base,
            )
        )
    return rows


def best_T(results: Results) -> TChoice | None:
    """The T with the best unknown AP50 among those costing at most the allowed known mAP50."""
    rows = [r for r in t_sweep(results) if r.T > 0 and not math.isnan(r.unknown_ap50)]
    return _best_within(rows, lambda r: r.known_change >= -paper.TARGET_KNOWN_DROP, lambda r: r.unknown_ap50)


def verdicts(results: Results) -> list[Verdict]:
    teacher, student, distill = (stat(results.arm(r), "map50") for r in ("teacher", "student", "distill"))
    out = []
    if student.n and distill.n:
        gain = paired_difference(results.arm("distill"), results.arm("student"), "map50")
        out.append(
            Verdict(
                f"distillation gain (3) - (2) >= {_points(paper.TARGET_KD_GAIN)} mAP50, "
                "its 95 % interval above 0",
                f"{gain.fmt()} ({distill.mean:.3f} vs {student.mean:.3f})",
                gain.mean >= paper.TARGET_KD_GAIN and gain.low > 0,  # nan (no interval): not met
            )
        )
    if teacher.n and distill.n:
        target = f"DFSS >= {paper.TARGET_KD_OF_TEACHER:.2f} x teacher mAP50"
        if teacher.mean > 0:
            ratio = distill.mean / teacher.mean
            measured = f"{ratio:.2f} x ({distill.mean:.3f} vs {teacher.mean:.3f})"
            _, low, high = interval([stat([r], "map50").mean / teacher.mean for r in results.arm("distill")])
            if not math.isnan(low):  # over the DFSS seeds, the teacher's figure held fixed
                measured = f"{ratio:.2f} x [{low:.2f}, {high:.2f}] ({distill.mean:.3f} vs {teacher.mean:.3f})"
            out.append(Verdict(target, measured, ratio >= paper.TARGET_KD_OF_TEACHER))
        else:
            out.append(Verdict(target, f"teacher mAP50 is 0 (DFSS {distill.mean:.3f})", None))
    choice = best_alpha(results)
    if choice is not None:
        runs, base = results.arm("weighted", alpha=choice.alpha), results.arm("distill")
        dangerous = paired_difference(runs, base, "map50_dangerous")
        met = (
            choice.dangerous_gain >= paper.TARGET_DANGEROUS_GAIN
            and dangerous.low > 0  # the interval above 0; nan (no interval): not met
            and choice.normal_change >= -paper.TARGET_NORMAL_LOSS
        )
        out.append(
            Verdict(
                f"weighted loss: dangerous mAP50 {_points(paper.TARGET_DANGEROUS_GAIN)} (interval above 0) "
                f"with normal mAP50 >= {_points(-paper.TARGET_NORMAL_LOSS)} (best alpha)",
                f"alpha={choice.alpha:g}: dangerous {dangerous.fmt()}, "
                f"normal {paired_difference(runs, base, 'map50_normal').fmt()}",
                met,
            )
        )
    t_choice = best_T(results)
    if t_choice is not None:
        met = t_choice.unknown_ap50 >= paper.TARGET_UNKNOWN_AP50 and (
            t_choice.known_change >= -paper.TARGET_KNOWN_DROP
        )
        out.append(
            Verdict(
                f"unknown AP50 >= {paper.TARGET_UNKNOWN_AP50:.2f} at the best T, known mAP50 "
                f">= {_points(-paper.TARGET_KNOWN_DROP)}",
                f"T={t_choice.T:g}: unknown AP50 {t_choice.unknown_ap50:.3f} (recall "
                f"{t_choice.unknown_recall50:.3f}), known {_points(t_choice.known_change)}",
                met,
            )
        )
    seeds = {role: len(results.arm(role)) for role in ("student", "distill")}
    seeds.update({f"alpha={a:g}": len(results.arm("weighted", alpha=a)) for a in results.alphas[1:]})
    out.append(
        Verdict(
            f"each headline number the mean of >= {paper.TARGET_SEEDS} seeds",
            ", ".join(f"{k}: {n}" for k, n in seeds.items()),
            all(n >= paper.TARGET_SEEDS for n in seeds.values()) if seeds else None,
        )
    )
    return out


def calibration(results: Results) -> Verdict:
    """Whether the teacher lands where the benchmark preset is calibrated to put it."""
    teacher = stat(results.arm("teacher"), "map50")
    low, high = paper.CALIBRATION_RANGE
    target = f"teacher test mAP50 in [{low:.2f}, {high:.2f}]"
    if results.plan["synth_preset"] not in paper.CALIBRATED_PRESETS:
        from dfss.synth.config import load_preset

        benchmark = paper.CALIBRATED_PRESETS[0]
        version = load_preset(benchmark).version
        folder = results.folder.parent / "calibration"
        records = calibration_records(folder, benchmark, version)
        if records:
            path, record = records[-1]
            where = (
                "calibrated by the GPU plan's teacher trained on the CPU: "
                f"test mAP50 {record['teacher_test_map50']:.3f}, `{shown_path(path)}`"
            )
        else:
            where = f"no calibration record of that version; its calibration runs: `{shown_path(folder)}/`"
        measured = (
            f"{teacher.fmt()} on the {results.plan['synth_preset']!r} set, which is not calibrated "
            f"(the benchmark preset {benchmark!r} is version `{version}`, {where})"
        )
        return Verdict(target, measured, None)
    return Verdict(
        target,
        teacher.fmt() if teacher.n else "-",
        paper.in_calibration_range(teacher.mean) if teacher.n else None,
    )


def calibration_records(folder: Path, preset: str, version: str) -> list[tuple[Path, dict]]:
    """The ``calibration.json`` files under ``folder`` (``experiments/calibrate_cpu.py``'s) that put
    ``preset`` at ``version`` in range, in name order. Records without a version (written before
    they named it) and out-of-range tries calibrate nothing."""
    found = []
    for path in sorted(folder.glob("*/calibration.json")):
        record = read_json(path)
        if (
            record.get("preset") == preset
            and record.get("preset_version") == version
            and paper.in_calibration_range(record["teacher_test_map50"])
        ):
            found.append((path, record))
    return found
