"""Failures provoked for real in real training runs: each must end with a clear error, never hang.

A DDP rank that raises, a DataLoader worker killed with SIGKILL, W&B without credentials, and a
data set with a truncated image, a missing image, a negative box and an unknown category. Every
subprocess runs under a timeout (its whole process group is killed when it runs out) and every
in-process run under a watchdog, so a hang is a test failure, not a stuck suite.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import re
import shutil
import signal
import time
from pathlib import Path

import pytest

from dfss.config import compose_config
from dfss.train import DataWorkerDiedError, run
from tests.helpers.cli import cli_env, train_cli
from tests.helpers.data import tiny_train_overrides

pytestmark = pytest.mark.integration  # every test here trains or runs train.py

ROOT = Path(__file__).parents[1]
HELPERS = "tests.helpers.failures"
TRAIN_TIMEOUT_S = 180  # a tiny run takes 10-20 s on 2 CPU cores; anything near this is a hang


def _tiny(root: Path, extra: list[str] = ()) -> list[str]:
    """The demo student shrunk to seconds on a CPU."""
    small = [
        "experiment=demo_student",
        "model.net.fpn_channels=32",
        "trainer.limit_val_batches=1",
        "test=false",
    ]
    return tiny_train_overrides(root, [*small, *extra])


# ---- watchdogs ---------------------------------------------------------------------------------
class Hung(Exception):
    """Raised by the watchdog in the main thread when an in-process run outlives its deadline."""


@contextlib.contextmanager
def _deadline(seconds: float):
    """Raise :class:`Hung` in the main thread after ``seconds`` (SIGALRM), and, should the main thread
    be stuck where Python cannot run a handler, dump the stacks and end pytest a minute later."""
    import faulthandler

    def on_alarm(signum, frame):
        raise Hung(f"still running after {seconds} s: the failure did not end the run")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    faulthandler.dump_traceback_later(seconds + 60, exit=True)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        faulthandler.cancel_dump_traceback_later()
        signal.signal(signal.SIGALRM, previous)


# ---- processes ---------------------------------------------------------------------------------
def _proc_table() -> dict[int, tuple[int, str, str]]:
    """pid -> (parent pid, state, command line) of every process visible in /proc."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # it ended while we looked
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        table[int(entry.name)] = (int(ppid), state, cmdline)
    return table


def _live_descendants(pid: int | None = None) -> dict[int, str]:
    """Living (not zombie) descendants of ``pid`` (default: this process): pid -> command line."""
    table = _proc_table()
    found, frontier = {}, [pid or os.getpid()]
    while frontier:
        parent = frontier.pop()
        for child, (ppid, state, cmdline) in table.items():
            if ppid == parent and child not in found:
                frontier.append(child)
                if state not in ("Z", "X"):
                    found[child] = cmdline
    return found


def _wait_until(condition, seconds: float = 10.0) -> bool:
    """Poll ``condition()`` (a short grace for the OS to reap what was just killed)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.2)
    return bool(condition())


def _is_helper(cmdline: str) -> bool:
    """multiprocessing's own session-long helper (not a rank, not a worker)."""
    return "resource_tracker" in cmdline or "forkserver" in cmdline


# ---- 1. DDP: one rank raises -------------------------------------------------------------------
def test_ddp_spawn_rank_failure_reaches_the_caller_and_leaves_no_process(synth_tiny, tmp_path):
    """trainer=ddp_sim (2 CPU processes, ddp_spawn): rank 1 raises at its 2nd batch while rank 0 goes
    on into the gradient all-reduce. The error must reach the caller of run(), with rank 1's message,
    and neither rank may outlive the call."""
    from torch.multiprocessing import ProcessRaisedException

    before = set(_live_descendants())
    overrides = _tiny(
        synth_tiny,
        [
            "trainer=ddp_sim",
            "trainer.limit_train_batches=3",
            f"+callbacks.fail._target_={HELPERS}.FailOnRank",
            "+callbacks.fail.rank=1",
        ],
    )
    cfg = compose_config("train", overrides, tmp_path)
    start = time.monotonic()
    with (
        _deadline(TRAIN_TIMEOUT_S),
        pytest.raises(ProcessRaisedException, match=r"RuntimeError: injected failure on rank 1") as raised,
    ):
        run(cfg)
    elapsed = time.monotonic() - start
    assert raised.value.error_index == 1, f"the error is attributed to rank {raised.value.error_index}"
    assert elapsed < TRAIN_TIMEOUT_S
    assert _wait_until(lambda: not multiprocessing.active_children()), multiprocessing.active_children()

    def leftover():
        return {p: c for p, c in _live_descendants().items() if p not in before and not _is_helper(c)}

    assert _wait_until(lambda: not leftover()), f"processes left alive after the failed run: {leftover()}"


