"""A run's outcome is a value: :class:`RunOutcome`, built by :func:`execute_run` for every
attempt, whatever happened, from ONE mapping of exceptions to kinds (:func:`outcome_of`).

Kinds (``RunRecord.error_kind``) and what a run of that kind means:

========  ==============================================================  ==========  ==========
kind      raised by                                                       retried     `run` exit
========  ==============================================================  ==========  ==========
infra     the sandbox backend or engine (:class:`SandboxError`)           yes         1 if left
agent     the agent process or agent code (any non-``RolloutsError``      no          1
          an agent's ``run`` raises is wrapped in :class:`AgentError`)
model     the endpoint, after the client's retries (:class:`ModelError`)  no          1
verifier  the task's tests misbehaved (:class:`VerifierError`)            no          1
config    cannot happen at run time (``check`` catches it)                no          1
harness   anything else: a bug of ours (traceback kept in the run's       no          1
          ``logs/harness_error.txt``; summaries say results are incomplete)
========  ==============================================================  ==========  ==========

Agent, model, verifier (and harness) failures count in the denominators with reward 0; infra
runs are reported apart. :class:`DeadlineExceeded` is not an error: status ``agent_timeout``.
:class:`Cancelled` is status ``cancelled``.
"""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from rollouts.errors import Cancelled, DeadlineExceeded, RolloutsError
from rollouts.redact import redact
from rollouts.store import ErrorKind, RunRecord, Usage, atomic_write, now_iso

FinalStatus = Literal["completed", "agent_timeout", "verifier_timeout", "limit", "error", "cancelled"]
HARNESS_LOG = "logs/harness_error.txt"


class RunOutcome(BaseModel):
    """How one attempt of a run ended. ``reward`` in [0, 1] (None: not graded); ``timings``:
    seconds per phase (image, sandbox_start, setup, agent, collect, verifier, total)."""

    status: FinalStatus
    error_kind: ErrorKind | None = None
    error: str | None = None
    reward: float | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    timings: dict[str, float] = Field(default_factory=dict)
    usage: Usage = Usage()
    steps: int | None = None
    image: str | None = None
    launch_rc: int | None = None
    integrity: str | None = None  # grading integrity label (rollouts.grading.integrity)
    agent_options: dict | None = None  # options as run (installed agents pin their version); None: unchanged
    no_retry: bool = False  # an infra failure that a retry would only repeat (SandboxCapacityError)

    @property
    def retryable(self) -> bool:
        """Only infra failures are retried, and not those whose error says a retry is futile."""
        return self.status == "error" and self.error_kind == "infra" and not self.no_retry


def kind_of(exc: BaseException) -> ErrorKind:
    """The outcome kind of an exception that ended a run: a :class:`RolloutsError` carries its
    own ``error_kind``; anything else reaching here escaped our own code — ``harness``. (Agent
    code's exceptions are wrapped in ``AgentError`` where the agent is called.)"""
    if isinstance(exc, RolloutsError):
        return exc.error_kind
    return "harness"


def outcome_of(exc: BaseException, secrets: list[str], run_dir: Path | None = None, **partial) -> RunOutcome:
    """The outcome of an attempt that raised ``exc``; ``partial``: fields already known (timings,
    usage, image, steps). A harness fault's traceback goes (redacted) to ``logs/harness_error.txt``."""
    if isinstance(exc, Cancelled):
        return RunOutcome(status="cancelled", **partial)
    if isinstance(exc, DeadlineExceeded):
        return RunOutcome(status="agent_timeout", **partial)
    kind = kind_of(exc)
    if kind == "harness" and run_dir is not None:
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        atomic_write(run_dir / HARNESS_LOG, redact(tb, secrets))
    msg = redact(f"{type(exc).__name__}: {exc}", secrets)
    if kind == "harness":
        msg = f"internal error (a bug of rollouts; traceback in {HARNESS_LOG}): {msg}"
    no_retry = kind == "infra" and not getattr(exc, "retryable", True)
    return RunOutcome(status="error", error_kind=kind, error=msg[:4000], no_retry=no_retry, **partial)


def apply_outcome(rec: RunRecord, out: RunOutcome) -> None:
    """Copy an outcome onto the manifest record and stamp ``finished_at`` (``agent_options`` and
    ``integrity`` only when the attempt got that far)."""
    for name in RunOutcome.model_fields:
        value = getattr(out, name)
        if name == "no_retry":
            continue
        if value is not None or name not in ("agent_options", "integrity"):
            setattr(rec, name, value)
    rec.finished_at = now_iso()
