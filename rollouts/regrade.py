"""``eval NAME --latest``: re-grade finished runs in fresh sandboxes from their saved
``artifacts/diff.patch`` (agents are not re-run), and update the manifest atomically.

Typical use: a hidden test was fixed after a rollout. Runs without a diff artifact (cancelled,
infra errors before collection) and ``shared``-mode tasks (their end state is gone with the agent
sandbox) are skipped and reported as such.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rollouts.errors import ConfigError, SandboxError
from rollouts.grading.grade import grade_fresh
from rollouts.lifecycle import labels_for
from rollouts.redact import secret_values
from rollouts.sandbox import get_backend
from rollouts.sandbox.base import SandboxSpec
from rollouts.store import Store
from rollouts.task import load_task


def regrade(store: Store, name: str, rollout_id: str, parallel: int | None = None,
            log: Callable[[str], None] = lambda s: None) -> list[dict]:
    """Re-grade every gradable run of a rollout; returns one row per run (run_id, task, status,
    previous_reward, reward). Raises ConfigError if a task dir is gone or invalid now."""
    m = store.load_manifest(name, rollout_id)
    secrets = secret_values(os.environ)
    tasks = {}
    for t in m.tasks:
        try:
            task = load_task(Path(t.task_dir))
        except ConfigError as e:
            raise ConfigError(f"cannot re-grade: {e}") from None
        if t.images:  # the [images] mapping the rollout used (Harbor / Terminal-Bench base images)
            task = task.model_copy(update={"image_map": dict(t.images)})
        if task.digest != t.task_digest:
            log(f"task {t.task_name} changed since the rollout (digest differs): grading with the current tests")
        tasks[t.index] = (task, t.backend)
    backends = {}
    for _task, b in tasks.values():
        if b not in backends:
            backends[b] = get_backend(b)
            backends[b].preflight()
            backends[b].prepare(log=log)

    def one(rec) -> dict:
        task, bname = tasks[rec.entry_index]
        row = {"run_id": rec.run_id, "task": rec.task_name, "agent": rec.agent, "model": rec.model,
               "previous_reward": rec.reward, "reward": rec.reward, "status": "skipped", "note": ""}
        diff_path = Path(rec.run_dir) / "artifacts" / "diff.patch"
        if rec.status in ("pending", "running", "cancelled") or not diff_path.is_file():
            row["note"] = "no diff artifact (run did not finish)"
            return row
        if task.meta.tests.mode == "shared":
            row["note"] = "shared-mode task: end state not kept, cannot re-grade"
            return row
        backend = backends[bname]
        image = backend.task_image(task)
        res = task.meta.resources
        spec = SandboxSpec(image=image, labels=labels_for(rollout_id, rec.run_id), cpus=res.cpus,
                           memory_mb=res.memory_mb, pids=res.pids)
        try:
            out = grade_fresh(backend, task, image, diff_path.read_bytes(), Path(rec.run_dir), spec, secrets, rec.run_id)
        except SandboxError as e:
            row.update(status="error", note=f"infra: {e}")
            return row
        rec.reward, rec.metrics, rec.integrity = out.reward, out.metrics, out.integrity
        if rec.status != "agent_timeout" or out.status != "completed":
            rec.status = out.status
        rec.error_kind = out.error_kind if out.status == "error" else (None if rec.error_kind == "verifier" else rec.error_kind)
        rec.error = out.error if out.status == "error" else (None if rec.error_kind is None else rec.error)
        store.write_manifest(m)
        store.write_task_result(m, rec)
        row.update(status=out.status, reward=out.reward)
        log(f"{rec.run_id} {rec.task_name}: {row['previous_reward']} → {out.reward} ({out.status})")
        return row

    with ThreadPoolExecutor(max_workers=parallel or m.parallel) as pool:
        rows = list(pool.map(one, m.results))
    store.write_manifest(m)
    return rows

