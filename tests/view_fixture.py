"""Synthetic data directories for the viewer's tests and ``bench/bench_view.py``: manifests written
with the real pydantic models of :mod:`rollouts.store` and run folders laid out as the runner
writes them (agent/trajectory.json, artifacts/diff.patch, evaluation_results.json, logs/)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from rollouts.store import (
    Attempt,
    Manifest,
    ManifestTask,
    RunRecord,
    Store,
    Usage,
    atomic_write,
    atomic_write_json,
)

XSS = '<script>window.__xss=1</script><img src=x onerror="window.__xss=2">'

DIFF = """diff --git a/stats.py b/stats.py
index 1111111..2222222 100644
--- a/stats.py
+++ b/stats.py
@@ -1,4 +1,4 @@
 def mean(xs):
-    return sum(xs) / (len(xs) - 1)
+    return sum(xs) / len(xs)
 # {xss}
"""


def shell_trajectory(steps: int, out_chars: int = 200, payload: str = "") -> dict:
    """Our shell agent's format (see rollouts/agents/shell.py) with ``steps`` steps."""
    st = []
    for i in range(1, steps + 1):
        st.append({"step": i, "response": f"I will look at the files (step {i}).\n```bash\nls -la {payload}\n```",
                   "prompt_tokens": 900 + i, "completion_tokens": 40, "llm_sec": 0.5,
                   "action": f"ls -la {payload}", "exit_code": 0 if i % 7 else 2,
                   "output": (f"total {i}\n" + payload + "x" * out_chars)[: max(out_chars, len(payload) + 10)],
                   "timed_out": False, "exec_sec": 0.05})
    return {"schema_version": 1, "agent": "shell", "model": "gpt-4o", "options": {}, "status": "completed",
            "messages": [{"role": "system", "content": "You are a careful engineer."},
                         {"role": "user", "content": "Fix the bug in stats.py " + payload}],
            "steps": st, "usage": {"prompt_tokens": 1000 * steps, "completion_tokens": 40 * steps, "calls": steps}}


def rlm_trajectory() -> dict:
    """Our rlm agent's format: one root iteration whose cell made an llm_query and a child RLM."""
    child = {"depth": 1, "question": "summarise the chunk", "iterations": [
        {"iteration": 1, "response": "```python\nprint(len(context))\n```", "prompt_tokens": 50,
         "completion_tokens": 9, "llm_sec": 0.2, "cells": [{"code": "print(len(context))", "stdout": "1234\n",
                                                           "error": None, "timed_out": False, "sec": 0.01,
                                                           "sub_calls": []}]}],
        "answer": "CHILD-ANSWER-42", "answer_source": "FINAL"}
    root = {"depth": 0, "question": "What is the magic number?", "iterations": [
        {"iteration": 1, "forced": False, "response": "```python\nr = llm_query(context[:100])\nprint(r)\n```",
         "prompt_tokens": 300, "completion_tokens": 30, "llm_sec": 1.1, "cells": [
             {"code": "r = llm_query(context[:100])\nprint(r)", "stdout": "SUB-RESPONSE-7\n", "error": None,
              "timed_out": False, "sec": 0.9, "sub_calls": [
                  {"kind": "llm", "depth": 1, "prompt": "find the number", "prompt_chars": 15, "truncated": False,
                   "response": "SUB-RESPONSE-7", "prompt_tokens": 20, "completion_tokens": 5, "llm_sec": 0.3},
                  {"kind": "rlm", "depth": 1, "child": child}]}]},
        {"iteration": 2, "forced": False, "response": "FINAL(42)", "prompt_tokens": 320, "completion_tokens": 4,
         "llm_sec": 0.4, "cells": []}], "answer": "42", "answer_source": "FINAL"}
    return {"schema_version": 1, "agent": "rlm", "model": "qwen", "sub_model": "qwen", "status": "completed",
            "question": "What is the magic number?", "root": root, "answer": "42", "answer_source": "FINAL"}


def atif_trajectory() -> dict:
    """An ATIF-v1.5 trajectory (Harbor RFC 0001) with a tool call and its observation."""
    return {"schema_version": "ATIF-v1.5", "session_id": "s-1",
            "agent": {"name": "codex", "version": "0.163.0", "model_name": "gpt-5"},
            "steps": [
                {"step_id": 1, "timestamp": "2026-01-01T00:00:00Z", "source": "user", "message": "Fix the bug"},
                {"step_id": 2, "timestamp": "2026-01-01T00:00:03Z", "source": "agent", "model_name": "gpt-5",
                 "message": "Running the tests first.", "reasoning_content": "ATIF-REASONING",
                 "tool_calls": [{"tool_call_id": "c1", "function_name": "shell",
                                 "arguments": {"command": "pytest -q ATIF-CMD"}}],
                 "observation": {"results": [{"source_call_id": "c1", "content": "1 failed ATIF-OBS"}]},
                 "metrics": {"prompt_tokens": 1200, "completion_tokens": 80, "cost_usd": 0.0031}}],
            "final_metrics": {"total_prompt_tokens": 1200, "total_completion_tokens": 80, "total_steps": 2}}


