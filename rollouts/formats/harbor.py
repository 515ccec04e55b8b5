"""Harbor task directories (``task.toml``; Terminal-Bench 2.x and Harbor's registry datasets).

Layout: ``task.toml``, ``instruction.md``, ``environment/Dockerfile`` (or ``[environment]
docker_image``), ``tests/test.sh`` (+ files), optional ``solution/solve.sh``. The schema below
follows Harbor's ``harbor/models/task/config.py`` (schema_version 1.x, read 2026-12): every key
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

from rollouts.errors import ConfigError
from rollouts.formats.tb_meta import apply_overrides, read_text, validate_meta
from rollouts.task import Task
from rollouts.taskio import check_symlinks, dir_digest, read_bytes_checked, resolve_path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CONFIG_FILE = "task.toml"
DEFAULT_AGENT_TIMEOUT_SEC = 600.0  # Harbor leaves [agent] timeout_sec unset → the agent's default
DEFAULT_WORKDIR = "/app"

# Every key of Harbor's task.toml schema, by table. Values: "honoured", "mapped" (deprecated or
# informational, translated), or a refusal reason (the task is unsupported when the key is set to
# anything but its neutral value).
TOP_KEYS = {"schema_version", "version", "source", "task", "metadata", "verifier", "agent", "environment",
            "solution", "artifacts", "steps", "multi_step_reward_strategy"}
TASK_KEYS = {"name", "version", "description", "authors", "keywords"}
AGENT_KEYS = {"timeout_sec", "user", "network_mode", "allowed_hosts"}
VERIFIER_KEYS = {"timeout_sec", "env", "user", "network_mode", "allowed_hosts", "environment_mode",
                 "environment", "collect", "continuous"}
SOLUTION_KEYS = {"env"}
ENVIRONMENT_KEYS = {"build_timeout_sec", "docker_image", "os", "cpus", "memory_mb", "storage_mb", "gpus",
                    "gpu_types", "tpu", "mcp_servers", "env", "skills_dir", "healthcheck", "workdir",
                    "allow_internet", "network_mode", "allowed_hosts", "memory", "storage"}
HEALTHCHECK_KEYS = {"command", "interval_sec", "timeout_sec", "start_period_sec", "start_interval_sec", "retries"}
ARTIFACT_KEYS = {"source", "destination", "exclude", "service"}

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

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(values: dict[str, Any], where: str, environ: dict[str, str], problems: list[str]) -> dict[str, str]:
    """Resolve ``${VAR}`` / ``${VAR:-default}`` in each value from ``environ`` (Harbor's template
    syntax). A ``${VAR}`` without default whose VAR is unset adds a problem naming ``where.key``
    (and stays unexpanded); a non-string value is stringified like TOML prints it."""
    out: dict[str, str] = {}
    for k, v in values.items():
        text = v if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else str(v)

        def sub(m: re.Match, k: str = k) -> str:
            var, default = m.group(1), m.group(2)
            if var in environ:
                return environ[var]
            if default is not None:
                return default
            problems.append(f"{where}.{k}: ${{{var}}} is not set on this host and has no default")
            return m.group(0)

        out[str(k)] = _VAR.sub(sub, text)
    return out


def _strs(values: Any, where: str) -> dict[str, str]:
    """An env table with its values as strings (TOML numbers and booleans as TOML writes them)."""
    if not isinstance(values, dict):
        raise ValueError(f"{where}: expected a table of NAME = value")
    return {str(k): v if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else str(v)
            for k, v in values.items()}


def templated(values: dict[str, Any]) -> dict[str, str]:
    """The entries of an env table whose value is a ``${VAR}`` template (kept unexpanded so that
    ``tasks convert`` and ``tasks show --json`` never write a host value, e.g. a key, to disk)."""
    return {str(k): v for k, v in values.items() if isinstance(v, str) and _VAR.search(v)}


# tb_meta env maps that may hold templates → (path in the tb_meta dict, the Harbor key named in messages)
ENV_MAPS = {"environment.env": (("environment", "env"), "environment.env"),
            "tests.env": (("tests", "env"), "verifier.env"),
            "solution_env": (("solution_env",), "solution.env")}


def expand_meta_env(raw: dict, environ: dict[str, str], problems: list[str]) -> dict[str, dict[str, str]]:
    """Expand the templates in a tb_meta dict's env maps in place (``environment.env``,
    ``tests.env``, ``solution_env``); returns the templated entries per map."""
    out: dict[str, dict[str, str]] = {}
    for name, (path, shown) in ENV_MAPS.items():
        parent = raw
        for k in path[:-1]:
            parent = parent.get(k) if isinstance(parent, dict) else None
        values = parent.get(path[-1]) if isinstance(parent, dict) else None
        if isinstance(values, dict) and values:
            t = templated(values)
            if t:
                out[name] = t
                parent[path[-1]] = {**values, **expand_env(t, shown, environ, problems)}
    return out


def parse_size_mb(value: str, field: str) -> int:
    """``"2G"`` / ``"512M"`` / ``"1024K"`` → MiB, as Harbor's ``_parse_size_to_mb``."""
    s = value.strip().upper()
    try:
        if s.endswith("G"):
            return int(float(s[:-1]) * 1024)
        if s.endswith("M"):
            return int(float(s[:-1]))
        if s.endswith("K"):
            return int(float(s[:-1]) / 1024)
    except ValueError:
        pass
    raise ValueError(f"{field}: invalid size {value!r} (expected e.g. '2G', '512M')")


