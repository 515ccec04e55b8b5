"""The in-memory task every format produces, its model (the ``tb_meta.json`` schema), and
``load_task(dir)``, which dispatches on the format registry (``rollouts.formats.FORMATS``).

Formats: ``tb_meta`` (ours, below), ``harbor`` (``task.toml``), ``terminal_bench`` (TB1
``task.yaml``). Each reads its directory into the same :class:`Task`. Our own prepared task
directory holds ``tb_meta.json`` plus the files it names::

    my_task/
      tb_meta.json          # this schema (schema_version 1)
      instruction.md        # what the agent is asked to do
      workspace/            # starting files; a git repo at a fixed base commit inside the sandbox
      environment/Dockerfile  # optional; ``ARG BASE_IMAGE`` + ``FROM $BASE_IMAGE``
      tests/                # hidden tests, copied to /tests only at grading time
      solution/solve.sh     # optional reference solution (used by the ``oracle`` agent)
      overrides.json        # optional partial tb_meta.json merged when apply_overrides = true

The JSON Schema is shipped at ``rollouts/schemas/tb_meta.schema.json`` (regenerate with
``eval-rollouts schema``).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rollouts.errors import ConfigError
from rollouts.taskio import (  # re-exported: config.py and older callers import them from here
    MAX_JSON_BYTES,
    check_symlinks,
    deep_merge,
    dir_digest,
    format_validation_error,
    read_bytes_checked,
    read_json,
)

SCHEMA_VERSION = 1
META_FILE = "tb_meta.json"
OVERRIDES_FILE = "overrides.json"

MAX_TIMEOUT_SEC = 7 * 24 * 3600  # a week: anything above is a typo (and overflows timers)
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"  # no '.', '..', '/', leading '-'
# Task names may carry one namespace (Harbor's "org/name", e.g. "terminal-bench/regex-log").
TASK_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?$"
# Paths the harness owns inside a sandbox: a task's workdir may not be one of them, inside one,
# or an ancestor of one (the verifier wipes /tests and /logs/verifier before grading).
RESERVED_SANDBOX_DIRS = ("/tests", "/logs", "/solution", "/proc", "/sys", "/dev")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_env_vars(v: dict[str, str] | None) -> dict[str, str] | None:
    """Validate environment variable names (``[A-Za-z_][A-Za-z0-9_]*``) and values (no NUL)."""
    for k, val in (v or {}).items():
        if not _ENV_NAME.match(k):
            raise ValueError(f"invalid environment variable name {k[:60]!r}")
        if "\0" in val:
            raise ValueError(f"environment variable {k} contains a NUL character")
    return v


class _Strict(BaseModel):
    """Unknown keys are errors; no type coercion ("3" is not a number, 1 is not true); no inf/nan."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class Healthcheck(_Strict):
    """A readiness check run after the sandbox starts (Harbor's ``[environment.healthcheck]``, Docker
    HEALTHCHECK semantics): one success ends it; during ``start_period_sec`` failures do not count
    (retried every ``start_interval_sec``), afterwards ``retries`` failures in a row fail the run.
    Times in seconds."""

    command: str = Field(..., min_length=1)
    interval_sec: float = Field(5.0, ge=0, le=3600)
    timeout_sec: float = Field(30.0, gt=0, le=3600)
    start_period_sec: float = Field(0.0, ge=0, le=3600)
    start_interval_sec: float = Field(5.0, ge=0, le=3600)
    retries: int = Field(3, ge=1, le=1000)


