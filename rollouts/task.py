"""Prepared task directories: the ``tb_meta.json`` schema, ``overrides.json`` merge, validation.

A prepared task directory holds ``tb_meta.json`` plus the files it names::

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

import copy
import hashlib
import json
import os
import re
import stat
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rollouts.errors import ConfigError

SCHEMA_VERSION = 1
META_FILE = "tb_meta.json"
OVERRIDES_FILE = "overrides.json"

MAX_TIMEOUT_SEC = 7 * 24 * 3600  # a week: anything above is a typo (and overflows timers)
MAX_JSON_BYTES = 4 * 1024 * 1024  # tb_meta.json / overrides.json / the benchmark TOML
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"  # no '.', '..', '/', leading '-'
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


class Environment(_Strict):
    """How the sandbox image is made and where the workspace lives."""

    dockerfile: str | None = Field(
        None, description="Dockerfile relative to the task dir; FROM $BASE_IMAGE. None = the base image."
    )
    workdir: str = Field("/workspace", description="Absolute path of the workspace inside the sandbox.")

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
    stop: Literal["strict", "keep-services"] = Field(
        "strict",
        description="shared mode: how the agent's processes are stopped before grading. strict: every "
        "process dies; keep-services: only the agent's own process trees (detached services it started "
        "keep running; grading integrity agent-controlled). See rollouts/grading/stop.py.",
    )
    toolchain: Literal["image", "agent"] = Field(
        "image",
        description="image: the verifier must run the clean image's toolchain (shared mode: verified "
        "unchanged, else the run fails); agent: the task needs the agent's own toolchain (grading "
        "integrity agent-controlled). See rollouts/grading/integrity.py.",
    )

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


class TaskMeta(_Strict):
    """``tb_meta.json``: everything the harness needs to run and grade one task."""

    schema_version: Literal[1] = Field(..., description="Format version of this file (1).")
    name: str = Field(..., min_length=1, max_length=100, pattern=NAME_PATTERN)
    description: str = ""
    instruction: str = Field("instruction.md", description="File with the instruction for the agent.")
    workspace: str | None = Field("workspace", description="Starting workspace directory (None = empty).")
    environment: Environment = Environment()
    tests: Tests = Tests()
    solution: str | None = Field(None, description="Reference solution script, run by the oracle agent.")
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

    @field_validator("environment_variables")
    @classmethod
    def _env(cls, v: dict[str, str]) -> dict[str, str]:
        return check_env_vars(v) or {}


class Task(BaseModel):
    """A validated task: its directory, merged metadata and content digest."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    dir: Path
    meta: TaskMeta
    instruction: str
    digest: str  # sha256 of every file in the task dir + applied overrides

    @property
    def name(self) -> str:
        return self.meta.name

    def path(self, rel: str | None) -> Path | None:
        return None if rel is None else self.dir / rel


def _short_repr(v: Any, limit: int = 80) -> str:
    r = repr(v)
    return r if len(r) <= limit else r[: limit - 1] + "…"


def _loc_part(p: Any) -> str:
    """A key as shown in a message: itself if printable and short, else its (shortened) repr."""
    text = str(p)
    return text if text.isprintable() and len(text) <= 60 and "." not in text else _short_repr(text, 60)


def format_validation_error(err: ValidationError) -> tuple[str, str]:
    """First pydantic error as (dotted field, message with the offending value, shortened)."""
    e = err.errors()[0]
    field = ".".join(_loc_part(p) for p in e["loc"]) or "<root>"
    msg = e["msg"]
    if e["type"] == "extra_forbidden":
        msg = "unknown key (not part of the schema)"
    elif e["type"] == "missing":
        msg = "required key is missing"
    else:
        msg = f"{msg} (got {_short_repr(e.get('input'))})"
    return field, msg


