"""Same-protocol forwarding: an agent that speaks the endpoint's own protocol needs no translation,
so its request goes through with ``httpx`` as it came (model name and key replaced), which costs
about a millisecond instead of litellm's tens (``bench/bench_gateway.py``):

- Chat Completions → an OpenAI-compatible endpoint (``{base}/chat/completions``); a stream asks
  the endpoint for usage (``stream_options.include_usage``) and the usage-only chunk is passed on
  only if the agent asked for it too;
- Messages → Anthropic (``{base}/v1/messages``), with the agent's ``anthropic-version`` /
  ``anthropic-beta`` headers.

Only the protocol's public API fields (``proxy.API_FIELDS``) plus :data:`EXTRA_FIELDS` are forwarded;
the rest is dropped and named in ``Exchange.dropped_fields``. An OpenAI- or Anthropic-compatible
upstream can be an aggregator or proxy that routes on body fields (OpenRouter's ``models``,
``provider`` and web-search ``plugins``; a LiteLLM proxy's ``api_base``, ``fallbacks``,
``mock_response``), so the agent's unknown fields must not reach it.

Streams are forwarded frame by frame (SSE); :func:`assemble_chat` / :func:`assemble_messages`
rebuild the final message from the frames for the exchange log.
"""

from __future__ import annotations

import asyncio
import json
import weakref
from collections.abc import AsyncIterator, Mapping
from typing import Any

from rollouts.gateway.models import Protocol, UpstreamSpec

_PASS_HEADERS = ("anthropic-version", "anthropic-beta")

#: Fields forwarded besides the protocol's public API: sampler and template options of the
#: OpenAI-compatible servers (llama.cpp, vLLM) and newer Anthropic request fields that neither route
#: nor bill elsewhere (``fallbacks`` and ``billing_policy`` are refused by the policy).
EXTRA_FIELDS: dict[str, frozenset[str]] = {
    "chat": frozenset({
        "top_k", "min_p", "typical_p", "repetition_penalty", "min_tokens", "ignore_eos", "chat_template_kwargs",
        "cache_prompt", "mirostat", "mirostat_tau", "mirostat_eta", "grammar", "json_schema", "guided_json",
        "guided_regex", "guided_choice", "guided_grammar", "skip_special_tokens", "include_stop_str_in_output",
        "prompt_cache_retention", "prompt_cache_options"}),
    "messages": frozenset({
        "output_config", "cache_control", "speed", "inference_geo", "compaction", "diagnostics", "thread",
        "fallback_credit_token"}),
}


