"""Export task: a trained DFSS model (teacher, student or distilled) as one file for deployment.

    dfss-export ckpt=<model.ckpt> format=onnx output=student.onnx
    dfss-export ckpt=<model.ckpt> format=torch_export output=exports/   # exports/<model>.pt2
    dfss-export ckpt=<model.ckpt> threshold=unknown threshold.T=0.1     # the unknown rule in the sidecar
    dfss-export ckpt=<model.ckpt> format=weights output=weights/model.pt  # float16 release weights

The model is rebuilt from the checkpoint's own config (EMA weights when it has them, as
evaluation does), wrapped with :func:`dfss.models.postprocess.decode`, traced once with
``torch.export`` with a dynamic batch dimension, and saved as

- ``format=onnx``: an ONNX model (opset ``opset``, weights inside the file) for onnxruntime,
  TensorRT, OpenVINO, ...;
- ``format=torch_export``: a ``torch.export`` ExportedProgram (``.pt2``, ``torch.export.load``).
  (TorchScript is deprecated in PyTorch 2.x and not offered.)
- ``format=weights``: no graph, the checkpoint itself cut to its evaluation weights in float16
  (``weights_dtype``) with its config and classes, beside ``<file>.sha256``
  (:mod:`dfss.models.release`): the file to ship for PyTorch users, which ``evaluate.py``,
  ``dfss-predict``, ``dfss-export`` and ``teacher.ckpt_path=`` read like any checkpoint. The
  sidecar, inputs and outputs below are the graph formats'.

**Inputs and outputs** (the same for both formats; ``B`` is dynamic, ``S`` fixed at export, by
default the checkpoint's training ``data.image_size``; ``N`` points over all pyramid levels, ``K``
known classes):

- input ``images``: ``uint8 [B, 3, S, S]``, RGB, 0–255, each image *letterboxed* as the data
  pipeline does (:class:`dfss.data.transforms.Letterbox`): resized to fit ``S x S`` keeping its
  aspect ratio (antialiased), placed top-left, padded right and bottom with 255 (white). No mean,
  std or channel flip: the graph normalises as the model does in PyTorch (ImageNet mean/std for
  FCOS, BGR 0–255 for YOLOX).
- output ``boxes``: ``float32 [B, N, 4]`` decoded ``x1, y1, x2, y2`` in *input* (letterboxed)
  pixels, one box per point, not clipped;
- output ``class_probs``: ``float32 [B, N, K]`` sigmoid of the class logits;
- output ``quality``: ``float32 [B, N]`` sigmoid of FCOS's centerness / YOLOX's objectness.

Scores (FCOS ``sqrt(class_prob · quality)``, YOLOX ``class_prob · quality``), the unknown rule,
top-k, NMS and the mapping back to original pixels are *not* in the graph: they are
:func:`dfss.deploy.postprocess_exported`, the evaluation's own post-processing run on the file's
outputs, with the settings of the sidecar ``<file>.json`` (or others, without re-exporting). The
sidecar (:class:`dfss.deploy.ExportInfo`) also holds the classes with their ids and
supercategories, the points per level and the input size, so a deployment needs no checkpoint.

Before it returns, the export runs the written file (onnxruntime / ``torch.export.load``) on
random images at batch sizes 1 and 3 and compares its outputs with the PyTorch model's; a
difference larger than ``tolerance`` is an error, the measured one is kept in the sidecar.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig
from torch import Tensor, nn

import dfss
from dfss import preflight
from dfss.config import run_hydra_app
from dfss.deploy import (
    FORMAT_SUFFIXES,
    INPUT_NAME,
    OUTPUT_NAMES,
    ExportedDetector,
    ExportError,
    ExportInfo,
    sidecar_path,
)
from dfss.errors import ConfigError, exit_on_user_error
from dfss.models.checkpoints import (
    build_model_from_checkpoint,
    class_table_of,
    postprocess_config_of,
    read_dfss_checkpoint,
    warn_if_rule_without_objectness,
    weights_kind,
)
from dfss.models.postprocess import decode
from dfss.models.release import release_checkpoint, write_release

log = logging.getLogger(__name__)

# format=weights: the checkpoint cut to its evaluation weights in half precision (dfss.models.release)
SUFFIXES = {**FORMAT_SUFFIXES, "weights": ".pt"}
CHECK_BATCH_SIZES = (1, 3)  # the example batch is 2: a batch of 1 and of 3 prove the dynamic dimension
BOX_CHECK_MIN_SCORE = 0.05  # format=weights: boxes of points scoring at least this are compared


class DecodedDetector(nn.Module):
    """The exported graph: ``model`` then :func:`~dfss.models.postprocess.decode`.

    ``uint8 [B, 3, S, S]`` images -> ``(boxes [B, N, 4], class_probs [B, N, K], quality [B, N])``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        decoded = decode(self.model(images))
        return decoded.boxes, decoded.class_probs, decoded.quality


