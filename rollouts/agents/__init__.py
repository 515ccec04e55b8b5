"""Agents. Add one: a module here (an :class:`Agent` subclass with its ``Options`` model) plus
one line in ``REGISTRY``."""

from __future__ import annotations

import importlib
import types
import typing

from pydantic import ValidationError

from rollouts.agents.base import Agent, AgentContext, AgentOptions, AgentResult

REGISTRY: dict[str, str] = {
    "shell": "rollouts.agents.shell:ShellAgent",
    "oracle": "rollouts.agents.oracle:OracleAgent",
    "nop": "rollouts.agents.nop:NopAgent",
    "llm": "rollouts.agents.llm:LLMAgent",
    "rlm": "rollouts.agents.rlm:RLMAgent",
    "codex": "rollouts.agents.installed.codex:CodexAgent",
    "claude-code": "rollouts.agents.installed.claude_code:ClaudeCodeAgent",
    "mini-swe-agent": "rollouts.agents.installed.mini_swe_agent:MiniSweAgent",
}

# pydantic error type -> how the config error reads ("tasks[3].agent_options.max_steps: expected an integer")
_EXPECTED = {
    "int_type": "expected an integer",
    "int_from_float": "expected an integer",
    "float_type": "expected a number",
    "bool_type": "expected true or false",
    "string_type": "expected a string",
    "finite_number": "expected a finite number",
    "literal_error": None,  # pydantic's own message lists the choices
}


def agent_class(name: str) -> type[Agent]:
    """The class registered as ``name`` (KeyError if unknown)."""
    mod, cls = REGISTRY[name].split(":")
    return getattr(importlib.import_module(mod), cls)


def get_agent(name: str) -> Agent:
    """A new instance of the agent registered as ``name`` (KeyError if unknown)."""
    return agent_class(name)()


def validate_options(name: str, options: dict) -> tuple[AgentOptions | None, str, str]:
    """Validate an ``agent_options`` table against agent ``name``'s ``Options``.

    Returns ``(options, "", "")`` when valid, else ``(None, key, message)`` for the first bad key
    (``key`` is the dotted path inside the table, e.g. ``max_steps``); unknown keys name the known
    ones. Never raises for bad input (the caller builds the ConfigError with file and field)."""
    model = agent_class(name).Options
    try:
        return model.model_validate(options), "", ""
    except ValidationError as err:
        e = err.errors()[0]
        key = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            known = ", ".join(model.model_fields) or "none"
            return None, key, f"unknown option for agent {name!r} (known: {known})"
        bound = {"greater_than_equal": "≥", "greater_than": ">", "less_than_equal": "≤", "less_than": "<"}
        if e["type"] in bound:
            msg = f"expected a value {bound[e['type']]} {next(iter(e.get('ctx', {}).values()), '?')}"
        else:
            msg = _EXPECTED.get(e["type"]) or e["msg"].replace("Input should be", "expected", 1)
        got = repr(e.get("input"))
        return None, key, f"{msg} (got {got if len(got) <= 40 else got[:39] + '…'})"


def _type_name(ann: object) -> str:
    """``int`` / ``number`` / ``string`` / ``true|false`` / ``a | b`` for the options table."""
    if isinstance(ann, types.UnionType) or typing.get_origin(ann) is typing.Union:
        return " or ".join(_type_name(a) for a in typing.get_args(ann) if a is not type(None))
    if typing.get_origin(ann) is typing.Literal:
        return " | ".join(repr(a) for a in typing.get_args(ann))
    return {int: "integer", float: "number", str: "string", bool: "true/false"}.get(ann, str(ann))


def _range(meta: list) -> str:
    parts = []
    for m in meta:
        for attr, sym in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
            v = getattr(m, attr, None)
            if v is not None:
                parts.append(f"{sym} {v:g}" if isinstance(v, float) else f"{sym} {v}")
    return ", ".join(parts)


def options_table() -> str:
    """Markdown table of every registered agent's options (name, type, range, default, meaning),
    rendered from the ``Options`` models; the README holds exactly this text."""
    rows = ["| agent | option | type | range | default | meaning |", "|---|---|---|---|---|---|"]
    for name in REGISTRY:
        fields = agent_class(name).Options.model_fields
        if not fields:
            rows.append(f"| `{name}` | (none) | | | | |")
        for key, f in fields.items():
            default = "(see meaning)" if f.default is None else f"`{f.default!r}`"
            rows.append(f"| `{name}` | `{key}` | {_type_name(f.annotation)} | {_range(f.metadata)} | "
                        f"{default} | {(f.description or '').replace('|', '/')} |")
    return "\n".join(rows) + "\n"


__all__ = ["Agent", "AgentContext", "AgentOptions", "AgentResult", "REGISTRY", "agent_class", "get_agent",
           "options_table", "validate_options"]
