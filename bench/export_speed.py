"""Exported-model speed on the CPU: onnxruntime next to PyTorch eager, for the FCOS students.

Each student variant — the builder and settings of ``conf/model/<variant>.yaml``, random weights
(no pre-trained backbone), 20 classes as the synthetic benchmark — is exported by
:func:`dfss.export.export_file` (network + box decoding, dynamic batch, the file ``dfss-export``
writes) and both runtimes are timed in this process on the same random uint8 images:

- **pytorch**: eager :class:`dfss.export.DecodedDetector` (the model, then
  :func:`~dfss.models.postprocess.decode`) under ``torch.inference_mode`` — the baseline;
- **onnxruntime**: the ``.onnx`` on the CPU execution provider, all graph optimisations on.

Both get the same number of threads (``--threads``, default 1: on shared cores, multi-thread
timings were erratic, see ``models_speed.py``), and take turns call by call (a change in the
machine's load falls on both alike). ``lat bs1``: median ms of one image;
``img/s``: images per second at ``--batch-size``; ``x pt``: speed-up over PyTorch eager (> 1 =
faster). Post-processing (scores, NMS: the same torch code after either runtime) is not in these
figures; ``post ms`` is its time for one image at the default settings, for scale (random weights
score every point near the prior, above the 0.05 floor: the worst-case load). ``max |diff|``:
the largest absolute difference of the outputs (boxes in pixels, probabilities) between the two
runtimes on the timed images.

    python bench/export_speed.py                 # 640 px, the three students
    python bench/export_speed.py --quick         # 320 px, fewer timed calls
    python bench/export_speed.py --size 512 --variants fcos_mobilenetv3 --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import onnxruntime
import torch
from _common import device_name, load_average, machine, print_json_lines, release_memory, time_calls
from hydra.utils import instantiate
from omegaconf import OmegaConf

from dfss.export import DecodedDetector, export_file, random_images
from dfss.models.postprocess import PostProcessConfig, decode, postprocess_decoded

VARIANTS = ("fcos_r18", "fcos_r50", "fcos_mobilenetv3")
NUM_CLASSES = 20  # as the synthetic benchmark: 8 dangerous + 12 normal
BASELINE = "pytorch"
CPU = torch.device("cpu")


def build_student(name: str) -> torch.nn.Module:
    """The variant as ``model=<name>`` builds it, random weights."""
    config = OmegaConf.load(str(resources.files("dfss.conf") / "model" / f"{name}.yaml"))
    return instantiate(config.net, num_classes=NUM_CLASSES).eval()


def time_interleaved(
    calls: dict[str, Callable[[], object]], warmup: int, steps: int
) -> dict[str, list[float]]:
    """Seconds of each timed call per name, the names taking turns call by call, so that a change in
    the machine's load (a shared machine) falls on both runtimes alike."""
    for _ in range(warmup):
        for call in calls.values():
            call()
    seconds: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(steps):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            seconds[name].append(time.perf_counter() - start)
    return seconds


