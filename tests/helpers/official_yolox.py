"""Official YOLOX 0.3.0 parity: the shared recipe of the reference weights and inputs, and (for the
script that regenerates the stored outputs) the official model code imported from its PyPI sdist.

The parity tests in ``tests/test_yolox.py`` run offline: they rebuild the same reference weights
with *our* YOLOX (:func:`reference_weights`, deterministic for a seed), load them as an official
checkpoint, and compare our outputs and losses with what the official code computed for exactly
those weights and inputs, stored in ``tests/fixtures/official_yolox.pt`` by
``tests/fixtures/make_official_yolox.py`` (the only place that needs the official source).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from dfss.models.yolox import YOLOX_VARIANTS

REPO_ROOT = Path(__file__).resolve().parents[2]
YOLOX_VERSION = "0.3.0"
NUM_CLASSES = 5
FIXTURE = REPO_ROOT / "tests" / "fixtures" / "official_yolox.pt"

OUTPUT_CASES = {"yolox_nano": 0, "yolox_s": 0}  # variant -> seed: eval-mode outputs, 2 images 96 x 64
LOSS_CASES = {"yolox_nano": 1, "yolox_tiny": 1}  # variant -> seed: train-mode losses with L1, 3 images

# The loss cases' targets: an image with two boxes, one without, one with three (xyxy pixels).
LOSS_BOXES = [
    [[4.0, 8.0, 36.0, 60.0], [20.0, 40.0, 60.0, 90.0]],
    [],
    [[0.0, 0.0, 24.0, 20.0], [10.0, 30.0, 50.0, 80.0], [40.0, 2.0, 62.0, 30.0]],
]
LOSS_LABELS = [[1, 4], [], [0, 3, 3]]


def random_images(batch: int, height: int = 64, width: int = 64, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, 3, height, width), dtype=torch.uint8, generator=generator)


def case_images(kind: str, seed: int) -> torch.Tensor:
    """The RGB uint8 images of an output (2 images) or loss (3 images) case, 96 x 64."""
    return random_images(2 if kind == "outputs" else 3, 96, 64, seed=seed)


def reference_weights(variant: str, images: torch.Tensor, seed: int) -> dict[str, torch.Tensor]:
    """Weights far from the initial ones, as a trained model's are, made with our YOLOX (whose keys are
    the official ones): running batch-norm statistics of real activations (computed in float64, so
    that every CPU makes the same float32 weights), batch-norm affine
    parameters spread around 1 / 0, noisy prediction biases, box weights kept in a trained range."""
    torch.manual_seed(seed)
    model = YOLOX_VARIANTS[variant](NUM_CLASSES)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    model.double().train()  # float64: the statistics come out bit-equal on every CPU
    with torch.no_grad():
        for norm in norms:
            norm.momentum = 1.0  # one pass sets the running statistics
        model.backbone(model.normalize(images.double()))
    model.float()
    with torch.no_grad():
        for norm in norms:
            norm.momentum = 0.03
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.normal_(0.0, 0.1)
        head = model.head
        for conv in [*head.cls_preds, *head.obj_preds, *head.reg_preds]:
            conv.bias.add_(torch.randn_like(conv.bias) * 0.5)
        for conv in head.reg_preds:  # log(w), log(h) in a trained model's range (no exp overflow)
            conv.weight.mul_(0.02)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def fingerprint(state: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per tensor (in key order) the float64 sum and sum of absolute values: equal up to rounding for
    the same weights made on another CPU (the running statistics come from a forward pass), and far
    apart when the random numbers differ (another torch version)."""
    return torch.tensor(
        [[float(state[k].double().sum()), float(state[k].double().abs().sum())] for k in sorted(state)]
    )


def same_weights(state: dict[str, torch.Tensor], stored: torch.Tensor) -> bool:
    """Both sums of every tensor equal up to 1e-5 of its sum of absolute values: a signed sum of
    running means cancels to near 0, where the forward pass's rounding on another CPU (a few 1e-6
    of the absolute sum) is a large part of it; different random numbers move it by O(1)."""
    found = fingerprint(state)
    if found.shape != stored.shape:
        return False
    scale = stored[:, 1:].abs() * 1e-5 + 1e-6
    return bool(((found - stored).abs() <= scale).all())


