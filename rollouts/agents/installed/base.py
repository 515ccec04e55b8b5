"""The installed-agent seam: a third-party agent CLI that runs *inside* the run's sandbox.

An installed agent is one module with one subclass of :class:`InstalledAgent` declaring:
- ``packages(version)``: the PyPI wheels (pinned) and which of their files form the agent layer;
- ``Options``: a pydantic model of its ``agent_options`` (``version`` selects the release; it is
  recorded with the run's options in the manifest);
- ``command(...)``: the argv that runs it non-interactively on the instruction, and the files
  (config) it needs, written into the sandbox before it starts;
- ``collect(...)``: its final message and session log, read back after it ends.
and one line in ``rollouts/agents/__init__.py``'s REGISTRY.

Lifecycle: :meth:`InstalledAgent.prepare` (phase ``agent_setup``, before the sandbox starts)
returns the read-only volumes to mount (the layer, :mod:`.layer`); :meth:`InstalledAgent.run`
writes the config, runs the command under the agent deadline with ``timeout -k`` inside the
sandbox (its own process group: the whole tree dies at the deadline), then collects. The model is
reached only through ``ctx.gateway`` (an :class:`Endpoint`: the per-run gateway's URL as the
sandbox sees it and the per-run token; never a provider key).
"""

from __future__ import annotations

import json
import shlex
from abc import abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import Field

from rollouts.agents.base import Agent, AgentContext, AgentOptions, AgentResult
from rollouts.agents.installed.layer import LAYER_MOUNT, Package, ensure_layer
from rollouts.errors import ConfigError
from rollouts.gateway import RunLimits
from rollouts.sandbox.base import ExecResult

STATE_DIR = "/var/rollouts-agent"  # the agent's HOME, config and session logs in the sandbox
SESSION_LOG = f"{STATE_DIR}/session.log"  # the agent's stdout (its JSONL / stream-json events)
STDERR_LOG = f"{STATE_DIR}/stderr.log"


@dataclass(frozen=True)
class Endpoint:
    """How the agent reaches its model: ``base_url`` (no trailing slash, without ``/v1``) as seen
    from inside the sandbox, ``token`` (the per-run gateway token), ``model`` (the name the agent
    sends), ``host_base_url`` (the same gateway as seen from the host, for host-side agents)."""

    base_url: str
    token: str
    model: str
    host_base_url: str | None = None


class InstalledOptions(AgentOptions):
    """Options every installed agent takes (each agent sets the default ``version``)."""

    version: str = Field("", min_length=1, description="Agent release (PyPI version of its package).")
    max_total_tokens: int | None = Field(
        None, ge=1, description="Gateway budget: prompt + completion tokens of the run (then status `limit`).")
    max_cost_usd: float | None = Field(None, gt=0, description="Gateway budget: USD of the run (then status `limit`).")


class CliOptions(InstalledOptions):
    """Options of agents whose CLI runs in the sandbox."""

    extra_args: list[str] = Field([], description="Arguments appended to the agent's command line.")


@dataclass
class Launch:
    """What :meth:`SandboxCliAgent.command` returns: argv (without the prompt), the prompt (passed
    last, after ``extra_args`` and ``--``), environment, files to write first."""

    argv: list[str]
    prompt: str
    env: dict[str, str] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)


class InstalledAgent(Agent):
    """Base class of installed agents: pinned packages, options, the layer (see module doc)."""

    needs_model = False  # the gateway, not a host-side client, carries its model traffic
    uses_gateway = True
    # Every model request comes from inside the run's sandbox: its token is then bound to the
    # sandbox's address on the gateway network (Gateway.bind_peer). False for host-side loops.
    calls_from_sandbox = False
    Options: ClassVar[type[InstalledOptions]] = InstalledOptions
    session_log_name: ClassVar[str] = "session.log"  # file name under <run_dir>/agent/

    @abstractmethod
    def packages(self, version: str) -> list[Package]:
        """The wheels (pinned to ``version``) whose members form the layer."""

    def prepare(self, backend: Any, raw_options: dict[str, Any], image: str, log) -> tuple[tuple[str, str], ...]:
        """Phase ``agent_setup``: ensure the layer exists; returns the volumes to mount
        read-only. ConfigError on a backend without volumes, EnvironmentNotReady when the wheels
        cannot be downloaded."""
        if getattr(backend, "name", "") != "docker":
            raise ConfigError(f"agent {self.name} needs the docker backend (its layer is a Docker volume); "
                              f"backend {getattr(backend, 'name', '?')!r} is not supported yet")
        opts = self.Options.model_validate(raw_options)
        layer = ensure_layer(backend.client, self.name, opts.version, self.packages(opts.version), image, log)
        return ((layer.volume, LAYER_MOUNT),)


    def run_limits(self, options: dict[str, Any]) -> RunLimits:
        """The run's gateway budget from its options."""
        o = self.Options.model_validate(options)
        return RunLimits(max_total_tokens=o.max_total_tokens, max_cost_usd=o.max_cost_usd)

    def trajectory_meta(self, entry: Any) -> dict[str, Any]:
        """``agent`` fields of the run's ATIF trajectory (name, version, model)."""
        return {"agent_name": self.name, "agent_version": self.Options.model_validate(entry.agent_options).version,
                "model_name": entry.model}

    def pinned_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """``options`` with the resolved ``version`` (the default when not given): the manifest pins it."""
        return {**options, "version": self.Options.model_validate(options).version}


