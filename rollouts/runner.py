"""Schedules a rollout: expands tasks × rollouts into runs, runs at most ``parallel`` at once,
keeps the manifest current (rewritten atomically after every state change), retries infra
failures, and handles cancellation (every sandbox of the rollout removed, unfinished runs marked
``cancelled``).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path

from rollouts import __version__
from rollouts.agents import get_agent
from rollouts.config import BenchmarkConfig, TaskEntry
from rollouts.errors import RolloutsError
from rollouts.lifecycle import Cancelled, RunEnv, execute_run, is_infra, record_infra_failure
from rollouts.redact import redact, secret_values
from rollouts.sandbox import get_backend
from rollouts.sandbox.base import LABEL_HOST, LABEL_PID, SandboxBackend
from rollouts.store import FINAL_STATUSES, Attempt, Manifest, ManifestTask, RunRecord, Store, now_iso

Event = Callable[[str, RunRecord | None, str], None]  # (kind, record, message)


def git_revision(path: Path | None = None) -> str | None:
    """The git HEAD (with "-dirty" if tracked files changed) of the repo holding ``path``
    (gitpython), None outside a repo. The manifest pins the working directory's repo (where the
    benchmark is run from), else the config's."""
    try:
        import git

        repo = git.Repo(path or Path.cwd(), search_parent_directories=True)
        sha = repo.head.commit.hexsha
        return sha + ("-dirty" if repo.is_dirty(untracked_files=False) else "")
    except Exception:
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def reap_dead(backend: SandboxBackend, dry_run: bool = False, all_hosts: bool = False) -> list[dict]:
    """Sandboxes of this tool whose harness process on this host is gone; removed unless dry_run.

    Sandboxes started from other hosts (a shared Modal workspace) are left alone unless
    ``all_hosts``: their own harness, or their lifetime backstop, ends them."""
    host = socket.gethostname()
    dead = []
    for c in backend.list_leftovers():
        labels = c.get("labels") or {}
        try:
            pid = int(labels.get(LABEL_PID, "0"))
        except ValueError:
            pid = 0
        same_host = labels.get(LABEL_HOST, host) == host
        if (same_host and pid and pid_alive(pid)) or (not same_host and not all_hosts):
            continue
        dead.append(c)
        if not dry_run:
            backend.remove(c["id"])
    return dead


