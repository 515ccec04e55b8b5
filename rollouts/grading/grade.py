"""Grading a run: a fresh sandbox from the task image, the diff applied, the verifier, and the
per-run files the spec names: ``evaluation_results.json``, ``scoring_results.md``, ``logs/eval.log``.

Used by ``run`` (after the agent) and by ``eval`` (re-grading finished runs without re-running
agents). Spec compatibility: ``evaluation_results.json`` carries ``total_score`` (the reward),
``standard_metrics`` and ``custom_metrics`` (``seeds/003``, "Custom Analysis"/"Custom Metrics").
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rollouts.errors import AgentError, VerifierError
from rollouts.grading.integrity import task_label, verify_toolchain
from rollouts.grading.prepare import prepare_grading
from rollouts.grading.stop import stop_agent
from rollouts.grading.verifier import Verdict, run_verifier
from rollouts.redact import redact
from rollouts.sandbox.base import Sandbox, SandboxBackend, SandboxSpec
from rollouts.store import atomic_write, atomic_write_json, now_iso
from rollouts.workspace import COLLECT_TIMEOUT_SEC, setup_workspace

EVAL_SCHEMA_VERSION = 1


@dataclass
class GradeOutcome:
    """``status``: completed | verifier_timeout | error. ``error_kind``: ``agent`` when grading
    could not keep its guarantee because of what the agent left (:class:`AgentError`, e.g.
    GradingIntegrityError: a diff reaching outside the workspace or into .git or that does not
    apply, a workspace symlink into the tests/logs/kernel, a failed privilege drop), ``verifier``
    when the task's verifier failed (no or contradictory reward). SandboxError propagates as
    infra. ``integrity``: the run's grading integrity label (rollouts.grading.integrity)."""

    status: str
    reward: float | None
    metrics: dict[str, float]
    duration_sec: float
    error: str | None = None
    error_kind: str | None = None
    integrity: str | None = None


def start_grading_sandbox(
    backend: SandboxBackend,
    task,
    image: str,
    spec_base: SandboxSpec,
    on_sandbox: Callable[[Sandbox], None] | None = None,
    extra_lifetime_sec: float = 0.0,
) -> Sandbox:
    """Start a fresh grading sandbox (network: ``tests.network``, else the task's) with the workspace at the base commit.

    It holds nothing of the agent's: the diff and the hidden tests go in later (``grade_fresh``),
    so it may be started while the agent still runs (``extra_lifetime_sec`` = the agent's time
    budget keeps the lifetime backstop right). ``on_sandbox`` is called before it starts, so a
    caller can register it for cancellation. SandboxError on infra failure (nothing left behind).
    """
    spec = SandboxSpec(
        image=image,
        labels={**spec_base.labels, "rollouts.phase": "verifier"},
        workdir=task.meta.environment.workdir,
        cpus=spec_base.cpus,
        memory_mb=spec_base.memory_mb,
        pids=spec_base.pids,
        network=task.meta.network if task.meta.tests.network is None else task.meta.tests.network,
        lifetime_sec=task.meta.timeouts.verifier_sec + task.meta.timeouts.setup_sec + 120 + extra_lifetime_sec
        + (COLLECT_TIMEOUT_SEC + 15 if extra_lifetime_sec else 0),  # started ahead: collection comes first
    )
    sb = backend.create(spec)
    try:
        if on_sandbox is not None:
            on_sandbox(sb)
        sb.start()
        setup_workspace(sb, task, task.meta.environment.workdir, timeout=task.meta.timeouts.setup_sec)
        return sb
    except BaseException:
        sb.stop()
        raise


def grade_fresh(
    backend: SandboxBackend,
    task,
    image: str,
    diff: bytes,
    run_dir: Path,
    spec_base: SandboxSpec,
    secrets: list[str] | None = None,
    run_id: str = "",
    on_sandbox: Callable[[Sandbox], None] | None = None,
    sandbox: Sandbox | None = None,
) -> GradeOutcome:
    """Grade ``diff`` in a fresh sandbox: ``sandbox`` if one was started ahead with
    :func:`start_grading_sandbox`, else a new one. Writes the result files into ``run_dir``.
    The grading sandbox is always stopped here when grading ends or raises."""
    t0 = time.monotonic()
    sb = sandbox or start_grading_sandbox(backend, task, image, spec_base, on_sandbox)
    try:
        return grade_in(
            sb, task, run_dir, run_id, t0, "fresh", secrets, diff=diff, integrity=task_label(task.meta, "fresh")
        )
    finally:
        sb.stop()


def grade_shared(
    sb: Sandbox, task, run_dir: Path, run_id: str, t0: float, secrets: list[str] | None
) -> GradeOutcome:
    """Shared mode: stop the agent's processes (``tests.stop``: rollouts.grading.stop), verify the
    verifier's toolchain is the clean image's (label ``trusted-toolchain``: rollouts.grading.
    integrity), then grade in the agent's sandbox. A guarantee that cannot be kept is an ``error``
    outcome of kind ``agent`` (GradingIntegrityError); SandboxError propagates (infra)."""
    label = task_label(task.meta)
    try:
        log = stop_agent(sb, task.meta.tests.stop)
        if label == "trusted-toolchain":
            verify_toolchain(sb, task.meta.environment.workdir)
            log += "toolchain: unchanged from the clean image (trusted-toolchain)\n"
    except AgentError as e:
        return write_results(
            run_dir, task, run_id, None, time.monotonic() - t0, "shared", secrets,
            error=str(e), log=f"error: {e}\n", error_kind="agent", integrity=label,
        )
    return grade_in(sb, task, run_dir, run_id, t0, "shared", secrets, prelude=log, integrity=label)


