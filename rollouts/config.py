"""Benchmark config → validated task entries, with errors that name the file and the key.

:func:`load_config` gives a :class:`BenchmarkConfig` with every task loaded: datasets expanded,
defaults and overrides merged, agents, options and timeouts checked. The TOML document itself
(its models, reading it) is :mod:`rollouts.config_file`.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rollouts.config_file import (
    MAX_TOTAL_RUNS,
    BenchmarkFile,
    TaskEntryFields,
    read_toml,
    toml_field,
)
from rollouts.errors import ConfigError
from rollouts.task import (
    MAX_TIMEOUT_SEC,
    Resources,
    Task,
    check_dockerfile,
    format_validation_error,
    load_task,
)

AGENTS = ("shell", "oracle", "nop")  # built-ins; load_config checks against rollouts.agents.REGISTRY
DEFAULT_AGENT = "shell"
BACKENDS = ("docker", "modal")


class TaskEntry(BaseModel):
    """One resolved ``[[tasks]]`` entry: a validated task × agent × model × rollouts."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    index: int
    task: Task
    prepared_dir: str  # as written in the config (or the expanded task dir of a dataset)
    model: str
    agent: str
    rollouts: int
    apply_overrides: bool
    overrides: str | None
    environment_variables: dict[str, str]
    agent_options: dict[str, Any]
    resources: Resources
    backend: str
    where: str = ""  # tasks[i] or datasets[i] (a dataset expands to several entries)

    @property
    def agent_timeout_sec(self) -> float:
        """The agent timeout: ``TIMEOUT_SEC`` from environment_variables, else the task's."""
        v = self.environment_variables.get("TIMEOUT_SEC")
        return float(v) if v is not None else self.task.meta.timeouts.agent_sec


class SkippedTask(BaseModel):
    """A task the config names that this harness cannot run (``--skip-unsupported``)."""

    where: str  # tasks[i] / datasets[i]
    task_dir: str
    task_name: str
    reasons: list[str]


