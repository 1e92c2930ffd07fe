"""The speed benchmarks (``bench/``) run and report what the benchmark tables are built from (tiny sizes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.scripts import bench_script, script_rows


def _rows(script: str, *args: str) -> list[dict]:
    return script_rows("bench", script, *args)


@pytest.mark.integration
def test_eval_speed_scores_both_backends_identically():
    rows = _rows("eval_speed.py", "--images", "60")
    head, *results = rows
    assert head["detections"] == 6000 and head["cores"] == 1
    assert {r["backend"] for r in results} == {"faster_coco_eval", "pycocotools"}
    assert all(r["max_abs_metric_diff"] <= 1e-12 and r["seconds"] > 0 for r in results)


@pytest.mark.integration
def test_data_speed_reports_per_worker_and_loader_rates(tmp_path):
    rows = _rows(
        "data_speed.py",
        "--images",
        "4",
        "--samples",
        "4",
        "--batches",
        "2",
        "--batch-size",
        "2",
        "--workers",
        "1",
        "--image-size",
        "256",
        "--step-img-per-s",
        "1000",
    )
    results = [r for r in rows if r["bench"] == "data_speed"]
    assert [r["pipeline"] for r in results] == ["student", "teacher"]
    for r in results:
        assert r["img_per_s_per_worker"] > 0 and r["loader_img_per_s"] > 0
        assert r["workers_needed"] >= 1 and isinstance(r["data_bound_with_default_workers"], bool)


@pytest.mark.slow
def test_steps_speed_measures_every_step_type_and_checks_the_targets():
    rows = _rows("steps_speed.py", "--image-size", "128", "--steps", "1", "--warmup", "0")
    steps = {r["step"]: r for r in rows if r["bench"] == "steps_speed"}
    assert set(steps) >= {
        "tv_train",
        "tv_infer",
        "tv_infer_bs1",
        "net_only",
        "student",
        "distill",
        "infer",
        "infer_bs1",
        "teacher",
    }
    assert 0 < steps["teacher"]["assign_frac"] < 1
    # every ratio is against the baseline measured in the same run (rounded to 3 decimals there)
    for step, base in (("student", "tv_train"), ("distill", "tv_train"), ("infer", "tv_infer")):
        assert steps[step]["x_tv"] == pytest.approx(
            steps[step]["img_per_s"] / steps[base]["img_per_s"], abs=2e-3
        )
    student = steps["student"]
    assert student["x_net_only"] == pytest.approx(
        student["img_per_s"] / steps["net_only"]["img_per_s"], abs=2e-3
    )


@pytest.mark.integration
def test_precision_speed_times_each_row_in_float32_and_bf16_against_the_same_baseline():
    from dfss.precision import native_bf16

    args = ["--only", "yolox_nano", "--image-size", "64", "--batch-size", "1", "--steps", "1"]
    head, *results = _rows("precision_speed.py", *args, "--warmup", "0", "--emulated-bf16")
    assert head["native_bf16"] == native_bf16("cpu") and head["modes"] == ["fp32", "bf16_cl"]
    by = {(r["row"], r["mode"]): r for r in results}
    assert set(by) == {(row, mode) for row in ("tv_fcos_r50", "yolox_nano") for mode in ("fp32", "bf16_cl")}
    tv_fp32 = by[("tv_fcos_r50", "fp32")]["ms"]
    for (row, _mode), r in by.items():
        assert r["ms"] > 0 and r["mib_per_img"] is not None
        assert r["x_fp32"] == pytest.approx(by[(row, "fp32")]["ms"] / r["ms"], rel=1e-2)
        assert r["x_tv"] == pytest.approx(tv_fp32 / r["ms"], rel=1e-2)


def test_precision_speed_times_bf16_only_where_it_is_native_unless_asked(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "bench"))  # its sibling modules
    timed_modes = bench_script("precision_speed").timed_modes
    assert timed_modes(native=True, emulated_bf16=False, compile=False) == ["fp32", "bf16_cl"]
    assert timed_modes(native=False, emulated_bf16=False, compile=True) == ["fp32"]  # emulated: slow
    both = ["fp32", "bf16_cl", "bf16_cl_compile"]
    assert timed_modes(native=False, emulated_bf16=True, compile=True) == both


@pytest.mark.integration
def test_export_speed_times_onnxruntime_and_pytorch_on_the_same_outputs():
    rows = _rows(
        "export_speed.py",
        "--size",
        "128",
        "--variants",
        "fcos_mobilenetv3",
        "--batch-size",
        "2",
        "--steps",
        "1",
        "--batch-steps",
        "1",
        "--warmup",
        "0",
    )
    head, *results = rows
    assert head["image_size"] == 128 and head["threads"] == 1 and head["onnxruntime"]
    assert [(r["model"], r["runtime"]) for r in results] == [
        ("fcos_mobilenetv3", "pytorch"),
        ("fcos_mobilenetv3", "onnxruntime"),
    ]
    pytorch, ort = results
    # onnxruntime's ratios are against the PyTorch timings of the same run (rounded to 2 decimals there)
    latency_x = pytorch["latency_bs1_ms"] / ort["latency_bs1_ms"]
    assert ort["latency_x_pytorch"] == pytest.approx(latency_x, abs=0.01 + 0.05 * latency_x)
    throughput_x = ort["img_per_s"] / pytorch["img_per_s"]
    assert ort["throughput_x_pytorch"] == pytest.approx(throughput_x, abs=0.01 + 0.05 * throughput_x)
    assert ort["export_s"] > 0 and ort["onnx_mib"] > 1
    for r in results:
        assert r["latency_bs1_ms"] > 0 and r["img_per_s"] > 0 and r["postprocess_bs1_ms"] > 0
        assert r["max_abs_diff_boxes_px"] < 1e-2 and r["max_abs_diff_probs"] < 1e-5


@pytest.mark.integration
def test_student_candidates_measure_flops_latency_and_training_against_the_teacher():
    args = ["--image-size", "64", "--batch-size", "2", "--steps", "1", "--warmup", "0"]
    head, *rows = _rows("student_candidates.py", *args, "--only", "fcos_mnv3_h64", "fcos_mnv3_h128")
    assert head["image_size"] == 64 and head["precision"] in ("float32", "bf16 + channels_last")
    by = {r["model"]: r for r in rows}
    assert list(by) == ["yolox_s", "fcos_mnv3_h64", "fcos_mnv3_h128"]  # the teacher first, the reference
    teacher, h64, h128 = by.values()
    # YOLOX-s is 6.6 GFLOPs at 320 px: (64 / 320)^2 of it here; a wider head costs more
    assert teacher["gflops"] == pytest.approx(6.6 * (64 / 320) ** 2, rel=0.05)
    assert h64["gflops"] < h128["gflops"] and h64["params_m"] < h128["params_m"] < teacher["params_m"]
    for r in rows:
        assert r["gflops_x_teacher"] == pytest.approx(r["gflops"] / teacher["gflops"], abs=2e-3)
        assert r["latency_bs1_ms"] > 0 and r["train_img_per_s"] > 0
    assert "distill_img_per_s" not in teacher and h64["distill_img_per_s"] > 0