class Environment(_Strict):
    """How the sandbox image is made and where the workspace lives."""

    dockerfile: str | None = Field(
        None, description="Dockerfile relative to the task dir; FROM $BASE_IMAGE. None = the base image."
    )
    workdir: str = Field("/workspace", description="Absolute path of the workspace inside the sandbox.")
    image: str | None = Field(
        None, description="A prebuilt image (Harbor's docker_image), mapped through the config's [images] "
        "table; with a dockerfile too, used when present locally or pullable, else the Dockerfile is built.",
    )
    dockerfile_from: Literal["base_image", "as_written"] = Field(
        "base_image", description="base_image: the Dockerfile starts 'ARG BASE_IMAGE' / 'FROM ${BASE_IMAGE}'; "
        "as_written: its FROM images are used as written (mapped through [images]).",
    )
    build_timeout_sec: float = Field(600, gt=0, le=MAX_TIMEOUT_SEC, description="Image build limit (seconds).")
    state: Literal["workspace", "image"] = Field(
        "workspace", description="workspace: the 'workspace' dir is copied in and committed as a git repo in "
        "workdir; image: the starting state is what the image holds at workdir (snapshotted with a git dir "
        "outside it, never committed into it).",
    )
    env: dict[str, str] = Field(default_factory=dict, description="Environment of every process in the sandbox.")
    logs_dirs: bool = Field(False, description="Create /logs/agent, /logs/verifier and /logs/artifacts (Harbor).")
    healthcheck: Healthcheck | None = Field(None, description="Run until healthy before the agent starts.")

    @field_validator("env")
    @classmethod
    def _env(cls, v: dict[str, str]) -> dict[str, str]:
        return check_env_vars(v) or {}

    @model_validator(mode="after")
    def _one_source(self) -> Environment:
        if self.image is not None and self.dockerfile is not None and self.dockerfile_from != "as_written":
            raise ValueError("'image' with a 'dockerfile' needs dockerfile_from = \"as_written\"")
        return self

    @field_validator("workdir")
    @classmethod
    def _abs(cls, v: str) -> str:
        if not v.startswith("/") or v == "/":
            raise ValueError("must be an absolute path other than '/'")
        if not re.fullmatch(r"[A-Za-z0-9_./-]+", v) or any(part in (".", "..") for part in v.split("/")):
            raise ValueError("must be a normalised absolute path of [A-Za-z0-9_./-] without '.' or '..'")
        v = v.rstrip("/")
        for d in RESERVED_SANDBOX_DIRS:
            if v == d or v.startswith(d + "/") or d.startswith(v + "/"):
                raise ValueError(f"overlaps {d}, which the harness owns in the sandbox")
        return v


class Tests(_Strict):
    """The hidden tests and how to run them (the verifier)."""

    dir: str = Field("tests", description="Directory with the hidden tests, copied to /tests when grading.")
    command: str = Field(
        "bash /tests/test.sh",
        min_length=1,
        description="Shell command run in the workspace. It must write /logs/verifier/reward.txt "
        "(one float) or reward.json (named numbers, 'reward' primary); no reward file is an error.",
    )
    mode: Literal["fresh", "shared"] = Field(
        "fresh", description="fresh: grade in a new sandbox from the diff; shared: in the agent's sandbox."
    )
    stop: Literal["all", "agent"] = Field(
        "all", description="shared mode, before the tests go in: all = every process in the sandbox is killed "
        "(its PID namespace restarted); agent = only the agent's own process trees (services it started keep "
        "running, as Harbor does; grading integrity agent-controlled). See rollouts/grading/stop.py.",
    )
    toolchain: Literal["image", "agent"] = Field(
        "image",
        description="image: the verifier must run the clean image's toolchain (shared mode: verified "
        "unchanged, else the run fails); agent: the task needs the agent's own toolchain (grading "
        "integrity agent-controlled). See rollouts/grading/integrity.py.",
    )
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment of the verifier command.")
    network: bool | None = Field(None, description="Verifier network (fresh mode); None = the task's network.")
    exit_code: Literal["checked", "ignored"] = Field(
        "checked", description="checked: a non-zero exit with a positive reward is an error; ignored: only "
        "the reward file counts (Harbor).",
    )

    @field_validator("env")
    @classmethod
    def _env(cls, v: dict[str, str]) -> dict[str, str]:
        return check_env_vars(v) or {}

    @field_validator("command")
    @classmethod
    def _no_nul(cls, v: str) -> str:
        if "\0" in v or not v.strip():
            raise ValueError("must be a non-empty shell command without NUL characters")
        return v


class Timeouts(_Strict):
    """Phase timeouts in seconds."""

    agent_sec: float = Field(600, gt=0, le=MAX_TIMEOUT_SEC, description="Agent wall-time limit (seconds).")
    verifier_sec: float = Field(
        120, gt=0, le=MAX_TIMEOUT_SEC, description="Verifier wall-time limit (seconds)."
    )
    setup_sec: float = Field(120, gt=0, le=MAX_TIMEOUT_SEC, description="Workspace setup limit (seconds).")


