"""Run a results plan: generate the data if missing, train every run, evaluate, re-score for T.

Layout of ``<out>``::

    index.json                     the plan, the data set's synth.yaml, every run and its timings
    <run>/                         a train.py run folder (checkpoints/, metrics.json,
                                   metrics_history.jsonl, csv/)
    <run>/eval/                    evaluate.py of checkpoints/last.ckpt on the test split
                                   (metrics.json, per_class.csv, pr_curves.json, roc.json,
                                   predictions.json)
    <run>/eval_T<T>/               the same checkpoint re-scored with the unknown rule at T
    teacher_s<seed>/weights.pt     the teacher's EMA weights in float16 (+ .sha256): what every
                                   student distils from (``teacher.ckpt_path``); small enough to commit
    logs/<run>.log                 with ``jobs > 1``: what that run's process printed (and, for
                                   a run that failed, ``<run>.job.json``: what it was given)

The job is resumable: a run whose ``metrics.json`` exists is not trained again, one with a
``checkpoints/last.ckpt`` continues from it (``ckpt_path``), and an evaluation folder with a
``metrics.json`` is kept. Run it again after an interruption and it picks up where it stopped.

With ``jobs > 1`` the runs are trained side by side, each in its own process (small 320 px runs
leave most of a big GPU idle, so several at once finish the plan sooner): a run starts as soon as a
slot is free and its teacher run has finished. A process that fails stops nothing else; its name,
exit status and log file are reported at the end, and so are the runs that needed it.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import yaml
from lightning.pytorch.utilities.exceptions import SIGTERMException

from dfss.config import compose_config
from dfss.device import describe_device
from dfss.errors import ConfigError, UserError, exit_on_user_error
from dfss.fileio import write_text_atomic
from dfss.precision import native_bf16
from dfss.results.plan import Plan, RunSpec, expand

if TYPE_CHECKING:
    from dfss.synth.config import SynthConfig

log = logging.getLogger(__name__)
LAST = Path("checkpoints") / "last.ckpt"
# A finished teacher run's EMA weights in float16 (dfss.models.release, with its .sha256): what its
# students distil from, and small enough to commit, so that a plan whose folder is committed
# without checkpoints can train its remaining students on another machine. Runs of the plan's other
# release roles leave the same file: weights to ship, whatever machine trained them.
TEACHER_WEIGHTS = RELEASE_WEIGHTS = Path("weights.pt")
STOPPED_PARTS = Path("stopped_parts.json")  # the training time and machine of each stopped part of a run
# A finished training's time and machines (and whether it began from scratch), kept until the run's
# evaluations are done and its result handed over: an evaluation that fails loses none of it.
TRAINED = Path("trained.json")


def teacher_checkpoint(out: Path, teacher: str) -> Path:
    """What a student distils from: the teacher run's ``weights.pt``, else (a plan begun before
    teachers wrote one) its ``last.ckpt``."""
    weights = out / teacher / TEACHER_WEIGHTS
    return weights if weights.is_file() else out / teacher / LAST


def write_release_weights(run_dir: Path) -> Path:
    """``<run>/weights.pt`` from the finished run's ``last.ckpt``."""
    from dfss.models.checkpoints import read_checkpoint
    from dfss.models.release import release_checkpoint, write_release

    path = run_dir / RELEASE_WEIGHTS
    released = release_checkpoint(read_checkpoint(run_dir / LAST), source=str(run_dir / LAST))
    sha = write_release(released, path)
    log.info("%s: release weights %s (sha256 %s)", run_dir.name, path, sha)
    return path


def eval_dir_name(T: float | None = None) -> str:
    return "eval" if not T else f"eval_T{T:g}"


def ensure_data(plan: Plan, workers: int = 2) -> Path:
    """The plan's synthetic set, generated with its preset when it is not there yet."""
    from dfss.synth.config import load_preset

    return ensure_synth_set(
        load_preset(plan.synth_preset), Path(plan.data_dir), f"the preset {plan.synth_preset!r}", workers
    )


def ensure_synth_set(config: SynthConfig, root: Path, name: str, workers: int = 2) -> Path:
    """The synthetic set ``config`` describes in ``root``: generated when it is not there yet, a
    :class:`ConfigError` when ``root`` holds one made with other settings (``name`` says which)."""
    from dfss.synth.writer import generate

    if (root / "annotations" / "test.json").is_file():
        saved = yaml.safe_load((root / "synth.yaml").read_text()) if (root / "synth.yaml").is_file() else None
        if saved is not None and saved != config.to_yaml_dict():
            raise ConfigError(
                f"{root} holds a synthetic set made with other settings than {name} "
                f"(compare {root / 'synth.yaml'}); remove it or pass another --data-dir"
            )
        return root
    log.info("generating the synthetic set of %s in %s", name, root)
    generate(config, root, workers=workers)
    return root