def dockerfile_workdir(text: str) -> str | None:
    """The last absolute ``WORKDIR`` of a Dockerfile (None if there is none)."""
    found = [m.group(1).strip().strip("\"'") for m in re.finditer(r"^\s*WORKDIR\s+(.+?)\s*$", text, re.M | re.I)]
    found = [w for w in found if w.startswith("/") and "$" not in w]
    return found[-1].rstrip("/") or None if found else None


def _table(doc: dict, key: str, problems: list[str]) -> dict:
    v = doc.get(key, {})
    if not isinstance(v, dict):
        raise ValueError(f"{key}: expected a table")
    return v


def _unknown(table: dict, known: set[str], where: str, problems: list[str]) -> None:
    for k in table:
        if k not in known:
            problems.append(f"{where}{k}: unknown key (not in Harbor's task.toml schema)")


def _num(v: Any, field: str, default: float | None) -> float | None:
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"{field}: expected a number, got {v!r}")
    return float(v)


def _network(mode: Any, allow_internet: Any, where: str, problems: list[str]) -> bool | None:
    """A network_mode (or the deprecated allow_internet) → on/off; None when neither is set."""
    if mode is None:
        if allow_internet is None:
            return None
        if not isinstance(allow_internet, bool):
            raise ValueError(f"{where}allow_internet: expected true or false")
        return allow_internet
    if mode == "public":
        return True
    if mode == "no-network":
        return False
    if mode == "allowlist":
        problems.append(f"{where}network_mode = \"allowlist\": {REFUSED['network_mode=allowlist']}")
        return None
    raise ValueError(f"{where}network_mode: expected public, no-network or allowlist (got {mode!r})")