class BenchmarkConfig(BaseModel):
    """A validated benchmark config with every task loaded."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    path: Path
    name: str
    parallel: int
    max_retries: int
    entries: list[TaskEntry]
    pricing: dict[str, dict[str, float]]
    digest: str  # sha256 of the TOML bytes
    raw: dict[str, Any]
    skipped: list[SkippedTask] = Field(default_factory=list)
    images: dict[str, str] = Field(default_factory=dict)
    pull_images: bool = False
    expansions: list[dict[str, Any]] = Field(default_factory=list)  # per dataset entry, for `check`

    @property
    def total_runs(self) -> int:
        return sum(e.rollouts for e in self.entries)


def load_config(
    path: str | Path, *, backend_env: str | None = None, agents: tuple[str, ...] | None = None,
    skip_unsupported: bool = False,
) -> BenchmarkConfig:
    """Parse and validate a benchmark config and every task it names, before anything runs.

    ``backend_env``: the ``SANDBOX_BACKEND`` environment value (overrides the config's default).
    ``[[datasets]]`` entries and ``prepared_dir``s that are directories of tasks expand to one
    entry per task (``rollouts.datasets``). A task this harness cannot run (``Task.unsupported``)
    is a ConfigError listing every such task and reason, unless ``skip_unsupported``: then it is
    left out and listed in ``BenchmarkConfig.skipped``.
    Raises ConfigError (exit 2) naming the file and the key (e.g. ``tasks[2].rollouts``).
    """
    path = Path(path)
    if backend_env is not None and backend_env not in BACKENDS:
        raise ConfigError(
            f"unknown sandbox backend {backend_env!r} (expected one of: {', '.join(BACKENDS)})",
            field="SANDBOX_BACKEND (environment variable)",
        )
    raw, data = read_toml(path)
    try:
        doc = BenchmarkFile.model_validate(raw)
    except ValidationError as e:
        field, msg = format_validation_error(e)
        raise ConfigError(msg, file=str(path), field=toml_field(field)) from None
    total = sum((t.rollouts or doc.defaults.rollouts or 1) for t in doc.tasks)
    if total > MAX_TOTAL_RUNS:
        raise ConfigError(
            f"{total} runs in total (tasks × rollouts); at most {MAX_TOTAL_RUNS}",
            file=str(path),
            field="tasks",
        )
    if agents is None:
        from rollouts.agents import REGISTRY

        agents = tuple(REGISTRY)
    known_agents = agents or AGENTS
    entries: list[TaskEntry] = []
    skipped: list[SkippedTask] = []
    expansions: list[dict[str, Any]] = []
    defaults = doc.defaults.model_dump(exclude_none=True)
    if not doc.tasks and not doc.datasets:
        raise ConfigError("required key is missing (at least one [[tasks]] or [[datasets]] entry)",
                          file=str(path), field="tasks")
    for where, t, task_dir, source in _expand_entries(doc, path, defaults, expansions):
        merged = {**defaults, **t.model_dump(exclude_none=True, exclude=_DATASET_ONLY)}
        if "environment_variables" in defaults and "environment_variables" in t.model_fields_set:
            merged["environment_variables"] = {**defaults["environment_variables"], **t.environment_variables}
        if task_dir is not None:
            merged["prepared_dir"] = str(task_dir)
        i = len(entries)

        def key(name: str, where: str = where, t: TaskEntryFields = t) -> str:
            """Where a merged key came from: ``tasks[i].name`` or ``defaults.name``."""
            return (
                f"{where}.{name}"
                if name in t.model_fields_set or name not in defaults
                else f"defaults.{name}"
            )
        if not merged.get("prepared_dir"):
            raise ConfigError("required key is missing", file=str(path), field=f"{where}.prepared_dir")
        agent = merged.get("agent", DEFAULT_AGENT)
        if agent not in known_agents:
            raise ConfigError(
                f"unknown agent {agent[:60]!r} (expected one of: {', '.join(known_agents)})",
                file=str(path),
                field=key("agent"),
            )
        _check_agent_options(agent, merged.get("agent_options", {}), str(path), key("agent_options"))
        model = merged.get("model")
        if not model:
            if agent in ("oracle", "nop"):
                model = "none"
            else:
                raise ConfigError(
                    'required key is missing (a model name, or "local")',
                    file=str(path),
                    field=f"{where}.model",
                )
        task_dir = Path(merged["prepared_dir"])
        overrides_path: Path | None = None
        apply = bool(merged.get("apply_overrides", False))
        if merged.get("overrides"):
            overrides_path = Path(merged["overrides"])
            if apply is False and "apply_overrides" not in merged:
                apply = True
        elif apply:
            overrides_path = task_dir / "overrides.json"
        if apply and overrides_path is not None and not overrides_path.exists():
            field = key("overrides") if merged.get("overrides") else key("apply_overrides")
            raise ConfigError(f"overrides file not found: {overrides_path}", file=str(path), field=field)
        if not task_dir.is_dir():
            why = "is not a directory" if task_dir.exists() else "not found"
            raise ConfigError(f"task directory {why}: {task_dir}", file=str(path), field=key("prepared_dir"))
        task = load_task(task_dir, overrides_path if apply else None)
        if source is not None:
            task = task.model_copy(update={"source": source})
        if not task.supported:
            skipped.append(SkippedTask(where=where, task_dir=str(task_dir), task_name=task.name,
                                       reasons=list(task.unsupported)))
            continue
        if doc.images or doc.pull_images:
            task = task.model_copy(update={"image_map": dict(doc.images), "pull_images": doc.pull_images})
        check_dockerfile(task)
        env = dict(task.meta.environment_variables)
        env.update(merged.get("environment_variables", {}))
        if "TIMEOUT_SEC" in env:
            if "TIMEOUT_SEC" in merged.get("environment_variables", {}):
                src, fld = str(path), key("environment_variables") + ".TIMEOUT_SEC"
            else:
                src = str(overrides_path if apply and overrides_path else task_dir / "tb_meta.json")
                fld = "environment_variables.TIMEOUT_SEC"
            _check_timeout(env["TIMEOUT_SEC"], src, fld)
        res = task.meta.resources.model_copy(
            update=merged.get("resources", {})
            and {k: v for k, v in merged["resources"].items() if v is not None}
        )
        entries.append(
            TaskEntry(
                index=i,
                where=where,
                task=task,
                prepared_dir=merged["prepared_dir"],
                model=model,
                agent=agent,
                rollouts=merged.get("rollouts", 1),
                apply_overrides=apply,
                overrides=str(overrides_path) if apply and overrides_path else None,
                environment_variables=env,
                agent_options=merged.get("agent_options", {}),
                resources=res,
                backend=backend_env or merged.get("backend") or doc.backend or "docker",
            )
        )
    if skipped and not skip_unsupported:
        lines = [f"  {k.where} {k.task_name} ({k.task_dir}): {'; '.join(k.reasons)}" for k in skipped]
        raise ConfigError(
            f"{len(skipped)} task(s) cannot run here (run with --skip-unsupported to run the others):\n"
            + "\n".join(lines), file=str(path))
    if not entries and not skipped:
        raise ConfigError("the config names no task", file=str(path))
    total = sum(e.rollouts for e in entries)
    if total > MAX_TOTAL_RUNS:
        raise ConfigError(f"{total} runs in total (tasks × rollouts); at most {MAX_TOTAL_RUNS}",
                          file=str(path), field="tasks")
    return BenchmarkConfig(
        skipped=skipped,
        images=dict(doc.images),
        pull_images=doc.pull_images,
        expansions=expansions,
        path=path,
        name=doc.name,
        parallel=doc.parallel,
        max_retries=doc.max_retries,
        entries=entries,
        pricing={k: v.model_dump() for k, v in doc.pricing.items()},
        digest=hashlib.sha256(data).hexdigest(),
        raw=raw,
    )


_DATASET_ONLY = {"path", "registry", "dataset", "include", "exclude", "n_tasks", "seed"}


def _expand_entries(doc: BenchmarkFile, path: Path, defaults: dict, expansions: list[dict[str, Any]]):
    """Yield ``(where, fields, task_dir or None, source or None)`` for every task the config names:
    ``[[tasks]]`` entries (a prepared_dir holding several tasks expands), then ``[[datasets]]``."""
    from rollouts.datasets import expand_dir, expand_registry
    from rollouts.formats import is_task_dir

    for i, t in enumerate(doc.tasks):
        where = f"tasks[{i}]"
        pd = t.prepared_dir or defaults.get("prepared_dir")
        if pd and Path(pd).is_dir() and not is_task_dir(Path(pd)):
            exp = expand_dir(Path(pd))
            expansions.append({"where": where, "path": pd, "total": exp.total, "matched": exp.matched,
                               "tasks": [str(x.dir) for x in exp.tasks]})
            for x in exp.tasks:
                yield where, t, x.dir, None
        else:
            yield where, t, None, None
    for i, d in enumerate(doc.datasets):
        where = f"datasets[{i}]"
        if (d.path is None) == (d.registry is None):
            raise ConfigError("give either 'path' (a directory of tasks) or 'registry' + 'dataset'",
                              file=str(path), field=where)
        if d.prepared_dir is not None:
            raise ConfigError("not allowed in [[datasets]] (use 'path')", file=str(path), field=f"{where}.prepared_dir")
        if d.path is not None:
            if d.dataset is not None:
                raise ConfigError("'dataset' needs 'registry'", file=str(path), field=f"{where}.dataset")
            root = Path(d.path).expanduser()
            if not root.is_dir():
                raise ConfigError(f"dataset directory not found: {root}", file=str(path), field=f"{where}.path")
            exp = expand_dir(root, d.include, d.exclude, d.n_tasks, d.seed)
            shown = d.path
        else:
            if not d.dataset:
                raise ConfigError("required key is missing (name@version)", file=str(path), field=f"{where}.dataset")
            assert d.registry is not None
            reg = d.registry if d.registry.startswith(("http://", "https://")) else str(Path(d.registry).expanduser())
            exp = expand_registry(reg, d.dataset, Path.cwd(), d.include, d.exclude, d.n_tasks, d.seed)
            shown = f"{d.dataset} from {d.registry}"
        if not exp.tasks:
            raise ConfigError(f"selects no task ({exp.total} found, {exp.matched} after include/exclude)",
                              file=str(path), field=where)
        expansions.append({"where": where, "path": shown, "total": exp.total, "matched": exp.matched,
                           "tasks": [str(x.dir) for x in exp.tasks]})
        for x in exp.tasks:
            yield where, d, x.dir, x.source


def _check_agent_options(agent: str, options: dict[str, Any], file: str, field: str) -> None:
    """``agent_options`` against the agent's ``Options`` model (types, ranges, unknown keys):
    ConfigError naming ``tasks[i].agent_options.<key>`` before anything starts."""
    from rollouts.agents import REGISTRY, validate_options

    if agent not in REGISTRY:  # a test-only agent list; nothing to validate against
        return
    ok, bad_key, message = validate_options(agent, options)
    if ok is None:
        raise ConfigError(message, file=file, field=f"{field}.{bad_key}" if bad_key else field)


def _check_timeout(value: str, file: str, field: str) -> None:
    """``TIMEOUT_SEC``: a finite number of seconds in (0, MAX_TIMEOUT_SEC]."""
    try:
        v = float(value)
    except ValueError:
        v = math.nan
    if not (math.isfinite(v) and 0 < v <= MAX_TIMEOUT_SEC):
        shown = value if len(value) <= 40 else value[:39] + "…"
        raise ConfigError(
            f"expected a positive number of seconds, at most {MAX_TIMEOUT_SEC} (got {shown!r})",
            file=file,
            field=field,
        )
