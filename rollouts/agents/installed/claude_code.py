"""``claude-code``: Anthropic's Claude Code CLI, the binary bundled in the ``claude-agent-sdk`` wheel
(``claude_agent_sdk/_bundled/claude``, 402 MB, glibc x86-64; runs on our Debian base image).

Command (inside the sandbox, in the task's workdir)::

    claude -p --output-format stream-json --verbose --dangerously-skip-permissions \\
        --model <model> [--max-turns N] [--system-prompt S] [--tools T,...] [extra_args] -- <instruction>

Headless (``-p``), no permission prompts (``--dangerously-skip-permissions``, allowed as root
because ``IS_SANDBOX=1``: our sandbox has no network but the gateway). ``ANTHROPIC_BASE_URL``
points at the run's gateway and ``ANTHROPIC_API_KEY`` is the per-run gateway token (sent as
``x-api-key``); the small/fast model is the same model, so every call is metered alike.
Auto-updates, telemetry, error reporting and other non-essential traffic are off. The
stream-json events are kept as ``agent/claude.jsonl``, its transcripts as
``agent/claude-projects/``. Flags from ``claude --help`` of 2.1.332.
"""

from __future__ import annotations

from pydantic import Field

from rollouts.agents.base import AgentContext
from rollouts.agents.installed.base import (
    STATE_DIR,
    CliOptions,
    Endpoint,
    Launch,
    SandboxCliAgent,
    jsonl_events,
)
from rollouts.agents.installed.layer import LAYER_MOUNT, Package

DEFAULT_VERSION = "0.2.189"  # claude-agent-sdk; bundles Claude Code 2.1.332


class ClaudeCodeOptions(CliOptions):
    """``agent_options`` of ``claude-code``."""

    version: str = Field(DEFAULT_VERSION, min_length=1,
                         description="PyPI version of `claude-agent-sdk` (it pins the bundled Claude Code).")
    max_turns: int | None = Field(None, ge=1, description="`--max-turns` (unset: Claude Code's default).")
    system_prompt: str | None = Field(None, description="`--system-prompt`: replaces the default one (small models).")
    tools: list[str] | None = Field(None, description="`--tools`: the built-in tools offered (unset: the default set).")
    max_output_tokens: int | None = Field(
        None, ge=1, description="`CLAUDE_CODE_MAX_OUTPUT_TOKENS`: max_tokens of each request (unset: Claude Code's).")


class ClaudeCodeAgent(SandboxCliAgent):
    """Claude Code CLI (see module docstring)."""

    name = "claude-code"
    Options = ClaudeCodeOptions
    session_log_name = "claude.jsonl"
    session_dirs = ((f"{STATE_DIR}/claude/projects", "claude-projects"),)  # Claude Code's own transcripts

    def packages(self, version: str) -> list[Package]:
        return [Package("claude-agent-sdk", version, (("claude_agent_sdk/_bundled/", "claude/"),))]

    def command(self, ctx: AgentContext, opts: ClaudeCodeOptions, endpoint: Endpoint, instruction: str) -> Launch:
        argv = [f"{LAYER_MOUNT}/claude/claude", "-p", "--output-format", "stream-json", "--verbose",
                "--dangerously-skip-permissions", "--model", endpoint.model]
        if opts.max_turns:
            argv += ["--max-turns", str(opts.max_turns)]
        if opts.system_prompt is not None:
            argv += ["--system-prompt", opts.system_prompt]
        if opts.tools is not None:
            argv += ["--tools", ",".join(opts.tools)]
        env = {
            "ANTHROPIC_BASE_URL": endpoint.base_url,
            "ANTHROPIC_API_KEY": endpoint.token,
            "ANTHROPIC_MODEL": endpoint.model,
            "ANTHROPIC_SMALL_FAST_MODEL": endpoint.model,
            "ANTHROPIC_DEFAULT_HAIKU_MODEL": endpoint.model,
            "CLAUDE_CONFIG_DIR": f"{STATE_DIR}/claude",
            "IS_SANDBOX": "1",
            "DISABLE_AUTOUPDATER": "1",
            "DISABLE_TELEMETRY": "1",
            "DISABLE_ERROR_REPORTING": "1",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "NO_COLOR": "1",
        }
        if opts.max_output_tokens:
            env["CLAUDE_CODE_MAX_OUTPUT_TOKENS"] = str(opts.max_output_tokens)
        return Launch(argv, instruction, env)

    def final_message(self, session_log: str) -> str:
        last = ""
        for ev in jsonl_events(session_log):
            if ev.get("type") == "result" and isinstance(ev.get("result"), str):
                last = ev["result"]
            elif ev.get("type") == "assistant":
                texts = [c.get("text", "") for c in (ev.get("message") or {}).get("content") or []
                         if isinstance(c, dict) and c.get("type") == "text"]
                if texts:
                    last = "\n".join(texts)
        return last

    def count_steps(self, session_log: str) -> int:
        return sum(1 for ev in jsonl_events(session_log) if ev.get("type") == "assistant"
                   for c in (ev.get("message") or {}).get("content") or []
                   if isinstance(c, dict) and c.get("type") == "tool_use")

