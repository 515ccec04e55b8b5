"""What Modal can build of a task Dockerfile, decided before any run (``check``, preflight).

Modal builds a task image from ``Image.dockerfile_commands(lines after FROM, context_dir=...)``.
Read in the modal 1.6.4 SDK (``_image.py`` ``_create_context_mount``, ``_utils/docker_utils.py``):

- only files named by ``COPY`` sources are uploaded (``extract_copy_command_patterns``): an
  ``ADD`` of a local file finds nothing on Modal's builder;
- a ``COPY`` source that is a variable (``${VAR}``/``$VAR``) or an unknown ``--flag`` makes the
  SDK raise ``InvalidError`` at build time; a source outside the context directory too;
- the SDK joins continuation lines on ``\\``: an ``# escape=`` parser directive changes what
  the lines mean to Docker but not to the SDK;
- one stage only (``is_multi_stage_dockerfile``).

:func:`modal_dockerfile_commands` applies these rules with the SDK's own parser functions and
names the offending line in a :class:`ConfigError` (exit 2), so a task Modal cannot build is a
task error at ``check`` and never an infrastructure failure retried at run time.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from rollouts.errors import ConfigError, EnvironmentNotReady

_FROM = re.compile(r"^\s*FROM\s+(\S+)", re.I)
_ADD = re.compile(r"^\s*ADD\s+(.+)$", re.I | re.S)
_ARG = re.compile(r"^\s*ARG\s", re.I)
_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(\S*)")
_REMOTE = re.compile(r"^(https?://|git@|git://)", re.I)


def _sdk_parser():
    try:
        from modal._utils import docker_utils
        from modal.exception import InvalidError
    except ImportError:
        raise EnvironmentNotReady("the Modal SDK is missing: pip install -e '.[modal]'") from None
    return docker_utils, InvalidError


def instructions(lines: list[str]) -> list[tuple[int, str]]:
    """``(1-based first line, instruction text with continuations joined)`` for each instruction
    of a Dockerfile using the default ``\\`` escape; comments and blank lines skipped."""
    out: list[tuple[int, str]] = []
    cur, start = "", 0
    for i, raw in enumerate(lines, 1):
        line = raw.strip()
        if not cur and (not line or line.startswith("#")):
            continue
        if not cur:
            start = i
        cur = (cur + " " + line.rstrip("\\").strip()) if cur else line.rstrip("\\").strip()
        if not line.endswith("\\"):
            out.append((start, cur))
            cur = ""
    if cur:
        out.append((start, cur))
    return out


def modal_dockerfile_commands(text: str, where: str, context_dir: Path | None = None) -> list[str]:
    """The task Dockerfile's lines after ``FROM ${BASE_IMAGE}`` (global ARGs other than BASE_IMAGE
    moved after it), for ``Image.dockerfile_commands`` on the Modal base image.

    Raises ConfigError naming ``where`` and the line for: no ``FROM ${BASE_IMAGE}``, a second
    FROM, an ``# escape=`` directive, an ``ADD`` of a local source, a ``COPY`` source the SDK's
    parser refuses or one outside ``context_dir``. EnvironmentNotReady without the modal SDK."""
    docker_utils, invalid = _sdk_parser()
    lines = text.splitlines()
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        m = _DIRECTIVE.match(line.strip())
        if not m:
            break
        if m.group(1).lower() == "escape":
            raise ConfigError(f"line {i}: the parser directive '{line.strip()}' cannot be built on Modal (its SDK "
                              "reads continuation lines with the default '\\' escape)", file=where)  # fmt: skip
    from_at = None
    for i, line in enumerate(lines):
        m = _FROM.match(line)
        if m:
            if m.group(1) not in ("${BASE_IMAGE}", "$BASE_IMAGE"):
                raise ConfigError(f"line {i + 1}: task Dockerfiles must start with 'ARG BASE_IMAGE' + "
                                  f"'FROM ${{BASE_IMAGE}}' (got FROM {m.group(1)})", file=where)  # fmt: skip
            from_at = i
            break
    if from_at is None:
        raise ConfigError("task Dockerfiles must start with 'ARG BASE_IMAGE' + 'FROM ${BASE_IMAGE}'", file=where)
    if docker_utils.is_multi_stage_dockerfile(lines):
        second = next(i for i, x in enumerate(lines) if _FROM.match(x) and i != from_at) + 1
        raise ConfigError(f"line {second}: multi-stage Dockerfiles are not supported on Modal", file=where)
    body = lines[from_at + 1 :]
    for n, ins in instructions(body):
        lineno = n + from_at + 1
        m = _ADD.match(ins)
        if m:
            try:
                parts = [p for p in shlex.split(m.group(1)) if not p.startswith("--")]
            except ValueError as e:
                raise ConfigError(f"line {lineno}: cannot parse ADD ({e})", file=where) from None
            local = [p for p in parts[:-1] if not _REMOTE.match(p)]
            if local:
                raise ConfigError(f"line {lineno}: 'ADD {' '.join(local)}' copies a local file, which Modal's "
                                  "builder does not receive (only COPY sources are uploaded): use COPY", file=where)  # fmt: skip
            continue
        try:
            sources = docker_utils.extract_copy_command_patterns([ins])
        except invalid as e:
            raise ConfigError(f"line {lineno}: {e} (Modal's SDK refuses it)", file=where) from None
        except ValueError as e:  # shlex: unbalanced quotes
            raise ConfigError(f"line {lineno}: cannot parse COPY ({e})", file=where) from None
        if context_dir is not None:
            root = Path(context_dir).resolve()
            for src in sources:
                if not (root / src.lstrip("/")).resolve().is_relative_to(root):
                    raise ConfigError(f"line {lineno}: COPY source {src!r} is outside the build context "
                                      f"{root}", file=where)  # fmt: skip
    args = [x for x in lines[:from_at] if _ARG.match(x) and "BASE_IMAGE" not in x]
    return args + body


def check_task_dockerfile(task) -> list[str] | None:
    """:func:`modal_dockerfile_commands` for ``task`` (a loaded Task), None without a Dockerfile."""
    rel = task.meta.environment.dockerfile
    if rel is None:
        return None
    df = (task.dir / rel).resolve()
    try:
        text = df.read_text(errors="replace")
    except OSError as e:
        raise ConfigError(f"cannot read the Dockerfile: {e.strerror}", file=str(df)) from None
    return modal_dockerfile_commands(text, str(df), df.parent)
