"""A scripted model endpoint for agent tests: real HTTP, real wire protocols, fixed replies.

It speaks OpenAI Responses (``POST /v1/responses``, SSE or JSON), OpenAI Chat Completions
(``POST /v1/chat/completions``) and Anthropic Messages (``POST /v1/messages``, SSE or JSON). The
script is the same in every protocol: while the conversation holds no tool result yet, reply
with one call of the agent's shell tool running :data:`COMMAND`; afterwards reply with the text
:data:`FINAL`. Requests that offer no shell tool (side calls such as title generation) get
:data:`FINAL` too. Which tool it calls is read from the tools the agent declares (Codex:
``exec_command`` / ``shell_command`` / ``shell``; Claude Code: ``Bash``), so the reply is what a
real model would send. Agents without tools (text protocols) get :data:`COMMAND` in a fenced
block built by ``text_reply``. Every request body is kept in ``server.requests``.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

COMMAND = "printf 'hello world\\n' > greeting.txt"
FINAL = "Created greeting.txt containing hello world."
USAGE_IN, USAGE_OUT = 120, 30


def _shell_args(name: str, schema: dict) -> dict | None:
    props = (schema or {}).get("properties") or {}
    if name == "exec_command" or "cmd" in props:
        return {"cmd": COMMAND}
    if name in ("shell_command", "Bash") or (props.get("command") or {}).get("type") == "string":
        return {"command": COMMAND, "description": "write greeting.txt"}
    if name == "shell" or (props.get("command") or {}).get("type") == "array":
        return {"command": ["bash", "-lc", COMMAND]}
    return None


def pick_tool(tools: list[dict]) -> tuple[str, dict] | None:
    """(tool name, arguments) of the first shell-like tool offered, or None."""
    prefer = ("exec_command", "shell_command", "shell", "Bash", "bash")
    named = {}
    for t in tools or []:
        fn = t.get("function") if t.get("type") == "function" and "function" in t else t
        name = fn.get("name")
        schema = fn.get("parameters") or fn.get("input_schema") or {}
        if name:
            named[name] = schema
    for n in prefer:
        if n in named:
            args = _shell_args(n, named[n])
            if args is not None:
                return n, args
    return None


class ScriptedLLM(ThreadingHTTPServer):
    """The server; ``start()`` serves in a thread on ``host`` (default all interfaces, so a
    sandbox on the Docker bridge reaches it), ``port`` (0 = free). ``stop()`` shuts it down."""

    daemon_threads = True

    def __init__(self, host: str = "0.0.0.0", port: int = 0, text_reply=None):
        super().__init__((host, port), _Handler)
        self.requests: list[tuple[str, dict]] = []
        self.text_reply = text_reply
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.server_address[1]

    def start(self) -> ScriptedLLM:
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: ScriptedLLM

    def log_message(self, *a: Any) -> None:
        pass

    def do_GET(self) -> None:  # /v1/models and health probes
        self._json(200, {"object": "list", "data": [{"id": "scripted", "object": "model"}]})

    def do_POST(self) -> None:
        n = int(self.headers.get("content-length") or 0)
        body = json.loads(self.rfile.read(n) or b"{}")
        path = self.path.split("?")[0]
        self.server.requests.append((path, body))
        if path.endswith("/responses"):
            self._responses(body)
        elif path.endswith("/chat/completions"):
            self._chat(body)
        elif path.endswith("/messages/count_tokens"):
            self._json(200, {"input_tokens": USAGE_IN})
        elif path.endswith("/messages"):
            self._anthropic(body)
        else:
            self._json(404, {"error": {"message": f"no route {path}"}})

    # ------------------------------------------------------------------ plumbing
    def _json(self, code: int, obj: dict) -> None:
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _sse(self, events: list[tuple[str | None, dict | str]]) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("connection", "close")
        self.end_headers()
        for name, data in events:
            payload = data if isinstance(data, str) else json.dumps(data)
            head = f"event: {name}\n" if name else ""
            self.wfile.write(f"{head}data: {payload}\n\n".encode())
            self.wfile.flush()
        self.close_connection = True

    # ------------------------------------------------------------------ OpenAI Responses
    def _responses(self, body: dict) -> None:
        done = any(isinstance(i, dict) and i.get("type") in ("function_call_output", "custom_tool_call_output")
                   for i in body.get("input") or [])
        call = None if done else pick_tool(body.get("tools") or [])
        if call:
            item = {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": call[0],
                    "arguments": json.dumps(call[1]), "status": "completed"}
        else:
            item = {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
                    "content": [{"type": "output_text", "text": FINAL, "annotations": []}]}
        usage = {"input_tokens": USAGE_IN, "input_tokens_details": {"cached_tokens": 0},
                 "output_tokens": USAGE_OUT, "output_tokens_details": {"reasoning_tokens": 0},
                 "total_tokens": USAGE_IN + USAGE_OUT}
        resp = {"id": f"resp_{len(self.server.requests)}", "object": "response", "status": "completed",
                "model": body.get("model"), "output": [item], "usage": usage}
        if not body.get("stream"):
            return self._json(200, resp)
        self._sse([
            ("response.created", {"type": "response.created", "response": {**resp, "status": "in_progress", "output": []}}),
            ("response.output_item.added", {"type": "response.output_item.added", "output_index": 0, "item": item}),
            ("response.output_item.done", {"type": "response.output_item.done", "output_index": 0, "item": item}),
            ("response.completed", {"type": "response.completed", "response": resp}),
        ])

    # ------------------------------------------------------------------ OpenAI Chat Completions
    def _chat(self, body: dict) -> None:
        msgs = body.get("messages") or []
        done = any(m.get("role") == "tool" for m in msgs)
        call = None if done else pick_tool(body.get("tools") or [])
        if call:
            msg = {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": call[0], "arguments": json.dumps(call[1])}}]}
            finish = "tool_calls"
        else:
            text = self.server.text_reply(msgs) if (self.server.text_reply and not body.get("tools")) else FINAL
            msg, finish = {"role": "assistant", "content": text}, "stop"
        usage = {"prompt_tokens": USAGE_IN, "completion_tokens": USAGE_OUT, "total_tokens": USAGE_IN + USAGE_OUT}
        resp = {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": body.get("model"),
                "choices": [{"index": 0, "message": msg, "finish_reason": finish}], "usage": usage}
        if not body.get("stream"):
            return self._json(200, resp)
        delta = dict(msg)
        if call:
            delta["tool_calls"] = [{"index": 0, **tc} for tc in msg["tool_calls"]]
        chunk = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0, "model": body.get("model")}
        self._sse([
            (None, {**chunk, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}),
            (None, {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}], "usage": usage}),
            (None, "[DONE]"),
        ])

    # ------------------------------------------------------------------ Anthropic Messages
    def _anthropic(self, body: dict) -> None:
        done = any(isinstance(c, dict) and c.get("type") == "tool_result"
                   for m in body.get("messages") or [] if isinstance(m.get("content"), list) for c in m["content"])
        call = None if done else pick_tool(body.get("tools") or [])
        if call:
            block = {"type": "tool_use", "id": "toolu_1", "name": call[0], "input": call[1]}
            stop = "tool_use"
        else:
            block, stop = {"type": "text", "text": FINAL}, "end_turn"
        usage = {"input_tokens": USAGE_IN, "output_tokens": USAGE_OUT}
        msg = {"id": f"msg_{len(self.server.requests)}", "type": "message", "role": "assistant",
               "model": body.get("model"), "content": [block], "stop_reason": stop, "stop_sequence": None,
               "usage": usage}
        if not body.get("stream"):
            return self._json(200, msg)
        if call:
            start = {**block, "input": {}}
            delta = {"type": "input_json_delta", "partial_json": json.dumps(call[1])}
        else:
            start = {"type": "text", "text": ""}
            delta = {"type": "text_delta", "text": FINAL}
        self._sse([
            ("message_start", {"type": "message_start", "message": {**msg, "content": [], "stop_reason": None,
                                                                    "usage": {"input_tokens": USAGE_IN, "output_tokens": 1}}}),
            ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": start}),
            ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                               "usage": {"output_tokens": USAGE_OUT}}),
            ("message_stop", {"type": "message_stop"}),
        ])
