"""Typed errors and the exit codes they map to.

Exit codes (documented in the README):
  0 completed, 1 completed but runs errored / below ``--fail-under``,
  2 bad config or usage, 3 environment not ready, 130 interrupted.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_ENV = 3
EXIT_INTERRUPTED = 130


class RolloutsError(Exception):
    """Base class of every error the tool reports to the user without a traceback.

    ``error_kind`` is the run outcome kind a run that raised it is recorded with (see
    ``rollouts.store.ErrorKind``); a subclass that does not set one is a bug of ours (harness).
    """

    exit_code = EXIT_FAILED
    error_kind = "harness"


class ConfigError(RolloutsError):
    """Bad benchmark config, task dir, ``tb_meta.json`` or ``overrides.json``.

    ``file`` names the offending file and ``field`` the dotted key path when known.
    """

    exit_code = EXIT_CONFIG
    error_kind = "config"

    def __init__(self, message: str, *, file: str | None = None, field: str | None = None):
        self.file = file
        self.field = field
        self.message = message
        where = file or ""
        if field:
            where = f"{where}: {field}" if where else field
        super().__init__(f"{where}: {message}" if where else message)


class EnvironmentNotReady(RolloutsError):
    """The machine is not ready: no Docker daemon, no credentials, missing tool (exit 3)."""

    exit_code = EXIT_ENV
    error_kind = "infra"


class SandboxError(RolloutsError):
    """An infrastructure failure in a sandbox backend (start, exec transport, file copy).

    Runs that hit it are recorded as ``error`` with reason ``infra`` and are retried unless the
    class sets ``retryable = False`` (a retry would only repeat a long wait).
    """

    error_kind = "infra"
    retryable = True


class ImageBuildError(SandboxError):
    """Building the base or a task image failed."""


class VerifierError(RolloutsError):
    """The verifier could not produce a trustworthy reward (missing output, contradictory exit)."""

    error_kind = "verifier"


class ModelError(RolloutsError):
    """A model call failed for a non-transient reason (401/403, unknown model)."""

    error_kind = "model"


class AgentError(RolloutsError):
    """The agent process or the agent's code failed; the run counts as a failure (reward 0)."""

    error_kind = "agent"


class GradingIntegrityError(AgentError):
    """A grading step could not keep its guarantee (privilege drop, stop step, path guard,
    collection) because of what the agent left behind: fail closed, a counted agent failure."""


class SandboxEndedError(AgentError):
    """The agent's sandbox ended during the run without the harness stopping it (its main
    process was killed from inside): a counted agent failure, never infra (issue 10)."""


class OversizeDiffError(AgentError):
    """The agent's diff is larger than the collection cap; the message names size and cap."""


class SandboxCapacityError(SandboxError):
    """The backend found no capacity for a sandbox after its own bounded wait (Modal's
    ``Sandbox.create`` waits up to ~21 min). An infrastructure failure; retrying the run at once
    would wait that long again, so it is not retried."""

    error_kind = "infra"
    retryable = False


class SandboxFileNotFound(SandboxError, FileNotFoundError):
    """A path asked of the sandbox (``get_file``/``get_dir``) does not exist there. Both a
    :class:`SandboxError` (the interface's promise) and a ``FileNotFoundError`` (what callers
    that treat "missing" as an answer catch). Escaping a run, it is infra (a copy-out failed)."""

    def __init__(self, path: str):
        self.path = path
        super().__init__(f"not found in the sandbox: {path}")


class OutputLimitExceeded(RolloutsError):
    """Something the agent left is larger than the cap the harness reads (a file copied out of
    the sandbox, a diff): ``what`` names it, ``size`` (bytes, None = unknown, only known to be
    over) and ``limit`` (bytes). Not infra (retrying gives the same size): an agent failure."""

    error_kind = "agent"

    def __init__(self, what: str, limit: int, size: int | None = None):
        self.what, self.limit, self.size = what, limit, size
        got = f"{size} bytes" if size is not None else f"more than {limit} bytes"
        super().__init__(f"{what} is larger than the {limit}-byte cap ({got})")


class ContextOverflow(ModelError):
    """The endpoint refused the prompt as longer than the model's context window (HTTP 400 with
    a context-length error); an agent may shrink its prompt and call again."""


class DeadlineExceeded(RolloutsError):
    """A wait inside a run (model call, retry back-off, model-slot queue, sandbox call) would end
    after the run's agent deadline: the run ends as ``agent_timeout`` (status, not an error)."""

    error_kind = "agent"


class Cancelled(Exception):  # noqa: N818 - a state, not an error
    """The rollout was cancelled while this run was in progress (status ``cancelled``)."""
