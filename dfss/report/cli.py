"""``dfss-report``: ``docs/results.md`` and its plots from a ``dfss-results`` folder.

dfss-report                                   # results/gpu -> docs/results.md
dfss-report --results results/cpu --out docs/results.md
dfss-report --results results/bench --also results/cpu   # the demo-scale plan further down
dfss-report --results results/cpu_benchmark --partial   # a plan still under way: its finished runs
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from dfss.errors import UserError
from dfss.eval.coco_metrics import RECALL_GRID
from dfss.report import plots
from dfss.report.collect import Results, load_results
from dfss.report.markdown import render
from dfss.report.targets import best_T, verdicts

log = logging.getLogger(__name__)


def _relative(path: Path, start: Path) -> str:
    return os.path.relpath(path.resolve(), start.resolve()).replace(os.sep, "/")


def make_plots(results: Results, folder: Path) -> dict[str, Path]:
    choice = best_T(results)
    return {
        "map_vs_epoch": plots.map_vs_epoch(results, folder / "map_vs_epoch.png"),
        "alpha": plots.alpha_plot(results, folder / "alpha_sweep.png"),
        "t_sweep": plots.t_sweep_plot(results, folder / "t_sweep.png"),
        "per_class": plots.per_class_ap50(results, folder / "per_class_ap50.png"),
        "pr": plots.pr_curves(
            results, list(RECALL_GRID), folder / "pr_curves.png", choice.T if choice else None
        ),
        "roc": plots.alarm_roc(results, folder / "alarm_roc.png"),
    }


def log_to_wandb(results: Results, images: dict[str, Path], markdown: str) -> str | None:
    """The plots, the targets and the report as one W&B run (offline without credentials)."""
    import wandb

    if not os.environ.get("WANDB_MODE") and not (
        os.environ.get("WANDB_API_KEY") or (Path.home() / ".netrc").is_file()
    ):
        os.environ["WANDB_MODE"] = "offline"
    run = wandb.init(
        project="dfss",
        job_type="report",
        group="results",
        name=f"report_{results.plan['name']}",
        dir=str(results.folder),
        config={"plan": results.plan},
        reinit="finish_previous",
    )
    try:
        run.log({f"report/{key}": wandb.Image(str(path)) for key, path in images.items()})
        table = wandb.Table(columns=["target", "measured", "status"])
        for v in verdicts(results):
            table.add_data(v.target, v.measured, v.status)
        run.log({"report/targets": table, "report/markdown": wandb.Html(f"<pre>{markdown}</pre>")})
        return run.dir
    finally:
        run.finish()


def demoted(markdown: str) -> str:
    """Every heading one level down (a whole report as a section of another)."""
    return "\n".join("#" + line if line.startswith("#") else line for line in markdown.splitlines())


def write_report(
    results_dir: str | Path,
    out: str | Path,
    *,
    wandb: bool = True,
    also: tuple[str | Path, ...] = (),
    partial: bool = False,
) -> Path:
    """Write the report to ``out`` and its plots to ``<out without .md>/`` beside it; each folder of
    ``also`` follows as a section of its own (plots in ``<out without .md>/<folder name>/``). With
    ``partial``, a plan still under way is reported from its finished runs and names the others."""
    results = load_results(results_dir, partial)
    out = Path(out)
    figures = out.with_suffix("")  # docs/results.md -> docs/results/
    images = make_plots(results, figures)
    markdown = render(results, {k: _relative(p, out.parent) for k, p in images.items()}, str(results_dir))
    for folder in also:
        extra = load_results(folder, partial)
        extra_images = make_plots(extra, figures / Path(folder).name)
        section = render(extra, {k: _relative(p, out.parent) for k, p in extra_images.items()}, str(folder))
        markdown += "\n\n" + demoted(section)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(markdown)
    (figures / "targets.json").write_text(
        json.dumps(
            [{"target": v.target, "measured": v.measured, "met": v.met} for v in verdicts(results)], indent=2
        )
    )
    log.info("report written to %s (plots in %s)", out, figures)
    if wandb:
        where = log_to_wandb(results, images, markdown)
        log.info("report sent to W&B (%s)", where)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="dfss-report",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n" + __doc__.split("\n\n")[1],
    )
    parser.add_argument(
        "--results", default="results/gpu", help="a dfss-results folder (default: results/gpu)"
    )
    parser.add_argument(
        "--out", default="docs/results.md", help="the report (plots go to <out without .md>/)"
    )
    parser.add_argument(
        "--also",
        action="append",
        default=[],
        help="another dfss-results folder, reported further down as a section of its own (repeatable)",
    )
    parser.add_argument("--no-wandb", action="store_true", help="do not send the plots to W&B")
    parser.add_argument(
        "--partial",
        action="store_true",
        help="report a plan still under way from its finished runs; the report names the others "
        "(without it, a run not finished is an error)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        out = write_report(
            args.results, args.out, wandb=not args.no_wandb, also=tuple(args.also), partial=args.partial
        )
    except UserError as error:
        print(f"dfss-report: error: {error}", file=sys.stderr)
        return 2
    print(f"report: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