def loss_targets() -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    boxes = [torch.tensor(b, dtype=torch.float32).reshape(-1, 4) for b in LOSS_BOXES]
    labels = [torch.tensor(lab, dtype=torch.int64) for lab in LOSS_LABELS]
    return boxes, labels


# ---- the official code (only the fixture script uses what follows) ----------------------------
OFFICIAL_FILES = {
    "yolox/models": (
        "network_blocks.py",
        "darknet.py",
        "yolo_pafpn.py",
        "yolo_head.py",
        "yolox.py",
        "losses.py",
    ),
    "yolox/utils": ("boxes.py", "compat.py"),
}


def fetch_official_source(cache: Path) -> Path:
    """The extracted ``yolox`` sdist from PyPI (``pip download``), cached in ``cache``."""
    source = cache / f"yolox-{YOLOX_VERSION}"
    if (source / "yolox" / "models" / "yolo_head.py").is_file():
        return source
    cache.mkdir(parents=True, exist_ok=True)
    archive = cache / f"yolox-{YOLOX_VERSION}.tar.gz"
    if not archive.is_file():
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-build-isolation"]
        command += [f"yolox=={YOLOX_VERSION}", "-d", str(cache), "--quiet"]
        subprocess.run(command, check=True, timeout=300)
    with tarfile.open(archive) as tar:
        tar.extractall(cache, filter="data")
    return source


@contextmanager
def official_yolox(source: Path, workdir: Path) -> Iterator[dict]:
    """The official ``yolox.models`` (YOLOX 0.3.0) imported from a minimal package shim.

    Shimmed, and why parity still holds: the archive's ``yolox/__init__.py``,
    ``yolox/models/__init__.py`` and ``yolox/utils/__init__.py`` import the whole package (data,
    evaluators, cv2, loguru, pycocotools...). We copy, **unmodified**, the files that define the
    model and its losses (``network_blocks``, ``darknet``, ``yolo_pafpn``, ``yolo_head``, ``yolox``,
    ``losses``) and the two helpers ``yolo_head`` imports from ``yolox.utils`` (``boxes.py`` for
    ``bboxes_iou``, ``compat.py`` for ``meshgrid``) into a temporary package whose ``__init__``
    files are empty except ``utils/__init__.py``, which re-exports exactly those two names. When
    ``loguru`` is not installed, a stand-in ``loguru.logger`` (a stdlib logger) is provided: the
    official head only logs with it on CUDA out-of-memory. No official line of model, assignment or
    loss code is replaced, so the compared computations are the official ones.
    """
    root = workdir / "official_yolox"
    for package, names in OFFICIAL_FILES.items():
        (root / package).mkdir(parents=True, exist_ok=True)
        for name in names:
            shutil.copy(source / package / name, root / package / name)
    (root / "yolox" / "__init__.py").write_text("")
    (root / "yolox" / "models" / "__init__.py").write_text("")
    (root / "yolox" / "utils" / "__init__.py").write_text(
        "from .boxes import bboxes_iou\nfrom .compat import meshgrid\n"
    )
    shimmed = ["yolox"]
    try:
        import loguru  # noqa: F401
    except ImportError:
        (root / "loguru").mkdir(exist_ok=True)
        (root / "loguru" / "__init__.py").write_text(
            "import logging\nlogger = logging.getLogger('loguru-shim')\n"
        )
        shimmed.append("loguru")
    saved = {name: module for name, module in sys.modules.items() if name.split(".")[0] in shimmed}
    for name in saved:
        del sys.modules[name]
    sys.path.insert(0, str(root))
    try:
        from yolox.models.yolo_head import YOLOXHead
        from yolox.models.yolo_pafpn import YOLOPAFPN
        from yolox.models.yolox import YOLOX

        yield {"YOLOX": YOLOX, "YOLOPAFPN": YOLOPAFPN, "YOLOXHead": YOLOXHead}
    finally:
        sys.path.remove(str(root))
        for name in [name for name in sys.modules if name.split(".")[0] in shimmed]:
            del sys.modules[name]
        sys.modules.update(saved)