# A run in a process of its own prints to a log file: no live progress bar there.
QUIET = ("~callbacks.rich_progress_bar", "trainer.enable_progress_bar=false")


def _train(spec: RunSpec, run_dir: Path, out: Path, quiet: bool = False) -> None:
    from dfss.train import run as train

    overrides = [f"experiment={spec.experiment}", *spec.overrides, "test=false", *(QUIET if quiet else ())]
    if spec.teacher is not None:
        overrides.append(f"teacher.ckpt_path={teacher_checkpoint(out, spec.teacher)}")
    if (run_dir / LAST).is_file():
        log.info("%s: resuming from %s", spec.name, run_dir / LAST)
        overrides.append(f"ckpt_path={run_dir / LAST}")
    train(compose_config("train", overrides, run_dir))


def evaluate_checkpoint(eval_overrides, ckpt: Path, eval_dir: Path, T: float | None) -> dict[str, float]:
    """`evaluate.py` of ``ckpt`` into ``eval_dir`` with the plan's eval overrides and the unknown rule
    at T."""
    from dfss.evaluate import run as evaluate

    threshold = ["threshold=none"] if not T else ["threshold=unknown", f"threshold.T={T:g}"]
    return evaluate(compose_config("eval", [*eval_overrides, f"ckpt_path={ckpt}", *threshold], eval_dir))


class RunFailed(UserError):
    """Some runs of a parallel plan failed; the message names each with its exit status and log."""


def run_one(
    eval_overrides: tuple[str, ...] | list[str],
    spec: RunSpec,
    out: Path,
    thresholds: list[float | None],
    quiet: bool = False,
) -> dict[str, Any]:
    """Train ``spec`` (unless done; resuming a cut run) and evaluate it at each T (None: no rule).

    Returns what ``index.json`` keeps of it: seconds spent, the evaluation folder of each T,
    ``from_scratch`` when it trained with no ``last.ckpt`` to resume (its folder new or deleted), and
    ``trained_on``: the machine, its torch threads and whether it trained in bf16 (a plan may span
    machines with and without native bf16). A training whose evaluation fails leaves these in
    ``trained.json``; the call that evaluates the run returns them."""
    run_dir = out / spec.name
    result: dict[str, Any] = {"evals": eval_dirs(thresholds)}
    trained = run_dir / TRAINED
    if not (run_dir / "metrics.json").is_file():
        from_scratch = not (run_dir / LAST).is_file()
        stopped = run_dir / STOPPED_PARTS
        parts = stopped_parts(run_dir)
        start = time.perf_counter()
        try:
            _train(spec, run_dir, out, quiet=quiet)
        except SIGTERMException:  # stopped (the plan's driver, a scheduler): this part's time is kept
            part = {"seconds_train": time.perf_counter() - start, "trained_on": environment()}
            write_text_atomic(stopped, json.dumps([*parts, part], indent=2))
            raise
        seconds = time.perf_counter() - start
        facts = {
            "from_scratch": from_scratch,
            "seconds_train": seconds + sum(p["seconds_train"] for p in parts),
            "trained_on": [*(p["trained_on"] for p in parts), environment()],
        }
        write_text_atomic(trained, json.dumps(facts, indent=2))
        stopped.unlink(missing_ok=True)
    for T in thresholds:
        eval_dir = run_dir / eval_dir_name(T)
        if not (eval_dir / "metrics.json").is_file():
            start = time.perf_counter()
            evaluate_checkpoint(eval_overrides, run_dir / LAST, eval_dir, T)
            result[f"seconds_{eval_dir.name}"] = time.perf_counter() - start
    if (spec.release or spec.role == "teacher") and not (run_dir / RELEASE_WEIGHTS).is_file():
        write_release_weights(run_dir)
    if trained.is_file():  # this call's training, or an earlier one whose evaluation failed
        result.update(json.loads(trained.read_text()))
        trained.unlink()
    return result


def eval_dirs(thresholds: list[float | None]) -> dict[str, str]:
    """``index.json``'s ``evals`` of a run: T (0 = no rule) -> its evaluation folder."""
    return {f"{T or 0:g}": eval_dir_name(T) for T in thresholds}


