"""Logger fixes for how DFSS runs Lightning."""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.loggers import CSVLogger as LightningCSVLogger
from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, open_dict

log = logging.getLogger(__name__)


class CSVLogger(LightningCSVLogger):
    """Lightning's CSV logger, safe across stages run in fresh processes.

    Under ``ddp_spawn`` each ``trainer.fit`` / ``trainer.test`` call runs in new processes holding a
    copy of the logger made before the first stage, so the test stage does not know the columns the
    fit stage wrote; Lightning then rewrites ``metrics.csv`` with only the new columns and fails
    ("dict contains fields not in fieldnames"). Here the columns already in the file are merged in
    before every save, so nothing is dropped and nothing fails.
    """

    @rank_zero_only
    def save(self) -> None:
        writer = self.experiment
        path = writer.metrics_file_path
        if writer.metrics and os.path.isfile(path):
            with open(path, newline="") as f:
                header = next(csv.reader(f), [])
            missing = [key for key in header if key not in writer.metrics_keys]
            if missing:
                writer.metrics_keys = sorted({*writer.metrics_keys, *missing})
        super().save()


class WandbLogger(LightningWandbLogger):
    """Lightning's W&B logger, without passing ``anonymous=None`` on to ``wandb.init``: recent wandb
    versions warn "The anonymous setting has no effect" whenever the argument is given, even as
    None, so every run printed that warning. ``anonymous=True`` is still passed as Lightning does."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self._wandb_init.get("anonymous") is None:
            self._wandb_init.pop("anonymous", None)


def ensure_wandb_mode(cfg: DictConfig) -> None:
    """W&B without credentials runs offline instead of asking for a login (and never hangs)."""
    if "wandb" not in (cfg.get("logger") or {}) or os.environ.get("WANDB_MODE"):
        return
    has_key = bool(os.environ.get("WANDB_API_KEY")) or (Path.home() / ".netrc").is_file()
    if not has_key:
        os.environ["WANDB_MODE"] = "offline"
        log.info("no W&B credentials found: logging offline (wandb sync uploads the run later)")


def group_sweep_runs(cfg: DictConfig) -> None:
    """In a Hydra multirun, W&B runs of one sweep share a job type (the sweep folder's name), so the
    W&B UI groups them by experiment (``group``) and by sweep (``job_type``), and each run's name
    carries its job number and its settings (``sweep_<time>/2 loss.dangerous_weight=4``)."""
    if "wandb" not in (cfg.get("logger") or {}) or not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return
    sweep = Path(hydra_cfg.sweep.dir).name
    settings = [o for o in hydra_cfg.overrides.task if not o.split("=", 1)[-1].startswith(("/", "."))]
    with open_dict(cfg):
        cfg.logger.wandb.job_type = f"sweep_{sweep}"
        cfg.logger.wandb.tags = [*cfg.logger.wandb.get("tags", []), f"sweep_{sweep}"]
        cfg.logger.wandb.name = f"sweep_{sweep}/{hydra_cfg.job.num} {' '.join(settings)}"[:128]


def finish_wandb(loggers: list) -> None:
    """Close this run's W&B run, so the next run in the same process (a demo, a test) gets its own."""
    if any(isinstance(logger, LightningWandbLogger) for logger in loggers):
        import wandb

        wandb.finish()