class Resources(_Strict):
    """Sandbox limits."""

    cpus: float = Field(1.0, gt=0, le=64, description="CPU cores.")
    memory_mb: int = Field(1024, ge=64, le=1024 * 1024, description="Memory limit in MiB.")
    pids: int = Field(512, ge=16, le=4_194_304, description="Maximum number of processes.")
    storage_mb: int | None = Field(
        None, ge=1, description="Disk the task asks for (MiB); recorded and shown, not enforced by docker here."
    )


class Artifact(_Strict):
    """A sandbox path collected into the run's ``artifacts/`` after the agent (Harbor ``artifacts``)."""

    source: str = Field(..., min_length=2, pattern=r"^/", description="Absolute path in the sandbox.")
    destination: str | None = Field(None, description="Relative path under artifacts/ (default: the name).")

    @field_validator("source", "destination")
    @classmethod
    def _no_dotdot(cls, v: str | None) -> str | None:
        if v is not None and (".." in v.split("/") or "\0" in v):
            raise ValueError("must not contain '..' or NUL characters")
        return v

    @field_validator("destination")
    @classmethod
    def _relative(cls, v: str | None) -> str | None:
        if v is not None and (v.startswith("/") or not v.strip("/")):
            raise ValueError("must be a non-empty relative path")
        return v


class TaskMeta(_Strict):
    """``tb_meta.json``: everything the harness needs to run and grade one task."""

    schema_version: Literal[1] = Field(..., description="Format version of this file (1).")
    name: str = Field(..., min_length=1, max_length=100, pattern=TASK_NAME_PATTERN)
    description: str = ""
    instruction: str = Field("instruction.md", description="File with the instruction for the agent.")
    workspace: str | None = Field("workspace", description="Starting workspace directory (None = empty).")
    environment: Environment = Environment()
    tests: Tests = Tests()
    solution: str | None = Field(None, description="Reference solution script, run by the oracle agent.")
    solution_env: dict[str, str] = Field(default_factory=dict, description="Extra environment of the solution.")
    artifacts: list[Artifact] = Field(default_factory=list, description="Sandbox paths collected after the agent.")
    timeouts: Timeouts = Timeouts()
    resources: Resources = Resources()
    network: bool = Field(False, description="Whether the agent sandbox gets network access.")
    environment_variables: dict[str, str] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict, description="Free-form: category, difficulty…")

    @field_validator("schema_version", mode="before")
    @classmethod
    def _exact_int(cls, v: Any) -> Any:
        if type(v) is not int:  # Literal[1] alone accepts true and 1.0 (both == 1)
            raise ValueError("expected the integer 1")
        return v

    @field_validator("environment_variables", "solution_env")
    @classmethod
    def _env(cls, v: dict[str, str]) -> dict[str, str]:
        return check_env_vars(v) or {}


