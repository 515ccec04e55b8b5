"""One run's lifecycle: image → sandbox → workspace → agent → artifacts → grading.

:func:`execute_run` owns one attempt and its timeouts and returns its
:class:`~rollouts.run.outcome.RunOutcome`; it never raises: every exception becomes an outcome
through the one mapping in :mod:`rollouts.run.outcome` (infra outcomes are retried by the
runner). What the agent's own ``run`` raises is the agent's failure (kind ``agent``), except our
typed errors (``SandboxError`` stays infra, ``ModelError`` model, ``DeadlineExceeded`` ends the
agent phase as a timeout). Phase wall times (seconds) go to ``timings``: image, sandbox_start,
setup, agent, collect, verifier, total.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rollouts import task_runtime
from rollouts.agents import AgentContext, AgentResult, get_agent
from rollouts.config import TaskEntry
from rollouts.errors import (
    Cancelled,
    DeadlineExceeded,
    GradingIntegrityError,
    ModelError,
    RolloutsError,
    SandboxError,
)
from rollouts.grading.grade import grade_fresh, grade_shared, start_grading_sandbox
from rollouts.grading.integrity import task_label
from rollouts.grading.stop import stop_agent
from rollouts.redact import redact
from rollouts.run.outcome import RunOutcome, outcome_of
from rollouts.run.owner import labels_for
from rollouts.sandbox.base import SandboxBackend, SandboxSpec
from rollouts.store import PHASE_MARK, RunRecord, Usage, atomic_write


@dataclass
class RunEnv:
    """Shared, per-rollout things a run needs."""

    backend: SandboxBackend
    rollout_id: str
    make_client: Callable[[TaskEntry], object] | None  # model client factory (None: no model)
    secrets: list[str] = field(default_factory=list)
    cancel: threading.Event = field(default_factory=threading.Event)
    active: dict[str, object] = field(default_factory=dict)  # run_id -> live sandbox
    active_lock: threading.Lock = field(default_factory=threading.Lock)
    echo: Callable[[str, str], None] | None = None  # (run_id, line) for -vv
    grade: bool = True
    gateways: Any = None  # rollouts.agents.installed.runtime.AgentGateways (installed agents)


__all__ = ["Cancelled", "RunEnv", "execute_run", "labels_for", "record_infra_failure"]


class _RunLog:
    """Appends redacted lines to ``logs/agent.log`` and echoes them in -vv mode."""

    def __init__(self, path: Path, run_id: str, env: RunEnv):
        self.path, self.run_id, self.env = path, run_id, env
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        path.write_text("")  # a retried attempt's log was moved to attempts/<n>/

    def __call__(self, line: str) -> None:
        """Append one redacted line (append-only log: a torn last line is the worst case)."""
        line = redact(line, self.env.secrets)
        with self._lock, open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
        if self.env.echo:
            self.env.echo(self.run_id, line)


def _track(env: RunEnv, key: str, sb) -> None:
    """Register a live sandbox for cancellation (``key``: run id, or run id + ":verifier")."""
    with env.active_lock:
        cancelled = env.cancel.is_set()
        if not cancelled:
            env.active[key] = sb
    if cancelled:  # stopped outside the lock: a cooperative run may be suspended in stop()
        sb.stop()
        raise Cancelled()


def _untrack(env: RunEnv, run_id: str) -> None:
    with env.active_lock:
        env.active.pop(run_id, None)
        env.active.pop(f"{run_id}:verifier", None)


def execute_run(rec: RunRecord, entry: TaskEntry, env: RunEnv, run_dir: Path) -> RunOutcome:
    """Run one attempt of ``rec`` to its outcome (``rec`` is read, not changed). Never raises:
    an exception ends the attempt as the outcome :func:`~rollouts.run.outcome.outcome_of` maps it
    to, with the timings, usage and image known so far."""
    got: dict = {"timings": {}}
    t_start = time.monotonic()
    try:
        out = _life(rec, entry, env, run_dir, got)
    except Exception as e:  # noqa: BLE001 - the one place any exception becomes an outcome
        out = outcome_of(e, env.secrets, run_dir, **got)
    out.timings["total"] = round(time.monotonic() - t_start, 3)
    return out


def _life(rec: RunRecord, entry: TaskEntry, env: RunEnv, run_dir: Path, got: dict) -> RunOutcome:
    """One run's life, top to bottom. ``got`` collects what is known so far (timings, image,
    usage, steps) for the outcome of an exception."""
    task = entry.task
    timings = got["timings"]
    got["integrity"] = task_label(task.meta)  # grading integrity (rollouts/grading/integrity.py)
    log = _RunLog(run_dir / "logs" / "agent.log", rec.run_id, env)

    def phase(name: str, t0: float) -> None:
        timings[name] = round(time.monotonic() - t0, 3)

    def begin(name: str) -> float:
        """A phase starts: one marker line in the run's log (``rollouts.ui.run_phase`` shows it in
        the live table) and its start time."""
        log(f"{PHASE_MARK}{name}")
        return time.monotonic()

    t0 = begin("image")
    image = got["image"] = env.backend.task_image(task, log=log)
    phase("image", t0)
    res = entry.resources
    agent_timeout = entry.agent_timeout_sec
    agent = get_agent(entry.agent)
    t0 = begin("agent_setup") if agent.uses_gateway else time.monotonic()  # installed agents' layer
    # Installed agents: their layer (built once, then ~0 s) and the version pinned on the run.
    volumes = agent.prepare(env.backend, entry.agent_options, image, log)
    got["agent_options"] = agent.pinned_options(entry.agent_options)
    phase("agent_setup", t0)
    endpoint = network = None
    if agent.uses_gateway:  # its own token on the rollout's gateway; the sandbox reaches nothing else
        endpoint, network = env.gateways.grant(rec.run_id, entry.model, agent.run_limits(entry.agent_options), run_dir)
    spec = SandboxSpec(
        image=image,
        labels={**labels_for(env.rollout_id, rec.run_id), "rollouts.phase": "agent"},
        workdir=task.meta.environment.workdir,
        cpus=res.cpus,
        memory_mb=res.memory_mb,
        pids=res.pids,
        network=task.meta.network if network is None else network,
        env=dict(task.meta.environment.env),
        lifetime_sec=task.meta.timeouts.setup_sec + agent_timeout + 180
        + (task.meta.timeouts.verifier_sec if task.meta.tests.mode == "shared" else 0),
        volumes=volumes,
    )
    client = env.make_client(entry) if (agent.needs_model and env.make_client) else None
    workdir = task.meta.environment.workdir
    sb = env.backend.create(spec)
    prewarm: Future | None = None
    error_kind: str | None = None
    try:
        t0 = begin("sandbox_start")
        sb.start()
        _track(env, rec.run_id, sb)
        if endpoint is not None and agent.calls_from_sandbox:  # the token works from this sandbox only
            log(f"gateway: the run's token is accepted only from the sandbox's address {env.gateways.bind(rec.run_id, sb.id)}")
        phase("sandbox_start", t0)
        if env.grade and task.meta.tests.mode == "fresh" and env.backend.prewarm_grading:
            # The grading sandbox (base commit only, nothing of the agent's) starts while the
            # agent works: ~0.6 s off every run on Docker. Off for billed-per-second backends.
            prewarm = _PREWARM_POOL.submit(
                start_grading_sandbox, env.backend, task, image, spec,
                lambda gsb: _track(env, f"{rec.run_id}:verifier", gsb), agent_timeout + 60,
            )
        t0 = begin("setup")
        base = task_runtime.prepare(sb, task, workdir, timeout=task.meta.timeouts.setup_sec)
        phase("setup", t0)
        t0 = begin("agent")
        ctx = AgentContext(
            sandbox=sb, task=task, workdir=workdir, run_dir=run_dir,
            deadline=time.monotonic() + agent_timeout, env=dict(entry.environment_variables),
            options=agent.Options.model_validate(entry.agent_options), model=entry.model, client=client, log=log,
            gateway=endpoint,
        )
        if client is not None:
            client.deadline = ctx.deadline  # every model wait (attempts, back-off, slot queue) ends by it
        try:
            result = agent.run(ctx)
        except (SandboxError, Cancelled):
            raise  # infra (retried) / cancelled
        except DeadlineExceeded as e:  # a wait inside the agent hit the deadline: its timeout
            result = AgentResult(status="timeout", notes=f"Agent wall-time limit reached: {e}\n")
        except ModelError as e:
            result = AgentResult(status="error", error=f"model error: {e}", notes=f"Model error: {e}\n")
            error_kind = "model"
        except RolloutsError:
            raise  # typed: its own kind
        except Exception as e:  # noqa: BLE001 - whatever agent code raises is the agent's failure
            log("agent raised:\n" + "".join(traceback.format_exception(type(e), e, e.__traceback__)))
            result = AgentResult(status="error", error=f"agent {entry.agent!r} raised {type(e).__name__}: {e}",
                                 notes=f"The agent failed: {type(e).__name__}: {e}\n")
        phase("agent", t0)
        if env.cancel.is_set():
            raise Cancelled()
        got["steps"] = result.steps
        if client is not None:
            got["usage"] = Usage(**client.usage.to_dict())
        budget_hit = False
        if endpoint is not None:
            g = env.gateways.finish(rec.run_id, agent.trajectory_meta(entry), run_dir)
            endpoint = None
            got["usage"], budget_hit = g.usage, g.limit_hit
        t0 = begin("collect")
        if result.status == "timeout":
            # what the agent left running (a runaway loop) must not outlive its time nor touch the
            # workspace during collection: stop it as grading would (rollouts/grading/stop.py)
            log(stop_agent(sb, task.meta.tests.stop))
        notes = redact(result.notes, env.secrets)
        try:
            diff = task_runtime.collect(sb, task, workdir, base, run_dir / "artifacts", notes, env.secrets)
        except GradingIntegrityError as e:
            # something the agent left behind (a fork bomb holding every pid) defeated collection:
            # stop everything it started, then collect once more; a second failure is the agent's
            log(f"collection failed ({e}); stopping the agent's processes and collecting again")
            log(stop_agent(sb, task.meta.tests.stop))
            diff = task_runtime.collect(sb, task, workdir, base, run_dir / "artifacts", notes, env.secrets)
        phase("collect", t0)
        agent_status = {"timeout": "agent_timeout", "error": "error"}.get(result.status, "completed")
        error = None
        if budget_hit:  # the gateway refused a request over the run's budget: a failure, not graded
            return RunOutcome(status="limit", reward=0.0, launch_rc=0, **got)
        if result.status == "error":
            error_kind = error_kind or "agent"
            error = redact(result.error or "agent failed", env.secrets)
        base_out = RunOutcome(status=agent_status, error_kind=error_kind, error=error, launch_rc=0, **got)
        if error_kind == "model" or not env.grade:
            return base_out
        t0 = begin("verifier")
        if task.meta.tests.mode == "shared":
            # stops the agent's processes (rollouts/grading/stop.py), then grades in its sandbox
            out = grade_shared(sb, task, run_dir, rec.run_id, t0, env.secrets)
        else:
            sb.stop()
            _untrack(env, rec.run_id)
            gsb = _prewarmed(prewarm)
            prewarm = None
            out = grade_fresh(env.backend, task, image, diff, run_dir, spec, env.secrets, rec.run_id,
                              on_sandbox=lambda g: _track(env, f"{rec.run_id}:verifier", g), sandbox=gsb)
        phase("verifier", t0)
        if env.echo:
            eval_log = run_dir / "logs" / "eval.log"
            for line in (eval_log.read_text(errors="replace").splitlines() if eval_log.is_file() else []):
                env.echo(rec.run_id, f"[verifier] {line}")
    finally:
        sb.stop()
        if prewarm is not None:  # not used (agent failed, cancelled, no grading): remove it
            gsb = _prewarmed(prewarm)
            if gsb is not None:
                gsb.stop()
        _untrack(env, rec.run_id)
        if client is not None and hasattr(client, "close"):
            client.close()
        if endpoint is not None:  # the agent phase did not end normally: revoke the token
            env.gateways.release(rec.run_id)
    # timings: base_out copied them before the verifier phase was measured
    graded = base_out.model_copy(update={"reward": out.reward, "metrics": out.metrics, "timings": dict(timings)})
    if out.status == "error":
        error = task_runtime.explain_verifier_error(task, run_dir, out.error) if out.error_kind == "verifier" else out.error
        return graded.model_copy(update={"status": "error", "error_kind": out.error_kind, "error": error})
    if out.status == "verifier_timeout":
        return graded.model_copy(update={"status": "verifier_timeout"})
    return graded


_PREWARM_POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="prewarm")


def _prewarmed(fut: Future | None):
    """The pre-started grading sandbox, or None if there is none or it failed to start with a
    typed error (then ``grade_fresh`` starts one itself and meets that error again if it is not
    a flake, so a flaky pre-start costs nothing but time). Anything untyped is a harness bug."""
    if fut is None:
        return None
    try:
        return fut.result()
    except (RolloutsError, Cancelled):
        return None


def record_infra_failure(run_dir: Path, attempt: int, error: str) -> Path:
    """Move the failed attempt's files to ``<run_dir>/attempts/<n>/`` (kept, never deleted) and
    write its ``error`` (one line, already redacted) there; returns that folder."""
    dest = run_dir / "attempts" / str(attempt)
    dest.mkdir(parents=True, exist_ok=True)
    for p in list(run_dir.iterdir()) if run_dir.is_dir() else []:
        if p.name != "attempts":
            p.rename(dest / p.name)
    atomic_write(dest / "error.txt", error + "\n")
    return dest
