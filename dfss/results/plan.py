"""A results plan: which runs the paper's experiments need, as Hydra overrides.

A plan (``dfss/results/plans/<name>.yaml``) names an experiment file and extra overrides for each
stage — (1) teacher, (2) student, (3) distill, (4) weighted alpha, (6) KD ablations — the seeds, and
the unknown thresholds (5) to re-score with. :func:`expand` turns it into the ordered list of
:class:`RunSpec`: every run is exactly ``train.py experiment=<file> <overrides>`` with its seed and,
for students being distilled, the teacher run's checkpoint.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf

from dfss.errors import ConfigError

ROLES = ("teacher", "student", "distill", "weighted", "ablation")
_STAGE_KEYS = {"experiment", "seeds", "overrides", "alphas", "options"}
_PLAN_KEYS = {
    "name",
    "description",
    "synth_preset",
    "data_dir",
    "seeds",
    "common",
    "eval",
    "unknown",
    "jobs",
    "release",
    *ROLES,
}


@dataclass(frozen=True)
class Stage:
    experiment: str
    overrides: tuple[str, ...] = ()
    seeds: tuple[int, ...] | None = None  # None: the plan's seeds
    alphas: tuple[float, ...] = ()  # weighted only
    options: tuple[str, ...] = ()  # ablation only: loss group options


@dataclass(frozen=True)
class Plan:
    name: str
    description: str
    synth_preset: str
    data_dir: str
    seeds: tuple[int, ...]
    common: tuple[str, ...]
    eval: tuple[str, ...]
    stages: dict[str, Stage]
    unknown_alpha: float
    unknown_T: tuple[float, ...]
    jobs: int = 1  # runs trained side by side (each in its own process) unless dfss-results --jobs says
    # roles whose finished runs also leave float16 release weights (weights.pt) to commit; the teacher's
    # always do (its students distil from them)
    release: tuple[str, ...] = ("teacher",)

    def seeds_of(self, role: str) -> tuple[int, ...]:
        stage = self.stages[role]
        return self.seeds if stage.seeds is None else stage.seeds

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RunSpec:
    """One training run and what the report needs to place it."""

    name: str  # folder name, unique in the plan: teacher_s1, weighted_a2_s1, ablation_kd_no_cls_s1
    role: str  # teacher | student | distill | weighted | ablation
    experiment: str
    seed: int
    overrides: tuple[str, ...]  # everything after experiment=..., without the teacher checkpoint
    alpha: float = 1.0
    variant: str | None = None  # ablation: the loss option
    teacher: str | None = None  # name of the teacher run whose last.ckpt this run distils from
    release: bool = False  # the finished run also writes weights.pt (the plan's release roles)


def plan_names() -> list[str]:
    folder = resources.files("dfss.results").joinpath("plans")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_plan(name_or_path: str, data_dir: str | None = None) -> Plan:
    """A packaged plan by name (``gpu``, ``cpu``) or a yaml file; ``data_dir`` replaces the plan's."""
    if name_or_path.endswith((".yaml", ".yml")):
        path = Path(name_or_path)
        if not path.is_file():
            raise ConfigError(f"results plan {path} does not exist")
        text = path.read_text(encoding="utf-8")
    else:
        entry = resources.files("dfss.results").joinpath("plans", f"{name_or_path}.yaml")
        if not entry.is_file():
            raise ConfigError(f"no results plan {name_or_path!r}; available: {plan_names()} or a .yaml path")
        text = entry.read_text(encoding="utf-8")
    try:
        raw = OmegaConf.create(yaml.safe_load(text))
    except yaml.YAMLError as error:
        raise ConfigError(f"results plan {name_or_path}: not valid yaml ({error})") from None
    if data_dir is not None:
        raw.data_dir = data_dir
    return plan_from_mapping(OmegaConf.to_container(raw, resolve=True), source=name_or_path)


