"""Installed agents' model exchanges, as the gateway logs them (``agent/gateway_exchanges.jsonl``,
one :class:`rollouts.gateway.models.Exchange` a line: ``seq, protocol, stream, started_at,
latency_sec, ttft_sec, status_code, refused, error, upstream_model, request, response, usage{
prompt_tokens, completion_tokens, cost_usd, estimated}}``) → the step dicts of
:mod:`rollouts.view.trajectory`, one page at a time.

Read leniently (plain JSON, not the gateway's models) so a newer log still shows; the texts come
from the three wire protocols the gateway speaks: OpenAI Chat Completions (``messages`` /
``choices[0].message``), OpenAI Responses (``input`` / ``output[]``) and Anthropic Messages
(``messages`` / ``content[]``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rollouts.view.trajectory import cut, paginate

FILE = "agent/gateway_exchanges.jsonl"
PER_PAGE = 20
MAX_BYTES = 64 * 1024 * 1024


def _content_text(c: Any) -> str | None:
    if c is None or isinstance(c, str):
        return c
    if isinstance(c, list):
        out = []
        for p in c:
            if isinstance(p, dict):
                if isinstance(p.get("text"), str):
                    out.append(p["text"])
                elif p.get("type") in ("tool_result", "function_call_output"):
                    out.append(str(_content_text(p.get("content") or p.get("output")) or ""))
                else:
                    out.append(f"[{p.get('type', 'part')}]")
            else:
                out.append(str(p))
        return "\n".join(out)
    return json.dumps(c, ensure_ascii=False)


def _last_request_message(req: dict) -> str | None:
    msgs = req.get("messages")
    if isinstance(msgs, list) and msgs and isinstance(msgs[-1], dict):
        return f"[{msgs[-1].get('role', '?')}] " + (_content_text(msgs[-1].get("content")) or "")
    inp = req.get("input")
    if isinstance(inp, str):
        return inp
    if isinstance(inp, list) and inp and isinstance(inp[-1], dict):
        last = inp[-1]
        return f"[{last.get('role') or last.get('type', '?')}] " + (
            _content_text(last.get("content") or last.get("output")) or "")
    return None


def _reply(resp: dict | None) -> tuple[str | None, list[tuple[str, str]]]:
    """(text, [(tool name, arguments)]) of a response body in any of the three protocols."""
    if not isinstance(resp, dict):
        return None, []
    texts, tools = [], []
    for ch in resp.get("choices") or []:  # chat completions
        msg = ch.get("message") or {} if isinstance(ch, dict) else {}
        if msg.get("content"):
            texts.append(_content_text(msg["content"]))
        for tc in msg.get("tool_calls") or []:
            fn = tc.get("function") or {}
            tools.append((fn.get("name") or "tool", fn.get("arguments") or ""))
    for item in resp.get("output") or []:  # responses
        if not isinstance(item, dict):
            continue
        if item.get("type") == "message":
            texts.append(_content_text(item.get("content")))
        elif item.get("type") in ("function_call", "custom_tool_call", "local_shell_call"):
            tools.append((item.get("name") or item["type"], item.get("arguments") or item.get("input")
                          or json.dumps(item.get("action"), ensure_ascii=False)))
    if isinstance(resp.get("content"), list):  # anthropic messages
        for p in resp["content"]:
            if isinstance(p, dict) and p.get("type") == "text":
                texts.append(p.get("text", ""))
            elif isinstance(p, dict) and p.get("type") == "tool_use":
                tools.append((p.get("name") or "tool", json.dumps(p.get("input"), ensure_ascii=False)))
    return ("\n".join(t for t in texts if t) or None), tools


def _step(x: dict) -> dict[str, Any]:
    text, tools = _reply(x.get("response"))
    u = x.get("usage") if isinstance(x.get("usage"), dict) else {}
    flags = [f for f in (f"HTTP {x.get('status_code')}" if x.get("status_code") not in (None, 200) else "",
                         f"refused: {x['refused']}" if x.get("refused") else "",
                         "stream" if x.get("stream") else "", "tokens estimated" if u.get("estimated") else "") if f]
    calls = [{"title": name, "command": cut(args if isinstance(args, str) else json.dumps(args)), "exit_code": None,
              "output": None, "error": None, "timed_out": None, "sec": None, "subcalls": []} for name, args in tools]
    if x.get("error"):
        calls.append({"title": "error", "command": None, "exit_code": None, "output": None,
                      "error": cut(x.get("error")), "timed_out": None, "sec": None, "subcalls": []})
    req = x.get("request") if isinstance(x.get("request"), dict) else {}
    return {"label": f"exchange {x.get('seq', '?')} · {x.get('protocol', '?')} · {x.get('upstream_model', '')}",
            "source": "agent", "message": cut(text), "reasoning": None, "flags": flags, "calls": calls,
            "request": cut(_last_request_message(req), 20_000), "request_json": cut(req, 50_000),
            "prompt_tokens": u.get("prompt_tokens"), "completion_tokens": u.get("completion_tokens"),
            "sec": x.get("latency_sec"), "cost_usd": u.get("cost_usd"), "ts": x.get("started_at")}


def build(run_dir: Path, page: int = 1, per_page: int = PER_PAGE) -> dict[str, Any] | None:
    """``{steps, total, page, pages, skipped}`` for the run's exchange log, None if it has none.
    ``skipped`` counts lines that are not JSON objects (a torn last line while the run writes)."""
    p = Path(run_dir) / FILE
    try:
        if p.stat().st_size > MAX_BYTES:
            return {"steps": [], "total": 0, "page": 1, "pages": 1, "skipped": 0,
                    "error": f"{FILE} is larger than {MAX_BYTES} bytes: see the raw file"}
        lines = p.read_bytes().splitlines()
    except (FileNotFoundError, NotADirectoryError):
        return None
    shown, page, pages = paginate(lines, page, per_page)
    steps, skipped = [], 0
    for ln in shown:
        try:
            x = json.loads(ln)
        except ValueError:
            x = None
        if not isinstance(x, dict):
            skipped += 1
            continue
        steps.append(_step(x))
    return {"steps": steps, "total": len(lines), "page": page, "pages": pages, "skipped": skipped, "error": None}
