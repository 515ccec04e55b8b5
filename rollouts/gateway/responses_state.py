"""Responses API conversation state, kept by the gateway for each run: a ``previous_response_id``
naming one of the run's own responses is expanded into the items it stands for, because the
upstream is reached by translation (litellm's Responses→Chat bridge keeps no state of its own).

Semantics as OpenAI documents ``previous_response_id`` (API reference, "Create a model response"):
the model sees the previous response's input items and output items, recursively, then the new
input; the previous request's ``instructions`` are not carried over. Output items that a Chat
upstream cannot take back (``reasoning``, whose content is provider-encrypted) are dropped.
Which ids a run may name at all is :func:`rollouts.gateway.policy.stored_state_refusal`'s job.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# item types carried from a previous request/response into the next request's input
CARRIED = frozenset({"message", "function_call", "function_call_output", "custom_tool_call",
                     "custom_tool_call_output"})


def input_items(value: Any) -> list[Any]:
    """A Responses ``input`` as a list of items: a string is one user message; None is empty."""
    if value is None:
        return []
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    return list(value)


def _carried(item: Any) -> bool:
    return not isinstance(item, Mapping) or item.get("type", "message") in CARRIED


def expand(body: Mapping[str, Any], responses: Mapping[str, tuple[Mapping[str, Any], Mapping[str, Any]]]) -> dict:
    """``body`` without ``previous_response_id``, its ``input`` preceded by the conversation that id
    names. ``responses``: response id → (the request as the agent sent it, the response it got),
    for this run only. Raises KeyError for an id not in ``responses`` (refused before, by policy)."""
    prev = body.get("previous_response_id")
    chain: list[tuple[Mapping[str, Any], Mapping[str, Any]]] = []
    seen: set[str] = set()
    while prev is not None and prev not in seen:  # a cycle cannot happen with real ids; guard anyway
        seen.add(prev)
        req, resp = responses[prev]
        chain.append((req, resp))
        prev = req.get("previous_response_id")
    items: list[Any] = []
    for req, resp in reversed(chain):
        items += [x for x in input_items(req.get("input")) if _carried(x)]
        items += [x for x in resp.get("output") or [] if _carried(x)]
    out = {k: v for k, v in body.items() if k != "previous_response_id"}
    out["input"] = items + input_items(body.get("input"))
    return out
