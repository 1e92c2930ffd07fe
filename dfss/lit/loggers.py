"""Logger fixes for how DFSS runs Lightning."""

from __future__ import annotations

import csv
import os

from lightning.pytorch.loggers import CSVLogger as LightningCSVLogger
from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger
from lightning.pytorch.utilities import rank_zero_only


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
