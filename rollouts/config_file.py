"""The benchmark TOML document: strict models of every key it may hold, and reading it.

The format is the spec's (``seeds/003``)::

    name = "my_benchmark"
    parallel = 4

    [defaults]                 # optional: keys applied to every [[tasks]] entry
    agent = "shell"

    [[tasks]]
    prepared_dir = "data/tasks/prepared/task_1"
    model = "gpt-4"
    rollouts = 3
    apply_overrides = true
    overrides = "data/tasks/prepared/task_1/overrides.json"
    environment_variables = { "TIMEOUT_SEC" = "1800" }

Relative paths resolve against the current directory (as in the spec). :mod:`rollouts.config`
resolves a validated document into task entries.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rollouts.errors import ConfigError
from rollouts.task import MAX_JSON_BYTES, NAME_PATTERN, check_env_vars, read_bytes_checked

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

MAX_TOTAL_RUNS = 100_000  # tasks × rollouts: above this the manifest alone would be unwieldy


class _Strict(BaseModel):
    """Unknown keys are errors; no type coercion ("3" is not a number, 1 is not true); no inf/nan."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class Price(_Strict):
    """USD per 1M tokens."""

    input: float = Field(..., ge=0)
    output: float = Field(..., ge=0)


class ResourceOverrides(_Strict):
    """Per-entry overrides of the task's sandbox limits (cpus in cores, memory in MiB)."""

    cpus: float | None = Field(None, gt=0, le=64)
    memory_mb: int | None = Field(None, ge=64, le=1024 * 1024)
    pids: int | None = Field(None, ge=16, le=4_194_304)


class TaskEntryFields(_Strict):
    """Keys allowed in a ``[[tasks]]`` entry and in ``[defaults]``."""

    prepared_dir: str | None = Field(None, min_length=1)
    model: str | None = Field(None, min_length=1)
    agent: str | None = Field(None, min_length=1)
    rollouts: int | None = Field(None, ge=1, le=10000)
    apply_overrides: bool | None = None
    overrides: str | None = Field(None, min_length=1)
    environment_variables: dict[str, str] | None = None
    agent_options: dict[str, Any] | None = None
    resources: ResourceOverrides | None = None
    backend: Literal["docker", "modal"] | None = None

    @field_validator("environment_variables")
    @classmethod
    def _env_names(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        return check_env_vars(v)

    @field_validator("prepared_dir", "overrides", "model", "agent")
    @classmethod
    def _no_nul(cls, v: str | None) -> str | None:
        if v is not None and "\0" in v:
            raise ValueError("contains a NUL character")
        return v


class DatasetFields(TaskEntryFields):
    """A ``[[datasets]]`` entry: a directory of tasks (``path``) or a registry dataset
    (``registry`` + ``dataset = "name@version"``), filtered, plus the ``[[tasks]]`` keys applied
    to every task it expands to."""

    path: str | None = Field(None, min_length=1)
    registry: str | None = Field(None, min_length=1)
    dataset: str | None = Field(None, min_length=1)
    include: list[str] | None = None
    exclude: list[str] | None = None
    n_tasks: int | None = Field(None, ge=1, le=MAX_TOTAL_RUNS)
    seed: int = Field(0, ge=0)


class BenchmarkFile(_Strict):
    """The whole TOML document."""

    name: str = Field(..., min_length=1, max_length=100, pattern=NAME_PATTERN)
    parallel: int = Field(1, ge=1, le=1000)
    max_retries: int = Field(2, ge=0, le=20, description="Retries of a run after an infra failure.")
    backend: Literal["docker", "modal"] | None = None
    defaults: TaskEntryFields = TaskEntryFields()
    tasks: list[TaskEntryFields] = Field(default_factory=list)
    datasets: list[DatasetFields] = Field(default_factory=list)
    pricing: dict[str, Price] = Field(default_factory=dict)
    images: dict[str, str] = Field(default_factory=dict, description="Base image → local image to use instead.")
    pull_images: bool = Field(False, description="The engine can pull: build task Dockerfiles as written.")


def read_toml(path: Path) -> tuple[dict[str, Any], bytes]:
    """The parsed TOML of ``path`` and its bytes; ConfigError naming the file if it is empty, not
    UTF-8, not TOML, or larger than MAX_JSON_BYTES."""
    data = read_bytes_checked(path, "config file", limit=MAX_JSON_BYTES)
    if not data.strip():
        raise ConfigError("config file is empty (expected a benchmark TOML)", file=str(path))
    try:
        return tomllib.loads(data.decode("utf-8")), data
    except UnicodeDecodeError as e:
        raise ConfigError(f"not UTF-8 text (invalid byte at offset {e.start})", file=str(path)) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"invalid TOML: {e}", file=str(path)) from None
    except RecursionError:
        raise ConfigError("invalid TOML: nested too deeply", file=str(path)) from None


def toml_field(field: str) -> str:
    """``tasks.2.model`` → ``tasks[2].model`` (how a user finds it in TOML)."""
    out: list[str] = []
    for part in field.split("."):
        if part.isdigit() and out:
            out[-1] += f"[{part}]"
        else:
            out.append(part)
    return ".".join(out)
