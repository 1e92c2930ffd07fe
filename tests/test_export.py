"""``dfss-export``: a trained model as an ONNX or torch.export file that gives PyTorch's detections.

The checkpoints are real: the shared student trained for two steps (128 px, ``conftest``) and a
teacher trained here for 100 steps (64 px). The teacher needs the steps: an untrained YOLOX in eval
mode, whose BatchNorm statistics are still the initial ones, gives nearly the same score at every
point, and detections whose scores tie have no single right order, so no two runtimes need to agree
on them. Where scores of one image do tie, :func:`assert_same_detections` compares the tied
detections as a set.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch

from dfss.config import compose_config
from dfss.data.datamodule import XrayDataModule
from dfss.deploy import ExportedDetector, ExportError, ExportInfo, postprocess_exported, sidecar_path
from dfss.errors import ConfigError
from dfss.export import compare_with_pytorch, run
from dfss.models.checkpoints import (
    CheckpointError,
    build_model_from_checkpoint,
    class_table_of,
    read_checkpoint,
)
from dfss.models.postprocess import Detections, decode, postprocess
from dfss.preflight import StartupError
from tests.helpers.cli import cli_env

INPUT_SIZES = {"student": 128, "teacher": 64}  # each checkpoint's training data.image_size


def _train_teacher(root: Path, output_dir: Path) -> Path:
    """``demo_teacher`` for 100 steps at 64 px (see the module docstring)."""
    from dfss.train import run as train_run

    overrides = [
        "experiment=demo_teacher",
        f"data.root={root}",
        f"data.image_size={INPUT_SIZES['teacher']}",
        "data.num_workers=0",
        "data.batch_size=3",  # the 6 training images: 2 steps per epoch
        "data.mosaic_prob=0.0",
        "trainer.max_epochs=50",
        "++trainer.limit_train_batches=2",
        "++trainer.limit_val_batches=0",
        "test=false",
        "logger=none",
    ]
    train_run(compose_config("train", overrides, output_dir))
    return output_dir / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def checkpoints(student_ckpt, synth_tiny, tmp_path_factory) -> dict[str, Path]:
    return {
        "student": student_ckpt,
        "teacher": _train_teacher(synth_tiny, tmp_path_factory.mktemp("teacher")),
    }


@pytest.fixture(scope="module")
def exported(checkpoints, tmp_path_factory):
    """``exported(kind, format)``: the path of that checkpoint's export, made on first use."""
    paths: dict[tuple[str, str], Path] = {}

    def get(kind: str, format: str) -> Path:
        if (kind, format) not in paths:
            out = tmp_path_factory.mktemp(f"{kind}_{format}")
            cfg = compose_config(
                "export", [f"ckpt={checkpoints[kind]}", f"format={format}", f"output={out}"], out
            )
            paths[kind, format] = Path(run(cfg)["path"])
        return paths[kind, format]

    return get


def _model(ckpt: Path) -> torch.nn.Module:
    checkpoint = read_checkpoint(ckpt)
    return build_model_from_checkpoint(checkpoint, class_table_of(checkpoint, ckpt).num_classes, ckpt).eval()