def test_ddp_script_rank_failure_exits_nonzero_with_the_message(synth_tiny, tmp_path):
    """trainer.strategy=ddp: Lightning re-runs train.py for rank 1; rank 1 raises at its 2nd batch.
    The command must exit non-zero within the timeout, show rank 1's error, and leave no rank behind
    (every process of the run carries the run folder on its command line)."""
    run_dir = tmp_path / "run"
    overrides = _tiny(
        synth_tiny,
        [
            "trainer=ddp_sim",
            "trainer.strategy=ddp",
            "trainer.limit_train_batches=3",
            f"+callbacks.fail._target_={HELPERS}.FailOnRank",
            "+callbacks.fail.rank=1",
            f"hydra.run.dir={run_dir}",
            f"paths.log_dir={tmp_path / 'logs'}",
        ],
    )
    start = time.monotonic()
    returncode, output = train_cli(overrides, tmp_path, cli_env(WANDB_MODE="offline"))
    elapsed = time.monotonic() - start
    assert returncode != 0, output[-4000:]
    assert "RuntimeError: injected failure on rank 1" in output, output[-4000:]
    assert elapsed < TRAIN_TIMEOUT_S

    def ranks_alive():
        return {p: c for p, c in _proc_table().items() if str(run_dir) in c[2] and c[1] not in ("Z", "X")}

    assert _wait_until(lambda: not ranks_alive()), f"ranks left alive: {ranks_alive()}"


# ---- 2. a DataLoader worker dies ---------------------------------------------------------------
def test_killed_dataloader_worker_stops_training_with_its_pid(synth_tiny, tmp_path):
    """data.num_workers=2; at the 2nd training batch one worker gets a real SIGKILL. The run must
    stop with an error naming the DataLoader worker and its pid, saying the likely cause and what to
    change, and leave no worker behind."""
    pid_file = tmp_path / "killed.pid"
    overrides = _tiny(
        synth_tiny,
        [
            "data.num_workers=2",
            "trainer.limit_train_batches=3",
            # The workers (persistent) may have made the whole first epoch's batches before the kill,
            # when the main process is slow; the second epoch asks the dead one for more in any case.
            "trainer.max_epochs=2",
            "++trainer.num_sanity_val_steps=0",  # only the training loader's workers exist
            f"+callbacks.kill._target_={HELPERS}.KillDataLoaderWorker",
            f"+callbacks.kill.pid_file={pid_file}",
        ],
    )
    cfg = compose_config("train", overrides, tmp_path)
    start = time.monotonic()
    with _deadline(120), pytest.raises(DataWorkerDiedError, match=r"DataLoader worker") as raised:
        run(cfg)
    elapsed = time.monotonic() - start
    pid = int(pid_file.read_text())
    assert re.search(rf"DataLoader worker \(pid(\(s\))? [\d, ]*\b{pid}\b", str(raised.value)), str(
        raised.value
    )
    assert "running out of memory" in str(raised.value) and "lower data.num_workers" in str(raised.value)
    assert elapsed < 120
    assert _wait_until(lambda: not multiprocessing.active_children()), multiprocessing.active_children()


# ---- 3. W&B without credentials ----------------------------------------------------------------
def test_wandb_without_credentials_falls_back_to_offline(synth_tiny, tmp_path):
    """logger=wandb with no API key, no ~/.netrc and no WANDB_MODE: the run must not ask for a login
    nor hang; it logs offline into the run folder and says so in the run's log."""
    home, run_dir = tmp_path / "home", tmp_path / "run"
    home.mkdir()
    env = cli_env(
        HOME=str(home),
        WANDB_DIR=str(tmp_path / "wandb_dir"),
        NETRC=None,
        XDG_CONFIG_HOME=None,
        XDG_CACHE_HOME=None,
    )
    for key in [k for k in env if k.startswith("WANDB_") and k != "WANDB_DIR"]:
        env.pop(key)  # WANDB_MODE, WANDB_API_KEY, and any other account setting
    (tmp_path / "wandb_dir").mkdir()
    overrides = _tiny(
        synth_tiny, ["logger=wandb", f"hydra.run.dir={run_dir}", f"paths.log_dir={tmp_path / 'logs'}"]
    )
    returncode, output = train_cli(overrides, tmp_path, env)
    assert returncode == 0, output[-4000:]
    offline = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline) == 1, sorted(p.name for p in (run_dir / "wandb").glob("*"))
    assert list(offline[0].glob("run-*.wandb")), "no W&B run file written"
    assert not list((run_dir / "wandb").glob("run-*")), "an online W&B run was started"
    log_text = (run_dir / "train.log").read_text()
    assert re.search(r"(?i)(w&b|wandb).*offline", log_text), (
        f"train.log does not say W&B went offline:\n{log_text}"
    )
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()


