"""Task formats: one module per on-disk format, each reading a directory into the same
:class:`rollouts.task.Task`. Adding a format = one module with a ``FORMAT`` object + one line here.

A format object has ``name``, ``marker`` (the file whose presence identifies it) and
``load(dir, overrides) -> Task``. Detection tries the formats in registry order, by marker file,
and imports only the module of the format it finds (a run of tb_meta tasks never imports the
Harbor schema or yaml: part of the fixed cost per command, issue 13).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Protocol

from rollouts.errors import ConfigError


class TaskFormat(Protocol):
    """What a format module exports as ``FORMAT``."""

    name: str
    marker: str  # file name at the task dir's root that identifies the format

    def load(self, task_dir: Path, overrides: Path | None = None):  # -> rollouts.task.Task
        """Read ``task_dir``; ConfigError naming the file and field on invalid input."""


# name → (marker file, module exporting FORMAT), in detection order. One line per format.
REGISTRY: dict[str, tuple[str, str]] = {
    "tb_meta": ("tb_meta.json", "rollouts.formats.tb_meta"),
    "harbor": ("task.toml", "rollouts.formats.harbor"),
    "terminal_bench": ("task.yaml", "rollouts.formats.terminal_bench"),
}


def format_named(name: str) -> TaskFormat:
    """The ``FORMAT`` object of the registered format ``name`` (imports its module on first use).
    KeyError for an unregistered name."""
    return importlib.import_module(REGISTRY[name][1]).FORMAT


def formats() -> dict[str, TaskFormat]:
    """The registry (name → format), in detection order; imports every format module."""
    return {name: format_named(name) for name in REGISTRY}


def _has(path: Path, marker: str) -> bool:
    return (path / marker).exists() or (path / marker).is_symlink()


def is_task_dir(path: Path) -> bool:
    """Whether ``path`` holds a task in any registered format (its marker file exists)."""
    return any(_has(path, marker) for marker, _ in REGISTRY.values())


def detect_format(task_dir: Path) -> TaskFormat:
    """The format of ``task_dir``; ConfigError listing the marker files when it is none of them."""
    for name, (marker, _) in REGISTRY.items():
        if _has(task_dir, marker):
            return format_named(name)
    markers = ", ".join(f"{marker} ({n})" for n, (marker, _) in REGISTRY.items())
    raise ConfigError(f"not a task directory: none of {markers} found", file=str(task_dir))
