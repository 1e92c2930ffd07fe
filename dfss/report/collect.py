"""Read a ``dfss-results`` folder: every run's evaluation, per-class AP, PR curves, learning curve
and T sweep, and the mean and spread over seeds of any figure."""

from __future__ import annotations

import csv
import json
import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dfss.errors import UserError
from dfss.lit.callbacks import read_metrics_history


class ResultsError(UserError):
    """A results folder that is missing or incomplete."""


@dataclass(frozen=True)
class Run:
    name: str
    role: str
    seed: int
    alpha: float
    variant: str | None
    folder: Path
    metrics: dict[str, float]  # the test split, no unknown rule
    per_class: tuple[dict[str, Any], ...]
    pr50: dict[str, tuple[float, ...]]
    history: tuple[dict[str, float], ...]  # val metrics per epoch
    sweep: dict[float, dict[str, float]] = field(default_factory=dict)  # T -> test metrics with the rule
    sweep_pr50: dict[float, dict[str, tuple[float, ...]]] = field(default_factory=dict)
    seconds_train: float = math.nan
    roc: dict[str, Any] | None = None  # the image alarm's ROC (roc.json: fpr, tpr, thresholds)
    eval_folders: dict[float, Path] = field(default_factory=dict)  # T (0: no rule) -> evaluation folder


@dataclass(frozen=True)
class Pending:
    """A run of the plan that has not finished (not begun, or stopped before its evaluation)."""

    name: str
    role: str
    seed: int


@dataclass(frozen=True)
class Stat:
    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values) if self.values else math.nan

    @property
    def std(self) -> float:  # sample standard deviation over seeds; nan for one seed
        return statistics.stdev(self.values) if self.n > 1 else math.nan

    def fmt(self, digits: int = 3) -> str:
        if not self.values:
            return "-"
        if self.n == 1:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f}"


def stat(runs: Iterable[Run], key: str, T: float | None = None) -> Stat:
    """``key`` of each run (of its re-scoring at ``T``), nan values left out."""
    values = []
    for run in runs:
        metrics = run.metrics if not T else run.sweep.get(T, {})
        value = metrics.get(key, math.nan)
        if value is not None and not math.isnan(value):
            values.append(float(value))
    return Stat(tuple(values))


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ResultsError(f"{path} is missing: rerun dfss-results to finish this run") from None
    except json.JSONDecodeError as error:
        raise ResultsError(f"{path}: not valid json ({error})") from None


def _per_class(path: Path) -> tuple[dict[str, Any], ...]:
    rows = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            rows.append({k: (v if k in ("name", "supercategory") else float(v)) for k, v in row.items()})
    return tuple(rows)


def _curves(path: Path) -> dict[str, tuple[float, ...]]:
    return {k: tuple(v) for k, v in read_json(path)["precision50"].items()}


@dataclass(frozen=True)
class Results:
    folder: Path
    index: dict[str, Any]
    runs: tuple[Run, ...]
    pending: tuple[Pending, ...] = ()  # runs of the plan not finished yet (a report with ``partial``)

    @property
    def plan(self) -> dict[str, Any]:
        return self.index["plan"]

    def arm(self, role: str, *, alpha: float | None = None, variant: str | None = None) -> list[Run]:
        """The runs (one per seed) of an experiment arm; ``alpha=1`` of the weighted sweep is ``distill``."""
        if role == "weighted" and alpha == 1.0:
            return self.arm("distill")
        return [
            r
            for r in self.runs
            if r.role == role
            and (alpha is None or r.alpha == alpha)
            and (variant is None or r.variant == variant)
        ]

    @property
    def alphas(self) -> list[float]:
        return [1.0, *self.plan["stages"]["weighted"]["alphas"]]

    @property
    def variants(self) -> list[str]:
        return list(self.plan["stages"]["ablation"]["options"])

    @property
    def unknown_T(self) -> list[float]:
        return [0.0, *self.plan["unknown_T"]]

    @property
    def sweep_runs(self) -> list[Run]:
        return [r for r in self.runs if r.sweep]


def load_results(folder: str | Path, partial: bool = False) -> Results:
    """Every run of ``folder``'s ``index.json``; with ``partial``, the finished ones, and the plan's
    others in ``Results.pending`` (a plan still under way), else a run not finished is an error."""
    folder = Path(folder)
    index = read_json(folder / "index.json")
    runs, pending = [], []
    for name, entry in index.get("runs", {}).items():
        run_dir = folder / entry["dir"]
        evals = entry.get("evals", {})
        if "0" not in evals:
            if partial:
                pending.append(Pending(name, entry["role"], int(entry["seed"])))
                continue
            raise ResultsError(
                f"run {name} in {folder} has no evaluation yet: rerun dfss-results "
                "(or report the finished runs alone with --partial)"
            )
        main = run_dir / evals["0"]
        sweep, sweep_pr50 = {}, {}
        for T, sub in evals.items():
            if float(T) > 0:
                sweep[float(T)] = read_json(run_dir / sub / "metrics.json")
                sweep_pr50[float(T)] = _curves(run_dir / sub / "pr_curves.json")
        history_path = run_dir / "metrics_history.jsonl"
        runs.append(
            Run(
                name=name,
                role=entry["role"],
                seed=int(entry["seed"]),
                alpha=float(entry.get("alpha", 1.0)),
                variant=entry.get("variant"),
                folder=run_dir,
                metrics=read_json(main / "metrics.json"),
                per_class=_per_class(main / "per_class.csv"),
                pr50=_curves(main / "pr_curves.json"),
                history=tuple(read_metrics_history(history_path)) if history_path.is_file() else (),
                sweep=sweep,
                sweep_pr50=sweep_pr50,
                seconds_train=float(entry.get("seconds_train", math.nan)),
                roc=read_json(main / "roc.json") if (main / "roc.json").is_file() else None,
                eval_folders={float(T): run_dir / sub for T, sub in evals.items()},
            )
        )
    if partial:  # and the plan's runs that no invocation has begun yet
        known = set(index.get("runs", {}))
        pending += [Pending(**p) for p in index.get("plan_runs", []) if p["name"] not in known]
    if not runs:
        what = "no finished runs" if pending else "no runs"
        raise ResultsError(f"{folder / 'index.json'} lists {what}: run dfss-results first")
    return Results(folder, index, tuple(runs), tuple(pending))