def _test_images(root: Path, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The test split through the evaluation loader: letterboxed uint8 images and original sizes."""
    datamodule = XrayDataModule(root, image_size=size, eval_batch_size=8, num_workers=0, pin_memory=False)
    datamodule.setup("test")
    batch = next(iter(datamodule.test_dataloader()))
    return batch.images, batch.orig_sizes


def _threshold_between(values: torch.Tensor) -> float:
    """A threshold near the median of ``values`` that no value is close to: the middle of the widest
    gap between neighbouring values in their middle third (a threshold *at* a value would let a
    difference in the last bit decide which side that point falls)."""
    ordered = values.flatten().double().sort().values
    third = len(ordered) // 3
    middle = ordered[third : 2 * third + 1]
    gap = int((middle[1:] - middle[:-1]).argmax())
    return float((middle[gap] + middle[gap + 1]) / 2)


def _same_box(a: torch.Tensor, b: torch.Tensor) -> bool:
    return bool(torch.isclose(a, b, rtol=1e-3, atol=1e-3).all())


def assert_same_detections(ours: Detections, theirs: Detections) -> None:
    """Image by image: the same number of detections, scores close rank by rank, and at each rank
    the same label and box (boxes within 1e-3 relative) — for detections whose scores tie (within
    1e-5 relative), the same labels and boxes as a set over the tie."""
    assert ours.valid.sum(1).tolist() == theirs.valid.sum(1).tolist()
    for image in range(len(ours.valid)):
        boxes_a, scores_a, labels_a = ours.per_image(image)
        boxes_b, scores_b, labels_b = theirs.per_image(image)
        torch.testing.assert_close(scores_a, scores_b, rtol=1e-4, atol=1e-7)
        start = 0
        for end in range(1, len(scores_b) + 1):
            if end < len(scores_b) and scores_b[end - 1] - scores_b[end] <= 1e-5 * scores_b[end - 1]:
                continue  # scores_b[end] ties with the previous one: same group
            unmatched = list(range(start, end))
            for i in range(start, end):
                match = next(
                    (
                        j
                        for j in unmatched
                        if labels_a[i] == labels_b[j] and _same_box(boxes_a[i], boxes_b[j])
                    ),
                    None,
                )
                assert match is not None, (
                    f"image {image}, rank {i}: label {int(labels_a[i])} box {boxes_a[i].tolist()} score "
                    f"{float(scores_a[i]):.6g} has no counterpart in ranks {start}..{end - 1}"
                )
                unmatched.remove(match)
            start = end


@pytest.mark.integration
@pytest.mark.parametrize("format", ["onnx", "torch_export"])
@pytest.mark.parametrize("kind", ["student", "teacher"])
def test_exported_model_gives_pytorchs_outputs_and_detections_at_two_batch_sizes(
    kind, format, exported, checkpoints, synth_tiny
):
    detector = ExportedDetector(exported(kind, format))
    model = _model(checkpoints[kind])
    size = detector.info.input_size
    assert size == INPUT_SIZES[kind]  # the checkpoint's training size
    images, orig_sizes = _test_images(synth_tiny, size)
    with torch.no_grad():
        reference = decode(model(images))
    # Besides the sidecar's settings (the training run's, no unknown rule): every candidate, with an
    # unknown rule that labels about half the object-like points unknown.
    rule = {
        "unknown_threshold": _threshold_between(reference.class_probs.amax(-1)),
        "unknown_min_quality": _threshold_between(reference.quality),
    }
    configs = [
        detector.info.postprocess,
        dataclasses.replace(detector.info.postprocess, score_threshold=0.0, **rule),
    ]
    num_classes = reference.class_probs.shape[-1]
    for batch in (1, 3):  # the file was traced at batch 2: both prove the batch dimension is dynamic
        raw = detector.raw(images[:batch])
        assert isinstance(raw[0], np.ndarray if format == "onnx" else torch.Tensor)
        for name, output in zip(("boxes", "class_probs", "quality"), raw, strict=True):
            tolerance = {"rtol": 1e-3, "atol": 1e-2} if name == "boxes" else {"rtol": 1e-4, "atol": 1e-5}
            torch.testing.assert_close(torch.as_tensor(output), getattr(reference, name)[:batch], **tolerance)
        for config in configs:
            with torch.no_grad():
                expected = postprocess(model(images[:batch]), config, size, orig_sizes[:batch])
            detections = detector(images[:batch], orig_sizes[:batch], config)
            assert_same_detections(detections, expected)
        labels = detections.labels[detections.valid]  # with the rule, known and unknown labels occur
        assert (labels == num_classes).any() and (labels < num_classes).any()


@pytest.mark.integration
def test_cli_writes_a_model_file_and_a_sidecar_that_runs_without_the_checkpoint(
    checkpoints, synth_tiny, tmp_path
):
    ckpt = checkpoints["student"]
    command = [
        sys.executable,
        "-m",
        "dfss.export",
        f"ckpt={ckpt}",
        "format=onnx",
        f"output={tmp_path / 'exports'}",
        "threshold=unknown",
        "threshold.T=0.2",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    done = subprocess.run(command, capture_output=True, text=True, env=cli_env(), cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    path = tmp_path / "exports" / "fcos_r18.onnx"  # a folder gets the model's name
    assert path.is_file() and sidecar_path(path) == tmp_path / "exports" / "fcos_r18.onnx.json"
    assert "wrote" in (tmp_path / "run" / "export.log").read_text()

    sidecar = json.loads(sidecar_path(path).read_text())
    checkpoint = read_checkpoint(ckpt)
    trained_postprocess = checkpoint["dfss_config"]["model"]["postprocess"]
    assert sidecar["classes"] == checkpoint["dfss_classes"]
    assert sidecar["input"]["shape"] == ["batch", 3, 128, 128] and sidecar["input"]["dtype"] == "uint8"
    assert sidecar["num_points_per_level"] == [256, 64, 16, 4, 1]  # strides 8 to 128 at 128 px
    assert sidecar["box_format"] == "ltrb" and sidecar["source"]["weights"] == "model"
    assert sidecar["postprocess"]["unknown_threshold"] == 0.2  # this run's rule, the training run's rest
    for key in ("score_threshold", "nms_iou", "topk_per_level", "max_detections"):
        assert sidecar["postprocess"][key] == trained_postprocess[key]
    assert sidecar["check"]["boxes_relative"] < 1e-3 and sidecar["check"]["batch_sizes"] == [1, 3]

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (image_input,) = session.get_inputs()
    assert (image_input.name, image_input.type) == ("images", "tensor(uint8)")
    assert isinstance(image_input.shape[0], str) and image_input.shape[1:] == [3, 128, 128]  # dynamic batch
    assert [o.name for o in session.get_outputs()] == ["boxes", "class_probs", "quality"]

    # Only the two files: the sidecar's classes and settings, without the checkpoint.
    images, orig_sizes = _test_images(synth_tiny, 128)
    info = ExportInfo.read(sidecar_path(path))
    detections = postprocess_exported(
        session.run(None, {"images": images.numpy()}), info, orig_sizes=orig_sizes
    )
    with torch.no_grad():
        expected = postprocess(_model(ckpt)(images), info.postprocess, 128, orig_sizes)
    assert_same_detections(detections, expected)
    assert info.class_table().names == [
        c["name"] for c in checkpoint["dfss_classes"] if c["supercategory"] != "unknown"
    ]


@pytest.mark.integration
def test_a_missing_checkpoint_is_one_line_and_exit_status_2(tmp_path):
    command = [
        sys.executable,
        "-m",
        "dfss.export",
        f"ckpt={tmp_path / 'nope.ckpt'}",
        f"output={tmp_path / 'exports'}",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    done = subprocess.run(command, capture_output=True, text=True, env=cli_env(), cwd=tmp_path, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 2 and "Traceback" not in output
    assert output.count("StartupError: 1 problem before starting; nothing was run") == 1
    assert output.count(f"  - ckpt: DFSS checkpoint not found: {tmp_path / 'nope.ckpt'}") == 1
    assert not (tmp_path / "exports").exists()


@pytest.mark.integration
@pytest.mark.parametrize(
    ("format", "output", "message"),
    [
        ("torchscript", "exports", "TorchScript is deprecated .* use format=torch_export"),
        ("tflite", "exports", r"format must be one of \('onnx', 'torch_export', 'weights'\), got 'tflite'"),
        ("onnx", "exports/model.pt2", r"ends in \.pt2 but format=onnx writes \.onnx"),
    ],
)
def test_bad_settings_are_reported_before_exporting(checkpoints, tmp_path, format, output, message):
    overrides = [f"ckpt={checkpoints['student']}", f"format={format}", f"output={tmp_path / output}"]
    with pytest.raises(ConfigError, match=message):
        run(compose_config("export", overrides, tmp_path))
    assert not (tmp_path / "exports").exists()


def test_no_or_a_foreign_checkpoint_is_refused(tmp_path):
    with pytest.raises(StartupError, match=r"ckpt is not set: ckpt=<DFSS checkpoint>"):
        run(compose_config("export", [], tmp_path))
    foreign = tmp_path / "weights.pth"
    torch.save({"conv.weight": torch.zeros(1)}, foreign)  # a bare state dict, not train.py's
    with pytest.raises(CheckpointError, match="not a DFSS checkpoint"):
        run(compose_config("export", [f"ckpt={foreign}"], tmp_path))


@pytest.mark.integration
def test_the_exports_own_check_catches_a_file_of_other_weights(exported, checkpoints):
    path = exported("student", "onnx")
    model = _model(checkpoints["student"])
    assert max(compare_with_pytorch(model, path, 128)[k] for k in ("class_probs", "quality")) < 1e-5
    with torch.no_grad():
        model.head.classification_head.cls_logits.bias.add_(1.0)  # another model than the file's
    assert compare_with_pytorch(model, path, 128)["class_probs"] > 1e-2


@pytest.mark.integration
def test_a_model_without_its_sidecar_or_with_the_wrong_outputs_is_refused(exported, tmp_path):
    alone = tmp_path / "model.onnx"
    shutil.copy(exported("student", "onnx"), alone)
    with pytest.raises(ExportError, match=r"sidecar not found: .*model\.onnx\.json"):
        ExportedDetector(alone)
    info = ExportInfo.read(sidecar_path(exported("student", "onnx")))
    outputs = (
        np.zeros((1, 100, 4), np.float32),
        np.zeros((1, 100, 20), np.float32),
        np.zeros((1, 100), np.float32),
    )
    with pytest.raises(ValueError, match="do not fit the sidecar's 341 points at 128 px"):
        postprocess_exported(outputs, info)


@pytest.mark.integration
@pytest.mark.parametrize("kind", ["teacher", "student"])
def test_release_weights_keep_only_the_evaluation_weights_in_float16_and_load_everywhere(
    kind, checkpoints, synth_tiny, tmp_path
):
    from dfss.evaluate import run as evaluate
    from dfss.models.checkpoints import load_teacher, weights_kind

    ckpt, out = checkpoints[kind], tmp_path / f"{kind}.pt"
    export = ["format=weights", f"ckpt={ckpt}", f"output={out}"]
    result = run(compose_config("export", export, tmp_path / "x"))
    assert result["path"] == str(out)
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    assert result["sha256"] == digest
    assert (tmp_path / f"{kind}.pt.sha256").read_text() == f"{digest}  {kind}.pt\n"  # sha256sum -c format

    full, released = read_checkpoint(ckpt), read_checkpoint(out)
    prefix = "ema.module." if weights_kind(full) == "ema" else "model."
    assert set(released["state_dict"]) == {k for k in full["state_dict"] if k.startswith(prefix)}
    for key, value in released["state_dict"].items():  # float16 unless float16 cannot hold the values
        original = full["state_dict"][key]
        if not value.is_floating_point():
            assert torch.equal(value, original)
        elif original.abs().max() > torch.finfo(torch.float16).max:
            assert value.dtype == torch.float32 and torch.equal(value, original)
        else:
            assert value.dtype == torch.float16
    assert "optimizer_states" in full and "optimizer_states" not in released
    assert released["dfss_config"] == full["dfss_config"] and released["epoch"] == full["epoch"]
    assert out.stat().st_size < ckpt.stat().st_size / 3  # no optimizer state, one copy, half precision

    # the model rebuilt from the release gives the checkpoint's outputs, to float16 rounding
    images, _ = _test_images(synth_tiny, INPUT_SIZES[kind])
    with torch.no_grad():
        ours, theirs = decode(_model(out)(images)), decode(_model(ckpt)(images))
    difference = float((ours.class_probs - theirs.class_probs).abs().max())
    assert 0 < difference < 2e-3 and result["check"]["class_probs"] < 2e-3
    # ... and every reader takes it: export (releasing a release changes nothing), evaluation (with a
    # model card), the teacher of a distillation
    again = run(
        compose_config("export", [*export[:1], f"ckpt={out}", f"output={tmp_path / 'again.pt'}"], tmp_path)
    )
    assert again["check"]["class_probs"] == 0.0
    rereleased = read_checkpoint(again["path"])["state_dict"]
    assert all(torch.equal(v, rereleased[k]) for k, v in released["state_dict"].items())
    card = ["model_card=true"] if kind == "student" else []  # each reader once is enough
    metrics = [
        evaluate(compose_config("eval", [f"ckpt_path={path}", *card], tmp_path / f"eval_{i}"))
        for i, path in enumerate((ckpt, out))
    ]
    assert metrics[1]["map50"] == pytest.approx(metrics[0]["map50"], abs=0.05)
    if kind == "teacher":
        table = class_table_of(released, out)
        teacher = load_teacher(out, None, table)
        assert not any(p.requires_grad for p in teacher.parameters())
        assert all(p.dtype == torch.float32 for p in teacher.parameters())
    else:
        assert "weights of epoch" in (tmp_path / "eval_1" / "model_card.md").read_text()


@pytest.mark.integration
def test_release_weights_that_miss_the_tolerance_are_an_error_and_leave_no_file(checkpoints, tmp_path):
    out = tmp_path / "teacher.pt"
    export = ["format=weights", f"ckpt={checkpoints['teacher']}", f"output={out}", "weights_tolerance=0"]
    cfg = compose_config("export", export, tmp_path)
    with pytest.raises(ExportError, match=r"does not reproduce the model.*weights_dtype=float32"):
        run(cfg)
    assert not out.exists() and not (tmp_path / "teacher.pt.sha256").exists()
    cfg.weights_dtype = "float32"  # full precision reproduces it exactly
    assert run(cfg)["check"]["class_probs"] == 0.0


def test_release_casts_what_float16_holds_and_keeps_the_rest():
    from dfss.models.checkpoints import CheckpointError
    from dfss.models.release import release_checkpoint

    state = {
        "model.w": torch.tensor([0.1, -2.0]),
        "model.bn.running_var": torch.tensor([1.0, 1.6e5]),  # past float16's 65504
        "model.bn.num_batches_tracked": torch.tensor(7),
        "model.nan": torch.tensor([float("nan")]),  # not finite already: cast as the rest
        "other.w": torch.ones(1),
    }
    checkpoint = {"state_dict": state, "dfss_config": {}, "optimizer_states": [{}], "epoch": 3}
    released = release_checkpoint(checkpoint, source="x.ckpt")
    out = released["state_dict"]
    assert set(out) == {"model.w", "model.bn.running_var", "model.bn.num_batches_tracked", "model.nan"}
    assert out["model.w"].dtype == torch.float16 and out["model.nan"].dtype == torch.float16
    assert out["model.bn.running_var"].dtype == torch.float32 and out["model.bn.running_var"][1] == 1.6e5
    assert out["model.bn.num_batches_tracked"].dtype == torch.int64
    assert set(released) == {"state_dict", "dfss_config", "epoch", "dfss_release"}
    assert released["dfss_release"] == {"weights": "model", "dtype": "float16", "source": "x.ckpt"}
    state["ema.module.w"] = torch.zeros(1)  # EMA weights, when there are, are the ones kept
    assert set(release_checkpoint(checkpoint)["state_dict"]) == {"ema.module.w"}
    with pytest.raises(CheckpointError, match="dtype must be one of"):
        release_checkpoint(checkpoint, dtype="int8")
