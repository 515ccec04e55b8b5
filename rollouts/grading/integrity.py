"""Grading integrity: how strongly a task's grading resists an agent that attacks it.

Labels (one per task, recorded on every run, shown by ``check``, ``summarize``, the report):

- ``isolated`` — fresh mode: the verifier runs in a new sandbox from the clean task image; only
  the agent's diff crosses (checked by :mod:`rollouts.grading.pathguard`); the hidden tests are
  root-only and never present while the agent runs. Agent code that the tests execute must be
  run through the untrusted runner (the shipped tasks' ``tests/untrusted.py``: another user, no
  access to ``/tests``); a task whose tests import the agent's code in-process should declare
  ``tests.toolchain = "agent"`` (then it is ``agent-controlled``).
- ``trusted-toolchain`` — shared mode, strict stop: every process of the agent's sandbox is
  killed (its PID namespace torn down: nothing the agent could ptrace survives), then the engine
  (outside the sandbox) verifies that nothing under :data:`TOOLCHAIN_PATHS` differs from the clean
  image — interpreter, shell, coreutils, libraries, site-packages and their ``.pth``/entry
  points, ``/etc/ld.so.preload``, the user database — so the verifier runs the clean image's
  toolchain with a clean environment on the agent's state. Any change there fails the run
  (:class:`GradingIntegrityError`, a counted agent failure). Needs a backend that can restart a
  sandbox's processes and list its changed paths (Docker).
- ``agent-controlled`` — shared mode where the task needs the agent's own toolchain
  (``tests.toolchain = "agent"``) or keeps the services the agent started (``tests.stop =
  "agent"``, keep-services): the verifier may run programs the agent replaced, and detached agent
  processes keep running during grading. Its rewards are only as good as the agent is honest.
"""

from __future__ import annotations

from typing import Literal

from rollouts.errors import GradingIntegrityError
from rollouts.sandbox.base import Sandbox

Label = Literal["isolated", "trusted-toolchain", "agent-controlled"]
LABELS: tuple[str, ...] = ("isolated", "trusted-toolchain", "agent-controlled")

# Paths whose change (added, modified, deleted — as the engine sees the sandbox's filesystem
# against its image) means the verifier would run something the agent controlled.
TOOLCHAIN_PATHS = (
    "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/usr",
    "/etc/ld.so.preload", "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d",
    "/etc/alternatives", "/etc/python3", "/etc/pip.conf", "/etc/bash.bashrc", "/etc/profile",
    "/etc/profile.d", "/etc/environment", "/etc/passwd", "/etc/group", "/etc/shadow",
    "/etc/nsswitch.conf", "/etc/localtime", "/root/.local", "/root/.config/pip", "/opt/conda",
    "/etc/gitconfig", "/root/.gitconfig", "/root/.config/git", "/root/.bashrc", "/root/.profile",
    "/root/.bash_profile",
)
# Also every path that merely starts with one of these (``/etc/python3.11/sitecustomize.py``,
# ``/etc/ld.so.conf.d``, ``/etc/profile.d``).
TOOLCHAIN_STARTS = ("/etc/python", "/etc/ld.so", "/etc/profile", "/usr", "/lib")

# Put there by the engine, not the agent (Docker bind-mounts its init at this path).
ENGINE_PATHS = frozenset({"/usr/sbin/docker-init"})
# Fail closed: outside these places where a task's state lives (and the task's workdir) ANY
# change counts as a change of the toolchain (``/opt/venv``, ``/etc/…``, a new top-level dir):
# the verifier might run it. Inside them, TOOLCHAIN_PATHS still wins (``/root/.local``).
STATE_PATHS = ("/tmp", "/var/tmp", "/var/log", "/var/cache", "/run", "/home", "/root", "/srv", "/mnt",
               "/media", "/dev/shm",
               "/logs", "/tests", "/solution")  # replaced wholesale by grading preparation


def task_label(meta, mode: str | None = None) -> Label:
    """The integrity label of a task from its ``tb_meta.json`` (``tests.mode``, ``tests.stop``,
    ``tests.toolchain``; the last two default to ``all`` (strict) / ``image``). ``mode``
    overrides ``tests.mode`` (``eval`` re-grades every run fresh from its diff)."""
    tests = meta.tests
    if tests.toolchain == "agent":
        return "agent-controlled"
    if (mode or tests.mode) == "fresh":
        return "isolated"
    if tests.stop == "agent":
        return "agent-controlled"
    return "trusted-toolchain"


def _under(path: str, prefixes: tuple[str, ...]) -> bool:
    return any(path == p or path.startswith(p + "/") for p in prefixes)


def verify_toolchain(sandbox: Sandbox, workdir: str = "/workspace") -> None:
    """GradingIntegrityError unless every path that differs from the sandbox's image, as the
    engine (outside the sandbox) lists it, is task state — under ``workdir`` or
    :data:`STATE_PATHS` and not under :data:`TOOLCHAIN_PATHS`; also if the backend cannot list
    changes. Call only after every agent process is dead (:func:`stop.stop_agent`).
    Directory entries themselves (``/usr`` "changed" because a child changed) are not counted:
    only leaf changes below them are. SandboxError (infra) if the transport fails."""
    try:
        changed = sandbox.changed_paths()
    except NotImplementedError:
        raise GradingIntegrityError(
            f"the {type(sandbox).__name__} backend cannot list what the agent changed, so the verifier's "
            "toolchain cannot be verified (trusted-toolchain grading needs Docker); declare "
            'tests.toolchain = "agent" to grade with the agent\'s toolchain (label agent-controlled)'
        ) from None
    dirs = {p[:i] for p in changed for i in range(1, len(p)) if p[i] == "/"}
    state = (workdir.rstrip("/") or "/", *STATE_PATHS)
    bad = sorted(
        p for p in changed
        if p not in dirs and p not in ENGINE_PATHS
        and (_under(p, TOOLCHAIN_PATHS) or p.startswith(TOOLCHAIN_STARTS) or not _under(p, state))
    )
    if bad:
        raise GradingIntegrityError(
            f"the agent changed the verifier's toolchain ({len(bad)} path(s): {', '.join(bad[:8])}"
            f"{' …' if len(bad) > 8 else ''}): trusted-toolchain grading refused. A task that needs the "
            'agent\'s toolchain declares tests.toolchain = "agent" (label agent-controlled)'
        )