def grade_in(
    sb: Sandbox,
    task,
    run_dir: Path,
    run_id: str,
    t0: float,
    mode: str,
    secrets: list[str] | None,
    prelude: str = "",
    diff: bytes | None = None,
    integrity: str | None = None,
) -> GradeOutcome:
    """Prepare ``sb`` (apply ``diff`` if given, guard links, install tests: one archive + one
    exec), run the verifier and write the result files. Agent-caused failures (AgentError) and
    verifier failures (VerifierError) become an ``error`` outcome of that kind."""
    log = prelude
    try:
        log += prepare_grading(sb, task, task.meta.environment.workdir, diff)
        verdict = run_verifier(sb, task, task.meta.environment.workdir)
    except (AgentError, VerifierError) as e:
        kind = "agent" if isinstance(e, AgentError) else "verifier"
        return write_results(
            run_dir, task, run_id, None, time.monotonic() - t0, mode, secrets,
            error=str(e), log=log + getattr(e, "log", "") + f"error: {e}\n", error_kind=kind,
            integrity=integrity,
        )
    return write_results(
        run_dir, task, run_id, verdict, time.monotonic() - t0, mode, secrets, log=log + verdict.log,
        integrity=integrity,
    )


def write_results(
    run_dir: Path,
    task,
    run_id: str,
    verdict: Verdict | None,
    duration: float,
    mode: str,
    secrets: list[str] | None,
    error: str | None = None,
    log: str = "",
    error_kind: str = "verifier",
    integrity: str | None = None,
) -> GradeOutcome:
    """Write ``evaluation_results.json``, ``scoring_results.md`` and ``logs/eval.log``."""
    secrets = secrets or []
    if verdict is None:
        status, reward, metrics = "error", None, {}
    else:
        status = "verifier_timeout" if verdict.timed_out else "completed"
        reward = 0.0 if verdict.timed_out else verdict.reward
        metrics = {**verdict.standard_metrics, **verdict.custom_metrics}
    result: dict[str, Any] = {
        "schema_version": EVAL_SCHEMA_VERSION,
        "run_id": run_id,
        "task": task.name,
        "task_dir": str(task.dir),
        "status": status,
        "total_score": reward,
        "reward": reward,
        "passed": None if reward is None else reward >= 1.0,
        "standard_metrics": dict(verdict.standard_metrics) if verdict else {},
        "custom_metrics": dict(verdict.custom_metrics) if verdict else {},
        "tests": verdict.tests if verdict else [],
        "verifier": {
            "mode": mode,
            "integrity": integrity,
            "command": task.meta.tests.command,
            "exit_code": verdict.exit_code if verdict else None,
            "timed_out": verdict.timed_out if verdict else False,
            "reward_source": verdict.source if verdict else None,
            "duration_sec": round(duration, 3),
        },
        "error": redact(error, secrets) if error else None,
        "graded_at": now_iso(),
    }
    result = _redact_obj(result, secrets)
    atomic_write_json(run_dir / "evaluation_results.json", result)
    atomic_write(run_dir / "logs" / "eval.log", redact(log, secrets))
    atomic_write(run_dir / "scoring_results.md", _markdown(result))
    return GradeOutcome(
        status=status,
        reward=reward,
        metrics=metrics,
        duration_sec=duration,
        error=result["error"],
        error_kind=error_kind if status == "error" else None,
        integrity=integrity,
    )


def _redact_obj(obj: Any, secrets: list[str]) -> Any:
    """``obj`` with every secret removed from every string in it (keys included)."""
    if not secrets:
        return obj
    if isinstance(obj, str):
        return redact(obj, secrets)
    if isinstance(obj, dict):
        return {_redact_obj(k, secrets): _redact_obj(v, secrets) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_redact_obj(v, secrets) for v in obj]
    return obj


def _markdown(r: dict[str, Any]) -> str:
    lines = [
        f"# Scoring results — {r['task']} ({r['run_id']})",
        "",
        f"- **Status:** {r['status']}",
        f"- **Reward (total_score):** {r['total_score'] if r['total_score'] is not None else 'n/a'}",
        f"- **Verifier:** `{r['verifier']['command']}` → exit {r['verifier']['exit_code']}"
        f" ({r['verifier']['duration_sec']} s, reward from {r['verifier']['reward_source']})",
        f"- **Grading integrity:** {r['verifier'].get('integrity') or 'n/a'} ({r['verifier']['mode']} mode)",
    ]
    if r["error"]:
        lines += ["", "## Error", "", "```", r["error"][-3000:], "```"]
    metrics = {**r["standard_metrics"], **r["custom_metrics"]}
    if metrics:
        lines += ["", "## Metrics", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:g} |" for k, v in metrics.items()]
    if r["tests"]:
        lines += ["", "## Tests", "", "| test | outcome |", "|---|---|"]
        lines += [f"| `{t['name']}` | {t['outcome']} |" for t in r["tests"]]
    return "\n".join(lines) + "\n"