def is_done(spec: RunSpec, out: Path, thresholds: list[float | None]) -> bool:
    """Trained and evaluated at every T already."""
    run_dir = out / spec.name
    return (run_dir / "metrics.json").is_file() and all(
        (run_dir / eval_dir_name(T) / "metrics.json").is_file() for T in thresholds
    )


def _stop_with_parent() -> None:
    """In a run's process (Linux): SIGTERM when the driver dies, even by SIGKILL, so that no
    orphaned run trains on beside the next invocation (it saves its last.ckpt and stops)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _child_env(jobs: int) -> dict[str, str]:
    """Each of ``jobs`` processes gets its share of the cores for its torch threads (unless
    ``OMP_NUM_THREADS`` is set already)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // jobs)))
    return env


def run_parallel(
    plan: Plan,
    specs: list[RunSpec],
    out: Path,
    thresholds_of: dict[str, list[float | None]],
    jobs: int,
    record: Callable[[RunSpec, dict[str, Any]], None],
    starts: Callable[[RunSpec], bool] = lambda spec: True,
) -> list[str]:
    """Run ``specs`` ``jobs`` at a time, each as ``python -m dfss.results.runner <job.json>``; a run
    waits for its teacher run, and is left for a later invocation when ``starts`` says no (the time
    budget). Returns one line per run that did not finish (empty: all did).

    Stopped (Ctrl-C, SIGTERM), it passes SIGTERM on to the runs in flight, which write their
    ``last.ckpt`` on it (``ResumeCheckpoint``), so that the next invocation continues them."""
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    env = _child_env(jobs)
    waiting = list(specs)
    running: dict[str, tuple[subprocess.Popen, RunSpec, float]] = {}
    failures: dict[str, str] = {}
    done = started = 0

    def blocked(spec: RunSpec) -> bool:  # its teacher run has not finished yet
        return spec.teacher is not None and (
            spec.teacher in running or any(s.name == spec.teacher for s in waiting)
        )

    previous = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        while waiting or running:
            for spec in list(waiting):
                if len(running) >= jobs:
                    break
                if spec.teacher in failures:
                    waiting.remove(spec)
                    failures[spec.name] = f"{spec.name}: not run, its teacher run {spec.teacher} failed"
                    continue
                if blocked(spec):
                    continue
                waiting.remove(spec)
                if is_done(spec, out, thresholds_of[spec.name]):  # from an earlier invocation
                    record(spec, {"evals": eval_dirs(thresholds_of[spec.name])})
                    done += 1
                    continue
                if not starts(spec):
                    continue
                job = logs / f"{spec.name}.job.json"
                job.write_text(
                    json.dumps(
                        {
                            "eval": list(plan.eval),
                            "spec": asdict(spec),
                            "out": str(out),
                            "thresholds": thresholds_of[spec.name],
                            "result": str(logs / f"{spec.name}.result.json"),
                        }
                    )
                )
                with (logs / f"{spec.name}.log").open("a") as log_file:
                    command = [sys.executable, "-m", "dfss.results.runner", str(job)]
                    process = subprocess.Popen(
                        command,
                        stdout=log_file,
                        stderr=subprocess.STDOUT,
                        env=env,
                        preexec_fn=_stop_with_parent,
                    )
                running[spec.name] = (process, spec, time.perf_counter())
                started += 1
                log.info(
                    "[%d/%d] %s started (%d running, log %s): experiment=%s %s",
                    started,
                    len(specs),
                    spec.name,
                    len(running),
                    logs / f"{spec.name}.log",
                    spec.experiment,
                    " ".join(spec.overrides),
                )
            time.sleep(0.5)
            for name, (process, spec, start) in list(running.items()):
                code = process.poll()
                if code is None:
                    continue
                del running[name]
                result_file, log_file = logs / f"{name}.result.json", logs / f"{name}.log"
                if code == 0 and result_file.is_file():
                    record(spec, json.loads(result_file.read_text()))
                    result_file.unlink()
                    (logs / f"{name}.job.json").unlink(missing_ok=True)  # kept only for a failed run
                    done += 1
                    log.info(
                        "%s finished in %.0f s (%d of %d done)",
                        name,
                        time.perf_counter() - start,
                        done,
                        len(specs),
                    )
                else:
                    lines = (
                        log_file.read_text(errors="replace").strip().splitlines()
                        if log_file.is_file()
                        else []
                    )
                    last = f" (last line: {lines[-1].strip()})" if lines else ""
                    failures[name] = f"{name}: exit status {code}, log {log_file}{last}"
                    log.error("%s failed with exit status %s; see %s", name, code, log_file)
    finally:
        for process, spec, _ in running.values():
            log.warning("stopping %s (it saves its last.ckpt; the next invocation continues it)", spec.name)
            process.terminate()
        for process, _, _ in running.values():
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous)
    return [failures[s.name] for s in specs if s.name in failures]


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
                f"plan {plan.name!r} trains on a GPU "
                f"({spec.name}: trainer.accelerator={cfg.trainer.accelerator}) "
                "and this machine has none; run the CPU plan instead: "
                "dfss-results --plan cpu (make results PLAN=cpu)"
            )