def read_bytes_checked(path: Path, what: str = "file", limit: int = MAX_JSON_BYTES) -> bytes:
    """Bytes of a regular file, at most ``limit``; ConfigError naming the file otherwise.

    A FIFO or device would block or never end, so anything but a regular file is refused
    before it is opened.
    """
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"{what} not found", file=str(path)) from None
    except OSError as e:  # ELOOP, ENAMETOOLONG, EACCES on a parent …
        raise ConfigError(f"cannot read {what}: {e.strerror}", file=str(path)) from None
    if stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"expected a {what}, got a directory", file=str(path))
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"expected a regular {what} (not a pipe, socket or device)", file=str(path))
    if st.st_size > limit:
        raise ConfigError(f"{what} is too large ({st.st_size} bytes; at most {limit})", file=str(path))
    try:
        with open(path, "rb") as f:
            return f.read(limit + 1)[:limit]
    except OSError as e:
        raise ConfigError(f"cannot read {what}: {e.strerror}", file=str(path)) from None


def read_json(path: Path) -> Any:
    """Read a JSON file; ConfigError naming the file on any read or parse problem."""
    raw = read_bytes_checked(Path(path), "JSON file")
    if not raw.strip():
        raise ConfigError("file is empty (expected a JSON object)", file=str(path))
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError as e:
        raise ConfigError(f"not UTF-8 text (invalid byte at offset {e.start})", file=str(path)) from None
    except json.JSONDecodeError as e:
        raise ConfigError(
            f"invalid JSON at line {e.lineno} column {e.colno}: {e.msg}", file=str(path)
        ) from None
    except RecursionError:
        raise ConfigError("invalid JSON: nested too deeply", file=str(path)) from None
    except ValueError as e:  # from _reject_constant
        raise ConfigError(f"invalid JSON: {e}", file=str(path)) from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def deep_merge(base: dict, over: dict) -> dict:
    """Recursively merge ``over`` into a copy of ``base`` (dicts merge, other values replace)."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _resolve(p: Path) -> Path:
    """``p.resolve()``; ConfigError for a symlink loop (RuntimeError or OSError by version)."""
    try:
        return p.resolve()
    except (RuntimeError, OSError):
        raise ConfigError("symlink loop", file=str(p)) from None


def _within(p: Path, root: Path) -> bool:
    return p == root or root in p.parents


def _inside(root: Path, rel: str, file: Path, field: str) -> Path:
    """Resolve ``rel`` under ``root``; ConfigError if it escapes (``..``, absolute, symlink)."""
    if os.path.isabs(rel):
        raise ConfigError(
            f"must be a path relative to the task dir (got {rel!r})", file=str(file), field=field
        )
    if "\0" in rel:
        raise ConfigError("path contains a NUL character", file=str(file), field=field)
    p = _resolve(root / rel)
    if not _within(p, root):
        raise ConfigError(f"path escapes the task dir (got {rel!r})", file=str(file), field=field)
    return p


def dir_digest(root: Path, extra: bytes = b"") -> str:
    """sha256 hex over the relative paths, modes and bytes of every file under ``root``.

    File names are hashed as raw bytes (``os.fsencode``), so non-UTF-8 names work.
    """
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        rel = os.fsencode(p.relative_to(root))
        if p.is_symlink():
            h.update(b"L" + rel + os.fsencode(os.readlink(p)))
        elif p.is_file():
            h.update(b"F" + rel + bytes([p.stat().st_mode & 0o111 != 0]))
            with open(p, "rb") as f:
                h.update(
                    hashlib.file_digest(f, "sha256").digest()
                    if hasattr(hashlib, "file_digest")
                    else hashlib.sha256(f.read()).digest()
                )
    h.update(extra)
    return h.hexdigest()


def _check_symlinks(root: Path, task_dir: Path, workspace: Path | None) -> None:
    """Every symlink in the task dir must resolve inside it; in the workspace, inside the workspace
    (it is copied into the sandbox as a symlink, where an outside target means something else)."""
    for p in sorted(root.rglob("*")):
        if not p.is_symlink():
            continue
        target = _resolve(p)
        shown = task_dir / p.relative_to(root)
        if workspace is not None and _within(p.parent, workspace):
            if not _within(target, workspace):
                raise ConfigError(
                    f"symlink in the workspace points outside the workspace (-> {os.readlink(p)!r})",
                    file=str(shown),
                )
        elif not _within(target, root):
            raise ConfigError(f"symlink points outside the task dir (-> {os.readlink(p)!r})", file=str(shown))


def check_dockerfile(task: Task) -> None:
    """The task Dockerfile's convention (``ARG BASE_IMAGE`` + ``FROM ${BASE_IMAGE}``), checked up
    front by ``load_config`` so a bad one is exit 2 before anything runs (the image build checks
    it again). ConfigError naming the Dockerfile."""
    if task.meta.environment.dockerfile is None:
        return
    df = task.dir / task.meta.environment.dockerfile
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


def _validate(raw: dict, file: Path) -> TaskMeta:
    try:
        return TaskMeta.model_validate(raw)
    except ValidationError as e:
        field, msg = format_validation_error(e)
        raise ConfigError(msg, file=str(file), field=field) from None


def load_task(task_dir: Path, overrides: Path | None = None) -> Task:
    """Load and validate a prepared task directory.

    ``overrides``: a JSON file holding a partial ``tb_meta.json``, deep-merged before validation.
    Raises ConfigError naming the file and field for a missing dir, a missing, unreadable or
    invalid ``tb_meta.json`` / overrides file, a missing or empty file it names, a path or a
    symlink escaping the task dir (or, in the workspace, the workspace), or a Dockerfile that
    does not follow the ``FROM ${BASE_IMAGE}`` convention.
    """
    task_dir = Path(task_dir)
    if not task_dir.is_dir():
        raise ConfigError("task directory not found", file=str(task_dir))
    root = _resolve(task_dir)
    meta_path = task_dir / META_FILE
    if meta_path.is_symlink() and not _within(_resolve(meta_path), root):
        raise ConfigError("symlink points outside the task dir", file=str(meta_path))
    if not meta_path.exists() and not meta_path.is_symlink():
        raise ConfigError(f"missing {META_FILE} (every prepared task needs one)", file=str(task_dir))
    raw = read_json(meta_path)
    if not isinstance(raw, dict):
        raise ConfigError(f"expected a JSON object, got {type(raw).__name__}", file=str(meta_path))
    meta = _validate(raw, meta_path)  # errors in tb_meta.json itself name tb_meta.json
    extra = b""
    if overrides is not None:
        over = read_json(Path(overrides))
        if not isinstance(over, dict):
            raise ConfigError("expected a JSON object (a partial tb_meta.json)", file=str(overrides))
        meta = _validate(deep_merge(raw, over), Path(overrides))
        extra = json.dumps(over, sort_keys=True).encode()

    def need(rel: str | None, field: str, kind: str) -> Path | None:
        if rel is None:
            return None
        p = _inside(root, rel, meta_path, field)
        ok = p.is_dir() if kind == "dir" else p.is_file()
        if not ok:
            raise ConfigError(f"{kind} {rel!r} not found in the task dir", file=str(meta_path), field=field)
        return p

    instruction_path = need(meta.instruction, "instruction", "file")
    workspace = need(meta.workspace, "workspace", "dir")
    need(meta.environment.dockerfile, "environment.dockerfile", "file")
    need(meta.tests.dir, "tests.dir", "dir")
    need(meta.solution, "solution", "file")
    assert instruction_path is not None
    raw_instruction = read_bytes_checked(instruction_path, "instruction file", limit=16 * 1024 * 1024)
    try:
        instruction = raw_instruction.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError("instruction is not UTF-8 text", file=str(task_dir / meta.instruction)) from None
    if not instruction.strip():
        raise ConfigError("instruction file is empty", file=str(task_dir / meta.instruction))
    _check_symlinks(root, task_dir, workspace)
    try:
        digest = dir_digest(root, extra)
    except OSError as e:
        raise ConfigError(f"cannot read {e.filename}: {e.strerror}", file=str(task_dir)) from None
    return Task(dir=task_dir, meta=meta, instruction=instruction, digest=digest)


def json_schema() -> dict:
    """The JSON Schema of ``tb_meta.json`` (draft 2020-12, from the pydantic model)."""
    schema = TaskMeta.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "tb_meta.json (rollouts prepared task, schema_version 1)"
    return schema