def forwarded(protocol: Protocol, body: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """(the fields of ``body`` forwarded on pass-through, the names of the fields dropped)."""
    from rollouts.gateway.proxy import API_FIELDS

    allowed = API_FIELDS[protocol] | EXTRA_FIELDS.get(protocol, frozenset()) | {"model", "stream", "stream_options"}
    return ({k: v for k, v in body.items() if k in allowed}, sorted(k for k in body if k not in allowed))
_http: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # event loop -> httpx.AsyncClient


def applies(up: UpstreamSpec, protocol: Protocol) -> bool:
    """Whether ``protocol`` is ``up``'s own (forwarded, not translated)."""
    return (protocol == "messages" and up.kind == "anthropic") or (protocol == "chat" and up.kind == "openai")


async def request(up: UpstreamSpec, protocol: Protocol, body: dict[str, Any], headers: Mapping[str, str],
                  stream: bool):
    """POST the request upstream; returns the open httpx response. Raises
    ``proxy.UpstreamError`` (status of the upstream, or 502 when unreachable)."""
    import httpx

    from rollouts.gateway.proxy import UpstreamError

    loop = asyncio.get_running_loop()
    http = _http.get(loop)
    if http is None:  # one connection pool per gateway (each serves on its own loop)
        http = _http[loop] = httpx.AsyncClient(timeout=httpx.Timeout(600.0, connect=30.0), trust_env=False)
    payload = {**forwarded(protocol, body)[0], "model": up.model}
    if protocol == "messages":
        h = {k: headers[k] for k in _PASS_HEADERS if k in headers}
        h.setdefault("anthropic-version", "2023-06-01")
        h["x-api-key"] = up.api_key or "none"
        url = up.base_url.rstrip("/") + "/v1/messages"
    else:
        h = {"authorization": f"Bearer {up.api_key or 'none'}"}
        url = up.base_url.rstrip("/") + "/chat/completions"
        if stream:
            payload["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    h["content-type"] = "application/json"
    req = http.build_request("POST", url, json=payload, headers=h)
    try:
        resp = await http.send(req, stream=stream)
    except httpx.HTTPError as e:
        raise UpstreamError(502, f"upstream unreachable: {type(e).__name__}: {e}") from e
    if resp.status_code >= 400:
        text = (await resp.aread()).decode("utf-8", "replace")
        await resp.aclose()
        try:
            msg = json.loads(text)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            msg = text[:2000]
        raise UpstreamError(resp.status_code, f"upstream error: {msg}")
    return resp


async def sse_frames(resp) -> AsyncIterator[bytes]:
    """An httpx streaming response as whole SSE frames (each ending in a blank line)."""
    buf = b""
    try:
        async for chunk in resp.aiter_raw():
            buf += chunk.replace(b"\r\n", b"\n")
            while b"\n\n" in buf:
                frame, buf = buf.split(b"\n\n", 1)
                yield frame + b"\n\n"
        if buf.strip():
            yield buf + b"\n\n"
    finally:
        await resp.aclose()


def frame_data(frame: bytes) -> dict | str | None:
    """The JSON object of an SSE frame's ``data:`` line(s), the string ``"[DONE]"``, or None."""
    lines = [ln[5:].strip() for ln in frame.decode("utf-8", "replace").splitlines() if ln.startswith("data:")]
    if not lines:
        return None
    data = "\n".join(lines)
    if data == "[DONE]":
        return data
    try:
        return json.loads(data)
    except ValueError:
        return None


def assemble_chat(chunks: list[dict]) -> dict | None:
    """Chat Completions stream chunks → the equivalent ``chat.completion`` object (first choice)."""
    if not chunks:
        return None
    text, reasoning, finish, usage = [], [], None, None
    calls: dict[int, dict] = {}
    for c in chunks:
        usage = c.get("usage") or usage
        for ch in c.get("choices") or []:
            d = ch.get("delta") or {}
            text.append(d.get("content") or "")
            reasoning.append(d.get("reasoning_content") or "")
            for tc in d.get("tool_calls") or []:
                slot = calls.setdefault(tc.get("index", 0), {"id": None, "type": "function",
                                                             "function": {"name": "", "arguments": ""}})
                slot["id"] = tc.get("id") or slot["id"]
                fn = tc.get("function") or {}
                slot["function"]["name"] += fn.get("name") or ""
                slot["function"]["arguments"] += fn.get("arguments") or ""
            finish = ch.get("finish_reason") or finish
    msg: dict[str, Any] = {"role": "assistant", "content": "".join(text) or None}
    if "".join(reasoning):
        msg["reasoning_content"] = "".join(reasoning)
    if calls:
        msg["tool_calls"] = [calls[i] for i in sorted(calls)]
    first = chunks[0]
    return {"id": first.get("id"), "object": "chat.completion", "created": first.get("created"),
            "model": first.get("model"), "choices": [{"index": 0, "message": msg, "finish_reason": finish}],
            "usage": usage}


def assemble_messages(events: list[dict]) -> tuple[dict | None, int | None, int | None]:
    """Anthropic Messages stream events → (the final message, input tokens, output tokens)."""
    from rollouts.gateway.proxy import usage_of

    msg: dict[str, Any] | None = None
    blocks: dict[int, dict] = {}
    partial: dict[int, str] = {}
    pt = ct = None
    for ev in events:
        t = ev.get("type")
        if t == "message_start":
            msg = dict(ev.get("message") or {})
            pt, _ = usage_of("messages", {"usage": msg.get("usage") or {}})
        elif t == "content_block_start":
            blocks[ev["index"]] = dict(ev.get("content_block") or {})
        elif t == "content_block_delta":
            b, d = blocks.setdefault(ev["index"], {}), ev.get("delta") or {}
            if d.get("type") == "text_delta":
                b["text"] = b.get("text", "") + d.get("text", "")
            elif d.get("type") == "input_json_delta":
                partial[ev["index"]] = partial.get(ev["index"], "") + d.get("partial_json", "")
            elif d.get("type") == "thinking_delta":
                b["thinking"] = b.get("thinking", "") + d.get("thinking", "")
        elif t == "message_delta":
            if msg is not None:
                msg.update(ev.get("delta") or {})
            u = ev.get("usage") or {}
            if u.get("output_tokens") is not None:
                ct = u["output_tokens"]
            if u.get("input_tokens") and not pt:
                pt, _ = usage_of("messages", {"usage": u})
    for i, s in partial.items():
        try:
            blocks[i]["input"] = json.loads(s) if s else {}
        except ValueError:
            blocks[i]["input"] = {"_unparsed": s}
    if msg is not None:
        msg["content"] = [blocks[i] for i in sorted(blocks)]
        msg["usage"] = {"input_tokens": pt, "output_tokens": ct}
    return msg, pt, ct