class SandboxCliAgent(InstalledAgent):
    """An installed agent whose CLI runs inside the sandbox from the mounted layer.
    ``session_dirs``: folders the CLI writes its own session files to, copied after the run to
    ``<run_dir>/agent/<name>/`` (``(sandbox path, name)`` pairs)."""

    session_dirs: ClassVar[tuple[tuple[str, str], ...]] = ()
    calls_from_sandbox = True

    @abstractmethod
    def command(self, ctx: AgentContext, opts: Any, endpoint: Endpoint, instruction: str) -> Launch:
        """The launch of the agent on ``instruction`` in ``ctx.workdir``."""

    @abstractmethod
    def final_message(self, session_log: str) -> str:
        """The agent's last message, from its session log (``""`` if it wrote none)."""

    def run(self, ctx: AgentContext) -> AgentResult:
        """Run the agent's command once under the deadline and collect what it left."""
        opts = self.options(ctx)
        endpoint = ctx.gateway
        if not isinstance(endpoint, Endpoint):
            raise ConfigError(f"agent {self.name} needs the model gateway (ctx.gateway), got {endpoint!r}")
        launch = self.command(ctx, opts, endpoint, ctx.task.instruction.strip())
        sb = ctx.sandbox
        r = sb.exec(["mkdir", "-p", f"{STATE_DIR}/home"], timeout=30)
        if not r.ok:
            return AgentResult("error", error=f"cannot create {STATE_DIR}: {r.output[-300:]}")
        for path, data in launch.files.items():
            sb.put_file(path, data, mode=0o600)
        argv = [*launch.argv, *opts.extra_args, "--", launch.prompt]
        script = f"exec {shlex.join(argv)} </dev/null >{SESSION_LOG} 2>{STDERR_LOG}"
        env = {"HOME": f"{STATE_DIR}/home", **ctx.env, **launch.env}
        ctx.log(f"$ {shlex.join(argv)}")
        res = sb.exec(script, timeout=max(1.0, ctx.remaining()), cwd=ctx.workdir, env=env)
        return self.collect(ctx, res)

    def collect(self, ctx: AgentContext, res: ExecResult) -> AgentResult:
        """Copy the session log and stderr to ``<run_dir>/agent/`` and turn the exit into a
        result: timeout, completed (exit 0) or error (the stderr tail as the reason)."""
        out = ctx.run_dir / "agent"
        out.mkdir(parents=True, exist_ok=True)
        logs = {}
        for src, name in ((SESSION_LOG, self.session_log_name), (STDERR_LOG, "stderr.log")):
            data = ctx.sandbox.get_file(src) if _exists(ctx, src) else b""
            (out / name).write_bytes(data)
            logs[name] = data.decode("utf-8", errors="replace")
        for src, name in self.session_dirs:
            if ctx.sandbox.exec(["test", "-d", src], timeout=30).exit_code == 0:
                ctx.sandbox.get_dir(src, out / name)
        session, stderr = logs[self.session_log_name], logs["stderr.log"]
        ctx.log(stderr[-4000:])
        final = self.final_message(session)
        steps = self.count_steps(session)
        notes = f"# Agent notes\n\n{self.name} exited with {res.exit_code}.\n\n## Last message\n\n{final.strip()}\n"
        if res.timed_out:
            return AgentResult("timeout", notes=notes, steps=steps, exit_code=res.exit_code)
        if res.exit_code != 0:
            tail = (stderr.strip() or session.strip())[-600:]
            return AgentResult("error", notes=notes, steps=steps, exit_code=res.exit_code,
                               error=f"{self.name} exited with {res.exit_code}: {tail}")
        return AgentResult("completed", notes=notes, steps=steps, exit_code=0)

    def count_steps(self, session_log: str) -> int:
        """Number of tool calls in the session log (0 when the agent does not say)."""
        return 0


def _exists(ctx: AgentContext, path: str) -> bool:
    return ctx.sandbox.exec(["test", "-f", path], timeout=30).exit_code == 0


def jsonl_events(jsonl: str) -> list[dict]:
    """The JSON objects of an agent's JSONL session log (Codex ``--json``, Claude Code
    ``stream-json``), in order; non-JSON lines and a torn last line of a killed agent are skipped."""
    out = []
    for line in jsonl.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a torn last line of a killed agent
    return out
