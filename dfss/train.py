"""Training task: build everything from the Hydra config, fit, test, summarise.

``train.py`` (and the ``dfss-train`` script) is a thin shell around :func:`run`, which tests call
directly with a composed config.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import logging
import math
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra.utils import get_class, instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from dfss import preflight
from dfss.config import data_of, run_hydra_app
from dfss.data.datamodule import XrayDataModule
from dfss.errors import ConfigError, UserError, exit_on_user_error
from dfss.lit.callbacks import ResumeCheckpoint, is_data_worker_death
from dfss.lit.loggers import ensure_wandb_mode, finish_wandb, group_sweep_runs
from dfss.models.checkpoints import load_teacher

log = logging.getLogger(__name__)


def resolve_ckpt_path(ckpt_path: str | None, output_dir: str) -> str | None:
    """``"last"`` -> ``<output_dir>/checkpoints/last.ckpt``, which must then exist."""
    if ckpt_path != "last":
        return ckpt_path
    path = Path(output_dir) / "checkpoints" / "last.ckpt"
    if not path.is_file():
        raise ConfigError(
            f"ckpt_path=last, but {path} does not exist; to resume a run, point Hydra at its folder "
            "(hydra.run.dir=<run folder>) or pass ckpt_path=<path to a .ckpt>"
        )
    return str(path)


def check_writable(folder: str | Path, what: str) -> None:
    """Fail before any work when ``folder`` cannot be created or written to."""
    folder = Path(folder)
    probe = folder / f".dfss-write-test-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as error:
        raise ConfigError(
            f"cannot write the {what} {folder} ({error.strerror or error}); choose a writable folder "
            "(hydra.run.dir=... / paths.log_dir=...)"
        ) from None


def check_output_folders(cfg: DictConfig) -> None:
    check_writable(cfg.paths.output_dir, "run folder")
    for callback in (cfg.get("callbacks") or {}).values():
        if callback and callback.get("dirpath"):
            check_writable(callback.dirpath, "checkpoint folder")


WEIGHT_KEYS = ("weights", "weights_path", "pretrained_backbone")  # a model config's pretrained weights


def refuse_frozen_random_layers(net_cfg: DictConfig, model: nn.Module) -> None:
    """Frozen batch norm and frozen stages are for pretrained weights: a model built without any
    would train with random layers that never learn (frozen BN at its initial statistics is the
    identity). A clear error naming the settings, never a silent run."""
    if any(net_cfg.get(key) for key in WEIGHT_KEYS):
        return
    frozen = [name for name, p in model.named_parameters() if not p.requires_grad]
    frozen_norm = [name for name, m in model.named_modules() if isinstance(m, FrozenBatchNorm2d)]
    if frozen or frozen_norm:
        settings = {k: net_cfg.get(k) for k in ("norm", "trainable_backbone_layers") if k in net_cfg}
        raise ConfigError(
            f"{net_cfg.get('_target_')} without weights would train {len(frozen)} frozen random tensors "
            f"and {len(frozen_norm)} frozen batch norms "
            f"({', '.join(f'{k}={v}' for k, v in settings.items())}): "
            "those are for pretrained weights; leave model.net.norm=auto and "
            "model.net.trainable_backbone_layers=null, or give model.net.weights=<file>"
        )


def build_criterion(cfg: DictConfig, num_classes: int, class_weights: Any) -> Any:
    """The detection criterion, ``loss.criterion`` (the model config picks the one its outputs need;
    run configs from before that key carry it as ``model.criterion``)."""
    node = cfg.loss.get("criterion") or cfg.model.get("criterion")
    if node is None:
        raise ConfigError(
            "no detection criterion: the model config must pick one (loss/criterion/<name>.yaml)"
        )
    target = node._target_
    accepted = set(inspect.signature(get_class(target)).parameters) - {"self", "num_classes", "class_weights"}
    unknown = sorted(set(node) - accepted - {"_target_"})
    if unknown:
        settings = ", ".join(sorted(accepted))
        raise ConfigError(
            f"loss.criterion.{unknown[0]} is not a setting of {target}; its settings: {settings}"
        )
    return instantiate(node, num_classes=num_classes, class_weights=class_weights)


def build_module(cfg: DictConfig, datamodule: Any) -> L.LightningModule:
    """The Lightning module of ``cfg.module`` with its model, criterion, post-processing and teacher."""
    table = datamodule.class_table
    model = instantiate(cfg.model.net, num_classes=table.num_classes)
    refuse_frozen_random_layers(cfg.model.net, model)
    class_weights = table.class_weights(float(cfg.loss.dangerous_weight))
    criterion = build_criterion(cfg, table.num_classes, class_weights)
    postprocess_config = instantiate(cfg.threshold).apply(instantiate(cfg.model.postprocess))
    extra: dict[str, Any] = {}
    if cfg.loss.get("distill") is not None:
        if cfg.get("teacher") is None or cfg.teacher.get("ckpt_path") is None:
            raise ConfigError(
                "distillation needs a teacher: set teacher.ckpt_path=<teacher .ckpt or YOLOX .pth>"
            )
        extra["teacher"] = load_teacher(cfg.teacher.ckpt_path, cfg.teacher.get("model"), table)
        extra["distill_loss"] = instantiate(cfg.loss.distill)
    # The module class with its own settings (optimizer/scheduler factories...) from the config; the
    # built objects are passed in afterwards, so Hydra never walks into them.
    module_factory = instantiate(cfg.module, _partial_=True)
    return module_factory(
        model=model,
        criterion=criterion,
        class_table=table,
        postprocess_config=postprocess_config,
        run_config=OmegaConf.to_container(cfg, resolve=True),
        **extra,
    )


@rank_zero_only
def print_summary(metrics: dict[str, float], output_dir: str, best: str | None) -> None:
    table = Table(title="DFSS run summary", show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in sorted(metrics):
        if key.startswith(("val/map", "test/map")) or key in ("train/loss_epoch", "val/loss", "test/loss"):
            table.add_row(key, f"{metrics[key]:.4f}")
    Console().print(table)
    paths = f"run folder: {output_dir}" + (f"\nbest checkpoint: {best}" if best else "")
    Console().print(paths, soft_wrap=True)  # a path is never folded mid-name, whatever the terminal width
    plain = Console(file=io.StringIO(), width=100, color_system=None)
    plain.print(table)
    RUN_LOG.info("run summary:\n%s%s", plain.file.getvalue(), paths)  # into <run>/train.log only


RUN_LOG = logging.getLogger("dfss.run_log")  # the run's log file only (not the console): see log_to_file
RUN_LOG.propagate = False


@contextlib.contextmanager
def log_to_file() -> Iterator[None]:
    """Lightning's own messages (devices, precision, model summary) and the run summary also go to the
    run's log file (``<run>/train.log``, Hydra's file handler), not only to the console."""
    files = [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
    targets = [logging.getLogger("lightning.pytorch"), RUN_LOG]
    RUN_LOG.setLevel(logging.INFO)
    for logger in targets:
        for handler in files:
            logger.addHandler(handler)
    try:
        yield
    finally:
        for logger in targets:
            for handler in files:
                logger.removeHandler(handler)


@rank_zero_only
def write_metrics(metrics: dict[str, float], output_dir: str) -> None:
    """``<run>/metrics.json``: the run's final figures (``val/*`` of the last validation, ``test/*``
    of the best checkpoint), flat like evaluate.py's; the learning curve is ``metrics_history.jsonl``."""
    (Path(output_dir) / "metrics.json").write_text(json.dumps(dict(sorted(metrics.items())), indent=2))


