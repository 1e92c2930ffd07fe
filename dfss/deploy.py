"""Running an exported DFSS model without its checkpoint: the sidecar json and the post-processing.

``dfss-export`` (:mod:`dfss.export`) writes a model file (``.onnx`` or a torch.export ``.pt2``)
that maps letterboxed images to *decoded* per-point outputs, and next to it a sidecar json
(``<file>.json``, read by :meth:`ExportInfo.read`) with everything else a deployment needs: the
input size, the classes with their supercategories, the points per pyramid level and the
post-processing settings of the training run (the unknown rule chosen at export time included).

The model file stops before anything a deployment may want to change: scores, the unknown rule,
top-k, NMS and the mapping to original pixels are :func:`postprocess_exported`, which converts the
file's outputs (numpy arrays or tensors) to tensors and runs the same
:func:`dfss.models.postprocess.postprocess_decoded` that evaluation runs — there is no second NMS.
:class:`ExportedDetector` puts the two together for either format::

    detector = ExportedDetector("student.onnx")      # reads student.onnx.json too
    detections = detector(images, orig_sizes=sizes)   # images: uint8 [B, 3, S, S], letterboxed
    coco = detections_to_coco(detections, image_ids, detector.info.class_table())

ONNX runs on ``onnxruntime`` (plus torch and torchvision for the post-processing); a ``.pt2``
needs ``torch.export.load``, which unpickles: load only ``.pt2`` files you trust (an ``.onnx``
holds no code). See :mod:`dfss.export` for the inputs and outputs.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from dfss.data.classes import DEFAULT_DANGEROUS_SUPERCATEGORIES, DEFAULT_UNKNOWN_SUPERCATEGORIES, ClassTable
from dfss.errors import UserError
from dfss.models.postprocess import (
    DecodedOutputs,
    Detections,
    PostProcessConfig,
    postprocess_decoded,
)

FORMAT_SUFFIXES = {"onnx": ".onnx", "torch_export": ".pt2"}
INPUT_NAME = "images"
OUTPUT_NAMES = ("boxes", "class_probs", "quality")
SIDECAR_VERSION = 1


class ExportError(UserError):
    """An exported model or sidecar that cannot be used, or an export that did not reproduce the model."""


def sidecar_path(model_path: str | Path) -> Path:
    """``student.onnx`` -> ``student.onnx.json`` (one sidecar per file, whatever the format)."""
    model_path = Path(model_path)
    return model_path.with_name(model_path.name + ".json")


@dataclass(frozen=True)
class ExportInfo:
    """The sidecar of an exported model: what running it needs besides the file itself."""

    format: str  # one of FORMAT_SUFFIXES
    input_size: int  # S: the model takes uint8 RGB [B, 3, S, S], letterboxed
    num_points_per_level: tuple[int, ...]  # sums to N, the points of the outputs
    box_format: str  # "ltrb" (FCOS) | "yolox": picks the default score mode
    postprocess: PostProcessConfig  # the training run's settings and the unknown rule chosen at export
    classes: tuple[dict, ...]  # {"id", "name", "supercategory"} of every category, as in the checkpoint
    dangerous_supercategories: tuple[str, ...] = DEFAULT_DANGEROUS_SUPERCATEGORIES
    unknown_supercategories: tuple[str, ...] = DEFAULT_UNKNOWN_SUPERCATEGORIES
    pad_value: int = 255  # letterbox padding (right and bottom)
    source: Mapping[str, Any] = field(default_factory=dict)  # checkpoint, weights, model, versions
    check: Mapping[str, Any] = field(default_factory=dict)  # the export's own comparison with PyTorch

    def __post_init__(self) -> None:
        if self.format not in FORMAT_SUFFIXES:
            raise ExportError(f"format must be one of {tuple(FORMAT_SUFFIXES)}, got {self.format!r}")

    @property
    def num_points(self) -> int:
        return sum(self.num_points_per_level)

    def class_table(self) -> ClassTable:
        """Training labels ``0..K-1`` and the unknown category, as the checkpoint had them."""
        return ClassTable.from_categories(
            self.classes,
            dangerous_supercategories=self.dangerous_supercategories,
            unknown_supercategories=self.unknown_supercategories,
            source="the export sidecar (classes)",
        )

    def to_json(self) -> dict[str, Any]:
        shape = ["batch", 3, self.input_size, self.input_size]
        n, k = self.num_points, self.class_table().num_classes
        return {
            "sidecar_version": SIDECAR_VERSION,
            "format": self.format,
            "input": {
                "name": INPUT_NAME,
                "dtype": "uint8",
                "shape": shape,
                "channels": "RGB",
                "letterbox": "resize keeping the aspect ratio, top-left, pad right/bottom with pad_value",
            },
            "outputs": {
                "boxes": {"dtype": "float32", "shape": ["batch", n, 4], "meaning": "xyxy input pixels"},
                "class_probs": {"dtype": "float32", "shape": ["batch", n, k], "meaning": "sigmoid"},
                "quality": {"dtype": "float32", "shape": ["batch", n], "meaning": "sigmoid"},
            },
            "input_size": self.input_size,
            "pad_value": self.pad_value,
            "num_points_per_level": list(self.num_points_per_level),
            "box_format": self.box_format,
            "postprocess": dataclasses.asdict(self.postprocess),
            "classes": [dict(c) for c in self.classes],
            "dangerous_supercategories": list(self.dangerous_supercategories),
            "unknown_supercategories": list(self.unknown_supercategories),
            "source": dict(self.source),
            "check": dict(self.check),
        }

    def write(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=2))

    @classmethod
    def read(cls, path: str | Path) -> ExportInfo:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
            return cls(
                format=data["format"],
                input_size=int(data["input_size"]),
                num_points_per_level=tuple(int(n) for n in data["num_points_per_level"]),
                box_format=data["box_format"],
                postprocess=PostProcessConfig(**data["postprocess"]),
                classes=tuple(data["classes"]),
                dangerous_supercategories=tuple(data["dangerous_supercategories"]),
                unknown_supercategories=tuple(data["unknown_supercategories"]),
                pad_value=int(data.get("pad_value", 255)),
                source=data.get("source", {}),
                check=data.get("check", {}),
            )
        except FileNotFoundError:
            raise ExportError(
                f"sidecar not found: {path} (dfss-export writes it next to the model)"
            ) from None
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ExportError(f"{path} is not a dfss-export sidecar: {type(exc).__name__}: {exc}") from None


def decoded_outputs(outputs: Sequence[np.ndarray | Tensor], info: ExportInfo) -> DecodedOutputs:
    """The exported model's ``(boxes, class_probs, quality)`` as :class:`DecodedOutputs` tensors."""
    if len(outputs) != len(OUTPUT_NAMES):
        raise ValueError(f"expected the {len(OUTPUT_NAMES)} outputs {OUTPUT_NAMES}, got {len(outputs)}")
    boxes, class_probs, quality = (torch.as_tensor(o) for o in outputs)
    if boxes.shape[1:] != (info.num_points, 4) or quality.shape != boxes.shape[:2]:
        raise ValueError(
            f"outputs of shapes {tuple(boxes.shape)}, {tuple(quality.shape)} do not fit the sidecar's "
            f"{info.num_points} points at {info.input_size} px"
        )
    return DecodedOutputs(boxes, class_probs, quality, info.num_points_per_level, info.box_format)