def plan_from_mapping(mapping: dict[str, Any], source: str = "plan") -> Plan:
    unknown_keys = sorted(set(mapping) - _PLAN_KEYS)
    missing = sorted({"name", "data_dir", "synth_preset", "seeds", "unknown", *ROLES} - set(mapping))
    if unknown_keys or missing:
        raise ConfigError(f"{source}: unknown keys {unknown_keys}, missing keys {missing}")
    stages = {}
    for role in ROLES:
        stage = dict(mapping[role])
        bad = sorted(set(stage) - _STAGE_KEYS)
        if bad or "experiment" not in stage:
            raise ConfigError(f"{source}: stage {role!r} needs 'experiment' and knows {sorted(_STAGE_KEYS)}")
        stages[role] = Stage(
            experiment=str(stage["experiment"]),
            overrides=tuple(str(o) for o in stage.get("overrides") or ()),
            seeds=tuple(int(s) for s in stage["seeds"]) if stage.get("seeds") is not None else None,
            alphas=tuple(float(a) for a in stage.get("alphas") or ()),
            options=tuple(str(o) for o in stage.get("options") or ()),
        )
    unknown = mapping["unknown"]
    plan = Plan(
        name=str(mapping["name"]),
        description=str(mapping.get("description", "")),
        synth_preset=str(mapping["synth_preset"]),
        data_dir=str(mapping["data_dir"]),
        seeds=tuple(int(s) for s in mapping["seeds"]),
        common=tuple(str(o) for o in mapping.get("common") or ()),
        eval=tuple(str(o) for o in mapping.get("eval") or ()),
        stages=stages,
        unknown_alpha=float(unknown["alpha"]),
        unknown_T=tuple(float(t) for t in unknown["T"]),
        jobs=int(mapping.get("jobs", 1)),
        release=tuple(dict.fromkeys(["teacher", *(str(r) for r in mapping.get("release") or ())])),
    )
    if bad_roles := sorted(set(plan.release) - set(ROLES)):
        raise ConfigError(f"{source}: release names unknown roles {bad_roles}; roles: {list(ROLES)}")
    if plan.jobs < 1:
        raise ConfigError(f"{source}: jobs must be at least 1, not {plan.jobs}")
    if len(plan.seeds_of("teacher")) < 1 or not plan.seeds:
        raise ConfigError(f"{source}: the plan needs at least one seed and one teacher seed")
    if plan.unknown_alpha != 1.0 and plan.unknown_alpha not in plan.stages["weighted"].alphas:
        raise ConfigError(f"{source}: unknown.alpha={plan.unknown_alpha} is not 1 or one of weighted.alphas")
    if any(not 0.0 < t <= 1.0 for t in plan.unknown_T):
        raise ConfigError(f"{source}: unknown.T values must be in (0, 1] (T = 0 is the plain evaluation)")
    return plan


def _alpha_name(alpha: float) -> str:
    return f"{alpha:g}".replace(".", "p")


def expand(plan: Plan) -> list[RunSpec]:
    """The training runs in the order they must happen (the teacher first)."""
    teacher_seeds = plan.seeds_of("teacher")
    teacher_of = {
        seed: f"teacher_s{teacher_seeds[i % len(teacher_seeds)]}" for i, seed in enumerate(plan.seeds)
    }
    runs: list[RunSpec] = []

    def add(role: str, name: str, seed: int, extra: tuple[str, ...] = (), **fields: Any) -> None:
        stage = plan.stages[role]
        overrides = (*plan.common, *stage.overrides, *extra, f"seed={seed}")
        teacher = (
            None if role in ("teacher", "student") else teacher_of.get(seed, f"teacher_s{teacher_seeds[0]}")
        )
        runs.append(
            RunSpec(
                name,
                role,
                stage.experiment,
                seed,
                overrides,
                teacher=teacher,
                release=role in plan.release,
                **fields,
            )
        )

    for seed in teacher_seeds:
        add("teacher", f"teacher_s{seed}", seed)
    for seed in plan.seeds_of("student"):
        add("student", f"student_s{seed}", seed)
    for seed in plan.seeds_of("distill"):
        add("distill", f"distill_s{seed}", seed)
    for alpha in plan.stages["weighted"].alphas:
        for seed in plan.seeds_of("weighted"):
            add(
                "weighted",
                f"weighted_a{_alpha_name(alpha)}_s{seed}",
                seed,
                (f"loss.dangerous_weight={alpha:g}",),
                alpha=alpha,
            )
    for option in plan.stages["ablation"].options:
        for seed in plan.seeds_of("ablation"):
            add("ablation", f"ablation_{option}_s{seed}", seed, (f"loss={option}",), variant=option)
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise ConfigError(f"plan {plan.name}: two runs would share a folder: {sorted(names)}")
    return runs
