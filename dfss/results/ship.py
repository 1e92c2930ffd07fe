"""Ship a finished plan's trained weights: its teacher and its best DFSS student, each as a float16
release file (``dfss.models.release``) with its ``.sha256`` and the model card that
``evaluate.py model_card=true`` writes for that very file on the plan's test split.

    python -m dfss.results.ship --results results/cpu_benchmark --out weights   # (make weights)

The student is the DFSS run (role ``distill``) with the best *validation* mAP50 of its last epoch —
chosen without looking at the test split; ties go to the lowest seed (while no DFSS run has finished,
the teacher alone is shipped). Files are named after the role
and the model: ``teacher_yolox_s.pt``, ``dfss_fcos_mobilenetv3_64.pt`` (the FPN width when set).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from dfss.config import compose_config
from dfss.errors import ConfigError, UserError
from dfss.fileio import open_atomic, write_text_atomic
from dfss.models.release import sha256_of
from dfss.results.runner import RELEASE_WEIGHTS


def _index(results: Path) -> dict[str, Any]:
    path = results / "index.json"
    if not path.is_file():
        raise ConfigError(f"{results} holds no plan (no index.json): run dfss-results --out {results} first")
    return json.loads(path.read_text())


def _val_map50(run_dir: Path) -> float:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    if "val/map50" not in metrics:
        raise ConfigError(f"{run_dir / 'metrics.json'} has no val/map50 to choose the shipped student by")
    return float(metrics["val/map50"])


def chosen_runs(results: Path) -> list[tuple[str, str]]:
    """``(prefix, run name)`` of the runs to ship: the teacher, and the best DFSS run by val mAP50
    among those that have finished with ``weights.pt`` (none yet: the teacher alone)."""
    runs = _index(results)["runs"]
    teachers = sorted(n for n, r in runs.items() if r["role"] == "teacher")
    candidates = [
        (r["seed"], n)
        for n, r in runs.items()
        if r["role"] == "distill" and (results / n / RELEASE_WEIGHTS).is_file()
    ]
    missing = [n for n in teachers if not (results / n / RELEASE_WEIGHTS).is_file()]
    if not teachers or missing:
        raise ConfigError(f"{results}: no finished teacher run with {RELEASE_WEIGHTS} ({missing or 'none'})")
    if not candidates:  # a plan under way: its teacher alone
        return [("teacher", teachers[0])]
    best = max(sorted(candidates), key=lambda c: _val_map50(results / c[1]))[1]
    return [("teacher", teachers[0]), ("dfss", best)]


def file_name(prefix: str, config: dict[str, Any]) -> str:
    net = config["model"]["net"]
    name = f"{prefix}_{net['_target_'].rsplit('.', 1)[-1]}"
    return f"{name}_{net['fpn_channels']}.pt" if net.get("fpn_channels") else f"{name}.pt"


def ship(results: Path, out: Path) -> list[Path]:
    """Copy the chosen runs' weights into ``out`` with their sha256 and model card; returns the files."""
    from dfss.evaluate import run as evaluate
    from dfss.models.checkpoints import read_checkpoint

    index = _index(results)
    out.mkdir(parents=True, exist_ok=True)
    shipped = []
    for prefix, run in chosen_runs(results):
        source = results / run / RELEASE_WEIGHTS
        released = read_checkpoint(source)
        target = out / file_name(prefix, released["dfss_config"])
        with open_atomic(target, "wb") as f, source.open("rb") as src:
            shutil.copyfileobj(src, f)
        write_text_atomic(target.with_name(target.name + ".sha256"), f"{sha256_of(target)}  {target.name}\n")
        with tempfile.TemporaryDirectory() as tmp:
            overrides = [*index["plan"]["eval"], f"ckpt_path={target}", "model_card=true", "split=test"]
            overrides.append("data.num_workers=2")  # the data config's 8 loader workers, on 2 cores
            evaluate(compose_config("eval", overrides, tmp))
            card = (Path(tmp) / "model_card.md").read_text()
        write_text_atomic(target.with_suffix(".md"), card.replace(str(target.resolve()), str(target)))
        print(f"{target} <- {source} (sha256 {sha256_of(target)}); model card {target.with_suffix('.md')}")
        shipped.append(target)
    return shipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dfss.results.ship",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--results", default="results/cpu_benchmark", help="a finished plan's folder")
    parser.add_argument("--out", default="weights", help="where the weight files go (default: weights)")
    args = parser.parse_args(argv)
    try:
        ship(Path(args.results), Path(args.out))
    except UserError as error:
        print(f"dfss ship: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