class DataWorkerDiedError(UserError, RuntimeError):
    """A DataLoader worker process died (killed by the system, usually for memory)."""


@contextlib.contextmanager
def explain_worker_death(trainer: L.Trainer) -> Iterator[None]:
    """PyTorch's "DataLoader worker (pid X) is killed by signal" / "exited unexpectedly", with the
    likely cause and the fix; or, when the run was stopped by a signal that killed its workers too
    (sent to the whole process group), the stop it is (``last.ckpt`` was saved)."""
    try:
        yield
    except RuntimeError as error:
        if not is_data_worker_death(error):
            raise
        if trainer.received_sigterm:
            raise SIGTERMException() from error
        raise DataWorkerDiedError(
            f"{str(error).rstrip('. ')}. It was killed from outside, most often by the system running out "
            "of memory (see `dmesg`); lower data.num_workers or data.batch_size, then resume with "
            "ckpt_path=last"
        ) from error


class PeerLostError(UserError, RuntimeError):
    """Another process of a distributed run (another node, another GPU) stopped or became unreachable."""


PEER_LOST = (
    "Connection closed by peer",
    "Connection reset by peer",
    "remote worker crashing",
    "NCCL communicator",
)


@contextlib.contextmanager
def explain_lost_peer(trainer: L.Trainer) -> Iterator[None]:
    """gloo's / NCCL's "Connection closed by peer" when another rank died: which rank this is, which
    one was lost (the other one with two; one of the others beyond), and how to go on."""
    try:
        yield
    except RuntimeError as error:
        if trainer.world_size < 2 or not any(text in str(error) for text in PEER_LOST):
            raise
        rank, world = trainer.global_rank, trainer.world_size
        others = [r for r in range(world) if r != rank]
        lost = f"rank {others[0]}" if len(others) == 1 else f"one of ranks {others}"
        detail = (
            str(error).splitlines()[0].split("] ", 1)[-1].split(". ", 1)[0][:200]
        )  # gloo's first sentence
        raise PeerLostError(
            f"rank {rank} of {world} lost {lost} of the run ({detail}); this rank stops too. Look at the "
            f"lost rank's log, then restart every node with ckpt_path=last to resume from the last checkpoint"
        ) from error


