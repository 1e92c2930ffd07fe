"""Composing DFSS's Hydra configs from Python (the demo and the tests), as the command line would."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from importlib import resources
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


HYDRA_FLAGS_WITHOUT_VALUE = ("-m", "--multirun", "--resolve", "--help", "-h", "--hydra-help")
# Flags followed by a value: --cfg needs one, --info may have one (Hydra's argparse choices).
_CFG_CHOICES = ("job", "hydra", "all")
_INFO_CHOICES = ("all", "config", "defaults", "defaults-tree", "plugins", "searchpath")
HYDRA_FLAG_VALUES = {"--cfg": _CFG_CHOICES, "-c": _CFG_CHOICES, "--info": _INFO_CHOICES, "-i": _INFO_CHOICES}


def hoist_flags(argv: Sequence[str]) -> list[str]:
    """Move Hydra's flags (with their values) before the ``key=value`` overrides.

    Hydra's command line is parsed by argparse, which refuses a flag after positional overrides
    (``python evaluate.py ckpt_path=x -m threshold.T=0,0.1`` fails with "unrecognized arguments").
    Users write it both ways, so the entry points accept both: ``-m`` / ``--multirun`` and the other
    flags that take no value are moved to the front, and so are ``--cfg job`` / ``--info config``
    together with their value; everything else keeps its order.
    """
    program, *args = argv
    flags: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in HYDRA_FLAGS_WITHOUT_VALUE:
            flags.append(arg)
        elif arg in HYDRA_FLAG_VALUES:
            flags.append(arg)
            if i + 1 < len(args) and args[i + 1] in HYDRA_FLAG_VALUES[arg]:
                flags.append(args[i + 1])
                i += 1
        else:
            rest.append(arg)
        i += 1
    return [program, *flags, *rest]


def _leaf_keys(node: object, prefix: str = "") -> list[str]:
    if isinstance(node, DictConfig):
        keys = []
        for key in node:
            child = node._get_node(key)
            full = f"{prefix}{key}"
            keys.append(full)
            if isinstance(child, DictConfig):
                keys.extend(_leaf_keys(child, f"{full}."))
        return keys
    return []


def suggest_overrides(config_name: str, overrides: Sequence[str]) -> list[str]:
    """``did you mean`` lines for overrides that name no setting, no config group or no option.

    Run after Hydra refused a command line: the config is composed with the overrides that choose
    existing config group options (``model=...``, ``experiment=...``) and each override is looked
    up: a missing ``a.b`` key gets the closest existing keys, a misspelt group (``modle=fcos_r18``)
    the closest groups and top-level keys, a misspelt option (``model=fcos_r5``) the group's closest
    options. Returns nothing when the config cannot be composed.
    """
    plain = [o for o in overrides if "=" in o and not o.startswith(("+", "~", "-", "hydra."))]
    chosen = [o for o in plain if _is_group(o) and o.split("=", 1)[1] in _group_options(o.split("=", 1)[0])]
    try:
        GlobalHydra.instance().clear()
        with initialize_config_module(config_module="dfss.conf", version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=chosen)
    except Exception:
        return []
    keys = _leaf_keys(cfg)
    groups = sorted(p.name for p in resources.files("dfss.conf").iterdir() if p.is_dir() and p.name[0] != "_")
    lines = []
    for override in plain:
        key, value = override.split("=", 1)
        if _is_group(override):
            options = _group_options(key)
            close = difflib.get_close_matches(value, options, n=3, cutoff=0.6)
            if value not in options and close:
                lines.append(
                    f"'{override}': {key} has no option {value!r}; did you mean "
                    + " or ".join(f"{key}={c}" for c in close)
                    + "?"
                )
            continue
        if key in keys:
            continue
        same_depth = [k for k in keys if k.count(".") == key.count(".")]
        candidates = sorted(set(same_depth) | (set() if "." in key else set(groups)))
        close = difflib.get_close_matches(key, candidates, n=3, cutoff=0.75)
        if close:
            lines.append(
                f"'{key}' is not a setting; did you mean " + " or ".join(f"{c}={value}" for c in close) + "?"
            )
    return lines


def _is_group(override: str) -> bool:
    """``model=fcos_r18`` chooses a config group (a folder of ``dfss/conf``); ``seed=1`` does not."""
    key = override.split("=", 1)[0]
    return (resources.files("dfss.conf") / key).is_dir()


def _group_options(group: str) -> list[str]:
    """The options of a config group: its yaml files, by name."""
    folder = resources.files("dfss.conf") / group
    return (
        sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml")) if folder.is_dir() else []
    )


def run_hydra_app(app: Callable[[], object], config_name: str) -> None:
    """Run a ``@hydra.main`` app; when Hydra refuses the command line, add ``did you mean`` hints."""
    import sys

    sys.argv = hoist_flags(sys.argv)
    try:
        app()
    except SystemExit as exit_:
        if exit_.code == 1:
            for line in suggest_overrides(config_name, sys.argv[1:]):
                print(line, file=sys.stderr)
        raise


def data_of(cfg: DictConfig, task: str) -> DictConfig:
    """``cfg.data`` for a task that has no checkpoint to take its data from (train, inspect):
    ``data=checkpoint`` is evaluate.py's option, refused here with the options that are."""
    from dfss.errors import ConfigError

    if cfg.data.get("from_checkpoint"):
        options = ", ".join(o for o in _group_options("data") if o != "checkpoint")
        raise ConfigError(
            f"data=checkpoint (a checkpoint's own data) is for evaluate.py; {task} needs one of: {options}"
        )
    return cfg.data