def environment() -> dict[str, Any]:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return {
        "torch": torch.__version__,
        "device": describe_device(device),
        "cuda": torch.cuda.is_available(),
        "cpu_threads": torch.get_num_threads(),
        "cpu_native_bf16": native_bf16("cpu"),  # precision auto (trainer=cpu) trains in bf16 where true
        "python": platform.python_version(),
    }


# Runs of these roles cost alike (the same student, distilled): one's time predicts another's.
_COST_CLASS = {
    "teacher": "teacher",
    "student": "student",
    "distill": "kd",
    "weighted": "kd",
    "ablation": "kd",
}


def expected_seconds(runs: dict[str, dict[str, Any]], spec: RunSpec, out: Path | None = None) -> float | None:
    """How long ``spec`` should take, training and evaluations: the longest finished run of its cost
    class in ``index.json``'s ``runs`` (None while none has finished), less the training that its
    stopped parts have done when it will resume from its ``last.ckpt`` in ``out``."""

    def cost(entry: dict[str, Any]) -> float:
        return sum(v for k, v in entry.items() if k.startswith("seconds_"))

    finished = [
        entry
        for entry in runs.values()
        if _COST_CLASS.get(entry.get("role", "")) == _COST_CLASS[spec.role]
        and entry.get("seconds_train", 0) > 0
    ]
    if not finished:
        return None
    longest = max(finished, key=cost)
    if out is None:
        return cost(longest)
    done = sum(part["seconds_train"] for part in stopped_parts(out / spec.name))
    return cost(longest) - min(done, longest["seconds_train"])


def stopped_parts(run_dir: Path) -> list[dict[str, Any]]:
    """The parts of a run stopped before its end (their training time and machine), when it will
    resume from its ``last.ckpt``; none for a run that will start from scratch."""
    stopped = run_dir / STOPPED_PARTS
    if not (run_dir / LAST).is_file() or not stopped.is_file():
        return []
    return json.loads(stopped.read_text())


