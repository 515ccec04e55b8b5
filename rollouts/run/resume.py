"""Resume: a PURE planner (:func:`plan_resume`: manifest and saved per-run results in, the runs
to do out) and :func:`check_resumable`, which refuses a rollout whose config or tasks changed.
The runner applies the plan (keeps partial run folders under ``attempts/<n>/``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rollouts.errors import ConfigError
from rollouts.store import FINAL_STATUSES, Manifest, RunRecord


@dataclass
class ResumePlan:
    """``recovered``: results index → the final record saved in ``task_results/`` (the run ended
    but the coalesced manifest write did not happen before the crash); ``rerun``: indices of
    results to run again (pending, running or cancelled), with the status they were left in."""

    recovered: dict[int, RunRecord] = field(default_factory=dict)
    rerun: list[tuple[int, str]] = field(default_factory=list)


def check_resumable(m: Manifest, config_digest: str, task_digests: dict[int, str], where: str) -> None:
    """ConfigError (naming ``where``, the manifest) if the config or a task's content changed."""
    if m.config_digest != config_digest:
        raise ConfigError("cannot resume: the config changed since the rollout started (digest differs); "
                          "start a new rollout instead", file=where)
    for t in m.tasks:
        if task_digests.get(t.index) != t.task_digest:
            raise ConfigError(f"cannot resume: task {t.task_dir} changed since the rollout started "
                              "(content digest differs); start a new rollout instead", file=where)


def plan_resume(m: Manifest, saved: dict[str, RunRecord]) -> ResumePlan:
    """Which runs of ``m`` are done and which to run again. ``saved``: run id → record read
    from ``task_results/`` (may be partial or absent). A run is done if its manifest record, or
    else its saved record, is final and not ``cancelled``. Pure: reads nothing, changes nothing."""
    plan = ResumePlan()
    for i, r in enumerate(m.results):
        s = saved.get(r.run_id)
        if r.status not in FINAL_STATUSES and s is not None and s.status in FINAL_STATUSES and s.status != "cancelled":
            plan.recovered[i] = s
            continue
        if r.status in FINAL_STATUSES and r.status != "cancelled":
            continue
        plan.rerun.append((i, r.status))
    return plan


def read_saved_results(rollout_dir: Path, m: Manifest) -> dict[str, RunRecord]:
    """``task_results/<run id>.json`` of the runs not final in ``m`` (a torn or foreign file is
    no result: that run is simply run again)."""
    saved = {}
    for r in m.results:
        p = rollout_dir / "task_results" / f"{r.run_id}.json"
        if r.status not in FINAL_STATUSES and p.is_file():
            try:
                saved[r.run_id] = RunRecord.model_validate_json(p.read_bytes())
            except ValueError:
                continue
    return saved


def fresh_record(r: RunRecord) -> RunRecord:
    """``r`` reset to pending for a re-run: identity and kept attempts only."""
    keep = {"run_id", "run_dir", "task_dir", "task_name", "entry_index", "rollout_index", "agent", "model",
            "agent_options", "attempts"}
    return RunRecord(**r.model_dump(include=keep))
