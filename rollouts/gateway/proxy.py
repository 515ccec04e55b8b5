"""Forwarding one agent request to the upstream, translated by litellm, and encoding the answer in
the agent's wire protocol (JSON, or Server-Sent Events for streams).

Which litellm call serves which agent protocol (litellm does every translation; nothing here
rewrites messages):

==============  ==========================================  =====================================
agent speaks    call                                        upstream openai / anthropic
==============  ==========================================  =====================================
Chat            ``litellm.acompletion``                     forwarded / Messages ↔ Chat adapter
Responses       ``litellm.aresponses``                      bridged to Chat (``use_chat_completions_api``),
                                                            or native if ``UpstreamSpec.responses_api``
Messages        ``litellm.anthropic_messages``              Messages → Chat adapter / forwarded
==============  ==========================================  =====================================

Chat to an OpenAI-compatible upstream and Messages to Anthropic need no translation: they are
forwarded by :mod:`rollouts.gateway.passthrough` (httpx; ~1 ms instead of litellm's tens, and
litellm's own Anthropic pass-through imports its proxy server's dependencies).

Usage per exchange is what the upstream reported (``usage`` of a Chat completion or of its last
stream chunk, ``response.usage`` of a Responses answer or ``response.completed`` event,
``message_start``/``message_delta`` usage of a Messages stream). Errors raised by litellm carry
the upstream's HTTP status (``status_code``); they become :class:`UpstreamError`.
"""

from __future__ import annotations

import enum
import json
import os
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rollouts.gateway import passthrough
from rollouts.gateway.models import Protocol, UpstreamSpec

_litellm = None


def litellm():
    """The litellm module, imported on first use with its cost map read from the installed package
    (by default litellm downloads it from the internet at import) and its telemetry off."""
    global _litellm
    if _litellm is None:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        os.environ.setdefault("LITELLM_TELEMETRY", "False")
        import litellm as m

        m.telemetry = False
        m.suppress_debug_info = True
        # Messages → an OpenAI-compatible upstream goes to /chat/completions (every such server has
        # it), not to /responses (litellm's default for provider "openai").
        m.use_chat_completions_url_for_anthropic_messages = True
        _litellm = m
    return _litellm


