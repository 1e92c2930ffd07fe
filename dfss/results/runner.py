"""Run a results plan: generate the data if missing, train every run, evaluate, re-score for T.

Layout of ``<out>``::

    index.json                     the plan, the data set's synth.yaml, every run and its timings
    <run>/                         a train.py run folder (checkpoints/, metrics.json,
                                   metrics_history.jsonl, csv/)
    <run>/eval/                    evaluate.py of checkpoints/last.ckpt on the test split
                                   (metrics.json, per_class.csv, pr_curves.json, roc.json,
                                   predictions.json)
    <run>/eval_T<T>/               the same checkpoint re-scored with the unknown rule at T

The job is resumable: a run whose ``metrics.json`` exists is not trained again, one with a
``checkpoints/last.ckpt`` continues from it (``ckpt_path``), and an evaluation folder with a
``metrics.json`` is kept. Run it again after an interruption and it picks up where it stopped.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import yaml

from dfss.config import compose_config
from dfss.errors import ConfigError
from dfss.eval.predict import describe_device
from dfss.results.plan import Plan, RunSpec, expand

log = logging.getLogger(__name__)
LAST = Path("checkpoints") / "last.ckpt"


def eval_dir_name(T: float | None = None) -> str:
    return "eval" if not T else f"eval_T{T:g}"


def ensure_data(plan: Plan, workers: int = 2) -> Path:
    """The plan's synthetic set, generated with its preset when it is not there yet."""
    from dfss.synth.config import load_preset
    from dfss.synth.writer import generate

    root = Path(plan.data_dir)
    if (root / "annotations" / "test.json").is_file():
        saved = yaml.safe_load((root / "synth.yaml").read_text()) if (root / "synth.yaml").is_file() else None
        wanted = load_preset(plan.synth_preset).to_yaml_dict()
        if saved is not None and saved != wanted:
            raise ConfigError(
                f"{root} holds a synthetic set made with other settings than the preset "
                f"{plan.synth_preset!r} (compare {root / 'synth.yaml'}); remove it or pass another --data-dir"
            )
        return root
    log.info("generating the %s synthetic set in %s", plan.synth_preset, root)
    generate(load_preset(plan.synth_preset), root, workers=workers)
    return root


def _train(spec: RunSpec, run_dir: Path, out: Path) -> None:
    from dfss.train import run as train

    overrides = [f"experiment={spec.experiment}", *spec.overrides, "test=false"]
    if spec.teacher is not None:
        overrides.append(f"teacher.ckpt_path={out / spec.teacher / LAST}")
    if (run_dir / LAST).is_file():
        log.info("%s: resuming from %s", spec.name, run_dir / LAST)
        overrides.append(f"ckpt_path={run_dir / LAST}")
    train(compose_config("train", overrides, run_dir))


def _evaluate(plan: Plan, ckpt: Path, eval_dir: Path, T: float | None) -> dict[str, float]:
    from dfss.evaluate import run as evaluate

    threshold = ["threshold=none"] if not T else ["threshold=unknown", f"threshold.T={T:g}"]
    return evaluate(compose_config("eval", [*plan.eval, f"ckpt_path={ckpt}", *threshold], eval_dir))


def check_accelerator(plan: Plan, specs: list[RunSpec]) -> None:
    """Refuse a GPU plan on a machine without one before anything is generated or trained."""
    if torch.cuda.is_available():
        return
    # A stage's runs differ only in seed, alpha or loss option: one config per stage says its trainer.
    first_of_stage: dict[str, RunSpec] = {}
    for spec in specs:
        first_of_stage.setdefault(spec.role, spec)
    for spec in first_of_stage.values():
        cfg = compose_config("train", [f"experiment={spec.experiment}", *spec.overrides], "unused")
        if str(cfg.trainer.get("accelerator")) in ("gpu", "cuda"):
            raise ConfigError(
                f"plan {plan.name!r} trains on a GPU ({spec.name}: trainer.accelerator={cfg.trainer.accelerator}) "
                "and this machine has none; run the CPU plan instead: dfss-results --plan cpu (make results PLAN=cpu)"
            )


def environment() -> dict[str, Any]:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return {
        "torch": torch.__version__,
        "device": describe_device(device),
        "cuda": torch.cuda.is_available(),
        "cpu_threads": torch.get_num_threads(),
        "python": platform.python_version(),
    }


def run_plan(
    plan: Plan,
    out: str | Path,
    *,
    only: Callable[[RunSpec], bool] | None = None,
    synth_workers: int = 2,
) -> dict[str, Any]:
    """Every run of ``plan`` (or those ``only`` keeps), evaluated; returns and writes ``index.json``."""
    out = Path(out).resolve()
    specs = [s for s in expand(plan) if only is None or only(s)]
    check_accelerator(plan, specs)
    out.mkdir(parents=True, exist_ok=True)
    data_root = ensure_data(plan, synth_workers)
    index_path = out / "index.json"
    index: dict[str, Any] = json.loads(index_path.read_text()) if index_path.is_file() else {}
    if index.get("plan", {}).get("name", plan.name) != plan.name:
        raise ConfigError(f"{out} holds the results of plan {index['plan']['name']!r}; use another folder")
    index.update(
        plan=plan.to_dict(),
        synth=yaml.safe_load((data_root / "synth.yaml").read_text())
        if (data_root / "synth.yaml").is_file()
        else None,
        environment=environment(),
    )
    index.setdefault("started", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    runs: dict[str, dict[str, Any]] = index.setdefault("runs", {})
    sweep_names = {
        s.name for s in specs if s.role in ("weighted", "distill") and s.alpha == plan.unknown_alpha
    }
    for number, spec in enumerate(specs, start=1):
        run_dir = out / spec.name
        entry = runs.setdefault(spec.name, {})
        entry.update(asdict(spec), dir=spec.name)
        log.info("[%d/%d] %s: experiment=%s %s", number, len(specs), spec.name, spec.experiment,
                 " ".join(spec.overrides))  # fmt: skip
        if spec.teacher is not None and not (out / spec.teacher / LAST).is_file():
            raise ConfigError(f"{spec.name} distils from {spec.teacher}, which has no {LAST} in {out}")
        if not (run_dir / "metrics.json").is_file():
            start = time.perf_counter()
            _train(spec, run_dir, out)
            entry["seconds_train"] = entry.get("seconds_train", 0.0) + time.perf_counter() - start
        thresholds: list[float | None] = [None]
        if spec.name in sweep_names:
            thresholds += list(plan.unknown_T)
        evals = entry.setdefault("evals", {})
        for T in thresholds:
            eval_dir = run_dir / eval_dir_name(T)
            if not (eval_dir / "metrics.json").is_file():
                start = time.perf_counter()
                _evaluate(plan, run_dir / LAST, eval_dir, T)
                entry[f"seconds_{eval_dir.name}"] = time.perf_counter() - start
            evals[f"{T or 0:g}"] = eval_dir.name
        index_path.write_text(json.dumps(index, indent=2))  # after every run: a crash loses nothing
    index["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    index_path.write_text(json.dumps(index, indent=2))
    return index
