"""Runs one rollout: composes the jobs of :mod:`rollouts.run` — the manifest writer, the resume
planner, the scheduler (``parallel`` and each backend's live-sandbox limit), retries of infra
outcomes — around :func:`rollouts.lifecycle.execute_run`, and handles cancellation (every sandbox
of the rollout removed, unfinished runs marked ``cancelled``)."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path

from rollouts.config import BenchmarkConfig, TaskEntry
from rollouts.errors import Cancelled, ConfigError, RolloutsError
from rollouts.lifecycle import RunEnv, execute_run, record_infra_failure
from rollouts.redact import secret_values
from rollouts.run.manifest import ManifestWriter, build_manifest, revision_later, revision_of
from rollouts.run.outcome import RunOutcome, apply_outcome
from rollouts.run.owner import owner_alive, reap_dead
from rollouts.run.resume import check_resumable, fresh_record, plan_resume, read_saved_results
from rollouts.run.retry import DEFAULT_WAIT, with_retries
from rollouts.run.scheduler import run_all
from rollouts.run.services import check_agents, check_grading, make_gateways, start_local_model
from rollouts.sandbox import get_backend
from rollouts.sandbox.base import SandboxBackend
from rollouts.store import FINAL_STATUSES, Attempt, Manifest, RunRecord, Store, now_iso

__all__ = ["Runner", "reap_dead"]
Event = Callable[[str, RunRecord | None, str], None]  # (kind, record, message)


class Runner:
    """Runs one rollout of a validated config. ``on_event(kind, record, message)`` receives
    ``start``/``end`` per run and ``log`` lines (for -v / -vv output). ``retry_wait``: the
    tenacity wait between infra retries."""

    def __init__(self, config: BenchmarkConfig, store: Store, *, on_event: Event | None = None,
                 echo: Callable[[str, str], None] | None = None, grade: bool = True):
        self.config, self.store, self.echo, self.grade = config, store, echo, grade
        self.on_event = on_event or (lambda k, r, m: None)
        self.cancel_event, self.retry_wait = threading.Event(), DEFAULT_WAIT
        self.secrets = secret_values(os.environ) + [v for e in config.entries for v in secret_values(e.environment_variables)]
        self.manifest: Manifest | None = None
        self.writer: ManifestWriter | None = None
        self._backends: dict[str, SandboxBackend] = {}
        self._server, self._env = None, None
        self._revision = revision_later(config)  # read while the preflight runs

    def backend(self, name: str) -> SandboxBackend:
        if name not in self._backends:
            self._backends[name] = get_backend(name)
        return self._backends[name]

    def preflight(self, log: Callable[[str], None] = lambda s: None) -> None:
        """Check every backend and build the base image before any run (EnvironmentNotReady)."""
        check_agents(self.config)
        check_grading(self.config, self.grade)
        for name in sorted({e.backend for e in self.config.entries}):
            b = self.backend(name)
            b.preflight()
            if n := len(reap_dead(b)):
                log(f"removed {n} orphaned sandbox(es) of rollouts whose harness is gone")
            b.prepare(log=log)

    def _make_client(self, entry: TaskEntry):
        from rollouts.llm.client import ModelClient

        if entry.model == "local":
            return ModelClient("local", base_url=self._server.base_url, api_key="local",
                               price_overrides=self.config.pricing or None)
        return ModelClient(entry.model, price_overrides=self.config.pricing or None)

    def _adopt(self, m: Manifest) -> Manifest:
        self.manifest = m
        self.writer = ManifestWriter(self.store, m, self.cancel_event)
        self.writer.save(force=True)
        self.store.set_latest(m.name, m.rollout_id)
        return m

    def new_manifest(self) -> Manifest:
        """Create the rollout folder, manifest, runs.txt and the ``latest`` pointer."""
        m = build_manifest(self.config, self.store.reserve_rollout_id(), self.store, self.secrets, self._revision)
        self._adopt(m)
        self.store.write_runs_txt(m)
        return m

    def resume(self, m: Manifest) -> Manifest:
        """Continue an interrupted rollout in its own folder: finished runs are kept, unfinished
        ones (pending, running, cancelled) re-run; a partial run folder is kept under
        ``attempts/<n>/``. Raises ConfigError if the config or any task's content changed since
        the rollout started, or if its harness process is still alive."""
        where = str(self.store.rollout_dir(m.name, m.rollout_id) / "manifest.json")
        check_resumable(m, self.config.digest, {e.index: e.task.digest for e in self.config.entries}, where)
        if (m.host == socket.gethostname() and m.pid != os.getpid() and m.status == "running"
                and owner_alive(m.pid, None)):
            raise ConfigError(f"cannot resume: rollout {m.rollout_id} is still running (pid {m.pid})", file=where)
        plan = plan_resume(m, read_saved_results(self.store.rollout_dir(m.name, m.rollout_id), m))
        for i, rec in plan.recovered.items():
            m.results[i] = rec
        for i, was in plan.rerun:
            r, run_dir = m.results[i], Path(m.results[i].run_dir)
            if run_dir.is_dir() and any(p.name != "attempts" for p in run_dir.iterdir()):
                dest = record_infra_failure(run_dir, len(r.attempts) + 1, f"interrupted while {was}")
                r.attempts.append(Attempt(attempt=len(r.attempts) + 1, error=f"interrupted while {was}", dir=str(dest)))
            m.results[i] = fresh_record(r)
        m.resumes.append({"at": now_iso(), "pid": os.getpid(), "tool_version": m.tool_version,
                          "git_revision": revision_of(self.config), "reran": [m.results[i].run_id for i, _ in plan.rerun]})
        m.status, m.pid, m.host, m.finished_at = "running", os.getpid(), socket.gethostname(), None
        return self._adopt(m)

    def cancel(self) -> None:
        """Stop launching, remove every live sandbox of this rollout (idempotent, signal-safe)."""
        self.cancel_event.set()
        threading.Thread(target=self._kill_all, daemon=True).start()

    def _kill_all(self) -> None:
        """Stop tracked sandboxes, then sweep the backends for anything labelled with this rollout
        (grading sandboxes, sandboxes whose start raced with the cancel). Best effort: a failure
        here leaves a sandbox the lifetime backstop and the next reaper remove."""
        if self._env is not None:
            with self._env.active_lock:
                sandboxes = list(self._env.active.values())
            for sb in sandboxes:
                self._best_effort(sb.stop)  # idempotent; never raises for a gone sandbox
        for b in list(self._backends.values()) if self.manifest is not None else []:
            for c in self._best_effort(lambda b=b: b.list_leftovers(self.manifest.rollout_id)) or []:
                self._best_effort(lambda b=b, c=c: b.remove(c["id"]))

    def _best_effort(self, fn):
        try:
            return fn()
        except RolloutsError as e:  # typed backend failure during cleanup: logged, the reaper gets it later
            self.on_event("log", None, f"cleanup: {e}")
            return None

    def run(self, cancel_grace_sec: float = 6.0) -> Manifest:
        """Execute every unfinished run of the manifest (create one first with ``new_manifest``
        or load one with ``resume``). On cancel: waits at most ``cancel_grace_sec`` for runs in
        progress, then marks every unfinished run ``cancelled`` and removes all its sandboxes."""
        m = self.manifest or self.new_manifest()
        entries = {e.index: e for e in self.config.entries}
        self._env = RunEnv(backend=None, rollout_id=m.rollout_id, make_client=self._make_client,
                           secrets=self.secrets, cancel=self.cancel_event, echo=self.echo, grade=self.grade,
                           gateways=make_gateways(self.config, lambda: self.backend("docker").client, m.rollout_id,
                                                  lambda: self._server.base_url))
        self.writer.start_flusher()
        try:
            self._server = start_local_model(self.config, lambda line: self.on_event("log", None, line))
            limits = {e.backend: self.backend(e.backend).live_sandbox_limit for e in self.config.entries}
            coop = {e.backend: self.backend(e.backend).cooperative for e in self.config.entries}
            run_all([r for r in m.results if r.status not in FINAL_STATUSES],
                    lambda r: self._run_one(r, entries[r.entry_index]), parallel=self.config.parallel,
                    backend_of=lambda r: entries[r.entry_index].backend, limits=limits,
                    cancel=self.cancel_event, cancel_grace_sec=cancel_grace_sec, cooperative=coop)
        finally:
            self.writer.finalize()
            self._kill_all()
            if self._env.gateways is not None:
                self._env.gateways.close()
            if self._server is not None:
                self._server.stop()
        return m

    def _run_one(self, rec: RunRecord, entry: TaskEntry) -> None:
        """One run with infra retries; never raises (everything is recorded on ``rec``)."""
        env = RunEnv(**{**self._env.__dict__, "backend": self.backend(entry.backend)})
        env.active, env.active_lock = self._env.active, self._env.active_lock
        run_dir = Path(rec.run_dir)

        def attempt(n: int) -> RunOutcome:
            if self.cancel_event.is_set():
                return RunOutcome(status="cancelled")
            rec.status, rec.error, rec.error_kind, rec.started_at = "running", None, None, now_iso()
            self.writer.save_run(rec, final=False)
            self.on_event("start", rec, "")
            run_dir.mkdir(parents=True, exist_ok=True)
            return execute_run(rec, entry, env, run_dir)

        def on_retry(n: int, out: RunOutcome) -> None:
            dest = record_infra_failure(run_dir, len(rec.attempts) + 1, out.error or "")
            rec.attempts.append(Attempt(attempt=len(rec.attempts) + 1, error=out.error or "", dir=str(dest)))
            self.on_event("log", rec, f"infra failure, retrying ({n}/{self.config.max_retries}): {out.error}")

        try:
            out = with_retries(attempt, max_retries=self.config.max_retries, cancel=self.cancel_event,
                               on_retry=on_retry, wait=self.retry_wait)
        except Cancelled:
            out = RunOutcome(status="cancelled")
        if self.cancel_event.is_set() and out.status == "error":  # the error is the cancel's doing
            out = RunOutcome(status="cancelled", timings=out.timings)
        apply_outcome(rec, out)
        if self.writer.save_run(rec, final=True):
            self.on_event("end", rec, "")
