"""Harbor task directories (``task.toml``; Terminal-Bench 2.x and Harbor's registry datasets).

Layout: ``task.toml``, ``instruction.md``, ``environment/Dockerfile`` (or ``[environment]
docker_image``), ``tests/test.sh`` (+ files), optional ``solution/solve.sh``. The schema below
follows Harbor's ``harbor/models/task/config.py`` (schema_version 1.x, read 2026-12; the pydantic models are
in ``harbor_schema.py``): every key
it defines is known here. Each key is either honoured (mapped onto the run), mapped the way
Harbor maps it (deprecated keys), or refused: the task loads as *unsupported* with the key
named, never silently ignored (see :data:`REFUSED`). Unknown keys are refused the same way.

Mapping (see ``eval-rollouts tasks show DIR``):
- ``[agent] timeout_sec`` → agent timeout; ``[verifier] timeout_sec`` → verifier timeout;
  ``[environment] build_timeout_sec`` → image build timeout.
- ``[environment]`` cpus / memory_mb → limits; storage_mb recorded (not enforced by docker);
  workdir (else the Dockerfile's last WORKDIR, else ``/app``); env → the sandbox environment;
  docker_image or environment/Dockerfile (built as written, FROM mapped by ``[images]``).
- network: ``network_mode`` public → on, no-network → off, allowlist → refused; deprecated
  ``allow_internet`` maps to public / no-network when network_mode is unset (Harbor's rule);
  ``[agent]`` / ``[verifier]`` network_mode are phase overrides.
- ``[verifier] environment_mode``: shared (default) → grade in the agent's sandbox after
  stopping only the agent's process tree; separate → our fresh-sandbox grading.
- ``[verifier] env`` / ``[solution] env`` / ``[environment] env`` with ``${VAR}`` and
  ``${VAR:-default}`` resolved from the host environment at load time.
- ``artifacts = [...]`` (strings or ``{source, destination}``) + ``/logs/artifacts`` collected.
- deprecated: top-level ``version`` → ``schema_version``; ``memory = "2G"`` / ``storage`` →
  ``*_mb`` (G/M/K suffixes, as Harbor parses them).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from rollouts.errors import ConfigError
from rollouts.formats.envtemplate import expand_env, expand_meta_env
from rollouts.formats.harbor_schema import ArtifactSpec, TaskConfig, parse_size_mb, unknown_keys
from rollouts.formats.tb_meta import apply_overrides, read_text, validate_meta
from rollouts.task import Task
from rollouts.taskio import (
    checked_digest,
    format_validation_error,
    read_bytes_checked,
)

__all__ = ["FORMAT", "REFUSED", "TaskConfig", "expand_env", "parse_size_mb", "translate"]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CONFIG_FILE = "task.toml"
DEFAULT_AGENT_TIMEOUT_SEC = 600.0  # Harbor leaves [agent] timeout_sec unset → the agent's default
DEFAULT_WORKDIR = "/app"

REFUSED = {
    "steps": "multi-step tasks ([[steps]]) are not supported",
    "multi_step_reward_strategy": "multi-step tasks are not supported",
    "environment.gpus": "GPUs are not available to sandboxes here",
    "environment.gpu_types": "GPUs are not available to sandboxes here",
    "environment.tpu": "TPUs are not available to sandboxes here",
    "environment.mcp_servers": "MCP servers for the agent are not supported",
    "environment.skills_dir": "agent skills directories are not supported",
    "environment.os": "only linux containers are supported",
    "network_mode=allowlist": "allowlist networking needs egress filtering, which this harness does not have",
    "agent.user": "running the agent as another user is not supported",
    "verifier.user": "running the verifier as another user is not supported",
    "verifier.environment": "a separate verifier environment definition is not supported "
    "(environment_mode = \"separate\" without [verifier.environment] is)",
    "verifier.collect": "collect hooks in compose services are not supported",
    "verifier.continuous": "continuous verification is not supported",
    "environment/docker-compose.yaml": "multi-container (docker-compose) environments are not supported",
}

def _strs(values: Any, where: str) -> dict[str, str]:
    """An env table with its values as strings (TOML numbers and booleans as TOML writes them)."""
    if not isinstance(values, dict):
        raise ValueError(f"{where}: expected a table of NAME = value")
    return {str(k): v if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else str(v)
            for k, v in values.items()}


def dockerfile_workdir(text: str) -> str | None:
    """The last absolute ``WORKDIR`` of a Dockerfile (None if there is none)."""
    found = [m.group(1).strip().strip("\"'") for m in re.finditer(r"^\s*WORKDIR\s+(.+?)\s*$", text, re.M | re.I)]
    found = [w for w in found if w.startswith("/") and "$" not in w]
    return found[-1].rstrip("/") or None if found else None


def _network(mode: str | None, where: str, problems: list[str]) -> bool | None:
    """A network_mode → on/off (None when unset or refused)."""
    if mode == "allowlist":
        problems.append(f"{where}network_mode = \"allowlist\": {REFUSED['network_mode=allowlist']}")
        return None
    return None if mode is None else mode == "public"


def refusals(cfg: TaskConfig, task_dir: Path) -> list[str]:
    """Why this harness cannot run the task: every refused or unknown key, named."""
    env, ver = cfg.environment, cfg.verifier
    problems = [f"{k}: unknown key (not in Harbor's task.toml schema)" for k in unknown_keys(cfg)]
    if cfg.steps:
        problems.append(f"steps: {REFUSED['steps']}")
    if env.gpus:
        problems.append(f"environment.gpus = {env.gpus}: {REFUSED['environment.gpus']}")
    for key in ("gpu_types", "tpu", "mcp_servers", "skills_dir"):
        if getattr(env, key):
            problems.append(f"environment.{key}: {REFUSED['environment.' + key]}")
    if env.os != "linux":
        problems.append(f"environment.os = {env.os!r}: {REFUSED['environment.os']}")
    for sect, tbl in (("agent", cfg.agent), ("verifier", ver)):
        if tbl.user is not None:
            problems.append(f"{sect}.user = {tbl.user!r}: {REFUSED[sect + '.user']}")
    if ver.environment is not None:
        problems.append(f"verifier.environment: {REFUSED['verifier.environment']}")
    if ver.collect:
        problems.append(f"verifier.collect: {REFUSED['verifier.collect']}")
    if (ver.continuous or {}).get("enabled"):
        problems.append(f"verifier.continuous: {REFUSED['verifier.continuous']}")
    if (task_dir / "environment" / "docker-compose.yaml").exists():
        problems.append(f"environment/docker-compose.yaml: {REFUSED['environment/docker-compose.yaml']}")
    for i, a in enumerate(cfg.artifacts):
        if isinstance(a, ArtifactSpec) and a.exclude:
            problems.append(f"artifacts[{i}].exclude: exclude patterns are not supported")
        if isinstance(a, ArtifactSpec) and a.service not in (None, "main"):
            problems.append(f"artifacts[{i}].service = {a.service!r}: only the main container exists here")
    return problems


def translate(cfg: TaskConfig, task_dir: Path) -> tuple[dict, list[str], list[str]]:
    """A validated task.toml → (tb_meta dict with env templates unexpanded, unsupported reasons,
    mapping notes). ValueError when neither docker_image nor environment/Dockerfile exists."""
    problems = refusals(cfg, task_dir)
    env, ver, agent = cfg.environment, cfg.verifier, cfg.agent
    notes = list(env.deprecated)
    if cfg.renamed_version:
        notes.insert(0, "version → schema_version (deprecated key, mapped as Harbor does)")
    if not re.fullmatch(r"1(\.\d+)?", cfg.schema_version):
        problems.append(f"schema_version = {cfg.schema_version!r}: only Harbor task schema 1.x is known")
    if cfg.multi_step_reward_strategy is not None and not cfg.steps:
        notes.append("multi_step_reward_strategy without [[steps]]: has no effect")

    # network: the environment's baseline (deprecated allow_internet when network_mode is unset;
    # Harbor's default is public), then the [agent] / [verifier] phase overrides
    base = _network(env.network_mode, "environment.", problems)
    if env.network_mode is None:
        base = True if env.allow_internet is None else env.allow_internet
    base = True if base is None else base
    agent_net = _network(agent.network_mode, "agent.", problems)
    verifier_net = _network(ver.network_mode, "verifier.", problems)
    agent_net = base if agent_net is None else agent_net
    verifier_net = base if verifier_net is None else verifier_net
    mode = ver.environment_mode or "shared"
    if mode == "shared" and verifier_net != agent_net:
        problems.append("verifier.network_mode: differs from the agent's network, which needs switching the "
                        "network of a live sandbox between phases (not supported in shared mode)")
    if env.storage_mb is not None:
        notes.append(f"storage_mb = {env.storage_mb}: recorded, not enforced by the docker backend")

    dockerfile = task_dir / "environment" / "Dockerfile"
    workdir = env.workdir
    meta_env: dict[str, Any] = {"state": "image", "logs_dirs": True, "dockerfile_from": "as_written",
                                "build_timeout_sec": env.build_timeout_sec}
    if env.docker_image is not None:
        meta_env["image"] = env.docker_image
        if dockerfile.is_file():
            notes.append(f"docker_image {env.docker_image}: used when present or pullable, else "
                         "environment/Dockerfile is built")
    if dockerfile.is_file():
        meta_env["dockerfile"] = "environment/Dockerfile"
        if workdir is None:
            workdir = dockerfile_workdir(read_bytes_checked(dockerfile, "Dockerfile").decode("utf-8", "replace"))
            if workdir:
                notes.append(f"workdir {workdir} from the Dockerfile's WORKDIR")
    elif env.docker_image is None and not problems:
        raise ValueError("environment: neither docker_image nor environment/Dockerfile")
    if workdir is None:
        workdir = DEFAULT_WORKDIR
        notes.append(f"workdir unknown (no [environment] workdir, no Dockerfile WORKDIR): using {workdir}")
    meta_env["workdir"] = workdir
    meta_env["env"] = _strs(env.env, "environment.env")
    if env.healthcheck is not None:
        meta_env["healthcheck"] = env.healthcheck.model_dump(include=set(type(env.healthcheck).model_fields))

    artifacts = []
    for a in cfg.artifacts:
        src, dest = (a, None) if isinstance(a, str) else (a.source, a.destination)
        if not src.startswith("/"):
            src = f"{workdir.rstrip('/')}/{src}"  # relative to the workdir
        artifacts.append({"source": src, **({"destination": dest} if dest else {})})

    task = cfg.task
    meta = {
        "schema_version": 1,
        "name": task.name if task else task_dir.resolve().name,
        "description": task.description if task else "",
        "instruction": "instruction.md",
        "workspace": None,
        "environment": meta_env,
        "tests": {"dir": "tests", "command": "bash /tests/test.sh", "mode": "shared" if mode == "shared" else "fresh",
                  "stop": "agent", "toolchain": "agent", "exit_code": "ignored", "network": verifier_net,
                  "env": _strs(ver.env, "verifier.env")},
        "solution": "solution/solve.sh" if (task_dir / "solution" / "solve.sh").is_file() else None,
        "solution_env": _strs(cfg.solution.env, "solution.env"),
        "artifacts": artifacts,
        "timeouts": {"agent_sec": agent.timeout_sec if agent.timeout_sec is not None else DEFAULT_AGENT_TIMEOUT_SEC,
                     "verifier_sec": ver.timeout_sec},
        "resources": {"cpus": float(env.cpus if env.cpus is not None else 1),
                      "memory_mb": env.memory_mb if env.memory_mb is not None else 2048,
                      "pids": 4096, "storage_mb": env.storage_mb},
        "network": agent_net,
        "metadata": {**cfg.metadata, "schema_version": cfg.schema_version,
                     **({"harbor": task.model_dump(exclude={"name"}, mode="json")} if task else {}),
                     **({"source": cfg.source} if cfg.source else {})},
    }
    if agent.timeout_sec is None:
        notes.append(f"[agent] timeout_sec unset: {DEFAULT_AGENT_TIMEOUT_SEC:g} s")
    return meta, problems, notes


class HarborFormat:
    """Reads Harbor ``task.toml`` directories."""

    name = "harbor"
    marker = CONFIG_FILE

    def load(self, task_dir: Path, overrides: Path | None = None, environ: dict[str, str] | None = None) -> Task:
        """Read a Harbor task dir. ConfigError naming task.toml (and the key) for invalid TOML or a
        value of the wrong type, a missing instruction.md or tests/test.sh; keys this harness
        cannot honour make the task unsupported instead (``Task.unsupported``)."""
        import os

        task_dir = Path(task_dir)
        path = task_dir / CONFIG_FILE
        raw = read_bytes_checked(path, "task.toml")
        try:
            doc = tomllib.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise ConfigError("not UTF-8 text", file=str(path)) from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"invalid TOML: {e}", file=str(path)) from None
        try:
            cfg = TaskConfig.model_validate(doc)
        except ValidationError as e:
            field, msg = format_validation_error(e)
            raise ConfigError(msg, file=str(path), field=field) from None
        try:
            meta_raw, problems, notes = translate(cfg, task_dir)
        except ValueError as e:
            raise ConfigError(str(e), file=str(path)) from None
        if not (task_dir / "tests" / "test.sh").is_file():
            raise ConfigError("missing tests/test.sh (every Harbor task needs one)", file=str(task_dir))
        instruction = read_text(task_dir / "instruction.md", "instruction.md")
        env_templates = expand_meta_env(meta_raw, dict(os.environ if environ is None else environ), problems)
        meta = validate_meta(meta_raw, path)
        meta, extra = apply_overrides(meta, overrides)
        digest = checked_digest(task_dir, None, extra)
        return Task(dir=task_dir, meta=meta, instruction=instruction, digest=digest, format=self.name,
                    unsupported=problems, notes=notes, env_templates=env_templates)


FORMAT = HarborFormat()
