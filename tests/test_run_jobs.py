"""The runner's jobs one by one (no Docker): the outcome mapping, the scheduler's limits, the
pure resume planner, the coalescing manifest writer, retries whose back-off a cancel interrupts,
ownership and the reaper."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest
from tenacity import wait_fixed, wait_none

from rollouts.errors import (
    AgentError,
    Cancelled,
    ConfigError,
    ContextOverflow,
    DeadlineExceeded,
    GradingIntegrityError,
    ModelError,
    OutputLimitExceeded,
    SandboxError,
    SandboxFileNotFound,
    VerifierError,
)
from rollouts.run import manifest as manifest_mod
from rollouts.run.manifest import ManifestWriter
from rollouts.run.outcome import HARNESS_LOG, RunOutcome, apply_outcome, kind_of, outcome_of
from rollouts.run.owner import is_orphan, labels_for, owner_alive, owner_labels, reap_dead
from rollouts.run.resume import fresh_record, plan_resume
from rollouts.run.retry import with_retries
from rollouts.run.scheduler import run_all
from rollouts.sandbox.base import LABEL_HOST, LABEL_PID, LABEL_PID_START, LABEL_ROLLOUT, LABEL_RUN
from rollouts.store import Attempt, Manifest, RunRecord, Store


# ----------------------------------------------------------------------------------- outcome
@pytest.mark.parametrize("exc,kind", [
    (SandboxError("x"), "infra"), (SandboxFileNotFound("/a"), "infra"), (ModelError("x"), "model"),
    (ContextOverflow("x"), "model"), (AgentError("x"), "agent"), (GradingIntegrityError("x"), "agent"),
    (OutputLimitExceeded("diff", 10, 11), "agent"), (VerifierError("x"), "verifier"),
    (ConfigError("x"), "config"), (RuntimeError("x"), "harness"), (KeyError("x"), "harness"),
    (FileNotFoundError("x"), "harness"), (TimeoutError(), "harness"),
])
def test_one_mapping_of_exceptions_to_kinds(exc, kind):
    assert kind_of(exc) == kind


def test_outcome_of_statuses_and_harness_traceback(tmp_path):
    assert outcome_of(Cancelled(), []).status == "cancelled"
    o = outcome_of(DeadlineExceeded("model call"), [], timings={"agent": 3.0})
    assert o.status == "agent_timeout" and o.error_kind is None and o.timings == {"agent": 3.0}
    o = outcome_of(SandboxError("daemon gone"), [])
    assert (o.status, o.error_kind, o.retryable) == ("error", "infra", True)
    try:
        {}["boom"]
    except KeyError as e:
        o = outcome_of(e, ["s3cr3t-value"], tmp_path)
    assert (o.status, o.error_kind, o.retryable) == ("error", "harness", False)
    assert "bug of rollouts" in o.error and HARNESS_LOG in o.error
    tb = (tmp_path / HARNESS_LOG).read_text()
    assert "Traceback" in tb and "KeyError" in tb and "test_run_jobs.py" in tb
    o = outcome_of(ModelError("401 for key s3cr3t-value"), ["s3cr3t-value"])
    assert "s3cr3t-value" not in o.error and o.error_kind == "model"


def test_apply_outcome_copies_every_field():
    rec = RunRecord(run_id="r-0", run_dir="/x", task_dir="t", task_name="t", entry_index=0, rollout_index=0,
                    agent="nop", model="none")
    apply_outcome(rec, RunOutcome(status="error", error_kind="agent", error="e", reward=0.0, steps=3,
                                  timings={"total": 1.0}, image="img"))
    assert (rec.status, rec.error_kind, rec.reward, rec.steps, rec.image) == ("error", "agent", 0.0, 3, "img")
    assert rec.finished_at


# ----------------------------------------------------------------------------------- scheduler
def test_scheduler_respects_parallel_and_backend_limits():
    lock = threading.Lock()
    live = {"all": 0, "a": 0, "b": 0}
    peak = {"all": 0, "a": 0, "b": 0}
    done = []

    def work(item):
        b = item[0]
        with lock:
            live["all"] += 1
            live[b] += 1
            for k in ("all", b):
                peak[k] = max(peak[k], live[k])
        time.sleep(0.02)
        with lock:
            live["all"] -= 1
            live[b] -= 1
            done.append(item)

    items = [("a", i) for i in range(12)] + [("b", i) for i in range(6)]
    left = run_all(items, work, parallel=5, backend_of=lambda it: it[0], limits={"a": 2, "b": None},
                   cancel=threading.Event(), poll_sec=0.01)
    assert left == [] and sorted(done) == sorted(items)
    assert peak["a"] == 2 and peak["all"] <= 5 and peak["b"] >= 2  # b overtook a's queue


def test_scheduler_cancel_starts_nothing_more():
    cancel = threading.Event()
    started = []

    def work(i):
        started.append(i)
        cancel.set()
        time.sleep(0.05)

    left = run_all(range(10), work, parallel=1, backend_of=lambda i: "x", limits={}, cancel=cancel,
                   cancel_grace_sec=1, poll_sec=0.01)
    assert started == [0] and left == list(range(1, 10))


# ----------------------------------------------------------------------------------- resume
def _rec(i: int, status: str, **kw) -> RunRecord:
    return RunRecord(run_id=f"r-{i}", run_dir=f"/runs/r-{i}", task_dir="t", task_name="t", entry_index=0,
                     rollout_index=i, agent="nop", model="none", status=status, **kw)


def test_resume_planner_is_pure_and_complete():
    results = [_rec(0, "completed", reward=1.0), _rec(1, "running"), _rec(2, "pending"), _rec(3, "cancelled"),
               _rec(4, "error", error_kind="agent"), _rec(5, "running"), _rec(6, "running")]
    m = Manifest(config="c", config_digest="d", name="n", created_at="x", rollout_id="x", started_at="x",
                 tool_version="0", host="h", pid=1, parallel=1, max_retries=0, tasks=[], results=results)
    saved = {"r-5": _rec(5, "completed", reward=0.5), "r-6": _rec(6, "cancelled")}
    before = m.model_dump_json()
    plan = plan_resume(m, saved)
    assert m.model_dump_json() == before  # reads nothing, changes nothing
    assert list(plan.recovered) == [5] and plan.recovered[5].reward == 0.5
    assert plan.rerun == [(1, "running"), (2, "pending"), (3, "cancelled"), (6, "running")]
    r = fresh_record(_rec(1, "running", error="x", reward=1.0, attempts=[Attempt(attempt=1, error="e", dir="d")]))
    assert (r.status, r.reward, r.error, len(r.attempts)) == ("pending", None, None, 1)


# ----------------------------------------------------------------------------------- manifest writer
def _writer_setup(tmp_path, n=20, **kw):
    store = Store(tmp_path)
    m = Manifest(config="c", config_digest="d", name="n", created_at="x", rollout_id="x", started_at="x",
                 tool_version="0", host="h", pid=1, parallel=1, max_retries=0, tasks=[],
                 results=[_rec(i, "pending") for i in range(n)])
    return store, m, ManifestWriter(store, m, threading.Event(), **kw)


def _on_disk(store, m):
    return Manifest.model_validate_json((store.rollout_dir(m.name, m.rollout_id) / "manifest.json").read_bytes())


def test_manifest_writes_are_coalesced_and_each_result_written_at_once(tmp_path):
    """With the flusher running, a burst of run state changes is one or two manifest rewrites
    (at most every ``interval``), yet every final run is on disk at once in task_results/ (what
    resume reads after a crash) and the manifest catches up within an interval; finalize writes
    the rollout's end state at once."""
    store, m, w = _writer_setup(tmp_path, interval=1.0)
    w.save(force=True)
    assert w.writes == 1
    w.start_flusher()
    for r in m.results:
        r.status, r.reward = "completed", 1.0
        assert w.save_run(r, final=True)
    results = store.rollout_dir("n", "x") / "task_results"
    assert sorted(p.name for p in results.iterdir()) == sorted(f"{r.run_id}.json" for r in m.results)
    assert w.writes == 1 and {r.status for r in _on_disk(store, m).results} == {"pending"}
    deadline = time.monotonic() + 5
    while {r.status for r in _on_disk(store, m).results} != {"completed"} and time.monotonic() < deadline:
        time.sleep(0.05)
    assert {r.status for r in _on_disk(store, m).results} == {"completed"}
    assert w.writes == 2  # the 20 changes: one rewrite
    w.finalize()
    assert _on_disk(store, m).status == "completed" and _on_disk(store, m).finished_at and w.writes == 3
    assert not w.save_run(m.results[0], final=True)  # finalized: workers write no more


