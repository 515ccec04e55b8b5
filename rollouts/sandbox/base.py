"""The sandbox interface: one isolated container per run, behind a small typed API.

Modelled on Inspect AI's ``SandboxEnvironment`` (``util/_sandbox/environment.py``): a few
lifecycle methods (``start``/``stop``), ``exec`` with timeout/cwd/env/user, and file transfer.
A backend (Docker, Modal) implements :class:`Sandbox` and :class:`SandboxBackend`; adding one is
one new module plus one line in ``rollouts/sandbox/__init__.py``.

Every ``exec`` is wrapped so the timeout is enforced *inside* the sandbox (``timeout -k``: the
whole process group is killed, not abandoned). Output is capped at ``output_limit`` bytes per
stream; the rest is counted and dropped, never held in memory.
"""

from __future__ import annotations

import shlex
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

LABEL_TOOL = "rollouts.tool"
LABEL_ROLLOUT = "rollouts.rollout_id"
LABEL_RUN = "rollouts.run_id"
LABEL_PID = "rollouts.pid"  # harness process id (dead pid -> leftover)
LABEL_HOST = "rollouts.host"
LABEL_PID_START = "rollouts.pid_start"  # harness process start time (epoch s): a reused pid is not the owner
TOOL_NAME = "rollouts"

DEFAULT_OUTPUT_LIMIT = 1024 * 1024  # bytes kept per stream of one exec
KILL_GRACE_SEC = 2  # SIGTERM, then SIGKILL this many seconds later


@dataclass(frozen=True)
class NetworkAttachment:
    """A sandbox network whose only reachable endpoint is the rollout's model gateway.

    ``name``: the backend's network (Docker: the rollout's internal network, see
    ``rollouts.gateway.network``). ``gateway_host``/``gateway_port``: where the gateway listens,
    as the sandbox reaches it. Backends that cannot confine a sandbox to one endpoint raise
    SandboxError rather than start it with more network than this.
    """

    name: str
    gateway_host: str
    gateway_port: int

    @property
    def url(self) -> str:
        return f"http://{self.gateway_host}:{self.gateway_port}"


@dataclass(frozen=True)
class SandboxSpec:
    """What to start. Units: cpus in cores, memory in MiB, timeouts in seconds.

    ``network``: False = no network at all; True = the backend's default network (internet);
    a :class:`NetworkAttachment` = only the rollout's model gateway is reachable."""

    image: str
    labels: dict[str, str]
    workdir: str = "/workspace"
    cpus: float = 1.0
    memory_mb: int = 1024
    pids: int = 512
    network: bool | NetworkAttachment = False
    env: dict[str, str] = field(default_factory=dict)
    lifetime_sec: float | None = None  # hard deadline: the backend removes the sandbox after this
    name: str | None = None
    # Read-only volumes to mount: ((volume name, path in the sandbox), ...), e.g. an installed
    # agent's layer (rollouts/agents/installed/layer.py). Backends without volumes refuse them.
    volumes: tuple[tuple[str, str], ...] = ()


@dataclass
class ExecResult:
    """Result of one command. ``exit_code`` is the command's; ``timed_out`` means it was killed
    by the in-sandbox timeout. ``stdout``/``stderr`` are decoded UTF-8 (invalid bytes replaced) and
    capped; ``*_bytes`` count everything the command wrote."""

    exit_code: int
    stdout: str = ""
    stderr: str = ""
    timed_out: bool = False
    duration_sec: float = 0.0
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    @property
    def output(self) -> str:
        """stdout then stderr, as a model or a log would want to see them."""
        if self.stderr and self.stdout:
            return self.stdout.rstrip("\n") + "\n" + self.stderr
        return self.stdout or self.stderr


class CappedOutput:
    """One exec output stream as backends collect it: keeps the first ``limit`` bytes, counts the
    rest (``total``, in bytes) without holding it; :meth:`text` is the UTF-8 text (invalid bytes
    replaced) with a truncation note when bytes were dropped."""

    def __init__(self, limit: int):
        self.limit = limit
        self.buf = bytearray()
        self.total = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.limit - len(self.buf)
        if room > 0:
            self.buf += chunk[:room]

    @property
    def truncated(self) -> bool:
        return self.total > len(self.buf)

    def text(self) -> str:
        s = self.buf.decode("utf-8", errors="replace")
        if self.truncated:
            s += f"\n[... output truncated: {self.total} bytes, kept {len(self.buf)}]\n"
        return s


def wrap_command(cmd: str | list[str], timeout: float | None) -> list[str]:
    """argv that runs ``cmd`` (a shell string, or an argv list) under an in-sandbox timeout.

    ``timeout`` runs the command in its own process group and signals the whole group, so the
    process tree dies with it (GNU coreutils ``timeout`` semantics). Exit 124/137 = timed out.
    """
    argv = ["bash", "-c", cmd] if isinstance(cmd, str) else list(cmd)
    if timeout is None:
        return argv
    secs = max(1, int(round(timeout)))
    return ["timeout", "-k", str(KILL_GRACE_SEC), str(secs), *argv]


def shell_join(argv: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)


