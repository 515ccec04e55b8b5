"""The manifest: built once per rollout (:func:`build_manifest`) and kept current by a
:class:`ManifestWriter` (atomic rewrites, coalesced; each run's final state also written at once
to ``task_results/<run id>.json``, which resume reads)."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from rollouts import __version__
from rollouts.config import BenchmarkConfig
from rollouts.redact import redact
from rollouts.store import FINAL_STATUSES, Manifest, ManifestTask, RunRecord, Store, now_iso


def git_revision(path: Path | None = None) -> str | None:
    """The git HEAD (with "-dirty" if tracked files changed) of the repo holding ``path``
    (gitpython), None outside a repo. The manifest pins the working directory's repo (where the
    benchmark is run from), else the config's."""
    import git

    try:
        repo = git.Repo(path or Path.cwd(), search_parent_directories=True)
        sha = repo.head.commit.hexsha
    except (git.exc.GitError, ValueError):  # not a repo, no git binary; ValueError: no commit yet
        return None
    try:
        dirty = repo.is_dirty(untracked_files=False)
    except git.exc.GitError:
        return sha
    return sha + ("-dirty" if dirty else "")


def revision_of(config: BenchmarkConfig) -> str | None:
    """The revision the manifest pins: the working directory's repo, else the config's."""
    return git_revision(Path.cwd()) or git_revision(config.path.parent)


def revision_later(config: BenchmarkConfig) -> Callable[[], str | None]:
    """Start :func:`revision_of` on a worker thread (importing gitpython and its ``git`` calls
    overlap the preflight: ~40 ms of the fixed cost per command, issue 13); returns a function
    that waits for it and returns its value (re-raising what it raised)."""
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="git-revision")
    future = pool.submit(revision_of, config)
    pool.shutdown(wait=False)  # the worker ends after this one call
    return future.result


def build_manifest(config: BenchmarkConfig, rollout_id: str, store: Store, secrets: list[str],
                   revision: Callable[[], str | None] | None = None) -> Manifest:
    """The manifest of a new rollout: one task per entry, one pending record per run
    (``<rollout id>-<i>``); environment values redacted. ``revision``: a started
    :func:`revision_later` (else the revision is read now)."""
    tasks, results = [], []
    i = 0
    for e in config.entries:
        tasks.append(ManifestTask(
            index=e.index, task_dir=e.prepared_dir, task_name=e.task.name, task_digest=e.task.digest,
            agent=e.agent, model=e.model, rollouts=e.rollouts, backend=e.backend, agent_options=e.agent_options,
            environment_variables={k: redact(v, secrets) for k, v in e.environment_variables.items()},
            task_format=e.task.format, task_source=e.task.source, images=_images_used(e.task),
        ))
        for r in range(e.rollouts):
            run_id = f"{rollout_id}-{i}"
            results.append(RunRecord(
                run_id=run_id, run_dir=str(store.run_dir(run_id)), task_dir=e.prepared_dir, task_name=e.task.name,
                entry_index=e.index, rollout_index=r, agent=e.agent, model=e.model, agent_options=e.agent_options,
            ))
            i += 1
    rev = revision() if revision is not None else revision_of(config)
    return Manifest(
        config=str(config.path), config_digest=config.digest, name=config.name, created_at=rollout_id,
        rollout_id=rollout_id, started_at=now_iso(), tool_version=__version__, git_revision=rev,
        host=socket.gethostname(), pid=os.getpid(), parallel=config.parallel, max_retries=config.max_retries,
        tasks=tasks, results=results, skipped=[s.model_dump() for s in config.skipped],
    )


def _images_used(task) -> dict[str, str]:
    """The ``[images]`` mapping as applied to ``task``'s base images (image → local image)."""
    from rollouts.images import images_used

    return images_used(task)


class ManifestWriter:
    """Writes ``manifest`` (and the live status file) atomically, coalesced.

    ``save()`` only marks the manifest changed; a flusher thread (``start_flusher``) rewrites it
    at most every ``interval`` seconds (1 s), and never more often than ``busy_factor`` (10) times
    the last write took (CPU time), so serialising a large manifest costs at most ~10% of a core:
    at 5,000 runs one write is ~15 ms (pydantic-core), at 100,000 ~0.3 s, written every 3 s.
    ``save(force=True)`` writes at once: at the start, on ``finalize`` (every end of the rollout:
    completed, failed, cancelled) and whenever no flusher runs. Rewriting the whole manifest on
    every run state change cost 60 ms at 500 runs (throttled parallel=200) and, at 5,000, a 5 MB
    transient string per change.

    Durability: a crash loses at most the last ``interval`` of manifest updates, never a run's
    result: ``save_run(rec, final=True)`` writes that run's final state at once to
    ``task_results/<run id>.json``, which resume reads (``rollouts.run.resume``). After
    ``finalize`` workers write nothing more (a run's final state is written exactly once).
    """

    def __init__(
        self,
        store: Store,
        manifest: Manifest,
        cancel: threading.Event,
        interval: float = 1.0,
        busy_factor: float = 10.0,
    ):
        self.store, self.manifest, self.cancel = store, manifest, cancel
        self.interval, self.busy_factor = interval, busy_factor
        self.finalized = False
        self.final_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._dirty = False
        self._next = 0.0  # monotonic time before which the flusher does not write again
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        self.writes = 0  # manifest rewrites so far (tests, benchmarks)

    def save(self, force: bool = False) -> None:
        """Mark the manifest changed; write it now if ``force`` or if no flusher thread runs."""
        self._dirty = True
        if force or self._flusher is None or not self._flusher.is_alive():
            self.flush()

    def flush(self) -> None:
        """Write the manifest and the status file now if anything changed since the last write."""
        with self._write_lock:
            if not self._dirty:
                return
            self._dirty = False
            t0, cpu0 = time.monotonic(), time.thread_time()
            self.store.write_manifest(self.manifest)
            self.store.write_status(self.manifest)
            self.writes += 1
            took = time.thread_time() - cpu0  # CPU seconds: waiting for the GIL is not the write's cost
            self._next = t0 + max(self.interval, self.busy_factor * took)

    def start_flusher(self) -> None:
        """Start the daemon thread that writes pending changes (``interval`` and back-off above)."""

        def loop() -> None:
            while True:
                left = self._next - time.monotonic()  # > 0: backing off after the last write
                if self._stop.wait(max(0.05, left) if left > 0 else self.interval):
                    return
                self.flush()

        self._flusher = threading.Thread(target=loop, daemon=True, name="manifest")
        self._flusher.start()

    def save_run(self, rec: RunRecord, final: bool) -> bool:
        """Persist a run's state unless the rollout was already finalized (cancel); returns
        whether it was written."""
        with self.final_lock:
            if self.finalized:
                return False
            if self.cancel.is_set() and final and rec.status not in FINAL_STATUSES:
                rec.status, rec.finished_at = "cancelled", now_iso()
            self.save()
            if final:
                self.store.write_task_result(self.manifest, rec)
            return True

    def finalize(self) -> None:
        """The rollout ended: unfinished runs become ``cancelled`` (if cancelled), the rollout
        status is set (completed / failed / cancelled), written now; workers write no more."""
        m = self.manifest
        with self.final_lock:
            self.finalized = True
            if self.cancel.is_set():
                for r in m.results:
                    if r.status not in FINAL_STATUSES:
                        r.status, r.finished_at = "cancelled", now_iso()
                m.status = "cancelled"
            else:
                m.status = "failed" if any(r.status not in FINAL_STATUSES for r in m.results) else "completed"
            m.finished_at = now_iso()
            self.save(force=True)
        self._stop.set()