def measure(name: str, args: argparse.Namespace, workdir: Path) -> list[dict]:
    torch.manual_seed(args.seed)
    graph = DecodedDetector(build_student(name)).eval()
    path = workdir / f"{name}.onnx"
    start = time.perf_counter()
    export_file(graph.model, path, "onnx", args.size)
    export_s = time.perf_counter() - start
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    one, batch = (
        random_images(1, args.size, args.seed),
        random_images(args.batch_size, args.size, args.seed + 1),
    )
    one_np, batch_np = one.numpy(), batch.numpy()

    def pytorch(images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with torch.inference_mode():
            return graph(images)

    def ort(images) -> list:
        return session.run(None, {"images": images})

    latency = time_interleaved(
        {"pytorch": lambda: pytorch(one), "onnxruntime": lambda: ort(one_np)}, args.warmup, args.steps
    )
    throughput = time_interleaved(
        {"pytorch": lambda: pytorch(batch), "onnxruntime": lambda: ort(batch_np)}, 1, args.batch_steps
    )
    timings = {
        runtime: (statistics.median(latency[runtime]), statistics.median(throughput[runtime]))
        for runtime in latency
    }

    theirs, ours = pytorch(batch), [torch.from_numpy(a) for a in ort(batch_np)]
    diff_boxes = float((theirs[0] - ours[0]).abs().max())
    diff_probs = max(float((theirs[i] - ours[i]).abs().max()) for i in (1, 2))
    with torch.inference_mode():
        decoded = decode(graph.model(one))  # an untrained model: every top-k candidate reaches NMS
    post_s = statistics.median(
        time_calls(lambda: postprocess_decoded(decoded, PostProcessConfig(), args.size), CPU, 1, args.steps)
    )
    params_m = sum(p.numel() for p in graph.parameters()) / 1e6
    base_latency, base_batch = timings[BASELINE]
    rows = []
    for runtime, (latency_s, batch_s) in timings.items():
        rows.append(
            {
                "bench": "export_speed",
                "model": name,
                "runtime": runtime,
                "params_m": round(params_m, 2),
                "latency_bs1_ms": round(1e3 * latency_s, 1),
                "img_per_s": round(args.batch_size / batch_s, 2),
                "latency_x_pytorch": round(base_latency / latency_s, 2),
                "throughput_x_pytorch": round(base_batch / batch_s, 2),
                "postprocess_bs1_ms": round(1e3 * post_s, 1),
                "export_s": round(export_s, 1) if runtime == "onnxruntime" else None,
                "onnx_mib": round(path.stat().st_size / 2**20, 1) if runtime == "onnxruntime" else None,
                "max_abs_diff_boxes_px": float(f"{diff_boxes:.2e}"),
                "max_abs_diff_probs": float(f"{diff_probs:.2e}"),
            }
        )
    return rows


def print_table(head: dict, rows: list[dict]) -> None:
    print(
        f"# export_speed  {head['date']}  {head['device']}  torch {head['torch']}  "
        f"onnxruntime {head['onnxruntime']}  threads {head['threads']}  image {head['image_size']}  "
        f"batch {head['batch_size']}  load avg {head['load_avg_1m_at_start']} -> "
        f"{head['load_avg_1m_at_end']} on {head['cpus_available']} cpus"
    )
    print(
        "# network + decode, uint8 in; x pt = speed-up over PyTorch eager (> 1 faster); "
        "post ms = NMS etc. (same for both, not included)"
    )
    columns = (
        f"{'model':<18}{'runtime':<13}{'params M':>9}{'lat bs1 ms':>11}{'x pt':>6}{'img/s':>8}"
        f"{'x pt':>6}{'post ms':>8}{'export s':>9}{'max |diff| box/prob':>21}"
    )
    print(columns)
    print("-" * len(columns))
    for r in rows:
        export = "" if r["export_s"] is None else f"{r['export_s']:.1f}"
        print(
            f"{r['model']:<18}{r['runtime']:<13}{r['params_m']:>9.2f}{r['latency_bs1_ms']:>11.1f}"
            f"{r['latency_x_pytorch']:>6.2f}{r['img_per_s']:>8.2f}{r['throughput_x_pytorch']:>6.2f}"
            f"{r['postprocess_bs1_ms']:>8.1f}{export:>9}"
            f"{r['max_abs_diff_boxes_px']:>12.1e}/{r['max_abs_diff_probs']:.1e}"
        )
    print_json_lines(head, rows)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=None, help="input size (default 640, --quick 320)")
    parser.add_argument("--quick", action="store_true", help="320 px, 3 timed calls, batch 2")
    parser.add_argument(
        "--batch-size", type=int, default=None, help="throughput batch (default 4, --quick 2)"
    )
    parser.add_argument("--steps", type=int, default=None, help="timed batch-1 calls (default 10, --quick 3)")
    parser.add_argument("--batch-steps", type=int, default=None, help="timed batch calls (default 3)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed batch-1 calls")
    parser.add_argument("--threads", type=int, default=1, help="torch and onnxruntime intra-op threads")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.size = args.size or (320 if args.quick else 640)
    args.batch_size = args.batch_size or (2 if args.quick else 4)
    args.steps = args.steps or (3 if args.quick else 10)
    args.batch_steps = args.batch_steps or (2 if args.quick else 3)
    torch.set_num_threads(args.threads)
    head = {
        "bench": "export_speed_header",
        "device": device_name(CPU),
        **machine(),
        "onnxruntime": onnxruntime.__version__,
        "image_size": args.size,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "batch_steps": args.batch_steps,
        "warmup": args.warmup,
        "num_classes": NUM_CLASSES,
    }
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for name in args.variants:
            rows.extend(measure(name, args, Path(workdir)))
            release_memory(CPU)
    head["load_avg_1m_at_end"] = load_average()
    print_table(head, rows)
    return rows


if __name__ == "__main__":
    main()
