"""A scripted model endpoint: real HTTP, real OpenAI Chat Completions and Anthropic Messages wire
formats, fixed replies. For tests and benchmarks that need a model server with known answers (the
gateway's tests, installed agents solving a task in seconds, ``bench/bench_gateway.py``).

``ScriptedEndpoint(replies)`` serves, on 127.0.0.1 and a free port:

- ``POST /v1/chat/completions`` (OpenAI; ``stream`` with ``stream_options.include_usage``),
- ``POST /v1/messages`` (Anthropic; ``stream`` as ``message_start`` … ``message_stop`` events),
- ``GET /v1/models``.

``replies`` is a list of :class:`Reply` used in order (the last one repeats once the list is
used up) or a function ``(protocol, body) -> Reply`` (``protocol`` is ``"chat"`` or
``"messages"``). A reply is text, tool calls, or both. Token counts are the reply's own if given,
else ``len(json(body messages)) // 4`` prompt tokens and ``len(text + tool arguments) // 4``
completion tokens (at least 1 each): deterministic, so tests can predict usage.

Every request is recorded (path, headers, JSON body) in :attr:`ScriptedEndpoint.requests`.
``api_key`` (optional) makes the endpoint answer 401 unless the request carries exactly that key
(``Authorization: Bearer`` or ``x-api-key``), which proves the gateway injected the real key.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from rollouts.gateway.serve import ThreadedServer


@dataclass(frozen=True)
class ToolCall:
    """One function/tool call in a reply: ``name`` and its ``arguments`` (a JSON object)."""

    name: str
    arguments: dict[str, Any]
    id: str | None = None


@dataclass(frozen=True)
class Reply:
    """One scripted model turn. ``prompt_tokens``/``completion_tokens`` override the estimate."""

    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    delay_sec: float = 0.0


@dataclass
class RecordedRequest:
    """One request as the endpoint received it (``query``: the raw query string, "" if none)."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any] = field(default_factory=dict)
    query: str = ""


