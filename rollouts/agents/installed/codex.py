"""``codex``: OpenAI's Codex CLI, the static binary of the ``openai-codex-cli-bin`` wheel.

Command (inside the sandbox, in the task's workdir)::

    codex exec --json --dangerously-bypass-approvals-and-sandbox --skip-git-repo-check \\
        --color never -C <workdir> -m <model> -o <state>/last_message.txt \\
        --disable plugins --disable remote_plugin --disable apps [extra_args] -- <instruction>

with ``CODEX_HOME=<state>/codex`` holding a generated ``config.toml`` whose only model provider
is the run's gateway (``base_url = <gateway>/v1``, ``wire_api = "responses"``: Codex 0.163
refuses ``"chat"``; the gateway translates to the endpoint's protocol), the token read from
``ROLLOUTS_GATEWAY_TOKEN`` (``env_key``); no login, no approvals (our sandbox is the sandbox:
``--dangerously-bypass-approvals-and-sandbox``; bubblewrap would need privileges anyway).
Its ``--json`` event stream (JSONL) is kept as ``agent/codex.jsonl``, its session files as
``agent/codex-sessions/``. Flags checked against
``codex exec --help`` of 0.163.0 and codex-rs/core/src/config (model_providers).
"""

from __future__ import annotations

import json

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

DEFAULT_VERSION = "0.163.0"
CODEX_HOME = f"{STATE_DIR}/codex"
LAST_MESSAGE = f"{STATE_DIR}/last_message.txt"
INSTRUCTIONS = f"{CODEX_HOME}/instructions.md"
PATH = f"{LAYER_MOUNT}/codex/codex-path:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class CodexOptions(CliOptions):
    """``agent_options`` of ``codex``."""

    version: str = Field(DEFAULT_VERSION, min_length=1, description="PyPI version of `openai-codex-cli-bin`.")
    reasoning_effort: str | None = Field(None, description="`model_reasoning_effort` (unset: the model's default).")
    context_window: int | None = Field(
        None, ge=1024, description="`model_context_window` in tokens (set it for small local models).")
    disable_features: list[str] = Field(
        ["plugins", "remote_plugin", "apps"],
        description="Codex features turned off (`--disable`); the default ones only reach the network at start.")
    instructions: str | None = Field(
        None, description="Replaces Codex's built-in instructions (`model_instructions_file`); for small models.")


def _toml_str(s: str) -> str:
    return json.dumps(s)  # a JSON string is a valid TOML basic string


def config_toml(endpoint: Endpoint, opts: CodexOptions) -> str:
    """The generated ``$CODEX_HOME/config.toml``: the gateway as the only provider."""
    lines = [
        f"model = {_toml_str(endpoint.model)}",
        'model_provider = "rollouts"',
        'approval_policy = "never"',
        'sandbox_mode = "danger-full-access"',
        "check_for_update_on_startup = false",
        # the sandbox has no network and the gateway refuses provider-side tools (policy.py)
        'web_search = "disabled"',
    ]
    if opts.reasoning_effort:
        lines.append(f"model_reasoning_effort = {_toml_str(opts.reasoning_effort)}")
    if opts.context_window:
        lines.append(f"model_context_window = {int(opts.context_window)}")
    if opts.instructions is not None:
        lines.append(f"model_instructions_file = {_toml_str(INSTRUCTIONS)}")
    lines += [
        "[analytics]", "enabled = false",
        "[model_providers.rollouts]",
        'name = "rollouts gateway"',
        f"base_url = {_toml_str(endpoint.base_url + '/v1')}",
        'env_key = "ROLLOUTS_GATEWAY_TOKEN"',
        'wire_api = "responses"',
        "request_max_retries = 2",
        "stream_max_retries = 2",
    ]
    return "\n".join(lines) + "\n"


class CodexAgent(SandboxCliAgent):
    """Codex CLI (see module docstring)."""

    name = "codex"
    Options = CodexOptions
    session_log_name = "codex.jsonl"
    session_dirs = ((f"{CODEX_HOME}/sessions", "codex-sessions"),)  # Codex's own rollout files

    def packages(self, version: str) -> list[Package]:
        return [Package("openai-codex-cli-bin", version, (("codex_cli_bin/", "codex/"),))]

    def command(self, ctx: AgentContext, opts: CodexOptions, endpoint: Endpoint, instruction: str) -> Launch:
        argv = [f"{LAYER_MOUNT}/codex/bin/codex", "exec", "--json", "--dangerously-bypass-approvals-and-sandbox",
                "--skip-git-repo-check", "--color", "never", "-C", ctx.workdir, "-m", endpoint.model,
                "-o", LAST_MESSAGE]
        for feat in opts.disable_features:
            argv += ["--disable", feat]
        env = {"CODEX_HOME": CODEX_HOME, "ROLLOUTS_GATEWAY_TOKEN": endpoint.token, "PATH": PATH,
               "RUST_LOG": "warn", "NO_COLOR": "1"}
        files = {f"{CODEX_HOME}/config.toml": config_toml(endpoint, opts).encode()}
        if opts.instructions is not None:
            files[INSTRUCTIONS] = opts.instructions.encode()
        return Launch(argv, instruction, env, files)

    def final_message(self, session_log: str) -> str:
        last = ""
        for ev in jsonl_events(session_log):
            item = ev.get("item") or {}
            if ev.get("type") == "item.completed" and item.get("type") == "agent_message":
                last = item.get("text", "")
        return last

    def count_steps(self, session_log: str) -> int:
        return sum(1 for ev in jsonl_events(session_log)
                   if ev.get("type") == "item.completed"
                   and (ev.get("item") or {}).get("type") in ("command_execution", "file_change", "mcp_tool_call"))

