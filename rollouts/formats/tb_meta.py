"""``tb_meta.json``: rollouts' own prepared task format (schema in ``rollouts/task.py``,
``TaskMeta``; JSON Schema shipped at ``rollouts/schemas/tb_meta.schema.json``), with the
optional ``overrides.json`` merge."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

from pydantic import ValidationError

from rollouts.errors import ConfigError
from rollouts.formats.envtemplate import expand_meta_env
from rollouts.task import META_FILE, Task, TaskMeta
from rollouts.taskio import (
    checked_digest,
    deep_merge,
    format_validation_error,
    inside,
    read_bytes_checked,
    read_json,
    resolve_path,
    within,
)


def validate_meta(raw: dict, file: Path) -> TaskMeta:
    """``raw`` → TaskMeta; ConfigError naming ``file`` and the dotted field."""
    try:
        return TaskMeta.model_validate(raw)
    except ValidationError as e:
        field, msg = format_validation_error(e)
        raise ConfigError(msg, file=str(file), field=field) from None


def read_overrides(overrides: Path) -> dict:
    """The partial tb_meta.json of an overrides file; ConfigError unless it is a JSON object."""
    over = read_json(Path(overrides))
    if not isinstance(over, dict):
        raise ConfigError("expected a JSON object (a partial tb_meta.json)", file=str(overrides))
    return over


def apply_overrides(meta: TaskMeta, overrides: Path | None) -> tuple[TaskMeta, bytes]:
    """``meta`` with ``overrides`` merged (any format's metadata), and the digest extra bytes."""
    if overrides is None:
        return meta, b""
    over = read_overrides(overrides)
    merged = deep_merge(meta.model_dump(mode="json"), over)
    return validate_meta(merged, Path(overrides)), json.dumps(over, sort_keys=True).encode()


def read_text(path: Path, what: str, limit: int = 16 * 1024 * 1024) -> str:
    """UTF-8 text of a regular file; ConfigError naming it if missing, binary or empty."""
    raw = read_bytes_checked(path, what, limit=limit)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{what} is not UTF-8 text", file=str(path)) from None
    if not text.strip():
        raise ConfigError(f"{what} is empty", file=str(path))
    return text


class TbMetaFormat:
    """Reads ``tb_meta.json`` directories."""

    name = "tb_meta"
    marker = META_FILE

    def load(self, task_dir: Path, overrides: Path | None = None) -> Task:
        """Load and validate a prepared task directory.

        Raises ConfigError naming the file and field for a missing, unreadable or invalid
        ``tb_meta.json`` / overrides file, a missing or empty file it names, a path or a symlink
        escaping the task dir (or, in the workspace, the workspace).
        """
        task_dir = Path(task_dir)
        root = resolve_path(task_dir)
        meta_path = task_dir / META_FILE
        if meta_path.is_symlink() and not within(resolve_path(meta_path), root):
            raise ConfigError("symlink points outside the task dir", file=str(meta_path))
        raw = read_json(meta_path)
        if not isinstance(raw, dict):
            raise ConfigError(f"expected a JSON object, got {type(raw).__name__}", file=str(meta_path))
        problems: list[str] = []
        raw = copy.deepcopy(raw)
        validate_meta(raw, meta_path)  # errors in tb_meta.json itself name tb_meta.json
        extra = b""
        if overrides is not None:
            over = read_overrides(overrides)
            raw = deep_merge(raw, over)
            extra = json.dumps(over, sort_keys=True).encode()
        templates = expand_meta_env(raw, dict(os.environ), problems)  # ${VAR:-default} from the host
        meta = validate_meta(raw, Path(overrides) if overrides is not None else meta_path)

        def need(rel: str | None, field: str, kind: str) -> Path | None:
            if rel is None:
                return None
            p = inside(root, rel, meta_path, field)
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
        instruction = read_text(instruction_path, "instruction file")
        digest = checked_digest(task_dir, workspace, extra)
        return Task(dir=task_dir, meta=meta, instruction=instruction, digest=digest, format=self.name,
                    unsupported=problems, env_templates=templates)


FORMAT = TbMetaFormat()
