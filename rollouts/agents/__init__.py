"""Agents. Add one: a module here plus one line in ``REGISTRY``."""

from __future__ import annotations

import importlib

from rollouts.agents.base import Agent, AgentContext, AgentResult

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


def get_agent(name: str) -> Agent:
    """A new instance of the agent registered as ``name`` (KeyError if unknown)."""
    mod, cls = REGISTRY[name].split(":")
    return getattr(importlib.import_module(mod), cls)()


__all__ = ["Agent", "AgentContext", "AgentResult", "REGISTRY", "get_agent"]