class Task(BaseModel):
    """A validated task, whatever its on-disk format.

    ``dir``: the task directory; ``meta``: everything the harness needs (the tb_meta.json model);
    ``digest``: sha256 of every file in the dir (+ applied overrides); ``format``: the registry key
    of the format that read it; ``unsupported``: reasons this harness cannot run it, each naming
    the key (empty = runnable); ``notes``: how keys were mapped (shown by ``tasks show``);
    ``origin``: the directory as given when ``dir`` is a rearranged copy (:func:`materialize`);
    ``env_templates``: env entries given as ``${VAR:-default}`` templates, unexpanded (``meta``
    holds the values resolved from the host; these are what ``tasks convert`` writes);
    ``image_map`` / ``pull_images``: the config's ``[images]`` mapping and whether the engine may
    pull (set by ``load_config``); ``source``: where a
    registry task came from (git_url, git_commit_id, path).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    dir: Path
    meta: TaskMeta
    instruction: str
    digest: str
    format: str = "tb_meta"
    unsupported: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    origin: Path | None = None
    env_templates: dict[str, dict[str, str]] = Field(default_factory=dict)
    image_map: dict[str, str] = Field(default_factory=dict)
    pull_images: bool = False
    source: dict[str, str] | None = None

    @property
    def name(self) -> str:
        return self.meta.name

    @property
    def supported(self) -> bool:
        return not self.unsupported

    def path(self, rel: str | None) -> Path | None:
        """``rel`` (a path from the metadata, relative to the task dir) as a path under ``dir``; None for
        None."""

        return None if rel is None else self.dir / rel


def materialize(src: Path, overlay: dict[str, bytes], digest: str) -> Path:
    """A copy of the task dir ``src`` with the ``overlay`` files (task-relative path → bytes) added,
    made once per content (digest + overlay) under ``$XDG_CACHE_HOME/rollouts/views/<key>``, reused.
    Formats whose files need rearranging (Terminal-Bench's ``run-tests.sh`` into ``tests/``) give
    the Task this directory, so every consumer sees one layout. ConfigError if it cannot be written."""
    h = hashlib.sha256(digest.encode())
    for rel in sorted(overlay):
        h.update(b"\0" + rel.encode() + b"\0" + hashlib.sha256(overlay[rel]).digest())
    dest = cache_root() / "views" / h.hexdigest()[:32]
    if (dest / ".rollouts-view").is_file():
        return dest
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".view-", dir=dest.parent))
    except OSError as e:
        raise ConfigError(f"cannot prepare the task view under {dest.parent}: {e.strerror}", file=str(src)) from None
    try:
        shutil.copytree(src, tmp, symlinks=True, dirs_exist_ok=True)
        for rel, data in overlay.items():
            p = tmp / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            if p.is_symlink():
                p.unlink()
            p.write_bytes(data)
            p.chmod(0o755 if rel.endswith(".sh") else 0o644)
        (tmp / ".rollouts-view").write_text(digest + "\n")
        try:
            tmp.rename(dest)
        except OSError:  # made meanwhile by another process
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ConfigError(f"cannot prepare the task view: {e}", file=str(src)) from None
    return dest


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/rollouts`` (default ``~/.cache/rollouts``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rollouts"


def check_dockerfile(task: Task) -> None:
    """The task Dockerfile's convention (``ARG BASE_IMAGE`` + ``FROM ${BASE_IMAGE}``), checked up
    front by ``load_config`` so a bad one is exit 2 before anything runs (the image build checks
    it again). Dockerfiles marked ``dockerfile_from = "as_written"`` (Harbor, Terminal-Bench) are
    exempt. ConfigError naming the Dockerfile."""
    env = task.meta.environment
    if env.dockerfile is None or env.dockerfile_from == "as_written":
        return
    df = task.dir / env.dockerfile
    raw = read_bytes_checked(df, "Dockerfile")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError("Dockerfile is not UTF-8 text", file=str(df)) from None
    m = re.search(r"^\s*FROM\s+(\S+)", text, re.M | re.I)
    if not m or m.group(1) not in ("${BASE_IMAGE}", "$BASE_IMAGE"):
        raise ConfigError(
            "task Dockerfiles must start with 'ARG BASE_IMAGE' then 'FROM ${BASE_IMAGE}' "
            f"(got FROM {m.group(1)[:80] if m else 'nothing'})",
            file=str(df),
        )


def load_task(task_dir: Path, overrides: Path | None = None) -> Task:
    """Load a task directory in whichever registered format it is (``rollouts.formats.FORMATS``).

    ``overrides``: a JSON file holding a partial ``tb_meta.json`` deep-merged into the task's
    metadata (any format). Raises ConfigError naming the file and field when the directory is
    missing, is in no known format, or its files are invalid. A task that is valid but uses keys
    this harness cannot honour loads with ``unsupported`` reasons instead of raising.
    """
    from rollouts.formats import detect_format

    task_dir = Path(task_dir)
    if not task_dir.is_dir():
        raise ConfigError("task directory not found", file=str(task_dir))
    return detect_format(task_dir).load(task_dir, overrides)


def json_schema() -> dict:
    """The JSON Schema of ``tb_meta.json`` (draft 2020-12, from the pydantic model)."""
    schema = TaskMeta.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "tb_meta.json (rollouts prepared task, schema_version 1)"
    return schema


__all__ = [
    "MAX_JSON_BYTES", "Task", "TaskMeta", "check_dockerfile", "check_env_vars", "check_symlinks", "deep_merge",
    "dir_digest", "format_validation_error", "load_task", "read_bytes_checked", "read_json",
]
