"""What an agent may ask the provider to do: only generate text and call the agent's own tools.

A sandbox has no network, but a provider API can reach the web on the agent's behalf: server-side
tools (web search/fetch, code execution containers, MCP connectors, other models), URLs the
provider (or litellm on the gateway host, or a vLLM server) downloads, files and stored prompts of
the account the real key belongs to. :func:`refusal` names the first such thing in a request; the
gateway then answers 400 in the agent's protocol, records the exchange with ``refused="policy"``
and forwards nothing. Checked on every path (pass-through and litellm translation alike: litellm
turns ``web_search_options`` into Anthropic's server-side ``web_search`` tool and connects to
``mcp`` tools' servers itself).

Allowed tools are the ones the agent executes, per the SDK type definitions
(``openai/types/responses/tool_param.py``, ``openai/types/chat/chat_completion_tool_union_param.py``,
``anthropic/types/tool_union_param.py`` and ``anthropic/types/beta/beta_tool_union_param.py``):

- Chat Completions: ``function``, ``custom`` (and the legacy ``functions`` list).
- Responses: ``function``, ``custom``, ``namespace`` (of function/custom tools), ``local_shell``,
  ``shell`` without an environment or with ``{"type": "local"}``, ``apply_patch``, ``computer`` and
  ``computer_use_preview`` (the agent performs the actions), ``tool_search`` (searches only the
  request's own deferred tools). Refused: ``web_search*``, ``file_search``, ``code_interpreter``,
  ``image_generation``, ``mcp``, ``programmatic_tool_calling``, ``shell`` in a hosted container,
  anything unknown; the top-level ``prompt`` (a stored prompt carries its own tools and model)
  and ``conversation`` (provider-stored state); ``previous_response_id`` unless it names a
  response this run received through the gateway (:func:`stored_state_refusal`: another run's,
  or anything else the account stored, would carry state from outside the run).
- Messages: custom tools (no ``type`` or ``"custom"``), ``bash_*``, ``text_editor_*``,
  ``memory_*``, ``computer_*`` (client-executed computer use), ``tool_search_tool_*``. Refused:
  ``web_search_*``, ``web_fetch_*``, ``code_execution_*``, ``mcp_toolset``, ``advisor_*`` (another
  model, unmetered), ``browser_toolset_*``, anything unknown; the top-level ``mcp_servers``,
  ``container``, ``fallbacks`` (substitute models) and ``billing_policy``.
- Chat: the top-level ``web_search_options``.

Content, in every protocol (messages, input, system, tool results): a URL the provider would fetch
(``image_url``/``file_url``/``video_url``/``audio_url`` … other than a ``data:`` URI; Anthropic
``source.type == "url"``) and a reference to the account's files (``file_id``, ``source.type ==
"file"``, ``container_upload``) are refused. ``metadata`` must be a flat map of strings (litellm
reads its own options from nested metadata).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from rollouts.gateway.models import Protocol

_CHAT_TOOLS = frozenset({"function", "custom"})
_RESPONSES_TOOLS = frozenset({"function", "custom", "namespace", "local_shell", "shell", "apply_patch",
                              "computer", "computer_use_preview", "tool_search"})
_MESSAGES_TOOL_PREFIXES = ("bash_", "text_editor_", "memory_", "computer_", "tool_search_tool_")
_REFUSED_FIELDS: dict[str, dict[str, str]] = {
    "chat": {"web_search_options": "provider-side web search"},
    "responses": {"prompt": "a stored prompt template (it carries its own tools and model)",
                  "conversation": "a provider-stored conversation (state kept outside this run)"},
    "messages": {"mcp_servers": "provider-side MCP connectors",
                 "container": "a provider-side code execution container",
                 "fallbacks": "substitute models (the gateway calls only the configured model)",
                 "billing_policy": "billing another organization"},
}
_HINT = ("this gateway serves sandboxed agents: the provider may only generate text and call the "
         "agent's own tools (function/custom tools run inside the sandbox)")


def _tool_refusal(protocol: Protocol, tool: Any, where: str) -> str | None:
    if not isinstance(tool, Mapping):
        return f"{where} must be an object"
    kind = tool.get("type")
    if protocol == "chat":
        ok = kind in _CHAT_TOOLS
    elif protocol == "responses":
        ok = kind in _RESPONSES_TOOLS
        if kind == "shell":
            env = tool.get("environment")
            ok = env is None or (isinstance(env, Mapping) and env.get("type") == "local")
        elif kind == "namespace":
            for k, inner in enumerate(tool.get("tools") or []):
                if not isinstance(inner, Mapping) or inner.get("type") not in _CHAT_TOOLS:
                    return f"{where}.tools[{k}]: a namespace may hold only function/custom tools"
    else:
        ok = kind in (None, "custom") or (isinstance(kind, str) and kind.startswith(_MESSAGES_TOOL_PREFIXES))
    if ok:
        return None
    return (f"{where} has type {kind!r}, a tool the provider would run itself (it can reach the "
            f"network or another model) or one not known to be executed by the agent")


def _url_refusal(value: Any) -> bool:
    url = value.get("url") if isinstance(value, Mapping) else value
    return isinstance(url, str) and not url.startswith("data:")


def _content_refusal(obj: Any, where: str) -> str | None:
    """The first provider-fetched URL or account file reference in a content tree, else None."""
    if isinstance(obj, list):
        for k, v in enumerate(obj):
            why = _content_refusal(v, f"{where}[{k}]")
            if why:
                return why
        return None
    if not isinstance(obj, Mapping):
        return None
    # Every object of the tree, typed or not (vLLM accepts content parts without "type").
    kind = obj.get("type")
    for key, val in obj.items():
        if key.endswith("_url") and _url_refusal(val):
            return f"{where}.{key}: a URL the provider would download (only data: URIs are accepted)"
        if key == "file_id" and val:
            return f"{where}.file_id: a file stored with the provider's account"
    if kind == "container_upload":
        return f"{where}: a container upload (provider-side files)"
    src = obj.get("source")
    if isinstance(src, Mapping) and src.get("type") in ("url", "file"):
        return (f"{where}.source: type {src.get('type')!r} makes the provider fetch a URL or read an "
                "account file (send the content as base64 or text)")
    for key, val in obj.items():
        if kind in ("tool_use", "server_tool_use", "function_call", "custom_tool_call") and key in ("input", "arguments"):
            continue  # the agent's own tool arguments, not content the provider reads
        if isinstance(val, (list, Mapping)):
            why = _content_refusal(val, f"{where}.{key}")
            if why:
                return why
    return None


def refusal(protocol: Protocol, body: Mapping[str, Any]) -> str | None:
    """Why the gateway must not forward this request (``protocol``'s JSON body), or None.

    The message names the field (e.g. ``tools[1] has type 'web_search_20250305' …``) and ends with
    what is allowed, so an agent (or its user reading the log) knows what to change.
    """
    why = None
    for field, what in _REFUSED_FIELDS[protocol].items():
        if body.get(field) is not None and body.get(field) != []:  # {} enables web search with defaults
            why = f"{field}: {what}"
            break
    if why is None:
        tools = body.get("tools")
        if tools is not None and not isinstance(tools, list):
            why = "tools must be a list"
        for k, tool in enumerate(tools or []):
            why = why or _tool_refusal(protocol, tool, f"tools[{k}]")
    if why is None:
        meta = body.get("metadata")
        if meta is not None and not (isinstance(meta, Mapping) and all(
                isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in meta.items())):
            why = "metadata must be an object of string values"
    if why is None:
        for key in ("messages", "input", "system", "instructions"):
            why = _content_refusal(body.get(key), key)
            if why:
                break
    return None if why is None else f"rollouts gateway refused the request: {why}; {_HINT}"


def stored_state_refusal(body: Mapping[str, Any], own_response_ids: Collection[str]) -> str | None:
    """Why a Responses request's ``previous_response_id`` must not go upstream, or None: allowed
    only when it names a response this run received through the gateway (``own_response_ids``),
    because the provider would otherwise continue from state stored outside the run — another
    run's conversation, or anything else the account behind the real key stored."""
    prev = body.get("previous_response_id")
    if prev is None or (isinstance(prev, str) and prev in own_response_ids):
        return None
    return (f"rollouts gateway refused the request: previous_response_id {str(prev)[:80]!r} is not a response "
            f"this run received through the gateway (provider-stored state from outside the run); {_HINT}")

