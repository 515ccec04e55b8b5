"""Our agents' own trajectory records (``shell``, ``llm``, ``rlm``) → ATIF (:mod:`rollouts.atif`).

Each agent keeps building its record as before and saves it with :func:`save`, which writes
``agent/trajectory.json`` in ATIF: the steps a reader of any ATIF tool expects, and the complete
native record under the root's ``extra["rollouts"]`` (nothing is lost; ``eval-rollouts view`` and
our tests read the details there).

- ``shell``: step 1 system prompt, step 2 the task, then one agent step per model reply: the
  reply as message, its command as a ``bash`` tool call (``{"command": …}``), the command's output
  as the observation; step ``extra`` = exit code, timed out, exec/LLM seconds, format errors.
- ``llm``: the question as the user step, the answer as the one agent step; truncation and
  attempts in step ``extra``.
- ``rlm``: the question as the user step, one agent step per root iteration: each code cell is a
  ``python`` tool call (``{"code": …}``) whose stdout/error is its observation; sub-calls
  (``llm_query``/child RLMs) stay with the cell in step ``extra["cells"]``.
Token metrics per step are the model call's; ``final_metrics`` come from the run's usage.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rollouts import __version__
from rollouts.atif import Agent, Metrics, Observation, ObservationResult, ToolCall, Trajectory, write


def _base(native: dict[str, Any], name: str) -> Trajectory:
    return Trajectory(agent=Agent(name=name, version=__version__, model_name=native.get("model"),
                                  extra={"options": native.get("options")} if native.get("options") else None),
                      extra={"rollouts": native})


def _final(traj: Trajectory, native: dict[str, Any]) -> Trajectory:
    u = native.get("usage") or {}
    traj.totals(cost_known=False, extra={"status": native.get("status"), "calls": u.get("calls")})
    fm = traj.final_metrics
    if u:
        fm.total_prompt_tokens, fm.total_completion_tokens = u.get("prompt_tokens"), u.get("completion_tokens")
        fm.total_cost_usd = u.get("cost_usd")
    return traj


def from_shell(native: dict[str, Any]) -> Trajectory:
    """The ``shell`` agent's record (``messages``, ``steps[{step, response, action, output, exit_code,
    …}]``, ``usage``) as ATIF: system + user steps, then one agent step per reply with its command as a
    ``bash`` tool call."""

    traj = _base(native, native.get("agent") or "shell")
    msgs = native.get("messages") or []
    ts = native.get("started_at")
    if msgs and msgs[0].get("role") == "system":
        traj.add("system", msgs[0].get("content") or "", timestamp=ts)
    user = next((m for m in msgs if m.get("role") == "user"), None)
    if user is not None:
        traj.add("user", user.get("content") or "", timestamp=ts)
    for s in native.get("steps") or []:
        cid = f"call_{s.get('step')}"
        action = s.get("action")
        extra = {k: s[k] for k in ("step", "exit_code", "timed_out", "exec_sec", "llm_sec", "format_error") if k in s}
        traj.add("agent", s.get("response") or "", model_name=native.get("model"),
                 tool_calls=[ToolCall(tool_call_id=cid, function_name="bash", arguments={"command": action})]
                 if action else None,
                 observation=Observation(results=[ObservationResult(source_call_id=cid, content=s.get("output", ""))])
                 if action else None,
                 metrics=Metrics(prompt_tokens=s.get("prompt_tokens"), completion_tokens=s.get("completion_tokens")),
                 extra=extra or None)
    return _final(traj, native)


def from_llm(native: dict[str, Any]) -> Trajectory:
    """The ``llm`` agent's record (``question``, ``response``, token counts, ``usage``) as ATIF: the
    question as the user step, the reply (if any) as the one agent step."""

    traj = _base(native, native.get("agent") or "llm")
    traj.add("user", native.get("question") or "", timestamp=native.get("started_at"))
    if native.get("response") is not None:
        traj.add("agent", native.get("response") or "", model_name=native.get("model"),
                 timestamp=native.get("finished_at"),
                 metrics=Metrics(prompt_tokens=native.get("prompt_tokens"),
                                 completion_tokens=native.get("completion_tokens")),
                 extra={k: native.get(k) for k in ("answer", "finish_reason", "truncation", "attempts")})
    return _final(traj, native)


def from_rlm(native: dict[str, Any]) -> Trajectory:
    """The ``rlm`` agent's record (``question``, ``root.iterations[{response, cells[{code, stdout,
    error}]}]``, ``usage``) as ATIF: one agent step per root iteration, each cell a ``python`` tool call."""

    traj = _base(native, native.get("agent") or "rlm")
    root = native.get("root") or {}
    traj.add("user", native.get("question") or root.get("question") or "", timestamp=native.get("started_at"))
    for it in root.get("iterations") or []:
        n = it.get("iteration")
        calls, results = [], []
        for i, cell in enumerate(it.get("cells") or [], 1):
            cid = f"it{n}_cell{i}"
            calls.append(ToolCall(tool_call_id=cid, function_name="python", arguments={"code": cell.get("code", "")}))
            out = (cell.get("stdout") or "") + (("\n" + cell["error"]) if cell.get("error") else "")
            results.append(ObservationResult(source_call_id=cid, content=out))
        traj.add("agent", it.get("response") or "", model_name=native.get("model"), tool_calls=calls or None,
                 observation=Observation(results=results) if results else None,
                 metrics=Metrics(prompt_tokens=it.get("prompt_tokens"), completion_tokens=it.get("completion_tokens")),
                 extra={"iteration": n, "forced": it.get("forced"), "llm_sec": it.get("llm_sec"),
                        "cells": [{k: c.get(k) for k in ("timed_out", "sec", "sub_calls")}
                                  for c in it.get("cells") or []]})
    return _final(traj, native)


CONVERTERS = {"shell": from_shell, "llm": from_llm, "rlm": from_rlm}


def save(kind: str, path: Path, native: dict[str, Any]) -> None:
    """Write ``native`` (an agent's record, ``kind`` = shell | llm | rlm) as ATIF to ``path``
    (``<run_dir>/agent/trajectory.json``: the session id is the run dir's name, the run id)."""
    traj = CONVERTERS[kind](native)
    traj.session_id = Path(path).parent.parent.name or traj.session_id
    write(path, traj)


def native_of(traj: dict[str, Any]) -> dict[str, Any]:
    """The agent's own record inside an ATIF trajectory written by :func:`save` (or ``traj``
    itself when it is not ATIF, e.g. a file from before ATIF)."""
    if str(traj.get("schema_version", "")).startswith("ATIF"):
        return (traj.get("extra") or {}).get("rollouts") or {}
    return traj
