"""Sandbox backends behind one interface (``base.py``). Add a backend: one module + one line below."""

from __future__ import annotations

from rollouts.sandbox.base import ExecResult, Sandbox, SandboxBackend, SandboxSpec

BACKENDS: dict[str, str] = {
    "docker": "rollouts.sandbox.docker:DockerBackend",
    "modal": "rollouts.sandbox.modal:ModalBackend",
}


def backend_class(name: str) -> type[SandboxBackend]:
    """The class registered as ``name`` (its module imported, nothing instantiated or
    connected), for its declared capabilities. ConfigError for an unknown name."""
    import importlib

    from rollouts.errors import ConfigError

    if name not in BACKENDS:
        raise ConfigError(f"unknown sandbox backend {name!r} (expected one of: {', '.join(BACKENDS)})")
    mod, cls = BACKENDS[name].split(":")
    return getattr(importlib.import_module(mod), cls)


def get_backend(name: str) -> SandboxBackend:
    """Instantiate the backend registered as ``name``. ConfigError for an unknown name."""
    return backend_class(name)()


__all__ = ["ExecResult", "Sandbox", "SandboxBackend", "SandboxSpec", "backend_class", "get_backend", "BACKENDS"]
