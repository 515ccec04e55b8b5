"""Gateway exchanges → an ATIF trajectory (see :mod:`rollouts.atif`).

Every request an agent sends carries the conversation so far, in its protocol (Chat
``messages``, Responses ``instructions`` + ``input`` items, Messages ``system`` + ``messages``).
The trajectory is read off them:

- step 1 ``system``: the first request's system prompt(s) (if any); then one ``user`` step per
  user message of the first request (agents send context such as AGENTS.md before the task);
- one ``agent`` step per exchange: the reply's text, reasoning and tool calls, the exchange's
  usage as metrics (tokens, USD), ``extra`` = {seq, protocol, stream, latency_sec, ttft_sec,
  status_code, upstream_model};
- the items the *next* request adds after the last assistant turn (tool results, and the
  observations text-protocol agents send back as user messages) become that agent step's
  ``observation`` (``source_call_id`` = the tool call's id where there is one);
- a refused or failed exchange is a ``system`` step saying so (``extra.refused`` / ``error``).
"""

from __future__ import annotations

import json
from typing import Any

from rollouts.atif import Agent as AtifAgent
from rollouts.atif import Metrics, Observation, ObservationResult, ToolCall, Trajectory

Item = tuple[str, str, str | None]  # (kind: system|user|assistant|tool, text, call id)