def test_manifest_writer_without_flusher_writes_every_change(tmp_path):
    store, m, w = _writer_setup(tmp_path, n=2)
    w.save_run(m.results[0], final=False)
    w.save_run(m.results[1], final=False)
    assert w.writes == 2


def test_manifest_writer_backs_off_when_a_write_is_slow(tmp_path, monkeypatch):
    """A write that took 0.2 s of CPU (a huge manifest) is not repeated for 10 x 0.2 s, whatever
    ``interval`` says: the writer's share of the process stays ~10%."""
    store, m, w = _writer_setup(tmp_path, n=2, interval=0.05)
    clock = iter(range(0, 10_000, 1))
    monkeypatch.setattr(manifest_mod.time, "thread_time", lambda: next(clock) * 0.2)
    w.save(force=True)
    assert w._next - time.monotonic() > 1.5
    w.start_flusher()
    w.save()
    time.sleep(0.5)
    assert w.writes == 1  # still backing off
    w.finalize()  # the end is written at once regardless
    assert w.writes == 2 and _on_disk(store, m).status == "failed"  # its 2 runs never ran


# ----------------------------------------------------------------------------------- retries
def test_retries_only_infra_and_keep_each_attempt():
    outs = [RunOutcome(status="error", error_kind="infra", error="e1"),
            RunOutcome(status="error", error_kind="infra", error="e2"), RunOutcome(status="completed", reward=1.0)]
    seen = []
    out = with_retries(lambda n: outs[n - 1], max_retries=2, cancel=threading.Event(),
                       on_retry=lambda n, o: seen.append((n, o.error)), wait=wait_none())
    assert out.reward == 1.0 and seen == [(1, "e1"), (2, "e2")]
    out = with_retries(lambda n: outs[0], max_retries=1, cancel=threading.Event(), wait=wait_none())
    assert out.error_kind == "infra"  # retries spent: the last outcome
    calls = []
    harness = RunOutcome(status="error", error_kind="harness", error="bug")
    out = with_retries(lambda n: calls.append(n) or harness, max_retries=5, cancel=threading.Event(), wait=wait_none())
    assert out is harness and calls == [1]  # never retried