def gateway_exchanges(payload: str = "") -> str:
    """A gateway exchange log (``agent/gateway_exchanges.jsonl``) written with the gateway's own
    Exchange model: one exchange per protocol (a Responses tool call, a refused Chat request, an
    Anthropic reply) and a torn last line, as while a run is still writing."""
    from rollouts.gateway.models import Exchange, ExchangeUsage

    ex = [
        Exchange(seq=1, run_id="r", protocol="responses", started_at="2026-01-01T00:00:01Z", latency_sec=1.5,
                 upstream_model="gpt-5", request={"model": "gpt-5", "input": [{"role": "user", "content": "GW-ASK"}]},
                 response={"output": [{"type": "message", "content": [{"type": "output_text", "text": "GW-REPLY " + payload}]},
                                      {"type": "function_call", "name": "shell", "arguments": '{"cmd": "GW-TOOL-ARGS"}'}]},
                 usage=ExchangeUsage(prompt_tokens=700, completion_tokens=30, cost_usd=0.001)),
        Exchange(seq=2, run_id="r", protocol="chat", started_at="2026-01-01T00:00:03Z", status_code=429,
                 refused="limit", upstream_model="gpt-5",
                 request={"messages": [{"role": "user", "content": "again"}]}),
        Exchange(seq=3, run_id="r", protocol="messages", started_at="2026-01-01T00:00:05Z", upstream_model="claude",
                 request={"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]},
                 response={"content": [{"type": "text", "text": "GW-ANTHROPIC-TEXT"}]}),
    ]
    return "".join(e.model_dump_json() + "\n" for e in ex) + '{"seq": 4, "torn'


def _run_files(d: Path, traj: dict | None, reward: float | None, payload: str = "", tests_ok: bool = True,
               atif_kind: str | None = None) -> None:
    """A run folder; ``atif_kind`` (shell | rlm | llm): the trajectory is written as our agents write
    it now (``rollouts.atif_agents.save``: ATIF with the native record under extra.rollouts), else
    ``traj`` as it is (a Harbor-style ATIF file, or a native file from before ATIF)."""
    if traj is not None and atif_kind:
        from rollouts.atif_agents import save

        (d / "agent").mkdir(parents=True, exist_ok=True)
        save(atif_kind, d / "agent" / "trajectory.json", traj)
    elif traj is not None:
        atomic_write_json(d / "agent" / "trajectory.json", traj)
    atomic_write(d / "artifacts" / "diff.patch", DIFF.format(xss=payload))
    atomic_write(d / "artifacts" / "notes.md", f"# Agent notes\n\nDone. {payload}\n")
    atomic_write(d / "logs" / "agent.log", f"[step 1] $ ls\nAGENT-LOG-LINE {payload}\n")
    atomic_write(d / "logs" / "eval.log", f"VERIFIER-OUTPUT: 2 passed {payload}\n")
    if reward is not None:
        atomic_write_json(d / "evaluation_results.json", {
            "schema_version": 1, "status": "completed", "reward": reward, "total_score": reward,
            "tests": [{"name": "tests/test_stats.py::test_mean", "outcome": "passed" if tests_ok else "failed",
                       "time": 0.01},
                      {"name": f"tests/test_stats.py::test_empty{payload}", "outcome": "passed", "time": 0.02}],
            "verifier": {"mode": "fresh", "command": "pytest -q", "exit_code": 0 if tests_ok else 1,
                         "timed_out": False, "reward_source": "junit", "duration_sec": 1.2}, "error": None})


def make_manifest(name: str, rid: str, store: Store, specs: list[dict], status: str = "completed") -> Manifest:
    """A manifest with one run per spec (``task, agent, model, status, reward, ...`` overrides)."""
    tasks, results = [], []
    for i, sp in enumerate(specs):
        task, agent, model = sp.get("task", "fix_bug_stats"), sp.get("agent", "shell"), sp.get("model", "gpt-4o")
        if not any(t.task_name == task and t.agent == agent and t.model == model for t in tasks):
            tasks.append(ManifestTask(index=len(tasks), task_dir=f"data/tasks/prepared/{task}", task_name=task,
                                      task_digest="0" * 64, agent=agent, model=model, rollouts=1, backend="docker"))
        run_id = f"{rid}-{i}"
        results.append(RunRecord(
            run_id=run_id, run_dir=str(store.run_dir(run_id)), task_dir=f"data/tasks/prepared/{task}",
            task_name=task, entry_index=0, rollout_index=i, agent=agent, model=model,
            status=sp.get("status", "completed"), error_kind=sp.get("error_kind"), error=sp.get("error"),
            reward=sp.get("reward"), metrics=sp.get("metrics", {}), steps=sp.get("steps"),
            started_at="2026-01-01T00:00:00.000+00:00", finished_at="2026-01-01T00:01:00.000+00:00",
            timings=sp.get("timings", {"image": 0.1, "sandbox_start": 0.5, "agent": 12.0, "verifier": 1.5,
                                       "total": 14.1}),
            usage=Usage(prompt_tokens=1000, completion_tokens=100, calls=3, cost_usd=0.002),
            attempts=sp.get("attempts", [])))
    return Manifest(config=f"configs/{name}.toml", config_digest="0" * 64, name=name, created_at=rid, rollout_id=rid,
                    status=status, started_at="2026-01-01T00:00:00.000+00:00",
                    finished_at=None if status == "running" else "2026-01-01T00:10:00.000+00:00",
                    tool_version="0.1.0", host="fixture-host", pid=1, parallel=2, tasks=tasks, results=results)


def build_small(root: Path) -> dict:
    """A data dir with benchmark ``demo``: two rollouts (for compare) of a few runs — shell, rlm,
    ATIF, a failed run full of XSS payloads, a run with a retried attempt. Returns ids."""
    store = Store(root)
    rid, rid2 = "20260101__00-00-00", "20260102__00-00-00"
    specs = [
        {"task": "fix_bug_stats", "agent": "shell", "reward": 1.0, "steps": 3},
        {"task": "fix_bug_stats", "agent": "shell", "reward": 0.0, "status": "error", "error_kind": "agent",
         "error": "agent failed " + XSS, "steps": 2},
        {"task": "needle", "agent": "rlm", "model": "qwen", "reward": 1.0, "metrics": {"em": 1.0}},
        {"task": "fix_bug_stats", "agent": "codex", "model": "gpt-5", "reward": 1.0,
         "attempts": [Attempt(attempt=1, error="SandboxError: engine went away", dir="")]},
        {"task": "implement_slugify", "agent": "shell", "reward": 0.0, "status": "agent_timeout"},
    ]
    for r, (name, id_) in enumerate((("demo", rid), ("demo", rid2))):
        m = make_manifest(name, id_, store, specs if r == 0 else [{**s, "reward": 1.0} for s in specs])
        store.write_manifest(m)
        store.set_latest(name, id_)
        d = [store.run_dir(x.run_id) for x in m.results]
        _run_files(d[0], shell_trajectory(3), 1.0, atif_kind="shell")
        _run_files(d[1], shell_trajectory(2, payload=XSS), 0.0, payload=XSS, tests_ok=False)  # pre-ATIF file
        _run_files(d[2], rlm_trajectory(), 1.0, atif_kind="rlm")
        _run_files(d[3], None, 1.0)
        log = gateway_exchanges(XSS)
        atomic_write(d[3] / "agent" / "gateway_exchanges.jsonl", log)
        from rollouts.atif import trajectory_from_exchanges, write

        exchanges = [json.loads(ln) for ln in log.splitlines()[:-1]]  # the torn last line is not one
        write(d[3] / "agent" / "trajectory.json",
              trajectory_from_exchanges(exchanges, agent_name="codex", agent_version="0.163.0"))
        atomic_write(d[3] / "attempts" / "1" / "error.txt", "SandboxError: engine went away\n")
        atomic_write(d[3] / "attempts" / "1" / "logs" / "agent.log", "ATTEMPT-1-LOG\n")
        _run_files(d[4], atif_trajectory(), 0.0)  # Harbor-style ATIF, no native record
    return {"name": "demo", "rid": rid, "rid2": rid2, "runs": [f"{rid}-{i}" for i in range(len(specs))]}


def build_big(root: Path, n_runs: int = 10_000, steps: int = 200, out_chars: int = 400) -> dict:
    """Benchmark ``big``: one rollout of ``n_runs`` runs (250 tasks × 4 arms × 10 rollouts when
    n_runs = 10,000), each with a ``steps``-step shell trajectory. The trajectory, diff and logs
    are hard links to one copy (same bytes in every run folder, ~100 KB of disk instead of GBs)."""
    store = Store(root)
    rid = "20260301__00-00-00"
    arms = [("shell", "gpt-4o"), ("shell", "gpt-4o-mini"), ("rlm", "qwen"), ("llm", "gpt-4o")]
    specs = []
    for i in range(n_runs):
        agent, model = arms[i % 4]
        ok = (i * 2654435761) % 100 < 60
        specs.append({"task": f"task_{(i // 40) % 250:04d}", "agent": agent, "model": model,
                      "reward": 1.0 if ok else 0.0, "status": "completed" if i % 97 else "agent_timeout",
                      "steps": steps})
    m = make_manifest("big", rid, store, specs)
    store.write_manifest(m)
    proto = root / "proto"
    _run_files(proto, shell_trajectory(steps, out_chars), 1.0, atif_kind="shell")
    files = [p.relative_to(proto) for p in proto.rglob("*") if p.is_file()]
    for r in m.results:
        d = Path(r.run_dir)
        for f in files:
            (d / f).parent.mkdir(parents=True, exist_ok=True)
            os.link(proto / f, d / f)
    return {"name": "big", "rid": rid, "run": m.results[n_runs // 2].run_id,
            "trajectory_bytes": (proto / "agent" / "trajectory.json").stat().st_size}