# Submodules kept in eval mode on purpose: a distillation's frozen teacher, the EMA copy of the model.
FROZEN_BY_DESIGN = ("teacher", "ema")


@contextlib.contextmanager
def expected_lightning_warnings_off(module: L.LightningModule, datamodule: Any) -> Iterator[None]:
    """Silence Lightning's two warnings about what DFSS does on purpose, and only then:

    - "resuming from a checkpoint that ended before the epoch ended and your dataloader is not
      resumable": :class:`XrayDataModule` saves its place in the epoch in every checkpoint and
      continues with exactly the batches not trained on yet (``tests/test_resume.py``);
    - "Found N module(s) in eval mode at the start of training", when every such module belongs to
      the frozen teacher or the EMA copy (any other module in eval mode is still warned about);
    - "Precision bf16-mixed is not supported by the model summary ... Using 32 bits instead": under
      mixed precision the weights *are* float32 (autocast casts per operation), so 32 bits is right.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="Precision bf16-mixed is not supported by the model summary"
        )
        if isinstance(datamodule, XrayDataModule):
            warnings.filterwarnings(
                "ignore", message="You're resuming from a checkpoint that ended before the epoch"
            )
        in_eval = [name for name, m in module.named_modules() if not m.training]
        if in_eval and all(name.split(".")[0] in FROZEN_BY_DESIGN for name in in_eval):
            warnings.filterwarnings(
                "ignore", message=r"Found \d+ module\(s\) in eval mode at the start of training"
            )
            log.info(
                "%d modules of the frozen teacher / EMA copy stay in eval mode (by design)", len(in_eval)
            )
        yield


def run(cfg: DictConfig) -> dict[str, float]:
    """Train (and test) as ``cfg`` says; returns the final metrics."""
    preflight.check(preflight.training_problems(cfg))
    check_output_folders(cfg)
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    ensure_wandb_mode(cfg)
    group_sweep_runs(cfg)
    datamodule = instantiate(data_of(cfg, "train.py"))
    module = build_module(cfg, datamodule)
    # An entry set to null on the command line (callbacks.rich_progress_bar=null) switches it off.
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    if isinstance(datamodule, XrayDataModule):  # before any process is started or any data is read
        datamodule.batch_size_for(trainer.num_devices * trainer.num_nodes)
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    metrics: dict[str, float] = {}
    if cfg.get("train", True):
        resume = resolve_ckpt_path(cfg.get("ckpt_path"), cfg.paths.output_dir)
        with (
            explain_lost_peer(trainer),
            explain_worker_death(trainer),
            expected_lightning_warnings_off(module, datamodule),
        ):
            trainer.fit(module, datamodule=datamodule, ckpt_path=resume, weights_only=True)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
    checkpoint = next(
        (
            c
            for c in trainer.callbacks
            if isinstance(c, ModelCheckpoint) and not isinstance(c, ResumeCheckpoint)
        ),
        None,
    )
    best = checkpoint.best_model_path if checkpoint is not None and checkpoint.best_model_path else None
    if cfg.get("test", True):
        # After training: the best checkpoint. Without training: the given checkpoint
        # (or the weights as built).
        tested = (
            best if cfg.get("train", True) else resolve_ckpt_path(cfg.get("ckpt_path"), cfg.paths.output_dir)
        )
        with explain_worker_death(trainer):
            trainer.test(module, datamodule=datamodule, ckpt_path=tested, weights_only=True)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
    metrics = {k: v for k, v in metrics.items() if not math.isnan(v)}
    write_metrics(metrics, cfg.paths.output_dir)
    print_summary(metrics, cfg.paths.output_dir, best)
    finish_wandb(loggers)
    return metrics


@hydra.main(version_base="1.3", config_path="pkg://dfss.conf", config_name="train")
def _hydra_main(cfg: DictConfig) -> float | None:
    with exit_on_user_error(), log_to_file():
        try:
            metrics = run(cfg)
        except SIGTERMException:
            log.warning("training stopped by SIGTERM/SIGUSR1 (checkpoint saved); exiting with status 143")
            sys.exit(143)
    return metrics.get("val/map50")  # the value Hydra sweepers optimise


def main() -> None:
    """Console entry point; ``-m`` may come before or after the overrides."""
    run_hydra_app(_hydra_main, "train")


if __name__ == "__main__":
    main()