class UpstreamError(Exception):
    """The upstream (or litellm's translation) failed. ``status``: HTTP status for the agent."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Outcome:
    """What came back. ``body``: the JSON object the agent got (streams: assembled at the end).
    ``prompt_tokens``/``completion_tokens``: None when the upstream reported no usage."""

    body: dict[str, Any] | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    error: str | None = None
    events: list[Any] = field(default_factory=list)


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json", exclude_none=True)
    if isinstance(obj, dict):
        return obj
    return json.loads(json.dumps(obj, default=str))


#: The request fields of each protocol's public API that reach litellm. Anything else in an agent's
#: body is dropped: litellm reads its own keyword arguments from the same dict (``base_url``,
#: ``api_base``, ``custom_llm_provider``, ``extra_headers`` …), and an agent must not be able to
#: point the real key at another host.
API_FIELDS: dict[str, frozenset[str]] = {
    "chat": frozenset({
        "messages", "tools", "tool_choice", "parallel_tool_calls", "temperature", "top_p", "n", "stop",
        "max_tokens", "max_completion_tokens", "presence_penalty", "frequency_penalty", "logit_bias",
        "logprobs", "top_logprobs", "user", "seed", "response_format", "reasoning_effort", "service_tier",
        "prediction", "modalities", "audio", "store", "functions", "function_call", "verbosity", "metadata",
        "web_search_options", "prompt_cache_key", "safety_identifier"}),
    "responses": frozenset({
        "input", "instructions", "tools", "tool_choice", "parallel_tool_calls", "temperature", "top_p",
        "max_output_tokens", "max_tool_calls", "reasoning", "text", "previous_response_id", "store", "include",
        "metadata", "truncation", "user", "prompt_cache_key", "service_tier", "safety_identifier",
        "top_logprobs", "background", "conversation", "prompt"}),
    "messages": frozenset({
        "messages", "system", "max_tokens", "tools", "tool_choice", "temperature", "top_p", "top_k",
        "stop_sequences", "metadata", "thinking", "service_tier", "context_management", "container"}),
}


def api_fields(protocol: Protocol, body: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """(the body's fields of ``protocol``'s public API, the names of the other fields dropped)."""
    allowed = API_FIELDS[protocol] | {"model", "stream", "stream_options"}
    return ({k: v for k, v in body.items() if k in allowed}, sorted(k for k in body if k not in allowed))


def _kwargs(up: UpstreamSpec, protocol: Protocol, body: dict[str, Any], stream: bool) -> dict[str, Any]:
    kw = {k: v for k, v in api_fields(protocol, body)[0].items() if k not in ("model", "stream", "stream_options")}
    kw.update(model=up.litellm_model, api_base=up.base_url, api_key=up.api_key or "none", stream=stream)
    if protocol == "chat" and stream:
        kw["stream_options"] = {"include_usage": True}
    if protocol == "responses":
        kw["use_chat_completions_api"] = not (up.kind == "openai" and up.responses_api)
        kw["drop_params"] = True  # Responses-only fields a Chat endpoint cannot take are dropped
    return kw


def _error(e: BaseException) -> UpstreamError:
    status = getattr(e, "status_code", None)
    if not isinstance(status, int) or status < 400:
        status = 502
    msg = getattr(e, "message", None) or str(e)
    return UpstreamError(status, f"upstream error: {str(msg)[:2000]}")


async def _call(up: UpstreamSpec, protocol: Protocol, body: dict[str, Any], stream: bool):
    m = litellm()
    kw = _kwargs(up, protocol, body, stream)
    try:
        if protocol == "chat":
            return await m.acompletion(**kw)
        if protocol == "responses":
            return await m.aresponses(**kw)
        return await m.anthropic_messages(**kw)
    except Exception as e:  # litellm maps upstream failures to its exception types (all with status_code)
        raise _error(e) from e


def usage_of(protocol: Protocol, body: dict[str, Any] | None) -> tuple[int | None, int | None]:
    u = (body or {}).get("usage") or {}
    if protocol == "chat":
        return u.get("prompt_tokens"), u.get("completion_tokens")
    if protocol == "responses":
        return u.get("input_tokens"), u.get("output_tokens")
    if "input_tokens" not in u and "output_tokens" not in u:
        return None, None
    cached = int(u.get("cache_creation_input_tokens") or 0) + int(u.get("cache_read_input_tokens") or 0)
    return int(u.get("input_tokens") or 0) + cached, u.get("output_tokens")


async def complete(up: UpstreamSpec, protocol: Protocol, body: dict[str, Any],
                   headers: Mapping[str, str] | None = None) -> Outcome:
    """One non-streamed request (``headers``: the agent's, for pass-through). Raises UpstreamError."""
    if passthrough.applies(up, protocol):
        resp = await passthrough.request(up, protocol, body, headers or {}, stream=False)
        out = resp.json()
        pt, ct = usage_of(protocol, out)
        return Outcome(body=out, prompt_tokens=pt, completion_tokens=ct)
    res = await _call(up, protocol, body, stream=False)
    out = _jsonable(res)
    pt, ct = usage_of(protocol, out)
    return Outcome(body=out, prompt_tokens=pt, completion_tokens=ct)


class Stream:
    """An opened upstream stream. Iterate :meth:`sse` for the agent's bytes; :attr:`outcome` is
    complete once iteration ends (also on error: ``outcome.error``)."""

    def __init__(self, protocol: Protocol, it: Any, agent_wants_usage: bool):
        self.protocol = protocol
        self._it = it
        self._agent_wants_usage = agent_wants_usage
        self.outcome = Outcome()

    async def sse(self, on_done: Callable[[], None]) -> AsyncIterator[bytes]:
        """The agent's SSE bytes. The last frame is held back until the outcome is complete and
        ``on_done()`` ran, so the run is metered before the agent can see the end of the stream;
        ``on_done`` also runs when the agent disconnects early."""
        o = self.outcome
        pending: bytes | None = None
        finished = False
        try:
            try:
                async for item in self._it:
                    for data in self._encode(item):
                        if pending is not None:
                            yield pending
                        pending = data
                if self.protocol == "chat":
                    if pending is not None:
                        yield pending
                    pending = b"data: [DONE]\n\n"
            except Exception as e:  # a failure mid-stream: tell the agent in its protocol, record it
                err = _error(e)
                o.error = err.message
                if pending is not None:
                    yield pending
                pending = _stream_error(self.protocol, err)
            self._finish()
            finished = True
            on_done()
            if pending is not None:
                yield pending
        finally:
            if not finished:
                self._finish()
                on_done()

    # -- per protocol ---------------------------------------------------------------------
    def _encode(self, item: Any) -> list[bytes]:
        o = self.outcome
        if self.protocol == "chat":
            raw = isinstance(item, bytes)  # forwarded SSE frame (passthrough) or a litellm chunk
            d = passthrough.frame_data(item) if raw else _jsonable(item)
            if not isinstance(d, dict):
                return []  # "[DONE]" (sent at the end) or a comment frame
            o.events.append(d if raw else item)
            u = d.get("usage")
            if u:
                o.prompt_tokens, o.completion_tokens = u.get("prompt_tokens"), u.get("completion_tokens")
                if not self._agent_wants_usage:
                    if not d.get("choices"):
                        return []
                    d.pop("usage")
                    raw = False
            return [item if raw else b"data: " + json.dumps(d).encode() + b"\n\n"]
        if self.protocol == "responses":
            d = _jsonable(item)
            kind = getattr(item, "type", None) or d.get("type")
            kind = kind.value if isinstance(kind, enum.Enum) else str(kind)
            if kind in ("response.completed", "response.incomplete", "response.failed"):
                o.body = d.get("response")
                o.prompt_tokens, o.completion_tokens = usage_of("responses", o.body)
            return [f"event: {kind}\ndata: ".encode() + json.dumps(d).encode() + b"\n\n"]
        # messages: litellm yields SSE-encoded bytes (or dicts from some paths)
        raw = item if isinstance(item, bytes) else (
            f"event: {item.get('type')}\ndata: {json.dumps(item)}\n\n".encode() if isinstance(item, dict)
            else str(item).encode())
        for line in raw.decode("utf-8", "replace").splitlines():
            if line.startswith("data:"):
                try:
                    o.events.append(json.loads(line[5:].strip()))
                except ValueError:
                    pass
        return [raw]

    def _finish(self) -> None:
        o = self.outcome
        if self.protocol == "chat" and o.events:
            if isinstance(o.events[0], dict):
                o.body = passthrough.assemble_chat(o.events)
            else:
                try:
                    built = litellm().stream_chunk_builder(o.events)
                    o.body = _jsonable(built) if built is not None else None
                except Exception as e:  # assembly is for the log only; the agent got its stream
                    o.body = {"assembly_error": str(e)[:500]}
            o.events = []
        elif self.protocol == "messages":
            o.body, o.prompt_tokens, o.completion_tokens = passthrough.assemble_messages(o.events)
            o.events = []


async def open_stream(up: UpstreamSpec, protocol: Protocol, body: dict[str, Any],
                      headers: Mapping[str, str] | None = None) -> Stream:
    """Open a streamed request (connection errors raise UpstreamError here, before any byte)."""
    if passthrough.applies(up, protocol):
        it = passthrough.sse_frames(await passthrough.request(up, protocol, body, headers or {}, stream=True))
    else:
        it = await _call(up, protocol, body, stream=True)
    wants = bool((body.get("stream_options") or {}).get("include_usage"))
    return Stream(protocol, it, wants)


def error_body(protocol: Protocol, status: int, message: str, kind: str | None = None) -> dict[str, Any]:
    """An error object in the agent's protocol (OpenAI ``{"error": …}`` or Anthropic
    ``{"type": "error", "error": …}``)."""
    if protocol == "messages":
        atype = kind or {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                         404: "not_found_error", 429: "rate_limit_error"}.get(status, "api_error")
        return {"type": "error", "error": {"type": atype, "message": message}}
    otype = kind or ("invalid_request_error" if status < 500 else "server_error")
    return {"error": {"message": message, "type": otype, "param": None, "code": kind or otype}}


def _stream_error(protocol: Protocol, err: UpstreamError) -> bytes:
    body = error_body(protocol, err.status, err.message)
    if protocol == "messages":
        return b"event: error\ndata: " + json.dumps(body).encode() + b"\n\n"
    if protocol == "responses":
        ev = {"type": "error", "code": str(err.status), "message": err.message, "param": None}
        return b"event: error\ndata: " + json.dumps(ev).encode() + b"\n\n"
    return b"data: " + json.dumps(body).encode() + b"\n\n"
