"""``dfss-results``: the paper's experiments (teacher, FCOS, DFSS, alpha sweep, T sweep, KD ablations)
as one resumable job, then the report (``dfss-report``) from its runs.

    dfss-results                          # the GPU plan: results/gpu, then docs/results.md
    dfss-results --plan cpu               # the same experiments at demo scale on a CPU
    dfss-results --only 'teacher|student' # a subset of the runs (a regular expression on run names)
    dfss-results --plan cpu --jobs 2      # two runs side by side, each in its own process
    dfss-results --plan cpu_benchmark --time-budget 170   # start only runs that should end in 170 min
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler

from dfss.errors import ConfigError, UserError
from dfss.results.plan import expand, load_plan, plan_names
from dfss.results.runner import run_plan, teacher_checkpoint


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="dfss-results",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n" + __doc__.split("\n\n")[1],
    )
    parser.add_argument(
        "--plan", default="gpu", help=f"{' | '.join(plan_names())} or a plan .yaml (default: gpu)"
    )
    parser.add_argument("--out", default=None, help="results folder (default: results/<plan name>)")
    parser.add_argument("--data-dir", default=None, help="the synthetic set's folder (default: the plan's)")
    parser.add_argument("--only", default=None, help="run only the runs whose name matches this regex")
    parser.add_argument("--dry-run", action="store_true", help="list the runs with their overrides and stop")
    parser.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="runs trained side by side, each in its own process (default: the plan's)",
    )
    parser.add_argument(
        "--time-budget",
        type=float,
        default=None,
        metavar="MINUTES",
        help="start a run only if it should end within this many minutes of now, judged by the longest "
        "finished run of its kind (on a machine lent for a fixed time); the rest wait for the next call",
    )
    parser.add_argument("--synth-workers", type=int, default=2, help="processes generating the data set")
    parser.add_argument("--report", default="docs/results.md", help="report to write afterwards ('' = none)")
    parser.add_argument("--no-wandb", action="store_true", help="do not send the report's plots to W&B")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[RichHandler(show_path=False)])
    try:
        plan = load_plan(args.plan, args.data_dir)
        out = Path(args.out or Path("results") / plan.name)
        pattern = re.compile(args.only) if args.only else None
        keep = (lambda spec: bool(pattern.search(spec.name))) if pattern else None
        if args.dry_run:
            for spec in expand(plan):
                if keep is None or keep(spec):
                    teacher = (
                        f" teacher.ckpt_path={teacher_checkpoint(out, spec.teacher)}" if spec.teacher else ""
                    )
                    print(
                        f"{spec.name}: train.py experiment={spec.experiment} "
                        f"{' '.join(spec.overrides)}{teacher}"
                    )
            return 0
        start = time.perf_counter()
        jobs = plan.jobs if args.jobs is None else args.jobs
        if jobs < 1:
            raise ConfigError(f"--jobs must be at least 1, not {jobs}")
        budget = None if args.time_budget is None else 60 * args.time_budget
        index = run_plan(
            plan, out, only=keep, synth_workers=args.synth_workers, jobs=jobs, time_budget=budget
        )
        if index.get("not_started"):
            Console().print(
                f"{len(index['not_started'])} runs left for the next call (the time budget): "
                + ", ".join(index["not_started"])
            )
        Console().print(f"results of plan {plan.name!r} in {out} ({time.perf_counter() - start:.0f} s)")
        if args.report:
            from dfss.report.cli import write_report

            write_report(out, Path(args.report), wandb=not args.no_wandb)
    except UserError as error:
        print(f"dfss-results: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
