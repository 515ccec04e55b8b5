"""Task formats: one module per on-disk format, each reading a directory into the same
:class:`rollouts.task.Task`. Adding a format = one module with a ``FORMAT`` object + one line here.

A format object has ``name``, ``marker`` (the file whose presence identifies it) and
``load(dir, overrides) -> Task``. Detection tries the formats in registry order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from rollouts.errors import ConfigError


class TaskFormat(Protocol):
    """What a format module exports as ``FORMAT``."""

    name: str
    marker: str  # file name at the task dir's root that identifies the format

    def load(self, task_dir: Path, overrides: Path | None = None):  # -> rollouts.task.Task
        """Read ``task_dir``; ConfigError naming the file and field on invalid input."""


def _registry() -> dict[str, TaskFormat]:
    from rollouts.formats import harbor, tb_meta, terminal_bench

    return {
        "tb_meta": tb_meta.FORMAT,
        "harbor": harbor.FORMAT,
        "terminal_bench": terminal_bench.FORMAT,
    }


FORMATS: dict[str, TaskFormat] = {}


def formats() -> dict[str, TaskFormat]:
    """The registry (name → format), in detection order."""
    if not FORMATS:
        FORMATS.update(_registry())
    return FORMATS


def is_task_dir(path: Path) -> bool:
    """Whether ``path`` holds a task in any registered format (its marker file exists)."""
    return any((path / f.marker).exists() or (path / f.marker).is_symlink() for f in formats().values())


def detect_format(task_dir: Path) -> TaskFormat:
    """The format of ``task_dir``; ConfigError listing the marker files when it is none of them."""
    for f in formats().values():
        if (task_dir / f.marker).exists() or (task_dir / f.marker).is_symlink():
            return f
    markers = ", ".join(f"{f.marker} ({n})" for n, f in formats().items())
    raise ConfigError(f"not a task directory: none of {markers} found", file=str(task_dir))