def _text(content: Any) -> str:
    """Plain text of a message content (string, or a list of text-bearing parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        out = []
        for p in content:
            if isinstance(p, str):
                out.append(p)
            elif isinstance(p, dict):
                if p.get("type") in ("tool_result",):
                    out.append(_text(p.get("content")))
                else:
                    out.append(str(p.get("text") or p.get("output") or ""))
        return "\n".join(s for s in out if s)
    return json.dumps(content, ensure_ascii=False)


def _args(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, str):
        try:
            v = json.loads(raw) if raw.strip() else {}
        except ValueError:
            return {"input": raw}
        return v if isinstance(v, dict) else {"value": v}
    return {"value": raw}


def request_items(protocol: str, body: dict) -> list[Item]:
    """The conversation a request carries, as (kind, text, call id) in order."""
    items: list[Item] = []
    if protocol == "chat":
        for m in body.get("messages") or []:
            role = m.get("role")
            if role in ("system", "developer"):
                items.append(("system", _text(m.get("content")), None))
            elif role == "tool":
                items.append(("tool", _text(m.get("content")), m.get("tool_call_id")))
            elif role == "assistant":
                items.append(("assistant", _text(m.get("content")), None))
            else:
                items.append(("user", _text(m.get("content")), None))
    elif protocol == "responses":
        if body.get("instructions"):
            items.append(("system", str(body["instructions"]), None))
        inp = body.get("input")
        for it in ([{"role": "user", "content": inp}] if isinstance(inp, str) else inp or []):
            t = it.get("type", "message")
            if t in ("function_call_output", "custom_tool_call_output", "local_shell_call_output"):
                items.append(("tool", _text(it.get("output")), it.get("call_id")))
            elif t in ("function_call", "custom_tool_call", "local_shell_call", "reasoning"):
                items.append(("assistant", "", None))
            elif t == "message":
                role = it.get("role")
                kind = {"system": "system", "developer": "system", "assistant": "assistant"}.get(role, "user")
                items.append((kind, _text(it.get("content")), None))
    else:  # messages
        if body.get("system"):
            items.append(("system", _text(body["system"]), None))
        for m in body.get("messages") or []:
            content = m.get("content")
            if m.get("role") == "assistant":
                items.append(("assistant", _text(content), None))
                continue
            if isinstance(content, list):
                for part in content:
                    if isinstance(part, dict) and part.get("type") == "tool_result":
                        items.append(("tool", _text(part.get("content")), part.get("tool_use_id")))
                    elif isinstance(part, dict) and part.get("type") == "text":
                        items.append(("user", part.get("text", ""), None))
            else:
                items.append(("user", _text(content), None))
    return items


def response_parts(protocol: str, body: dict | None) -> tuple[str, str | None, list[ToolCall]]:
    """(text, reasoning, tool calls) of a reply."""
    body = body or {}
    texts: list[str] = []
    reasoning: list[str] = []
    calls: list[ToolCall] = []
    if protocol == "chat":
        msg = ((body.get("choices") or [{}])[0] or {}).get("message") or {}
        texts.append(_text(msg.get("content")))
        if msg.get("reasoning_content"):
            reasoning.append(str(msg["reasoning_content"]))
        for k, tc in enumerate(msg.get("tool_calls") or []):
            fn = tc.get("function") or {}
            calls.append(ToolCall(tool_call_id=tc.get("id") or f"call_{k}", function_name=fn.get("name") or "?",
                                  arguments=_args(fn.get("arguments"))))
    elif protocol == "responses":
        for k, o in enumerate(body.get("output") or []):
            t = o.get("type")
            if t == "message":
                texts.append(_text(o.get("content")))
            elif t == "reasoning":
                reasoning.append(_text(o.get("summary")) or _text(o.get("content")))
            elif t in ("function_call", "custom_tool_call"):
                calls.append(ToolCall(tool_call_id=o.get("call_id") or f"call_{k}", function_name=o.get("name") or "?",
                                      arguments=_args(o.get("arguments", o.get("input")))))
            elif t == "local_shell_call":
                calls.append(ToolCall(tool_call_id=o.get("call_id") or f"call_{k}", function_name="local_shell",
                                      arguments=o.get("action") or {}))
    else:
        for k, b in enumerate(body.get("content") or []):
            t = b.get("type")
            if t == "text":
                texts.append(b.get("text", ""))
            elif t in ("thinking", "redacted_thinking"):
                reasoning.append(b.get("thinking", ""))
            elif t in ("tool_use", "server_tool_use"):
                calls.append(ToolCall(tool_call_id=b.get("id") or f"toolu_{k}", function_name=b.get("name") or "?",
                                      arguments=_args(b.get("input"))))
    return "\n".join(t for t in texts if t), ("\n".join(r for r in reasoning if r) or None), calls


def _new_items(items: list[Item]) -> list[Item]:
    """Items after the last assistant turn (what the agent sends back after a reply)."""
    last = max((i for i, it in enumerate(items) if it[0] == "assistant"), default=None)
    return [it for it in items[last + 1:] if it[0] in ("user", "tool")] if last is not None else []


def from_exchanges(exchanges: list, *, agent_name: str, agent_version: str, model_name: str | None = None,
                   session_id: str | None = None, notes: str | None = None,
                   extra: dict[str, Any] | None = None) -> Trajectory:
    """See the module docstring. ``exchanges``: Exchange models or dicts, in order."""
    exs = [e.model_dump() if hasattr(e, "model_dump") else dict(e) for e in exchanges]
    kw = {"session_id": session_id} if session_id else {}
    traj = Trajectory(agent=AtifAgent(name=agent_name, version=agent_version,
                                      model_name=model_name or (exs[0]["upstream_model"] if exs else None)),
                      notes=notes, extra=extra, **kw)
    if exs:
        first = request_items(exs[0]["protocol"], exs[0].get("request") or {})
        sys_txt = "\n\n".join(t for k, t, _ in first if k == "system")
        if sys_txt:
            traj.add("system", sys_txt, timestamp=exs[0]["started_at"])
        for k, t, _ in first:  # every user message of the first request (context, then the task)
            if k == "user":
                traj.add("user", t, timestamp=exs[0]["started_at"])
    cost_known = True
    last_agent = None
    for ex in exs:
        req_items = request_items(ex["protocol"], ex.get("request") or {})
        if last_agent is not None:
            results = [ObservationResult(source_call_id=cid, content=t) for k, t, cid in _new_items(req_items)]
            if results:
                last_agent.observation = Observation(results=results)
            last_agent = None
        meta = {k: ex.get(k) for k in ("seq", "protocol", "stream", "latency_sec", "ttft_sec", "status_code")}
        if ex.get("refused") or ex.get("error") or (ex.get("status_code") or 200) >= 400:
            traj.add("system", f"model request {'refused by the gateway' if ex.get('refused') else 'failed'}: "
                     f"{ex.get('error') or ex.get('status_code')}", timestamp=ex["started_at"],
                     extra={**meta, "refused": ex.get("refused"), "error": ex.get("error")})
            continue
        text, reasoning, calls = response_parts(ex["protocol"], ex.get("response"))
        u = ex.get("usage") or {}
        if u.get("cost_usd") is None:
            cost_known = False
        last_agent = traj.add(
            "agent", text, timestamp=ex["started_at"], model_name=ex.get("upstream_model"),
            reasoning_content=reasoning, tool_calls=calls or None,
            metrics=Metrics(prompt_tokens=u.get("prompt_tokens"), completion_tokens=u.get("completion_tokens"),
                            cost_usd=u.get("cost_usd"),
                            extra={"estimated": True} if u.get("estimated") else None),
            extra={**meta, "upstream_model": ex.get("upstream_model")})
    traj.totals(cost_known, extra={"model_calls": sum(1 for s in traj.steps if s.source == "agent"),
                                   "refused": sum(1 for e in exs if e.get("refused"))})
    return traj