# ---- 4. bad data -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def broken_data(synth_tiny, tmp_path_factory) -> dict:
    """A copy of synth_tiny whose training split has, for real: a file truncated to half its bytes, a
    deleted file, an annotation with a negative box width and one with an unknown category id."""
    root = tmp_path_factory.mktemp("broken") / "data"
    shutil.copytree(synth_tiny, root)
    ann_path = root / "annotations" / "train.json"
    data = json.loads(ann_path.read_text())
    images = sorted(data["images"], key=lambda img: img["id"])
    truncated, deleted = images[2], images[4]
    image_dir = root / "images" / "train"
    blob = (image_dir / truncated["file_name"]).read_bytes()
    (image_dir / truncated["file_name"]).write_bytes(blob[: len(blob) // 2])
    (image_dir / deleted["file_name"]).unlink()
    bad_ids = {truncated["id"], deleted["id"]}
    intact = [a for a in data["annotations"] if a["image_id"] not in bad_ids]
    negative = next(a for a in intact)
    unknown = next(a for a in intact if a["image_id"] != negative["image_id"])
    negative["bbox"][2] = -abs(negative["bbox"][2]) - 1.0
    unknown_category = max(c["id"] for c in data["categories"]) + 1000
    unknown["category_id"] = unknown_category
    ann_path.write_text(json.dumps(data))
    return {
        "root": root,
        "truncated": truncated,
        "deleted": deleted,
        "negative": negative,
        "unknown": unknown,
        "unknown_category": unknown_category,
        "num_images": len(images),
        "num_annotations": len(data["annotations"]),
        "num_annotations_on_bad_images": len(data["annotations"]) - len(intact),
    }


def test_bad_data_fails_before_training_naming_every_problem(broken_data, tmp_path):
    """data.on_error=fail (default): the command exits non-zero before any training step, and its
    output names each problem: both image files with their ids, both annotations with theirs."""
    run_dir = tmp_path / "run"
    overrides = _tiny(broken_data["root"], [f"hydra.run.dir={run_dir}", f"paths.log_dir={tmp_path / 'logs'}"])
    returncode, output = train_cli(overrides, tmp_path, cli_env(WANDB_MODE="offline"))
    assert returncode != 0, output[-4000:]
    truncated, deleted = broken_data["truncated"], broken_data["deleted"]
    negative, unknown = broken_data["negative"], broken_data["unknown"]
    expected = {
        "truncated file": rf"{re.escape(truncated['file_name'])}\W+\(?image id {truncated['id']}\b",
        "deleted file": rf"{re.escape(deleted['file_name'])}\W+\(?image id {deleted['id']}\b",
        "negative-width box": rf"annotation id {negative['id']} \(image id {negative['image_id']}\b"
        rf".*{re.escape(str(negative['bbox'][2]))}",
        "unknown category": rf"annotation id {unknown['id']} \(image id {unknown['image_id']}\b"
        rf".*category id {broken_data['unknown_category']}\b",
    }
    missing = [what for what, pattern in expected.items() if not re.search(pattern, output)]
    assert not missing, f"the error does not name: {missing}\n{output[-4000:]}"
    assert "on_error=skip" in output, "the error does not say how to go on"
    assert not list(run_dir.rglob("*.ckpt")), "training ran despite the bad data"
    assert not list(run_dir.rglob("metrics.csv")), "training ran despite the bad data"


def test_bad_data_is_skipped_with_a_report_and_training_completes(broken_data, tmp_path):
    """data.on_error=skip: training completes on what is left, and the run folder holds
    data_report_train.json listing exactly the four problems, each with its file and ids."""
    run_dir = tmp_path / "run"
    overrides = _tiny(
        broken_data["root"],
        ["data.on_error=skip", f"hydra.run.dir={run_dir}", f"paths.log_dir={tmp_path / 'logs'}"],
    )
    returncode, output = train_cli(overrides, tmp_path, cli_env(WANDB_MODE="offline"))
    assert returncode == 0, output[-4000:]
    assert (run_dir / "checkpoints" / "last.ckpt").is_file(), "training did not complete"
    assert list(run_dir.rglob("metrics.csv")), "training did not log"
    report_path = run_dir / "data_report_train.json"
    assert report_path.is_file(), sorted(p.name for p in run_dir.iterdir())
    report = json.loads(report_path.read_text())
    truncated, deleted = broken_data["truncated"], broken_data["deleted"]
    negative, unknown = broken_data["negative"], broken_data["unknown"]
    found = {
        (
            p["kind"],
            Path(p["file"]).name if p["image_id"] in (truncated["id"], deleted["id"]) else None,
            p["image_id"],
            p["ann_id"],
        )
        for p in report["problems"]
    }
    assert found == {
        ("unreadable_image", truncated["file_name"], truncated["id"], None),
        ("missing_image", deleted["file_name"], deleted["id"], None),
        ("degenerate_box", None, negative["image_id"], negative["id"]),
        ("unknown_category", None, unknown["image_id"], unknown["id"]),
    }
    assert report["on_error"] == "skip"
    assert report["num_images"] == broken_data["num_images"]
    assert report["num_images_kept"] == broken_data["num_images"] - 2
    assert report["num_annotations_kept"] == (
        broken_data["num_annotations"] - broken_data["num_annotations_on_bad_images"] - 2
    )
    # Skipping is never silent: the run's output names what was dropped.
    for name in (truncated["file_name"], deleted["file_name"]):
        assert name in output, f"{name} dropped without a word in the run's output"
