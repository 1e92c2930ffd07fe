"""One table across the jobs of a Hydra multirun: ``summary.csv`` and ``summary.md`` in its folder.

A sweep (``python train.py -m loss.dangerous_weight=1,2,4``, ``python evaluate.py -m
threshold.T=0,0.1,0.2``, an ``hparams_search`` option) writes one folder per job; when the sweep
ends, :class:`SweepSummary` (a Hydra callback, ``hydra/default.yaml``) writes one row per job: the
job number, the settings that differ between the jobs, and the key metrics of its ``metrics.json``
(overall, per supercategory, known, unknown; the test split's when the run was tested, else the
last validation's). A job without ``metrics.json`` (it failed) gets a row that says so.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from dfss.fileio import write_text_atomic

log = logging.getLogger(__name__)

# The figures a row shows, in this order, under each of the prefixes a metrics.json may use.
KEY_METRICS = (
    "map50",
    "map",
    "map50_dangerous",
    "map50_normal",
    "map50_known",
    "map50_unknown",
    "recall50_unknown",
    "alarm_auc",
)
PREFIXES = ("test/", "val/", "")  # train.py: test/ (tested) and val/; evaluate.py: none


def _job_folders(sweep_dir: Path) -> list[Path]:
    jobs = [p for p in sweep_dir.iterdir() if p.is_dir() and (p / ".hydra" / "overrides.yaml").is_file()]
    return sorted(jobs, key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name))


def _overrides(job: Path) -> dict[str, str]:
    listed = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()) or []
    return dict(item.split("=", 1) for item in listed if "=" in item and not item.startswith("hydra."))


def _metric_columns(metrics: list[dict[str, float]]) -> list[str]:
    present = set().union(*metrics) if metrics else set()
    for prefix in PREFIXES:  # the first prefix any job has: one split per table
        columns = [prefix + name for name in KEY_METRICS if prefix + name in present]
        if columns:
            return columns
    return []


def sweep_rows(sweep_dir: str | Path) -> tuple[list[str], list[dict[str, Any]]]:
    """The summary's columns and rows (one per job folder of ``sweep_dir``)."""
    jobs = _job_folders(Path(sweep_dir))
    settings = [_overrides(job) for job in jobs]
    keys = sorted({k for s in settings for k in s})
    swept = [k for k in keys if len({s.get(k) for s in settings}) > 1]
    metrics = [
        json.loads((job / "metrics.json").read_text()) if (job / "metrics.json").is_file() else {}
        for job in jobs
    ]
    columns = ["job", *swept, *_metric_columns([m for m in metrics if m]), "status"]
    rows = []
    for job, setting, figures in zip(jobs, settings, metrics, strict=True):
        row: dict[str, Any] = {"job": job.name, **{k: setting.get(k, "") for k in swept}}
        for column in columns[1 + len(swept) : -1]:
            value = figures.get(column)
            row[column] = "" if value is None else f"{value:.4f}"
        row["status"] = "done" if figures else "no metrics.json (failed or stopped)"
        rows.append(row)
    return columns, rows


def write_sweep_summary(sweep_dir: str | Path) -> Path | None:
    """``summary.csv`` and ``summary.md`` in ``sweep_dir``; returns the markdown's path (None: no job)."""
    sweep_dir = Path(sweep_dir)
    columns, rows = sweep_rows(sweep_dir)
    if not rows:
        return None
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(sweep_dir / "summary.csv", buffer.getvalue())
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row[c]) for c in columns) + " |" for row in rows]
    path = sweep_dir / "summary.md"
    write_text_atomic(path, "\n".join(lines) + "\n")
    return path


class SweepSummary(Callback):
    """Hydra callback: the sweep's summary table when a multirun ends."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        path = write_sweep_summary(config.hydra.sweep.dir)
        if path is not None:
            log.info("sweep summary: %s\n%s", path, path.read_text())