class Runner:
    """Runs one rollout of a validated config. ``on_event(kind, record, message)`` receives
    ``start``/``end`` per run and ``log`` lines (for -v / -vv output)."""

    def __init__(self, config: BenchmarkConfig, store: Store, *, on_event: Event | None = None,
                 echo: Callable[[str, str], None] | None = None, grade: bool = True):
        self.config = config
        self.store = store
        self.on_event = on_event or (lambda k, r, m: None)
        self.cancel_event = threading.Event()
        self.echo = echo
        self.grade = grade
        self.secrets = secret_values(os.environ)
        for e in config.entries:
            self.secrets += secret_values(e.environment_variables)
        self.manifest: Manifest | None = None
        self._backends: dict[str, SandboxBackend] = {}
        self._server = None
        self._finalized = False  # after run() ends (or is cancelled) workers may not write
        self._final_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._dirty = False
        self._last_write = 0.0
        self.write_interval = 0.5  # seconds between manifest rewrites while running

    # ------------------------------------------------------------------ setup
    def backend(self, name: str) -> SandboxBackend:
        if name not in self._backends:
            self._backends[name] = get_backend(name)
        return self._backends[name]

    def preflight(self, log: Callable[[str], None] = lambda s: None) -> None:
        """Check every backend and build the base image before any run (EnvironmentNotReady)."""
        for e in self.config.entries:
            if e.model != "local" and get_agent(e.agent).needs_model:
                from rollouts.llm.client import ModelClient

                ModelClient(e.model, price_overrides=self.config.pricing or None).close()  # no key -> exit 3
            if get_agent(e.agent).uses_gateway and e.backend != "docker":
                from rollouts.errors import ConfigError

                raise ConfigError(f"agent {e.agent!r} runs on the docker backend only for now (its layer is a "
                                  f"Docker volume), not {e.backend!r}", file=str(self.config.path),
                                  field=f"tasks[{e.index}].backend")
            if e.model != "local" and get_agent(e.agent).uses_gateway:
                from rollouts.gateway import UpstreamSpec

                UpstreamSpec.for_model(e.model)  # no key -> exit 3
        for name in sorted({e.backend for e in self.config.entries}):
            b = self.backend(name)
            b.preflight()
            n = len(reap_dead(b))
            if n:
                log(f"removed {n} leftover sandbox(es) of dead rollouts")
            b.prepare(log=log)

    def _needs_local_model(self) -> bool:
        return any(e.model == "local" and (get_agent(e.agent).needs_model or get_agent(e.agent).uses_gateway)
                   for e in self.config.entries)

    def _local_ctx(self) -> int:
        """Context of the local server: 32k (Qwen2.5's) when installed agents use it — Codex's and
        Claude Code's prompts are thousands of tokens — else 8k."""
        return 32768 if any(e.model == "local" and get_agent(e.agent).uses_gateway for e in self.config.entries) else 8192

    def _gateways(self, rollout_id: str):
        """The rollout's gateways for installed agents (None when no entry has one)."""
        if not any(get_agent(e.agent).uses_gateway for e in self.config.entries):
            return None
        from rollouts.agents.installed.runtime import AgentGateways

        return AgentGateways(self.backend("docker").client, rollout_id,
                             local_base_url=lambda: self._server.base_url, prices=self.config.pricing or None)

    def _make_client(self, entry: TaskEntry):
        from rollouts.llm.client import ModelClient

        if entry.model == "local":
            return ModelClient("local", base_url=self._server.base_url, api_key="local",
                               price_overrides=self.config.pricing or None)
        return ModelClient(entry.model, price_overrides=self.config.pricing or None)

    def new_manifest(self) -> Manifest:
        """Create the rollout folder, manifest, runs.txt and the ``latest`` pointer."""
        c = self.config
        rid = self.store.reserve_rollout_id()
        tasks, results = [], []
        i = 0
        for e in c.entries:
            tasks.append(ManifestTask(
                index=e.index, task_dir=e.prepared_dir, task_name=e.task.name, task_digest=e.task.digest,
                agent=e.agent, model=e.model, rollouts=e.rollouts, backend=e.backend,
                agent_options=e.agent_options,
                environment_variables={k: redact(v, self.secrets) for k, v in e.environment_variables.items()},
                task_format=e.task.format, task_source=e.task.source, images=_images_used(e.task),
            ))
            for r in range(e.rollouts):
                run_id = f"{rid}-{i}"
                results.append(RunRecord(
                    run_id=run_id, run_dir=str(self.store.run_dir(run_id)), task_dir=e.prepared_dir,
                    task_name=e.task.name, entry_index=e.index, rollout_index=r, agent=e.agent,
                    model=e.model, agent_options=e.agent_options,
                ))
                i += 1
        m = Manifest(
            config=str(c.path), config_digest=c.digest, name=c.name, created_at=rid, rollout_id=rid,
            started_at=now_iso(), tool_version=__version__, git_revision=git_revision(Path.cwd()) or git_revision(c.path.parent),
            host=socket.gethostname(), pid=os.getpid(), parallel=c.parallel, max_retries=c.max_retries,
            tasks=tasks, results=results, skipped=[s.model_dump() for s in c.skipped],
        )
        self.manifest = m
        self._save(force=True)
        self.store.write_runs_txt(m)
        self.store.set_latest(c.name, rid)
        return m

    def resume(self, m: Manifest) -> Manifest:
        """Continue an interrupted rollout in its own folder: finished runs are kept, unfinished
        ones (pending, running, cancelled) re-run; a partial run folder is kept under
        ``attempts/<n>/``. Raises ConfigError if the config or any task's content changed since
        the rollout started, or if its harness process is still alive."""
        from rollouts.errors import ConfigError

        where = str(self.store.rollout_dir(m.name, m.rollout_id) / "manifest.json")
        if m.config_digest != self.config.digest:
            raise ConfigError(f"cannot resume: the config {self.config.path} changed since the rollout "
                              "started (digest differs); start a new rollout instead", file=where)
        by_index = {e.index: e for e in self.config.entries}
        for t in m.tasks:
            e = by_index.get(t.index)
            if e is None or e.task.digest != t.task_digest:
                raise ConfigError(f"cannot resume: task {t.task_dir} changed since the rollout started "
                                  "(content digest differs); start a new rollout instead", file=where)
        if m.host == socket.gethostname() and m.pid != os.getpid() and m.status == "running" and pid_alive(m.pid):
            raise ConfigError(f"cannot resume: rollout {m.rollout_id} is still running (pid {m.pid})", file=where)
        reran = []
        results_dir = self.store.rollout_dir(m.name, m.rollout_id) / "task_results"
        for i, r in enumerate(m.results):
            saved = results_dir / f"{r.run_id}.json"
            if r.status not in FINAL_STATUSES and saved.is_file():
                try:  # the run ended but the (coalesced) manifest write did not happen before the crash
                    done = RunRecord.model_validate_json(saved.read_bytes())
                    if done.status in FINAL_STATUSES and done.status != "cancelled":
                        m.results[i] = r = done
                except ValueError:
                    pass
            if r.status in FINAL_STATUSES and r.status != "cancelled":
                continue
            run_dir = Path(r.run_dir)
            if run_dir.is_dir() and any(p.name != "attempts" for p in run_dir.iterdir()):
                n = len(r.attempts) + 1
                dest = record_infra_failure(run_dir, n, RuntimeError(f"interrupted while {r.status}"))
                r.attempts.append(Attempt(attempt=n, error=f"interrupted while {r.status}", dir=str(dest)))
            r.status, r.error, r.error_kind, r.reward, r.metrics = "pending", None, None, None, {}
            r.timings, r.started_at, r.finished_at, r.launch_rc = {}, None, None, None
            reran.append(r.run_id)
        m.resumes.append({"at": now_iso(), "pid": os.getpid(), "tool_version": __version__,
                          "git_revision": git_revision(Path.cwd()) or git_revision(self.config.path.parent), "reran": reran})
        m.status, m.pid, m.host, m.finished_at = "running", os.getpid(), socket.gethostname(), None
        self.manifest = m
        self._save(force=True)
        self.store.set_latest(m.name, m.rollout_id)
        return m

    def _save(self, force: bool = False) -> None:
        """Mark the manifest changed; write it now if ``force`` or if the last write is older
        than ``write_interval`` seconds (a flusher thread writes the rest). Rewriting a large
        manifest on every state change costs ~60 ms at 500 runs, which throttled parallel=200;
        each run's final state is also written at once to ``task_results/<run id>.json``, which
        ``resume`` reads, so nothing is lost to the coalescing."""
        assert self.manifest is not None
        self._dirty = True
        if force or time.monotonic() - self._last_write >= self.write_interval:
            self._flush()

    def _flush(self) -> None:
        with self._write_lock:
            if not self._dirty or self.manifest is None:
                return
            self._dirty = False
            self._last_write = time.monotonic()
            self.store.write_manifest(self.manifest)
            self.store.write_status(self.manifest)

    def _flusher(self, stop: threading.Event) -> None:
        while not stop.wait(self.write_interval):
            self._flush()

    # ------------------------------------------------------------------ running
    def cancel(self) -> None:
        """Stop launching, remove every live sandbox of this rollout (idempotent, signal-safe)."""
        self.cancel_event.set()
        threading.Thread(target=self._kill_all, daemon=True).start()

    def _kill_all(self) -> None:
        """Stop tracked sandboxes, then sweep the backends for anything labelled with this rollout
        (grading sandboxes, sandboxes whose start raced with the cancel)."""
        env = getattr(self, "_env", None)
        if env is not None:
            with env.active_lock:
                sandboxes = list(env.active.values())
            for sb in sandboxes:
                try:
                    sb.stop()
                except Exception:
                    pass
        if self.manifest is None:
            return
        for b in list(self._backends.values()):
            try:
                for c in b.list_leftovers(self.manifest.rollout_id):
                    b.remove(c["id"])
            except Exception:
                pass

    def run(self, cancel_grace_sec: float = 6.0) -> Manifest:
        """Execute every unfinished run of the manifest (create one first with ``new_manifest``
        or load one with ``resume``). On cancel: waits at most ``cancel_grace_sec`` for runs in
        progress, then marks every unfinished run ``cancelled`` and removes all its sandboxes."""
        m = self.manifest or self.new_manifest()
        entries = {e.index: e for e in self.config.entries}
        self._env = RunEnv(
            backend=None, rollout_id=m.rollout_id, make_client=self._make_client, secrets=self.secrets,
            cancel=self.cancel_event, echo=self.echo, grade=self.grade, gateways=self._gateways(m.rollout_id),
        )
        pool = ThreadPoolExecutor(max_workers=self.config.parallel, thread_name_prefix="run")
        futures: dict[Future, RunRecord] = {}
        stop_flusher = threading.Event()
        threading.Thread(target=self._flusher, args=(stop_flusher,), daemon=True, name="manifest").start()
        try:
            if self._needs_local_model():
                from rollouts.llm.local_server import LocalModelServer

                self.on_event("log", None, "starting the local model server (llama.cpp, Qwen2.5-Coder-0.5B)")
                self._server = LocalModelServer(n_ctx=self._local_ctx())
                self._server.start()
                self.on_event("log", None, f"local model server ready at {self._server.base_url}")
            pending = iter([r for r in m.results if r.status not in FINAL_STATUSES])
            while True:
                while not self.cancel_event.is_set() and len(futures) < self.config.parallel:
                    rec = next(pending, None)
                    if rec is None:
                        break
                    futures[pool.submit(self._run_one, rec, entries[rec.entry_index])] = rec
                if not futures or self.cancel_event.is_set():
                    break
                done, _ = wait(list(futures), timeout=0.5, return_when=FIRST_COMPLETED)
                for f in done:
                    futures.pop(f)
            if self.cancel_event.is_set():
                pool.shutdown(wait=False, cancel_futures=True)
                wait(list(futures), timeout=cancel_grace_sec)
        finally:
            if self.cancel_event.is_set() or not futures:
                pool.shutdown(wait=not self.cancel_event.is_set(), cancel_futures=True)
            with self._final_lock:
                self._finalized = True
                if self.cancel_event.is_set():
                    for r in m.results:
                        if r.status not in FINAL_STATUSES:
                            r.status, r.finished_at = "cancelled", now_iso()
                    m.status = "cancelled"
                elif any(r.status not in FINAL_STATUSES for r in m.results):
                    m.status = "failed"
                else:
                    m.status = "completed"
                m.finished_at = now_iso()
                self._save(force=True)
            stop_flusher.set()
            self._kill_all()
            if self._env.gateways is not None:
                self._env.gateways.close()
            if self._server is not None:
                self._server.stop()
        return m

    def _run_one(self, rec: RunRecord, entry: TaskEntry) -> None:
        """One run with infra retries; never raises (everything is recorded on ``rec``)."""
        assert self.manifest is not None
        env = RunEnv(**{**self._env.__dict__, "backend": self.backend(entry.backend)})
        env.active, env.active_lock = self._env.active, self._env.active_lock
        run_dir = Path(rec.run_dir)
        attempt = 0
        while True:
            if self.cancel_event.is_set():
                rec.status, rec.finished_at = "cancelled", now_iso()
                break
            rec.status, rec.error, rec.error_kind = "running", None, None
            rec.started_at = now_iso()
            self._save_run(rec, final=False)
            self.on_event("start", rec, "")
            try:
                run_dir.mkdir(parents=True, exist_ok=True)
                execute_run(rec, entry, env, run_dir)
                break
            except Cancelled:
                rec.status, rec.finished_at = "cancelled", now_iso()
                break
            except Exception as e:  # noqa: BLE001 - every failure is recorded, never lost
                msg = redact(f"{type(e).__name__}: {e}", self.secrets)
                if self.cancel_event.is_set():
                    rec.status, rec.finished_at = "cancelled", now_iso()
                    break
                if is_infra(e) and attempt < self.config.max_retries:
                    attempt += 1
                    dest = record_infra_failure(run_dir, attempt, e)
                    rec.attempts.append(Attempt(attempt=attempt, error=msg, dir=str(dest)))
                    self.on_event("log", rec, f"infra failure, retrying ({attempt}/{self.config.max_retries}): {msg}")
                    time.sleep(min(30.0, 2.0 ** attempt))
                    continue
                rec.status = "error"
                rec.error_kind = "infra" if is_infra(e) or not isinstance(e, RolloutsError) else "config"
                rec.error = msg
                rec.finished_at = now_iso()
                break
        if self._save_run(rec, final=True):
            self.on_event("end", rec, "")

    def _save_run(self, rec: RunRecord, final: bool) -> bool:
        """Persist a run's state unless the rollout was already finalized (cancel): returns
        whether it was written. A run's final state is written exactly once."""
        with self._final_lock:
            if self._finalized:
                return False
            if self.cancel_event.is_set() and final and rec.status not in FINAL_STATUSES:
                rec.status, rec.finished_at = "cancelled", now_iso()
            self._save()
            if final:
                self.store.write_task_result(self.manifest, rec)
            return True


def _images_used(task) -> dict[str, str]:
    """The ``[images]`` mapping as applied to ``task``'s base images (image → local image)."""
    from rollouts.images import base_images_of, mapped_image

    if not task.image_map:
        return {}
    return {ref: mapped_image(ref, task.image_map) for ref in base_images_of(task)
            if mapped_image(ref, task.image_map) != ref}
