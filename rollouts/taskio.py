"""File helpers shared by the task formats and the config loader: bounded reads with errors that
name the file, JSON parsing, path containment, the task content digest, pydantic error messages.

Kept apart from ``rollouts.task`` (the in-memory Task) and ``rollouts.formats`` (one module per
on-disk format) so both can use them without importing each other.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from rollouts.errors import ConfigError

MAX_JSON_BYTES = 4 * 1024 * 1024  # tb_meta.json / overrides.json / task.toml / the benchmark TOML


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


def resolve_path(p: Path) -> Path:
    """``p.resolve()``; ConfigError for a symlink loop (RuntimeError or OSError by version)."""
    try:
        return p.resolve()
    except (RuntimeError, OSError):
        raise ConfigError("symlink loop", file=str(p)) from None


def within(p: Path, root: Path) -> bool:
    """Whether the (resolved) path ``p`` is ``root`` or lies below it."""

    return p == root or root in p.parents


def inside(root: Path, rel: str, file: Path, field: str) -> Path:
    """Resolve ``rel`` under ``root``; ConfigError if it escapes (``..``, absolute, symlink)."""
    if os.path.isabs(rel):
        raise ConfigError(
            f"must be a path relative to the task dir (got {rel!r})", file=str(file), field=field
        )
    if "\0" in rel:
        raise ConfigError("path contains a NUL character", file=str(file), field=field)
    p = resolve_path(root / rel)
    if not within(p, root):
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


def check_symlinks(root: Path, task_dir: Path, workspace: Path | None) -> None:
    """Every symlink in the task dir must resolve inside it; in the workspace, inside the workspace
    (it is copied into the sandbox as a symlink, where an outside target means something else)."""
    for p in sorted(root.rglob("*")):
        if not p.is_symlink():
            continue
        target = resolve_path(p)
        shown = task_dir / p.relative_to(root)
        if workspace is not None and within(p.parent, workspace):
            if not within(target, workspace):
                raise ConfigError(
                    f"symlink in the workspace points outside the workspace (-> {os.readlink(p)!r})",
                    file=str(shown),
                )
        elif not within(target, root):
            raise ConfigError(f"symlink points outside the task dir (-> {os.readlink(p)!r})", file=str(shown))


def checked_digest(task_dir: Path, workspace: Path | None = None, extra: bytes = b"") -> str:
    """The task's content digest: :func:`dir_digest` of the resolved ``task_dir`` plus ``extra``
    (e.g. the overrides' bytes), after :func:`check_symlinks` (``workspace`` = the resolved
    workspace dir, or None). ConfigError for a symlink loop or escape, or a file that cannot be read
    (naming the task dir and the file)."""
    root = resolve_path(task_dir)
    check_symlinks(root, task_dir, workspace)
    try:
        return dir_digest(root, extra)
    except OSError as e:
        raise ConfigError(f"cannot read {e.filename}: {e.strerror}", file=str(task_dir)) from None