def random_images(batch: int, size: int, seed: int = 0) -> Tensor:
    """Reproducible uint8 ``[batch, 3, size, size]`` noise (the export's example and check input)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=generator)


@contextlib.contextmanager
def _quiet(*logger_names: str) -> Iterator[None]:
    """The exporter's own graph-optimisation loggers at WARNING (they log every pass at INFO)."""
    loggers = [logging.getLogger(name) for name in logger_names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def check_format(format: str, formats: dict[str, str] = SUFFIXES) -> None:
    """A ConfigError unless ``format`` is one of ``formats`` (:data:`SUFFIXES`)."""
    if format == "torchscript":
        raise ConfigError(
            "format=torchscript is not offered (TorchScript is deprecated in PyTorch 2.x); "
            "use format=torch_export (a .pt2 ExportedProgram) or format=onnx"
        )
    if format not in formats:
        raise ConfigError(f"format must be one of {tuple(formats)}, got {format!r}")


def export_file(model: nn.Module, path: Path, format: str, image_size: int, opset: int = 20) -> None:
    """Write ``model`` (a detector returning ``DenseOutputs``) wrapped in :class:`DecodedDetector` to
    ``path`` in ``format``, for ``image_size`` inputs with a dynamic batch dimension."""
    check_format(format, FORMAT_SUFFIXES)
    graph = DecodedDetector(model).eval()
    example = random_images(2, image_size)  # not 1: torch.export specialises a dimension of size 1
    with torch.no_grad():
        program = torch.export.export(
            graph, (example,), dynamic_shapes={INPUT_NAME: {0: torch.export.Dim("batch")}}, strict=False
        )
    if format == "torch_export":
        torch.export.save(program, str(path))
        return
    with _quiet("onnx_ir", "onnxscript"):
        torch.onnx.export(
            program,
            f=str(path),
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            opset_version=opset,
            dynamo=True,
            external_data=False,  # one self-contained file (protobuf's 2 GB limit is far away)
            verbose=False,
        )


def compare_with_pytorch(model: nn.Module, path: Path, image_size: int) -> dict[str, Any]:
    """Largest differences between the written file and the PyTorch graph on random images at
    :data:`CHECK_BATCH_SIZES`: per output the absolute one, and for boxes also the relative one
    (to the larger of the box coordinate and the input size: ``exp`` makes YOLOX boxes of an
    untrained model huge)."""
    return max_differences(ExportedDetector(path).raw, model, image_size, path)


def max_differences(
    candidate: Callable[[Tensor], Sequence[Any]],
    model: nn.Module,
    image_size: int,
    label: str | Path,
    box_min_score: float | None = None,
) -> dict[str, Any]:
    """:func:`compare_with_pytorch` for any ``candidate`` mapping images to the three outputs; with
    ``box_min_score``, boxes count only at points whose score (best class probability x quality)
    reaches it: the boxes that can become detections."""
    graph = DecodedDetector(model).eval()
    diffs = dict.fromkeys((*OUTPUT_NAMES, "boxes_relative"), 0.0)
    for seed, batch in enumerate(CHECK_BATCH_SIZES, start=1):
        images = random_images(batch, image_size, seed)
        with torch.no_grad():
            expected = graph(images)
            got = candidate(images)
        for name, ours, theirs in zip(OUTPUT_NAMES, got, expected, strict=True):
            ours = torch.as_tensor(ours)
            if ours.shape != theirs.shape:
                raise ExportError(
                    f"{label}: {name} has shape {tuple(ours.shape)} at batch {batch}, "
                    f"PyTorch gives {tuple(theirs.shape)}"
                )
            error = (ours - theirs).abs()
            if name == "boxes" and box_min_score is not None:
                scoring = expected[1].max(dim=-1).values * expected[2] >= box_min_score  # [B, N]
                error = error * scoring[..., None]
            diffs[name] = max(diffs[name], float(error.max()))
            if name == "boxes":
                relative = error / theirs.abs().clamp(min=image_size)
                diffs["boxes_relative"] = max(diffs["boxes_relative"], float(relative.max()))
    return {**diffs, "batch_sizes": list(CHECK_BATCH_SIZES)}


def output_path(output: str | Path, format: str, model_name: str) -> Path:
    """A path ending in an export suffix is the file (its suffix must be ``format``'s); anything
    else is a folder that gets ``<model_name><suffix>``."""
    output = Path(output)
    suffix = SUFFIXES[format]
    if output.suffix in SUFFIXES.values():
        if output.suffix != suffix:
            raise ConfigError(f"output={output} ends in {output.suffix} but format={format} writes {suffix}")
        return output
    return output / f"{model_name}{suffix}"


def run(cfg: DictConfig) -> dict[str, Any]:
    """Export ``cfg.ckpt``'s model to ``cfg.output`` in ``cfg.format``; returns what was written."""
    preflight.check(preflight.inference_problems(cfg))
    check_format(cfg.format)
    checkpoint = read_dfss_checkpoint(cfg.ckpt, "export")
    train_config = checkpoint["dfss_config"]
    image_size = int(cfg.image_size or train_config["data"]["image_size"])
    if image_size <= 0:
        raise ConfigError(f"image_size must be positive, got {image_size}")
    class_table = class_table_of(checkpoint, cfg.ckpt)
    model = build_model_from_checkpoint(checkpoint, class_table.num_classes, cfg.ckpt).eval()
    weights = weights_kind(checkpoint)
    target = train_config["model"]["net"]["_target_"]
    postprocess_config = hydra.utils.instantiate(cfg.threshold).apply(postprocess_config_of(checkpoint))
    warn_if_rule_without_objectness(checkpoint, postprocess_config, cfg.ckpt)

    path = output_path(cfg.output, cfg.format, target.rsplit(".", 1)[-1])
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the output folder {path.parent}: {exc.strerror}") from None
    log.info("%s: %s (%s weights) -> %s (%s, %d px)", cfg.ckpt, target, weights, path, cfg.format, image_size)
    if cfg.format == "weights":
        return export_weights(cfg, checkpoint, model, path, image_size)
    with torch.no_grad():
        probe = model(random_images(1, image_size))  # the points per level at this size
    export_file(model, path, cfg.format, image_size, int(cfg.opset))
    info = ExportInfo(
        format=cfg.format,
        input_size=image_size,
        num_points_per_level=probe.num_points_per_level,
        box_format=probe.box_format,
        postprocess=postprocess_config,
        classes=tuple(checkpoint["dfss_classes"]),
        dangerous_supercategories=tuple(class_table.dangerous_supercategories),
        unknown_supercategories=tuple(class_table.unknown_supercategories),
        source={
            "ckpt": str(cfg.ckpt),
            "weights": weights,
            "net": target,
            "opset": int(cfg.opset) if cfg.format == "onnx" else None,
            "dfss": dfss.__version__,
            "torch": torch.__version__,
        },
    )
    info.write(sidecar_path(path))  # the check below reads it, as any deployment does
    if cfg.check:
        check = compare_with_pytorch(model, path, image_size)
        info = dataclasses.replace(info, check=check)
        info.write(sidecar_path(path))
        prob_diff = max(check["class_probs"], check["quality"])
        log.info(
            "check: max |diff| boxes %.2g px (%.2g relative), probabilities %.2g at batch sizes %s",
            check["boxes"],
            check["boxes_relative"],
            prob_diff,
            check["batch_sizes"],
        )
        if check["boxes_relative"] > cfg.tolerance or prob_diff > cfg.tolerance:
            raise ExportError(
                f"{path} does not reproduce the model: max |diff| boxes {check['boxes_relative']:.3g} "
                f"relative, probabilities {prob_diff:.3g} (tolerance {cfg.tolerance:g}); "
                "check=false skips this"
            )
    log.info("wrote %s and %s", path, sidecar_path(path))
    return {"path": str(path), "sidecar": str(sidecar_path(path)), "info": info.to_json()}


def export_weights(
    cfg: DictConfig, checkpoint: dict[str, Any], model: nn.Module, path: Path, image_size: int
) -> dict[str, Any]:
    """``format=weights``: the release file (:mod:`dfss.models.release`) and its ``.sha256``; with
    ``check``, the model rebuilt from the written file against ``model`` on random images (the
    tolerance is ``weights_tolerance``: float16 weights move the outputs more than an ONNX graph;
    boxes are compared where a point scores >= 0.05, as random pixels make a trained YOLOX's
    low-scoring boxes huge and their rounding with them)."""
    released = release_checkpoint(checkpoint, dtype=cfg.weights_dtype, source=str(cfg.ckpt))
    sha = write_release(released, path)
    result: dict[str, Any] = {"path": str(path), "sha256": sha, "bytes": path.stat().st_size}
    if cfg.check:
        reread = read_dfss_checkpoint(path, "export")
        table = class_table_of(reread, path)
        rebuilt = build_model_from_checkpoint(reread, table.num_classes, path).eval()
        check = max_differences(
            DecodedDetector(rebuilt).eval(), model, image_size, path, box_min_score=BOX_CHECK_MIN_SCORE
        )
        result["check"] = check
        prob_diff = max(check["class_probs"], check["quality"])
        log.info(
            "check: max |diff| boxes %.2g relative, probabilities %.2g (%s weights against the checkpoint's)",
            check["boxes_relative"],
            prob_diff,
            cfg.weights_dtype,
        )
        if check["boxes_relative"] > cfg.weights_tolerance or prob_diff > cfg.weights_tolerance:
            path.unlink()
            path.with_name(path.name + ".sha256").unlink()
            raise ExportError(
                f"{path} ({cfg.weights_dtype}) does not reproduce the model: max |diff| boxes "
                f"{check['boxes_relative']:.3g} relative, probabilities {prob_diff:.3g} (weights_tolerance "
                f"{cfg.weights_tolerance:g}); weights_dtype=float32 keeps full precision"
            )
    log.info("wrote %s (%.1f MB, sha256 %s) and %s.sha256", path, result["bytes"] / 1e6, sha, path.name)
    return result


@hydra.main(version_base="1.3", config_path="pkg://dfss.conf", config_name="export")
def _hydra_main(cfg: DictConfig) -> None:
    with exit_on_user_error():
        run(cfg)


def main() -> None:
    """Console entry point (``dfss-export``)."""
    run_hydra_app(_hydra_main, "export")


if __name__ == "__main__":
    main()