def translate(doc: dict, task_dir: Path, environ: dict[str, str]) -> tuple[dict, list[str], list[str]]:
    """A parsed task.toml → (tb_meta dict, unsupported reasons, mapping notes).

    ValueError for a value of the wrong type or shape (the caller names task.toml).
    """
    problems: list[str] = []
    notes: list[str] = []
    doc = dict(doc)
    if "version" in doc and not isinstance(doc.get("version"), dict):  # deprecated → schema_version
        doc.setdefault("schema_version", doc.pop("version"))
        notes.append("version → schema_version (deprecated key, mapped as Harbor does)")
    _unknown(doc, TOP_KEYS, "", problems)
    sv = str(doc.get("schema_version", "1.0"))
    if not re.fullmatch(r"1(\.\d+)?", sv):
        problems.append(f"schema_version = {sv!r}: only Harbor task schema 1.x is known")
    task = _table(doc, "task", problems)
    agent = _table(doc, "agent", problems)
    verifier = _table(doc, "verifier", problems)
    env = _table(doc, "environment", problems)
    solution = _table(doc, "solution", problems)
    metadata = _table(doc, "metadata", problems)
    _unknown(task, TASK_KEYS, "task.", problems)
    _unknown(agent, AGENT_KEYS, "agent.", problems)
    _unknown(verifier, VERIFIER_KEYS, "verifier.", problems)
    _unknown(env, ENVIRONMENT_KEYS, "environment.", problems)
    _unknown(solution, SOLUTION_KEYS, "solution.", problems)
    if doc.get("steps"):
        problems.append(f"steps: {REFUSED['steps']}")
    if doc.get("multi_step_reward_strategy") is not None and not doc.get("steps"):
        notes.append("multi_step_reward_strategy without [[steps]]: has no effect")
    for key in ("gpus",):
        if env.get(key):
            problems.append(f"environment.{key} = {env[key]!r}: {REFUSED['environment.gpus']}")
    for key in ("gpu_types", "tpu", "mcp_servers", "skills_dir"):
        if env.get(key):
            problems.append(f"environment.{key}: {REFUSED['environment.' + key]}")
    if str(env.get("os", "linux")).lower() != "linux":
        problems.append(f"environment.os = {env['os']!r}: {REFUSED['environment.os']}")
    for sect, tbl in (("agent", agent), ("verifier", verifier)):
        if tbl.get("user") is not None:
            problems.append(f"{sect}.user = {tbl['user']!r}: {REFUSED[sect + '.user']}")
    if verifier.get("environment") is not None:
        problems.append(f"verifier.environment: {REFUSED['verifier.environment']}")
    if verifier.get("collect"):
        problems.append(f"verifier.collect: {REFUSED['verifier.collect']}")
    cont = verifier.get("continuous")
    if isinstance(cont, dict) and cont.get("enabled"):
        problems.append(f"verifier.continuous: {REFUSED['verifier.continuous']}")
    if (task_dir / "environment" / "docker-compose.yaml").exists():
        problems.append(f"environment/docker-compose.yaml: {REFUSED['environment/docker-compose.yaml']}")

    # network: the environment's baseline, then the phase overrides
    if env.get("allow_internet") is not None and env.get("network_mode") is None:
        notes.append("allow_internet → network_mode (deprecated key, mapped as Harbor does)")
    base_net = _network(env.get("network_mode"), env.get("allow_internet"), "environment.", problems)
    base_net = True if base_net is None else base_net  # Harbor's default is public
    agent_net = _network(agent.get("network_mode"), None, "agent.", problems)
    verifier_net = _network(verifier.get("network_mode"), None, "verifier.", problems)
    agent_net = base_net if agent_net is None else agent_net
    verifier_net = base_net if verifier_net is None else verifier_net
    mode = verifier.get("environment_mode") or "shared"
    if mode not in ("shared", "separate"):
        raise ValueError(f"verifier.environment_mode: expected shared or separate (got {mode!r})")
    if mode == "shared" and verifier_net != agent_net:
        problems.append("verifier.network_mode: differs from the agent's network, which needs switching the "
                        "network of a live sandbox between phases (not supported in shared mode)")

    # resources (deprecated size strings first, as Harbor's before-validator does)
    memory_mb = env.get("memory_mb")
    if "memory" in env:
        if not isinstance(env["memory"], str):
            raise ValueError("environment.memory: expected a size string like '2G'")
        parsed = parse_size_mb(env["memory"], "environment.memory")
        if memory_mb is not None and memory_mb != parsed:
            raise ValueError(f"environment.memory = {env['memory']!r} conflicts with memory_mb = {memory_mb}")
        memory_mb = parsed
        notes.append(f"memory = {env['memory']!r} → memory_mb = {parsed} (deprecated key)")
    storage_mb = env.get("storage_mb")
    if "storage" in env:
        if not isinstance(env["storage"], str):
            raise ValueError("environment.storage: expected a size string like '10G'")
        storage_mb = parse_size_mb(env["storage"], "environment.storage")
        notes.append(f"storage = {env['storage']!r} → storage_mb = {storage_mb} (deprecated key)")
    if storage_mb is not None:
        notes.append(f"storage_mb = {storage_mb}: recorded, not enforced by the docker backend")

    # image
    dockerfile = task_dir / "environment" / "Dockerfile"
    image = env.get("docker_image")
    workdir = env.get("workdir")
    meta_env: dict[str, Any] = {"state": "image", "logs_dirs": True, "dockerfile_from": "as_written",
                                "build_timeout_sec": _num(env.get("build_timeout_sec"),
                                                          "environment.build_timeout_sec", 600.0)}
    if image is not None:
        if not isinstance(image, str) or not image.strip():
            raise ValueError("environment.docker_image: expected an image reference")
        meta_env["image"] = image
    elif dockerfile.is_file():
        meta_env["dockerfile"] = "environment/Dockerfile"
        if workdir is None:
            text = read_bytes_checked(dockerfile, "Dockerfile").decode("utf-8", "replace")
            workdir = dockerfile_workdir(text)
            if workdir:
                notes.append(f"workdir {workdir} from the Dockerfile's WORKDIR")
    elif not problems:
        raise ValueError("environment: neither docker_image nor environment/Dockerfile")
    if workdir is None:
        workdir = DEFAULT_WORKDIR
        notes.append(f"workdir unknown (no [environment] workdir, no Dockerfile WORKDIR): using {workdir}")
    meta_env["workdir"] = workdir
    meta_env["env"] = _strs(env.get("env") or {}, "environment.env")
    if env.get("healthcheck") is not None:
        hc = env["healthcheck"]
        if not isinstance(hc, dict):
            raise ValueError("environment.healthcheck: expected a table")
        _unknown(hc, HEALTHCHECK_KEYS, "environment.healthcheck.", problems)
        meta_env["healthcheck"] = {k: v for k, v in hc.items() if k in HEALTHCHECK_KEYS}

    artifacts = []
    for i, a in enumerate(doc.get("artifacts") or []):
        if isinstance(a, str):
            artifacts.append({"source": a})
            continue
        if not isinstance(a, dict) or "source" not in a:
            raise ValueError(f"artifacts[{i}]: expected a path or a table with 'source'")
        _unknown(a, ARTIFACT_KEYS, f"artifacts[{i}].", problems)
        if a.get("exclude"):
            problems.append(f"artifacts[{i}].exclude: exclude patterns are not supported")
        if a.get("service") not in (None, "main"):
            problems.append(f"artifacts[{i}].service = {a['service']!r}: only the main container exists here")
        artifacts.append({k: a[k] for k in ("source", "destination") if a.get(k) is not None})
    for a in artifacts:
        if not str(a["source"]).startswith("/"):
            a["source"] = f"{workdir.rstrip('/')}/{a['source']}"  # relative to the workdir, as Harbor does

    name = task.get("name") or task_dir.resolve().name
    description = task.get("description", "")
    has_solution = (task_dir / "solution" / "solve.sh").is_file()
    meta = {
        "schema_version": 1,
        "name": name,
        "description": description if isinstance(description, str) else "",
        "instruction": "instruction.md",
        "workspace": None,
        "environment": meta_env,
        "tests": {
            "dir": "tests", "command": "bash /tests/test.sh",
            "mode": "shared" if mode == "shared" else "fresh",
            "stop": "agent", "exit_code": "ignored", "network": verifier_net,
            "env": _strs(verifier.get("env") or {}, "verifier.env"),
        },
        "solution": "solution/solve.sh" if has_solution else None,
        "solution_env": _strs(solution.get("env") or {}, "solution.env"),
        "artifacts": artifacts,
        "timeouts": {
            "agent_sec": _num(agent.get("timeout_sec"), "agent.timeout_sec", DEFAULT_AGENT_TIMEOUT_SEC),
            "verifier_sec": _num(verifier.get("timeout_sec"), "verifier.timeout_sec", 600.0),
        },
        "resources": {
            "cpus": _num(env.get("cpus"), "environment.cpus", 1.0),
            "memory_mb": int(memory_mb) if memory_mb is not None else 2048,
            "pids": 4096,
            "storage_mb": int(storage_mb) if storage_mb is not None else None,
        },
        "network": agent_net,
        "metadata": {**metadata, "harbor": {k: v for k, v in task.items() if k != "name"},
                     **({"source": doc["source"]} if doc.get("source") else {}),
                     "schema_version": sv},
    }
    if agent.get("timeout_sec") is None:
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
            meta_raw, problems, notes = translate(doc, task_dir, dict(os.environ if environ is None else environ))
        except ValueError as e:
            raise ConfigError(str(e), file=str(path)) from None
        if not (task_dir / "tests" / "test.sh").is_file():
            raise ConfigError("missing tests/test.sh (every Harbor task needs one)", file=str(task_dir))
        instruction = read_text(task_dir / "instruction.md", "instruction.md")
        env_templates = expand_meta_env(meta_raw, dict(os.environ if environ is None else environ), problems)
        meta = validate_meta(meta_raw, path)
        meta, extra = apply_overrides(meta, overrides)
        root = resolve_path(task_dir)
        check_symlinks(root, task_dir, None)
        try:
            digest = dir_digest(root, extra)
        except OSError as e:
            raise ConfigError(f"cannot read {e.filename}: {e.strerror}", file=str(task_dir)) from None
        return Task(dir=task_dir, meta=meta, instruction=instruction, digest=digest, format=self.name,
                    unsupported=problems, notes=notes, env_templates=env_templates)


FORMAT = HarborFormat()
