"""Lightning modules that train and evaluate one detector: the base, the YOLOX teacher, the FCOS student.

The module receives everything already built (model, criterion, class table, optimizer and
scheduler factories, post-processing config): :func:`dfss.train.run` builds them from the Hydra
config. Validation and test collect COCO results over the whole split (all ranks, each image once)
and score them with the library evaluator at the end of the epoch: ``val/map``, ``val/map50``,
``val/map50_dangerous``, ... The resolved run config travels in every checkpoint (``dfss_config``),
so ``evaluate.py ckpt_path=...`` can rebuild the model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.trainer.states import TrainerFn
from torch import Tensor, nn

from dfss.data.batch import DetectionBatch
from dfss.data.classes import ClassTable
from dfss.eval.coco_metrics import CocoMetrics, evaluate_coco
from dfss.eval.operating_point import Roc
from dfss.lit.ema import ModelEMA
from dfss.lit.evaluation import PredictionStore
from dfss.lit.guards import NonFiniteGuard
from dfss.lit.rng import rng_state, set_rng_state
from dfss.models.checkpoints import CheckpointError
from dfss.models.outputs import DenseOutputs
from dfss.models.postprocess import PostProcessConfig, detections_to_coco, postprocess
from dfss.models.weights import state_dict_problems
from dfss.viz import draw_boxes

OptimizerFactory = Callable[[Iterable[dict[str, Any]]], torch.optim.Optimizer]
SchedulerFactory = Callable[..., torch.optim.lr_scheduler.LRScheduler]
NUM_LOGGED_IMAGES = 4
LOGGED_MAX_BOXES = 10  # the highest-scoring detections drawn on each logged validation image
LOGGED_MIN_SCORE = 0.05


def param_groups(model: nn.Module) -> list[dict[str, Any]]:
    """Weights of convolutions/linears decay; biases and normalisation parameters do not (YOLOX)."""
    decay, no_decay = [], []
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            is_norm = isinstance(module, nn.modules.batchnorm._NormBase | nn.GroupNorm | nn.LayerNorm)
            (no_decay if is_norm or name == "bias" or param.ndim <= 1 else decay).append(param)
    return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]


def log_alarm_roc(logger: WandbLogger, roc: Roc, key: str, step: int) -> None:
    """The image alarm's ROC as a W&B line plot (false-alarm rate vs threat images caught)."""
    import wandb

    table = wandb.Table(
        columns=["false_alarm_rate", "threat_images_alarmed"], data=list(zip(roc.fpr, roc.tpr, strict=True))
    )
    title = f"Image alarm ROC (AUC {roc.auc:.3f})"
    plot = wandb.plot.line(table, "false_alarm_rate", "threat_images_alarmed", title=title)
    logger.experiment.log({key: plot}, step=step)