def postprocess_exported(
    outputs: Sequence[np.ndarray | Tensor],
    info: ExportInfo,
    config: PostProcessConfig | None = None,
    orig_sizes: np.ndarray | Tensor | None = None,
) -> Detections:
    """Detections from an exported model's outputs, exactly as :func:`~dfss.models.postprocess.postprocess`.

    ``outputs``: the file's ``(boxes, class_probs, quality)``, numpy or torch. ``config``: the
    post-processing settings, by default the sidecar's (``dataclasses.replace(info.postprocess,
    unknown_threshold=0.1)`` changes the unknown rule). ``orig_sizes`` (``[B, 2]`` height, width of
    the images before letterboxing) maps the boxes back to them; without it they stay in input pixels.
    """
    sizes = None if orig_sizes is None else torch.as_tensor(orig_sizes)
    return postprocess_decoded(
        decoded_outputs(outputs, info), config or info.postprocess, info.input_size, sizes
    )


class ExportedDetector:
    """An exported model file with its sidecar: images in, :class:`Detections` out.

    ``session_options`` and ``providers`` go to ``onnxruntime.InferenceSession`` (ONNX only; the
    default is the CPU provider).
    """

    def __init__(
        self, path: str | Path, session_options: Any = None, providers: Sequence[str] | None = None
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ExportError(f"exported model not found: {self.path}")
        self.info = ExportInfo.read(sidecar_path(self.path))
        if self.info.format == "onnx":
            import onnxruntime

            self._session = onnxruntime.InferenceSession(
                str(self.path), session_options, providers=list(providers or ["CPUExecutionProvider"])
            )
            self._program = None
        else:
            self._session = None
            self._program = torch.export.load(str(self.path)).module()

    def raw(self, images: np.ndarray | Tensor) -> tuple[np.ndarray | Tensor, ...]:
        """The file's ``(boxes, class_probs, quality)`` for uint8 ``[B, 3, S, S]`` images (numpy for
        ONNX, tensors for torch.export)."""
        if self._session is not None:
            array = images.cpu().numpy() if isinstance(images, Tensor) else np.asarray(images)
            return tuple(self._session.run(list(OUTPUT_NAMES), {INPUT_NAME: array}))
        with torch.no_grad():
            return tuple(self._program(torch.as_tensor(images)))

    def __call__(
        self,
        images: np.ndarray | Tensor,
        orig_sizes: np.ndarray | Tensor | None = None,
        config: PostProcessConfig | None = None,
    ) -> Detections:
        """Detections of ``images`` (see :func:`postprocess_exported` for the other arguments)."""
        return postprocess_exported(self.raw(images), self.info, config, orig_sizes)