def _prompt_tokens(body: dict) -> int:
    parts = [body.get("system") or "", body.get("messages") or [], body.get("tools") or []]
    return max(1, len(json.dumps(parts)) // 4)


def _completion_tokens(r: Reply) -> int:
    return max(1, (len(r.text) + sum(len(json.dumps(t.arguments)) + len(t.name) for t in r.tool_calls)) // 4)


class ScriptedEndpoint:
    """See the module docstring. Use as a context manager, or ``start()``/``stop()``.

    Attributes once started: ``url`` (``http://127.0.0.1:PORT``), ``openai_base_url``
    (``url + "/v1"``), ``anthropic_base_url`` (``url``), ``requests``.
    """

    def __init__(self, replies: list[Reply] | Callable[[str, dict], Reply], *, api_key: str | None = None,
                 host: str = "127.0.0.1"):
        self._replies = replies
        self._i = 0
        self._lock = threading.Lock()
        self.api_key = api_key
        self.requests: list[RecordedRequest] = []
        app = Starlette(routes=[
            Route("/v1/chat/completions", self._chat, methods=["POST"]),
            Route("/v1/messages", self._messages, methods=["POST"]),
            Route("/v1/models", self._models, methods=["GET"]),
        ])
        self._server = ThreadedServer(app, host)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> str:
        return self._server.start()

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> ScriptedEndpoint:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return self._server.url

    @property
    def openai_base_url(self) -> str:
        return self.url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.url

    # ------------------------------------------------------------------ helpers
    def _next(self, protocol: str, body: dict) -> Reply:
        if callable(self._replies):
            return self._replies(protocol, body)
        with self._lock:
            r = self._replies[min(self._i, len(self._replies) - 1)]
            self._i += 1
        return r

    async def _admit(self, request: Request, protocol: str) -> tuple[dict | None, JSONResponse | None]:
        body = await request.json()
        self.requests.append(RecordedRequest(request.url.path, dict(request.headers), body, request.url.query))
        if self.api_key is not None:
            bearer = request.headers.get("authorization", "")
            got = bearer[7:] if bearer.lower().startswith("bearer ") else request.headers.get("x-api-key")
            if got != self.api_key:
                if protocol == "messages":
                    err = {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}
                else:
                    err = {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error",
                                     "code": "invalid_api_key"}}
                return None, JSONResponse(err, status_code=401)
        return body, None

    async def _models(self, request: Request) -> JSONResponse:
        return JSONResponse({"object": "list", "data": [{"id": "scripted", "object": "model", "owned_by": "test"}]})

    # ------------------------------------------------------------------ OpenAI chat
    async def _chat(self, request: Request):
        body, err = await self._admit(request, "chat")
        if err:
            return err
        r = self._next("chat", body)
        if r.delay_sec:
            time.sleep(r.delay_sec)  # blocks this endpoint's loop only, like a busy server
        pt = r.prompt_tokens if r.prompt_tokens is not None else _prompt_tokens(body)
        ct = r.completion_tokens if r.completion_tokens is not None else _completion_tokens(r)
        usage = {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct}
        calls = [{"id": t.id or f"call_{k}", "type": "function",
                  "function": {"name": t.name, "arguments": json.dumps(t.arguments)}}
                 for k, t in enumerate(r.tool_calls)]
        finish = "tool_calls" if calls else "stop"
        rid, created, model = f"chatcmpl-scripted-{self._i}", int(time.time()), body.get("model", "scripted")
        if not body.get("stream"):
            msg: dict[str, Any] = {"role": "assistant", "content": r.text or None}
            if calls:
                msg["tool_calls"] = calls
            return JSONResponse({"id": rid, "object": "chat.completion", "created": created, "model": model,
                                 "choices": [{"index": 0, "message": msg, "finish_reason": finish}],
                                 "usage": usage})
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def chunk(delta: dict | None, finish_reason=None, with_usage=False) -> str:
            c: dict[str, Any] = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model,
                                 "choices": [] if delta is None else
                                 [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}
            if with_usage:
                c["usage"] = usage
            return f"data: {json.dumps(c)}\n\n"

        def events():
            yield chunk({"role": "assistant", "content": ""})
            for piece in _pieces(r.text):
                yield chunk({"content": piece})
            for k, call in enumerate(calls):
                yield chunk({"tool_calls": [{"index": k, "id": call["id"], "type": "function",
                                             "function": {"name": call["function"]["name"], "arguments": ""}}]})
                for piece in _pieces(call["function"]["arguments"]):
                    yield chunk({"tool_calls": [{"index": k, "function": {"arguments": piece}}]})
            yield chunk({}, finish)
            if include_usage:
                yield chunk(None, with_usage=True)
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    # ------------------------------------------------------------------ Anthropic messages
    async def _messages(self, request: Request):
        body, err = await self._admit(request, "messages")
        if err:
            return err
        r = self._next("messages", body)
        if r.delay_sec:
            time.sleep(r.delay_sec)
        pt = r.prompt_tokens if r.prompt_tokens is not None else _prompt_tokens(body)
        ct = r.completion_tokens if r.completion_tokens is not None else _completion_tokens(r)
        blocks: list[dict[str, Any]] = []
        if r.text:
            blocks.append({"type": "text", "text": r.text})
        for k, t in enumerate(r.tool_calls):
            blocks.append({"type": "tool_use", "id": t.id or f"toolu_{k}", "name": t.name, "input": t.arguments})
        stop = "tool_use" if r.tool_calls else "end_turn"
        mid, model = f"msg_scripted_{self._i}", body.get("model", "scripted")
        if not body.get("stream"):
            return JSONResponse({"id": mid, "type": "message", "role": "assistant", "model": model,
                                 "content": blocks, "stop_reason": stop, "stop_sequence": None,
                                 "usage": {"input_tokens": pt, "output_tokens": ct}})

        def ev(name: str, data: dict) -> str:
            return f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n"

        def events():
            yield ev("message_start", {"message": {
                "id": mid, "type": "message", "role": "assistant", "model": model, "content": [],
                "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": pt, "output_tokens": 1}}})
            for k, b in enumerate(blocks):
                if b["type"] == "text":
                    yield ev("content_block_start", {"index": k, "content_block": {"type": "text", "text": ""}})
                    for piece in _pieces(b["text"]):
                        yield ev("content_block_delta", {"index": k, "delta": {"type": "text_delta", "text": piece}})
                else:
                    yield ev("content_block_start", {"index": k, "content_block": {
                        "type": "tool_use", "id": b["id"], "name": b["name"], "input": {}}})
                    for piece in _pieces(json.dumps(b["input"])):
                        yield ev("content_block_delta", {"index": k, "delta": {
                            "type": "input_json_delta", "partial_json": piece}})
                yield ev("content_block_stop", {"index": k})
            yield ev("message_delta", {"delta": {"stop_reason": stop, "stop_sequence": None},
                                       "usage": {"output_tokens": ct}})
            yield ev("message_stop", {})

        return StreamingResponse(events(), media_type="text/event-stream")


def _pieces(s: str, n: int = 3) -> list[str]:
    """``s`` in up to ``n`` pieces (streams deliver text in fragments)."""
    if not s:
        return []
    size = max(1, -(-len(s) // n))
    return [s[i:i + size] for i in range(0, len(s), size)]