class Sandbox(ABC):
    """One running sandbox. What each method raises is part of the contract (checked for every
    backend by ``tests/test_sandbox_contract.py``); errors are typed, never told apart by message:

    - :class:`~rollouts.errors.SandboxError` — an infrastructure failure (transport, daemon, a
      gone sandbox): the run is retried (kind ``infra``);
    - :class:`~rollouts.errors.SandboxFileNotFound` (a SandboxError *and* a FileNotFoundError) —
      the path to read does not exist, or is not a file / directory as asked;
    - :class:`~rollouts.errors.OutputLimitExceeded` — what was to be copied out is over the cap
      (not retried: the same content gives the same size; kind ``agent``).

    A failing *command* is an ExecResult, not an error."""

    spec: SandboxSpec

    @abstractmethod
    def start(self) -> None:
        """Create and start the sandbox. Idempotent. SandboxError if it cannot start (image
        missing, engine unreachable, stopped while starting)."""

    @abstractmethod
    def exec(
        self,
        cmd: str | list[str],
        *,
        timeout: float | None = 60,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        user: str | None = None,
        output_limit: int = DEFAULT_OUTPUT_LIMIT,
    ) -> ExecResult:
        """Run ``cmd`` (shell string via ``bash -c``, or argv) and wait for it, at most ``timeout`` s
        (then killed: ``timed_out``). Output over ``output_limit`` bytes per stream is dropped and
        counted (``truncated``), never an error. SandboxError if the sandbox is not running or the
        transport fails."""

    @abstractmethod
    def put_file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        """Write ``data`` to absolute ``path`` in the sandbox (parents created). SandboxError on
        failure (transport, a parent that is a file)."""

    @abstractmethod
    def put_dir(self, src: Path, dest: str) -> None:
        """Copy the host directory ``src``'s contents into ``dest`` (created) in the sandbox.
        SandboxError on failure."""

    @abstractmethod
    def get_file(self, path: str, max_bytes: int = 64 * 1024 * 1024) -> bytes:
        """Read a file from the sandbox. SandboxFileNotFound if missing or not a regular file;
        OutputLimitExceeded if larger than ``max_bytes``; SandboxError on transport failure."""

    @abstractmethod
    def get_dir(self, src: str, dest: Path, max_bytes: int = 256 * 1024 * 1024) -> None:
        """Copy the sandbox directory ``src``'s contents into host dir ``dest``.
        SandboxFileNotFound if ``src`` is missing; OutputLimitExceeded if its archive is larger
        than ``max_bytes``; SandboxError on transport failure."""

    @abstractmethod
    def stop(self) -> None:
        """Kill and remove the sandbox. Idempotent; never raises for an already-gone sandbox
        (SandboxError only if the engine cannot be reached)."""

    def restart_processes(self) -> None:
        """Kill every process in the sandbox (its whole PID namespace) and start its main process
        again, keeping the filesystem. Used before shared-mode grading (rollouts.grading.stop).
        NotImplementedError where the backend cannot; SandboxError on transport failure."""
        raise NotImplementedError

    def changed_paths(self) -> list[str]:
        """Absolute paths added, changed or deleted in the sandbox's filesystem against its
        image, as the engine sees them from outside (rollouts.grading.integrity).
        NotImplementedError where the backend cannot; SandboxError on transport failure."""
        raise NotImplementedError

    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class SandboxBackend(ABC):
    """Creates sandboxes and images for one engine, and finds leftovers by label."""

    name: str
    # Start the grading sandbox while the agent runs (cheap idle containers: Docker). Backends
    # that bill sandboxes per second (Modal) leave it off.
    prewarm_grading: bool = False
    # Whether its sandboxes implement ``changed_paths`` (the engine lists what the agent changed):
    # trusted-toolchain grading needs it; a config asking for it elsewhere is refused before any run.
    lists_changed_paths: bool = False
    # Sandboxes this backend can keep alive at once (Modal: the workspace quota; Docker: what one
    # host runs well). The scheduler never exceeds it, whatever ``parallel`` says. None: no limit.
    live_sandbox_limit: int | None = None
    # Its sandbox calls go through rollouts.sandbox.aioloop (Modal), so the scheduler runs its runs
    # cooperatively: any number in flight on one thread (no thread per waiting or sleeping run).
    cooperative: bool = False

    @abstractmethod
    def preflight(self) -> None:
        """Check the engine is reachable / credentials exist; EnvironmentNotReady otherwise."""

    def prepare(self, log=None) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Make the backend ready before any run (e.g. build the base image). Default: nothing."""

    def check_task(self, task) -> None:  # noqa: B027 - optional hook, a no-op by default
        """ConfigError if this backend cannot run ``task`` (e.g. a Dockerfile it cannot build).
        Static checks only, no network: ``check`` and the preflight call it for every entry."""

    @abstractmethod
    def task_image(self, task, log=None) -> str:
        """Build or reuse the image for ``task`` (cached by content digest); returns its reference.
        ImageBuildError (a SandboxError) if the build fails; ConfigError for a Dockerfile that
        breaks the task convention."""

    @abstractmethod
    def create(self, spec: SandboxSpec) -> Sandbox:
        """A not-yet-started sandbox for ``spec`` (no engine call: never raises)."""

    @abstractmethod
    def list_leftovers(self, rollout_id: str | None = None) -> list[dict]:
        """Sandboxes this tool created (optionally of one rollout): dicts with id, labels, status.
        SandboxError if listing fails."""

    @abstractmethod
    def remove(self, sandbox_id: str) -> None:
        """Force-remove one sandbox by id; nothing for an unknown id. SandboxError if the engine
        cannot be reached."""
