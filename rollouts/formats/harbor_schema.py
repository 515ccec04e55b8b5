"""Harbor's ``task.toml`` schema (1.x) as pydantic models: every key Harbor's
``harbor/models/task/config.py`` defines (``TaskConfig``, ``EnvironmentConfig``,
``VerifierConfig``, ``AgentConfig``, ``SolutionConfig``, ``StepConfig``, ``ArtifactConfig``,
``HealthcheckConfig``, ``TpuSpec``, ``MCPServerConfig``; read 2026-12), with its deprecated-key
mapping (top-level ``version`` → ``schema_version``; ``[environment] memory`` / ``storage``
size strings → ``memory_mb`` / ``storage_mb``; ``allow_internet`` is kept for the network rule).

Types are checked (a wrong type is a ConfigError naming ``task.toml`` and the key); keys Harbor
does not define are kept (``extra="allow"``) so that :func:`unknown_keys` can name each one and
the task is reported unsupported rather than half-understood. What each key *means for a run*
(honoured / mapped / refused) is ``rollouts.formats.harbor``'s business.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

NetworkMode = Literal["public", "no-network", "allowlist"]
EnvValue = str | bool | int | float


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")


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


class Author(_Model):
    """``[[task.authors]]``: a name and an optional e-mail."""

    name: str
    email: str | None = None


class PackageInfo(_Model):
    """``[task]``: the package name (``org/name``), version, description, authors, keywords."""

    name: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
    version: str | None = None
    description: str = ""
    authors: list[Author] = Field(default_factory=list)
    keywords: list[str] = Field(default_factory=list)


class Healthcheck(_Model):
    """``[environment.healthcheck]``: a command retried until it succeeds before the agent starts (times in
    seconds)."""

    command: str
    interval_sec: float = 5.0
    timeout_sec: float = 30.0
    start_period_sec: float = 0.0
    start_interval_sec: float = 5.0
    retries: int = 3


class Tpu(_Model):
    """``[environment.tpu]`` (refused here: no TPUs)."""

    type: str
    topology: str


class McpServer(_Model):
    """``[[environment.mcp_servers]]`` (refused here: MCP servers for the agent are not supported)."""

    name: str
    transport: str = "sse"
    url: str | None = None
    command: str | None = None
    args: list[str] = Field(default_factory=list)


class Environment(_Model):
    """``[environment]``."""

    build_timeout_sec: float = 600.0
    docker_image: str | None = None
    os: str = "linux"
    cpus: float | None = None
    memory_mb: int | None = None
    storage_mb: int | None = None
    gpus: int | None = None
    gpu_types: list[str] | None = None
    tpu: Tpu | None = None
    mcp_servers: list[McpServer] = Field(default_factory=list)
    env: dict[str, EnvValue] = Field(default_factory=dict)
    skills_dir: str | None = None
    healthcheck: Healthcheck | None = None
    workdir: str | None = None
    allow_internet: bool | None = None  # deprecated → network_mode
    network_mode: NetworkMode | None = None
    allowed_hosts: list[str] | None = None
    deprecated: list[str] = Field(default_factory=list, exclude=True)  # notes on mapped keys

    @field_validator("os", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> Any:
        return v.lower() if isinstance(v, str) else v

    @model_validator(mode="before")
    @classmethod
    def _legacy_sizes(cls, data: Any) -> Any:
        """``memory = "2G"`` / ``storage = "10G"`` → ``*_mb`` (a conflict with ``*_mb`` is an error)."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        notes = []
        for old, new in (("memory", "memory_mb"), ("storage", "storage_mb")):
            if old not in data:
                continue
            v = data.pop(old)
            if not isinstance(v, str):
                raise ValueError(f"{old}: expected a size string like '2G'")
            mb = parse_size_mb(v, old)
            if data.get(new) is not None and data[new] != mb:
                raise ValueError(f"{old} = {v!r} ({mb} MB) conflicts with {new} = {data[new]!r}")
            data.setdefault(new, mb)
            notes.append(f"{old} = {v!r} → {new} = {mb} (deprecated key, mapped as Harbor does)")
        if data.get("allow_internet") is not None and data.get("network_mode") is None:
            notes.append("allow_internet → network_mode (deprecated key, mapped as Harbor does)")
        data["deprecated"] = notes
        return data


class Agent(_Model):
    """``[agent]``."""

    timeout_sec: float | None = None
    user: str | int | None = None
    network_mode: NetworkMode | None = None
    allowed_hosts: list[str] | None = None


class Collect(_Model):
    """``[[verifier.collect]]``: a hook run in a compose service before grading (refused here)."""

    command: str
    service: str = "main"
    timeout_sec: float = 60.0
    user: str | int | None = None


class Verifier(_Model):
    """``[verifier]``."""

    timeout_sec: float = 600.0
    env: dict[str, EnvValue] = Field(default_factory=dict)
    user: str | int | None = None
    network_mode: NetworkMode | None = None
    allowed_hosts: list[str] | None = None
    environment_mode: Literal["shared", "separate"] | None = None
    environment: dict[str, Any] | None = None
    collect: list[Collect] = Field(default_factory=list)
    continuous: dict[str, Any] | None = None  # continuous verification (forks add many keys)


class Solution(_Model):
    """``[solution]``: environment variables for ``solution/solve.sh`` (``${VAR}`` templates allowed)."""

    env: dict[str, EnvValue] = Field(default_factory=dict)


class ArtifactSpec(_Model):
    """One ``artifacts`` entry in table form: a path in the sandbox (relative = to the workdir) and where it
    goes among the run's artifacts."""

    source: str
    destination: str | None = None
    exclude: list[str] = Field(default_factory=list)
    service: str | None = None


class Step(_Model):
    """``[[steps]]`` of a multi-step task (refused here: multi-step tasks are not supported)."""

    name: str
    agent: Agent = Field(default_factory=Agent)
    verifier: Verifier = Field(default_factory=Verifier)
    min_reward: float | dict[str, float] | None = None
    healthcheck: Healthcheck | None = None
    artifacts: list[str | ArtifactSpec] = Field(default_factory=list)


class TaskConfig(_Model):
    """The whole ``task.toml``."""

    schema_version: str = "1.0"
    task: PackageInfo | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    verifier: Verifier = Field(default_factory=Verifier)
    agent: Agent = Field(default_factory=Agent)
    environment: Environment = Field(default_factory=Environment)
    solution: Solution = Field(default_factory=Solution)
    source: str | None = None
    multi_step_reward_strategy: Literal["mean", "final"] | None = None
    steps: list[Step] | None = None
    artifacts: list[str | ArtifactSpec] = Field(default_factory=list)
    renamed_version: bool = Field(False, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _version_rename(cls, data: Any) -> Any:
        """Top-level ``version`` → ``schema_version`` (Harbor's ``handle_version_rename``)."""
        if isinstance(data, dict) and "version" in data:
            data = dict(data)
            data.setdefault("schema_version", str(data.pop("version")))
            data["renamed_version"] = True
        return data


def unknown_keys(model: BaseModel, where: str = "") -> list[str]:
    """Dotted names of every key no Harbor model defines (recursively)."""
    out = [f"{where}{k}" for k in (model.model_extra or {})]
    for name in type(model).model_fields:
        v = getattr(model, name)
        items = v if isinstance(v, list) else [v]
        for i, item in enumerate(items):
            if isinstance(item, BaseModel):
                idx = f"[{i}]" if isinstance(v, list) else ""
                out += unknown_keys(item, f"{where}{name}{idx}.")
    return out