class DetectionModule(L.LightningModule):
    """Train one detector with its criterion; evaluate it with COCO metrics per supercategory."""

    def __init__(
        self,
        model: nn.Module,
        criterion: nn.Module,
        class_table: ClassTable,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        postprocess_config: PostProcessConfig | None = None,
        ema_decay: float | None = None,
        eval_backend: str = "pycocotools",
        run_config: dict | None = None,
        max_nonfinite_steps: int | None = 10,
    ) -> None:
        super().__init__()
        self.model = model
        self.criterion = criterion
        self.class_table = class_table
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.postprocess_config = postprocess_config or PostProcessConfig()
        self.ema = ModelEMA(model, ema_decay) if ema_decay else None
        self.eval_backend = eval_backend
        self.run_config = run_config or {}
        self.predictions = PredictionStore()
        self.nonfinite = NonFiniteGuard(max_nonfinite_steps) if max_nonfinite_steps is not None else None
        self._step_ok = True
        self._batch_image_ids: Tensor | None = None
        self._step_losses: dict[str, Tensor] = {}
        self.last_metrics: dict[str, CocoMetrics] = {}

    # ---- training ------------------------------------------------------------------------------
    def forward(self, images: Tensor) -> DenseOutputs:
        return self.model(images)

    def compute_losses(self, outputs: DenseOutputs, batch: DetectionBatch) -> dict[str, Tensor]:
        return self.criterion(outputs, batch.boxes, batch.labels)

    def training_step(self, batch: DetectionBatch, batch_idx: int) -> Tensor:
        losses = self.compute_losses(self.model(batch.images), batch)
        self._batch_image_ids = batch.image_ids
        self._step_losses = losses
        self._step_ok = True
        parts = {f"train/{k}": v.detach() for k, v in losses.items() if k.startswith("loss_")}
        # sync_dist: the epoch figures are means over every rank's batches, not rank 0's alone
        self.log_dict(parts, batch_size=len(batch), on_step=True, on_epoch=True, sync_dist=True)
        self.log(
            "train/loss",
            losses["loss"].detach(),
            batch_size=len(batch),
            on_step=True,
            on_epoch=True,
            prog_bar=True,
            sync_dist=True,
        )
        self.log(
            "train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], batch_size=len(batch), on_step=True
        )
        return losses["loss"]

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """A NaN/Inf loss or gradient: drop every gradient, so the optimizer step changes nothing."""
        if self.nonfinite is None:
            return
        named = [(n, p.grad) for n, p in self.model.named_parameters() if p.grad is not None]
        self._step_ok = self.nonfinite.allows_step(
            self._step_losses, named, self.global_step, self._batch_image_ids
        )
        self.log("train/skipped_steps", float(self.nonfinite.total), batch_size=len(self._batch_image_ids))
        if not self._step_ok:
            optimizer.zero_grad(set_to_none=True)  # parameters without gradients are not updated

    def optimizer_step(
        self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Any = None
    ) -> None:
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        # After the step and before on_train_batch_end, so a checkpoint saved there holds the EMA
        # of the weights it holds (exact resume).
        if self._step_ok:
            if self.nonfinite is not None:
                self.nonfinite.step_done()
            if self.ema is not None:
                self.ema.update(self.model)

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(param_groups(self.model))
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(
            optimizer, total_steps=int(self.trainer.estimated_stepping_batches)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ---- evaluation ----------------------------------------------------------------------------
    @property
    def eval_model(self) -> nn.Module:
        """The weights evaluation uses: the EMA average when there is one."""
        return self.ema.module if self.ema is not None else self.model

    def _eval_step(self, batch: DetectionBatch, stage: str, batch_idx: int) -> None:
        outputs = self.eval_model(batch.images)
        losses = self.criterion(outputs, batch.boxes, batch.labels)
        self.log(f"{stage}/loss", losses["loss"], batch_size=len(batch), sync_dist=True)
        detections = postprocess(
            outputs, self.postprocess_config, input_size=batch.images.shape[-1], orig_sizes=batch.orig_sizes
        )
        results = detections_to_coco(detections, batch.image_ids, self.class_table)
        self.predictions.add(batch.image_ids.tolist(), results)
        if batch_idx == 0 and self.global_rank == 0 and not self.trainer.sanity_checking:
            self._log_images(batch, detections, stage)

    def _log_images(self, batch: DetectionBatch, detections: Any, stage: str) -> None:
        loggers = [lg for lg in self.loggers if isinstance(lg, WandbLogger)]
        if not loggers:
            return
        names = [*self.class_table.names, "unknown"]
        supers = [*(c.supercategory for c in self.class_table.known), "unknown"]
        pictures = []
        for i in range(min(NUM_LOGGED_IMAGES, len(batch))):
            boxes, scores, labels = detections.per_image(i)
            scale = batch.images.shape[-1] / batch.orig_sizes[i].max()  # original -> letterboxed input
            keep = (scores >= LOGGED_MIN_SCORE) & (
                torch.arange(len(scores), device=scores.device) < LOGGED_MAX_BOXES
            )
            pictures.append(
                draw_boxes(
                    batch.images[i].cpu(),
                    (boxes[keep] * scale).cpu(),
                    [names[k] for k in labels[keep].tolist()],
                    [supers[k] for k in labels[keep].tolist()],
                    scores[keep].tolist(),
                )
                .permute(1, 2, 0)
                .numpy()
            )
        for logger in loggers:
            logger.log_image(key=f"{stage}/predictions", images=pictures, step=self.global_step)

    def _eval_epoch_end(self, stage: str) -> None:
        image_ids, results = self.predictions.gather()
        self.predictions.clear()
        if self.trainer.sanity_checking or not image_ids:
            return
        gt = self.trainer.datamodule.datasets[stage].coco
        metrics = evaluate_coco(gt, results, self.class_table, backend=self.eval_backend, image_ids=image_ids)
        self.last_metrics[stage] = metrics
        finite = {f"{stage}/{k}": v for k, v in metrics.metrics.items() if not math.isnan(v)}
        headline = {k: finite.pop(k) for k in (f"{stage}/map50", f"{stage}/map") if k in finite}
        # Every rank computed the same figures from every rank's predictions (gathered above):
        # sync_dist with max keeps them exactly and spares Lightning's "use sync_dist" warnings.
        same = {"sync_dist": True, "reduce_fx": "max"}
        self.log_dict(headline, prog_bar=True, **same)
        self.log_dict(finite, **same)
        counts = {
            f"{stage}/num_images": float(len(image_ids)),
            f"{stage}/num_detections": float(len(results)),
        }
        self.log_dict(counts, **same)
        if self.global_rank == 0:
            columns = ["class", "supercategory", "num_gt", "ap", "ap50", "ap75"]
            rows = [[c.name, c.supercategory, c.num_gt, c.ap, c.ap50, c.ap75] for c in metrics.per_class]
            for logger in self.loggers:
                if isinstance(logger, WandbLogger):
                    logger.log_table(
                        key=f"{stage}/per_class_ap", columns=columns, data=rows, step=self.global_step
                    )
                    if stage == "test" and metrics.roc is not None:
                        log_alarm_roc(logger, metrics.roc, f"{stage}/alarm_roc", self.global_step)

    def validation_step(self, batch: DetectionBatch, batch_idx: int) -> None:
        self._eval_step(batch, "val", batch_idx)

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def test_step(self, batch: DetectionBatch, batch_idx: int) -> None:
        self._eval_step(batch, "test", batch_idx)

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    # ---- checkpoints ---------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["dfss_config"] = self.run_config
        checkpoint["dfss_classes"] = [
            {"id": c.coco_id, "name": c.name, "supercategory": c.supercategory}
            for c in (*self.class_table.known, *self.class_table.unknown)
        ]
        checkpoint["dfss_rng"] = rng_state()
        if self.nonfinite is not None:
            checkpoint["dfss_nonfinite"] = self.nonfinite.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Before Lightning loads a checkpoint (resume, or testing a checkpoint): it must hold exactly
        this module's weights — a clear error naming the keys, not a partial or failed load."""
        trainer = self._trainer  # None when loaded outside a Trainer
        path = getattr(trainer, "ckpt_path", None) or "the checkpoint"
        fitting = trainer is not None and trainer.state.fn == TrainerFn.FITTING
        if fitting and "optimizer_states" not in checkpoint:
            raise CheckpointError(
                f"{path} is not a training checkpoint (no optimizer state); to start a new run from its "
                "weights use it as pre-trained weights instead of ckpt_path"
            )
        problems = state_dict_problems(self.state_dict(), checkpoint["state_dict"], source="checkpoint")
        if problems:
            raise CheckpointError(
                f"{path} does not fit this run's model (another model or class count?): "
                + "; ".join(problems)
            )
        if "dfss_rng" in checkpoint:
            set_rng_state(checkpoint["dfss_rng"])
        if self.nonfinite is not None and "dfss_nonfinite" in checkpoint:
            self.nonfinite.load_state_dict(checkpoint["dfss_nonfinite"])


class TeacherModule(DetectionModule):
    """The YOLOX teacher; its criterion adds the L1 box loss from epoch ``l1_from_epoch`` on (YOLOX)."""

    def __init__(self, *args: Any, l1_from_epoch: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.l1_from_epoch = l1_from_epoch

    def compute_losses(self, outputs: DenseOutputs, batch: DetectionBatch) -> dict[str, Tensor]:
        use_l1 = self.l1_from_epoch is not None and self.current_epoch >= self.l1_from_epoch
        return self.criterion(outputs, batch.boxes, batch.labels, use_l1=use_l1)


class StudentModule(DetectionModule):
    """The FCOS student trained on the labels alone: the paper's no-distillation baseline."""
