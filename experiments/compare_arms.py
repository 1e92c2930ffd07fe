"""Compare experiment arms from ``dfss-results`` folders: mean ± std over seeds, and each arm's
difference to the first (paired by seed) with a 95 % t-interval; an interval containing 0 is
reported as "no significant difference", never as a gain.

Each ``--arm`` is ``LABEL=FOLDER:ROLE[:VARIANT]`` (a run role of the folder's ``index.json``:
teacher, student, distill, weighted, ablation; for ablation runs the loss option as VARIANT):

    python experiments/compare_arms.py --metric map50 map50_dangerous \\
        --arm fp32=results/precision_parity/fp32:student --arm bf16=results/precision_parity/bf16:student

Prints a markdown table per metric, and the training time of each arm (``seconds_train`` of the
index), so a table in the README is the output of one command.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from dfss.report.collect import Run, load_results
from dfss.report.stats import interval, t_975  # noqa: F401 (t_975: the tests read it from here)


@dataclass(frozen=True)
class Arm:
    label: str
    runs: dict[int, Run]  # by seed


def parse_arm(spec: str) -> Arm:
    label, _, where = spec.partition("=")
    folder, role, *variant = where.split(":")
    if not label or not folder or not role:
        raise SystemExit(f"--arm {spec!r}: expected LABEL=FOLDER:ROLE[:VARIANT]")
    runs = load_results(Path(folder)).arm(role, variant=variant[0] if variant else None)
    if not runs:
        raise SystemExit(f"--arm {spec!r}: no {role} runs in {folder}")
    return Arm(label, {r.seed: r for r in runs})


def fmt_stat(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.fmean(values):.3f} ± {statistics.stdev(values):.3f}"


def table(arms: list[Arm], metric: str) -> list[str]:
    reference = arms[0]
    lines = [
        f"| arm ({metric}) | seeds | per seed | mean ± std | "
        f"difference to {reference.label} (paired, 95 % CI) |",
        "|---|---|---|---|---|",
    ]
    for arm in arms:
        seeds = sorted(arm.runs)
        values = [arm.runs[s].metrics[metric] for s in seeds]
        per_seed = ", ".join(f"{v:.3f}" for v in values)
        if arm is reference:
            verdict = "reference"
        else:
            shared = [s for s in seeds if s in reference.runs]
            diffs = [arm.runs[s].metrics[metric] - reference.runs[s].metrics[metric] for s in shared]
            mean, low, high = interval(diffs)
            significant = not math.isnan(low) and (low > 0 or high < 0)
            verdict = f"{mean:+.3f} [{low:+.3f}, {high:+.3f}] over {len(shared)} seeds: " + (
                "significant" if significant else "no significant difference"
            )
        lines.append(
            f"| {arm.label} | {', '.join(map(str, seeds))} | {per_seed} | {fmt_stat(values)} | {verdict} |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--arm", action="append", required=True, help="LABEL=FOLDER:ROLE[:VARIANT] (first: reference)"
    )
    p.add_argument("--metric", nargs="+", default=["map50"], help="keys of the runs' test metrics.json")
    a = p.parse_args(argv)
    arms = [parse_arm(spec) for spec in a.arm]
    for metric in a.metric:
        print("\n".join(table(arms, metric)))
        print()
    print("| arm | training seconds per run |")
    print("|---|---|")
    for arm in arms:
        seconds = [arm.runs[s].seconds_train for s in sorted(arm.runs)]
        print(f"| {arm.label} | {', '.join(f'{x:.0f}' for x in seconds)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