def test_capacity_exhausted_is_infra_but_not_retried(tmp_path):
    """Modal's Sandbox.create already waited ~21 min for capacity: a retry would wait again."""
    from rollouts.errors import SandboxCapacityError, SandboxError
    from rollouts.run.outcome import apply_outcome, outcome_of

    full = outcome_of(SandboxCapacityError("no capacity after 21 min"), [], tmp_path)
    blip = outcome_of(SandboxError("connection reset"), [], tmp_path)
    assert (full.error_kind, full.retryable) == ("infra", False)
    assert (blip.error_kind, blip.retryable) == ("infra", True)
    calls = []
    out = with_retries(lambda n: calls.append(n) or full, max_retries=5, cancel=threading.Event(), wait=wait_none())
    assert out is full and calls == [1]
    rec = _rec(0, "running")
    apply_outcome(rec, full)  # the retry flag is the outcome's, not the manifest's
    assert rec.status == "error" and rec.error_kind == "infra" and not hasattr(rec, "no_retry")


def test_cancel_interrupts_the_backoff_at_once():
    cancel = threading.Event()
    infra = RunOutcome(status="error", error_kind="infra", error="e")
    threading.Timer(0.2, cancel.set).start()
    t0 = time.monotonic()
    with pytest.raises(Cancelled):
        with_retries(lambda n: infra, max_retries=3, cancel=cancel, wait=wait_fixed(60))
    assert time.monotonic() - t0 < 5


