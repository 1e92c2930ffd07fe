"""Composing DFSS's Hydra configs from Python (the demo and the tests), as the command line would."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict


def compose_config(config_name: str, overrides: Sequence[str], output_dir: str | Path) -> DictConfig:
    """The app's config (``train``, ``eval``, ``inspect``) with ``overrides``, writing to ``output_dir``.

    Outside a Hydra run there is no run folder to resolve ``paths.output_dir`` from, so it is given.
    """
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="dfss.conf", version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=list(overrides))
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
    return cfg


HYDRA_FLAGS_WITHOUT_VALUE = (
    "-m",
    "--multirun",
    "--cfg",
    "-c",
    "--resolve",
    "--info",
    "-i",
    "--help",
    "-h",
    "--hydra-help",
)


def hoist_flags(argv: Sequence[str]) -> list[str]:
    """Move Hydra's flags before the ``key=value`` overrides.

    Hydra's command line is parsed by argparse, which refuses a flag after positional overrides
    (``python evaluate.py ckpt_path=x -m threshold.T=0,0.1`` fails with "unrecognized arguments").
    Users write it both ways, so the entry points accept both: ``-m`` / ``--multirun`` (and the other
    flags that take no value) are moved to the front; everything else, flags with a value such as
    ``--cfg job`` included, keeps its order.
    """
    program, *args = argv
    flags = [a for a in args if a in HYDRA_FLAGS_WITHOUT_VALUE]
    return [program, *flags, *(a for a in args if a not in HYDRA_FLAGS_WITHOUT_VALUE)]
