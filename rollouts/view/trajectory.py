"""Trajectories of every agent → one step list the run page renders.

Formats read (``agent/trajectory.json`` unless noted):

* ``shell`` (ours, schema 1): ``steps[]`` of ``{step, response, action, exit_code, output,
  timed_out, exec_sec, llm_sec, prompt_tokens, completion_tokens, format_error}`` and the chat
  ``messages`` (the first system/user messages are shown as the prompt);
* ``rlm`` (ours): ``root`` = ``{depth, question, iterations[], answer, answer_source}``, each
  iteration ``{iteration, response, cells[{code, stdout, error, timed_out, sec, sub_calls[]}],
  prompt_tokens, completion_tokens, llm_sec}``; a sub-call is an ``llm``/``rlm`` query
  ``{kind, depth, prompt, response, ...}`` or a child RLM ``{kind: "rlm", child: <node>}``;
* ``llm`` (ours): one call over a truncated context: ``question``, ``truncation``, ``attempts[]``;
* ATIF (Harbor RFC 0001, ``schema_version`` "ATIF-v1.x"; when its root ``extra.rollouts`` holds
  one of our agents' native records, as ``rollouts/atif_agents.py`` writes, that record is shown:
  it keeps exit codes, REPL cells and sub-calls that ATIF has no field for): ``steps[]`` of ``{step_id, timestamp,
  source, model_name, message, reasoning_content, tool_calls[{tool_call_id, function_name,
  arguments}], observation{results[{source_call_id, content, subagent_trajectory_ref}]},
  metrics{prompt_tokens, completion_tokens, cached_tokens, cost_usd}}`` and ``final_metrics`` —
  what ``rollouts/atif.py`` writes for our agents and installed agents' exchanges;
* anything else: shown as JSON.

A step is a dict ``{label, source, message, reasoning, flags[], calls[], prompt_tokens,
completion_tokens, sec, cost_usd, ts}``; a call is ``{title, command, exit_code, output, error,
timed_out, sec, subcalls[]}``; a sub-call is ``{kind, depth, prompt, response, tokens...,
child}`` with ``child`` a node ``{depth, question, answer, answer_source, steps[]}``. Only one
page of top-level steps is built (``page``, ``per_page``), so a 5 MB trajectory costs one JSON
parse and one page of HTML. Long strings are cut at :data:`MAX_FIELD_CHARS` (the raw file has
them all).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

MAX_FIELD_CHARS = 30_000  # per text field on the page; the raw file has everything
PER_PAGE = 50


def cut(v: Any, limit: int = MAX_FIELD_CHARS) -> str | None:
    """``v`` as text (JSON for non-strings), cut to ``limit`` characters with a marker."""
    if v is None:
        return None
    s = v if isinstance(v, str) else json.dumps(v, indent=2, ensure_ascii=False)
    if len(s) > limit:
        return s[:limit] + f"\n[… {len(s) - limit} more characters: see the raw file]"
    return s


def detect(traj: Any) -> str:
    """The format name of a parsed trajectory (see the module docstring)."""
    if not isinstance(traj, dict):
        return "json"
    if str(traj.get("schema_version", "")).startswith("ATIF"):
        return "atif"
    if isinstance(traj.get("root"), dict):
        return "rlm"
    if isinstance(traj.get("steps"), list):
        return "shell"
    if isinstance(traj.get("attempts"), list) and "truncation" in traj:
        return "llm"
    return "json"


def paginate(items: list, page: int, per_page: int = PER_PAGE) -> tuple[list, int, int]:
    """(items of ``page`` (1-based, clamped), the page, the number of pages)."""
    pages = max(1, -(-len(items) // per_page))
    page = min(max(1, page), pages)
    return items[(page - 1) * per_page: page * per_page], page, pages


def build(traj: Any, page: int = 1, per_page: int = PER_PAGE) -> dict[str, Any]:
    """The page model: ``{format, header[(k, v)], prompt[(role, text)], steps, total, page, pages,
    final[(k, v)], json}``."""
    fmt = detect(traj)
    native = ((traj.get("extra") or {}).get("rollouts") if fmt == "atif" and isinstance(traj.get("extra"), dict)
              else None)
    if isinstance(native, dict) and detect(native) in ("shell", "rlm", "llm"):
        # our agents' ATIF keeps their full native record under extra.rollouts (rollouts/atif_agents.py):
        # it has what ATIF has no field for (exit codes, REPL cells, nested sub-calls), so show that
        out = build(native, page, per_page)
        out["format"] = f"ATIF {traj.get('schema_version')} (our {out['format']} agent's record, extra.rollouts)"
        return out
    out: dict[str, Any] = {"format": fmt, "header": [], "prompt": [], "steps": [], "total": 0,
                           "page": 1, "pages": 1, "final": [], "json": None}
    if fmt == "json":
        out["json"] = cut(traj, 200_000)
        return out
    t: dict[str, Any] = traj
    raw_steps: list = []
    if fmt == "shell":
        out["header"] = _pairs(t, ("agent", "model", "status", "started_at", "options", "usage"))
        out["prompt"] = [(m.get("role"), cut(m.get("content"), 20_000)) for m in (t.get("messages") or [])[:2]
                         if isinstance(m, dict)]
        raw_steps = t["steps"]
    elif fmt == "rlm":
        out["header"] = _pairs(t, ("agent", "model", "sub_model", "status", "question", "context_chars",
                                   "answer", "answer_source", "usage", "usage_by_depth", "options"))
        raw_steps = t["root"].get("iterations") or []
    elif fmt == "llm":
        out["header"] = _pairs(t, ("agent", "model", "status", "question", "truncation", "answer", "options"))
        raw_steps = t["attempts"]
    elif fmt == "atif":
        out["header"] = _pairs(t, ("schema_version", "session_id", "agent", "notes"))
        out["final"] = _pairs(t, ("final_metrics", "extra"))
        raw_steps = t.get("steps") or []
    shown, out["page"], out["pages"] = paginate(raw_steps, page, per_page)
    out["total"] = len(raw_steps)
    conv = {"shell": _shell_step, "rlm": _rlm_step, "llm": _llm_step, "atif": _atif_step}[fmt]
    prev_ts = None
    if fmt == "atif" and shown and out["page"] > 1:
        before = raw_steps[(out["page"] - 1) * per_page - 1]
        prev_ts = before.get("timestamp") if isinstance(before, dict) else None
    for s in shown:
        if not isinstance(s, dict):
            out["steps"].append({"label": "?", "message": cut(s), "calls": [], "flags": ["not an object"]})
            continue
        step = conv(s) if fmt != "atif" else _atif_step(s, prev_ts)
        prev_ts = s.get("timestamp") if fmt == "atif" else None
        out["steps"].append(step)
    return out


def _pairs(t: dict, keys: tuple[str, ...]) -> list[tuple[str, str]]:
    """(key, text) of the keys present; small objects as one-line JSON, big ones indented."""
    out = []
    for k in keys:
        v = t.get(k)
        if v in (None, "", {}, []):
            continue
        flat = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, separators=(", ", ": "))
        out.append((k, cut(flat if len(flat) <= 240 else v, 5000)))
    return out


def _step(label: str, **kw: Any) -> dict[str, Any]:
    base = {"label": label, "source": "agent", "message": None, "reasoning": None, "flags": [], "calls": [],
            "prompt_tokens": None, "completion_tokens": None, "sec": None, "cost_usd": None, "ts": None}
    base.update(kw)
    return base


def _shell_step(s: dict) -> dict[str, Any]:
    flags = [f for f in ("format_error", "timed_out") if s.get(f)]
    calls = []
    if s.get("action") is not None:
        calls.append({"title": "command", "command": cut(s.get("action")), "exit_code": s.get("exit_code"),
                      "output": cut(s.get("output")), "error": None, "timed_out": s.get("timed_out"),
                      "sec": s.get("exec_sec"), "subcalls": []})
    sec = (s.get("llm_sec") or 0) + (s.get("exec_sec") or 0)
    return _step(f"step {s.get('step', '?')}", message=cut(s.get("response")), flags=flags, calls=calls,
                 prompt_tokens=s.get("prompt_tokens"), completion_tokens=s.get("completion_tokens"),
                 sec=round(sec, 3) if sec else None)


def _rlm_step(it: dict, depth: int = 0) -> dict[str, Any]:
    calls = []
    for i, c in enumerate(it.get("cells") or [], 1):
        if not isinstance(c, dict):
            continue
        subs = [_subcall(x) for x in (c.get("sub_calls") or []) if isinstance(x, dict)]
        calls.append({"title": f"cell {i}", "command": cut(c.get("code")), "exit_code": None,
                      "output": cut(c.get("stdout")), "error": cut(c.get("error")),
                      "timed_out": c.get("timed_out"), "sec": c.get("sec"), "subcalls": subs})
    flags = ["forced"] if it.get("forced") else []
    return _step(f"iteration {it.get('iteration', '?')}" + (f" (depth {depth})" if depth else ""),
                 message=cut(it.get("response")), flags=flags, calls=calls,
                 prompt_tokens=it.get("prompt_tokens"), completion_tokens=it.get("completion_tokens"),
                 sec=it.get("llm_sec"))


def _subcall(x: dict) -> dict[str, Any]:
    child = x.get("child")
    node = None
    if isinstance(child, dict):
        d = child.get("depth", x.get("depth", 1))
        node = {"depth": d, "question": cut(child.get("question"), 2000), "answer": cut(child.get("answer")),
                "answer_source": child.get("answer_source"),
                "steps": [_rlm_step(i, d) for i in (child.get("iterations") or []) if isinstance(i, dict)]}
    return {"kind": x.get("kind"), "depth": x.get("depth"), "prompt": cut(x.get("prompt")),
            "prompt_chars": x.get("prompt_chars"), "response": cut(x.get("response")),
            "prompt_tokens": x.get("prompt_tokens"), "completion_tokens": x.get("completion_tokens"),
            "sec": x.get("llm_sec"), "truncated": x.get("truncated"), "refused": x.get("refused"),
            "fallback": x.get("fallback"), "child": node}


def _llm_step(a: dict) -> dict[str, Any]:
    extra = {k: v for k, v in a.items() if k not in ("attempt", "llm_sec", "ok", "error")}
    return _step(f"attempt {a.get('attempt', '?')}", message=cut(a.get("error")) if a.get("error") else None,
                 flags=[] if a.get("ok") else ["failed"], sec=a.get("llm_sec"),
                 reasoning=cut(extra) if extra else None)


def _text(content: Any) -> str | None:
    """ATIF message/observation content: a string, or content parts (text kept, others named)."""
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for p in content:
            if isinstance(p, dict) and p.get("type") == "text":
                parts.append(str(p.get("text", "")))
            else:
                parts.append(f"[{p.get('type', 'part') if isinstance(p, dict) else 'part'}]")
        return "\n".join(parts)
    return json.dumps(content, ensure_ascii=False)


def _seconds(a: Any, b: Any) -> float | None:
    try:
        return round((datetime.fromisoformat(str(b).replace("Z", "+00:00"))
                      - datetime.fromisoformat(str(a).replace("Z", "+00:00"))).total_seconds(), 3)
    except (TypeError, ValueError):
        return None


def _atif_step(s: dict, prev_ts: Any = None) -> dict[str, Any]:
    results = ((s.get("observation") or {}).get("results") or []) if isinstance(s.get("observation"), dict) else []
    by_id = {r.get("source_call_id"): r for r in results if isinstance(r, dict)}
    calls, used = [], set()
    for tc in s.get("tool_calls") or []:
        if not isinstance(tc, dict):
            continue
        args = tc.get("arguments")
        cmd = args.get("command", args.get("cmd")) if isinstance(args, dict) else None
        r = by_id.get(tc.get("tool_call_id"))
        used.add(tc.get("tool_call_id"))
        extra = (r or {}).get("extra") or {}
        calls.append({"title": tc.get("function_name") or "tool call",
                      "command": cut(cmd if isinstance(cmd, str) else args),
                      "exit_code": extra.get("exit_code") if isinstance(extra, dict) else None,
                      "output": cut(_text((r or {}).get("content"))), "error": None, "timed_out": None,
                      "sec": None, "subcalls": [{"kind": "subagent", "prompt": cut(ref), "child": None}
                                                for ref in ((r or {}).get("subagent_trajectory_ref") or [])]})
    for r in results:  # observations without a tool call (system output, plain actions)
        if isinstance(r, dict) and r.get("source_call_id") not in used:
            calls.append({"title": "observation", "command": None, "exit_code": None,
                          "output": cut(_text(r.get("content"))), "error": None, "timed_out": None, "sec": None,
                          "subcalls": []})
    extra = s.get("extra") if isinstance(s.get("extra"), dict) else {}
    if len(calls) == 1 and calls[0]["exit_code"] is None:  # our writers keep exit code / timeout in step extra
        calls[0].update(exit_code=extra.get("exit_code"), timed_out=extra.get("timed_out"), sec=extra.get("exec_sec"))
    m = s.get("metrics") if isinstance(s.get("metrics"), dict) else {}
    label = f"step {s.get('step_id', '?')}" + (f" · {s['model_name']}" if s.get("model_name") else "")
    return _step(label, source=str(s.get("source") or "agent"), message=cut(_text(s.get("message"))),
                 reasoning=cut(s.get("reasoning_content")), calls=calls, prompt_tokens=m.get("prompt_tokens"),
                 completion_tokens=m.get("completion_tokens"), cost_usd=m.get("cost_usd"), ts=s.get("timestamp"),
                 sec=_seconds(prev_ts, s.get("timestamp")) if prev_ts else None)