# ----------------------------------------------------------------------------------- ownership
def test_owner_labels_and_orphans():
    labels = labels_for("rid", "rid-0")
    assert labels[LABEL_ROLLOUT] == "rid" and labels[LABEL_RUN] == "rid-0"
    assert labels[LABEL_PID] == str(os.getpid()) and float(labels[LABEL_PID_START]) > 0
    assert owner_alive(os.getpid(), labels[LABEL_PID_START]) and not is_orphan(labels)
    assert not is_orphan({**labels, LABEL_PID: ""}) and not is_orphan({"rollouts.tool": "rollouts"})  # no owner pid
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    assert is_orphan({**labels, LABEL_PID: dead.stdout.strip()})
    # a live pid with another start time is a reused pid: its owner is gone
    assert is_orphan({**labels, LABEL_PID_START: f"{float(labels[LABEL_PID_START]) - 3600:.2f}"})
    other = {**labels, LABEL_HOST: "elsewhere", LABEL_PID: "1"}
    assert not is_orphan(other) and is_orphan(other, all_hosts=True)
    assert owner_labels()[LABEL_PID] == str(os.getpid()) and LABEL_ROLLOUT not in owner_labels()


def test_reaper_removes_only_orphans():
    me = labels_for("r", "r-0")

    class Backend:
        removed: list[str] = []

        def list_leftovers(self, rollout_id=None):
            return [{"id": "live", "labels": me}, {"id": "dead", "labels": {**me, LABEL_PID: "999999999"}},
                    {"id": "build", "labels": {"rollouts.tool": "rollouts", "rollouts.kind": "base"}}]

        def remove(self, sid):
            self.removed.append(sid)

    b = Backend()
    assert [c["id"] for c in reap_dead(b, dry_run=True)] == ["dead"] and b.removed == []
    reap_dead(b)
    assert b.removed == ["dead"]


def test_local_model_slots_follow_parallel():
    from rollouts.llm.local_server import MAX_SLOTS, rollout_slots

    assert [rollout_slots(p) for p in (1, 2, 4, 8, 200)] == [1, 2, 4, 8, MAX_SLOTS]


def test_services_check_agents_before_any_run(tmp_path, monkeypatch):
    """Installed agents only on docker (exit 2 naming the entry); a remote model without a key is
    exit 3; no local server or gateway when no entry needs one."""
    from types import SimpleNamespace

    from rollouts.errors import EnvironmentNotReady
    from rollouts.run.services import check_agents, make_gateways, start_local_model

    def cfg(*entries):
        return SimpleNamespace(path=tmp_path / "b.toml", pricing={}, parallel=4, entries=[
            SimpleNamespace(index=i, where="", agent=a, backend=b, model=m) for i, (a, b, m) in enumerate(entries)])

    with pytest.raises(ConfigError) as e:
        check_agents(cfg(("oracle", "docker", "none"), ("codex", "modal", "local")))
    assert e.value.field == "tasks[1].backend"
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", "https://api.openai.com/v1")
    with pytest.raises(EnvironmentNotReady):
        check_agents(cfg(("shell", "docker", "gpt-4o-mini")))
    plain = cfg(("oracle", "docker", "none"), ("nop", "docker", "none"))
    check_agents(plain)
    assert start_local_model(plain, print) is None
    assert make_gateways(plain, lambda: None, "r", lambda: "") is None