def run_plan(
    plan: Plan,
    out: str | Path,
    *,
    only: Callable[[RunSpec], bool] | None = None,
    synth_workers: int = 2,
    jobs: int = 1,
    time_budget: float | None = None,
) -> dict[str, Any]:
    """Every run of ``plan`` (or those ``only`` keeps), evaluated; returns and writes ``index.json``.

    ``jobs`` runs at a time, each in its own process when it is above 1 (see the module's note).
    With ``time_budget`` (seconds), a run starts only if it is expected to end within that time of
    the call (:func:`expected_seconds`: a resumed run needs only the rest; a run of a kind none of
    which has finished yet always starts): on a machine lent for a fixed time, no run is begun only
    to be cut off. The runs left are listed in the log and under ``not_started`` in ``index.json``;
    the next call starts them."""
    out = Path(out).resolve()
    specs = [s for s in expand(plan) if only is None or only(s)]
    check_accelerator(plan, specs)
    out.mkdir(parents=True, exist_ok=True)
    data_root = ensure_data(plan, synth_workers)
    index_path = out / "index.json"
    index: dict[str, Any] = json.loads(index_path.read_text()) if index_path.is_file() else {}
    # Runs stopped and resumed count the time of every part (stopped_parts.json); an index begun
    # before that counted only the last part of such a run.
    index.setdefault("counts_stopped_parts", not index)
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
    index.pop("finished", None)  # set again when this invocation completes every run
    runs: dict[str, dict[str, Any]] = index.setdefault("runs", {})
    # Every run of the plan, begun or not (what a report of a plan still under way lists as missing).
    index["plan_runs"] = [{"name": s.name, "role": s.role, "seed": s.seed} for s in expand(plan)]
    sweep_names = {
        s.name for s in specs if s.role in ("weighted", "distill") and s.alpha == plan.unknown_alpha
    }
    thresholds_of = {
        spec.name: [None, *plan.unknown_T] if spec.name in sweep_names else [None] for spec in specs
    }
    planned = {s.name for s in specs}
    for spec in specs:
        runs.setdefault(spec.name, {}).update(asdict(spec), dir=spec.name)
        if (
            spec.teacher is not None
            and spec.teacher not in planned
            and not teacher_checkpoint(out, spec.teacher).is_file()
        ):
            raise ConfigError(
                f"{spec.name} distils from {spec.teacher}, which has no {TEACHER_WEIGHTS} or {LAST} in {out}"
            )

    def record(spec: RunSpec, result: dict[str, Any]) -> None:
        entry = runs[spec.name]
        if result.pop("from_scratch", False):  # a run folder deleted to redo it: its old times go too
            for key in [k for k in entry if k.startswith("seconds_") or k == "trained_on"]:
                del entry[key]
        entry["seconds_train"] = entry.get("seconds_train", 0.0) + result.pop("seconds_train", 0.0)
        entry.setdefault("evals", {}).update(result.pop("evals"))
        if "trained_on" in result:  # one entry per invocation that trained part of the run
            entry.setdefault("trained_on", []).extend(result.pop("trained_on"))
        entry.update(result)
        write_text_atomic(index_path, json.dumps(index, indent=2))  # after every run: a crash loses nothing

    begun, clock = datetime.now(timezone.utc).isoformat(timespec="seconds"), time.perf_counter()
    not_started: list[str] = []

    def starts(spec: RunSpec) -> bool:
        if spec.teacher in not_started:
            not_started.append(spec.name)
            log.warning("%s not started: its teacher run %s was not started", spec.name, spec.teacher)
            return False
        expected = expected_seconds(runs, spec, out)
        if time_budget is None or expected is None:
            return True
        left = time_budget - (time.perf_counter() - clock)
        if expected <= left:
            return True
        not_started.append(spec.name)
        log.warning(
            "%s not started: it would take about %.0f min (its kind's longest finished run, less what "
            "it has trained already) and %.0f min of the time budget are left; the next invocation "
            "starts it",
            spec.name,
            expected / 60,
            max(left, 0) / 60,
        )
        return False

    index.pop("not_started", None)
    try:
        if jobs <= 1:
            for number, spec in enumerate(specs, start=1):
                if not is_done(spec, out, thresholds_of[spec.name]) and not starts(spec):
                    continue
                log.info(
                    "[%d/%d] %s: experiment=%s %s",
                    number,
                    len(specs),
                    spec.name,
                    spec.experiment,
                    " ".join(spec.overrides),
                )
                # A planned teacher ran (or raised) before its students; an unplanned one was checked above.
                record(spec, run_one(plan.eval, spec, out, thresholds_of[spec.name]))
        else:
            failures = run_parallel(plan, specs, out, thresholds_of, jobs, record, starts)
            if failures:
                raise RunFailed(
                    f"{len(failures)} of {len(specs)} runs did not finish (the others are kept; run the "
                    "same command again to retry them):\n  " + "\n  ".join(failures)
                )
        if not_started:
            index["not_started"] = not_started
        else:
            index["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    finally:
        # Wall-clock time of each invocation (with parallel jobs, less than the runs' seconds summed).
        index.setdefault("invocations", []).append(
            {
                "started": begun,
                "seconds": round(time.perf_counter() - clock, 1),
                "jobs": jobs,
                "runs": len(specs),
            }
        )
        write_text_atomic(index_path, json.dumps(index, indent=2))
    return index


def _main(job_file: str) -> None:
    """One run of a parallel plan, in its own process (see :func:`run_parallel`)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    job = json.loads(Path(job_file).read_text())
    # The training and evaluation code, imported now rather than when first called: code changed on
    # disk during a run of hours cannot then meet, at its evaluation, the modules its training loaded.
    import dfss.evaluate
    import dfss.train  # noqa: F401

    fields = job["spec"]
    spec = RunSpec(**{**fields, "overrides": tuple(fields["overrides"])})
    with exit_on_user_error():
        result = run_one(job["eval"], spec, Path(job["out"]), job["thresholds"], quiet=True)
    Path(job["result"]).write_text(json.dumps(result))


if __name__ == "__main__":
    _main(sys.argv[1])
