"""``mini-swe-agent``: SWE-agent's minimal bash agent (PyPI ``mini-swe-agent``), host-side.

Why host-side: mini-swe-agent is *designed* to run outside the container (its own
``DockerEnvironment`` runs the agent on the host and each action as a ``docker exec``); inside
the sandbox it would need a Python matching the task image and ~100 MB of dependencies
(litellm, pydantic-core, tokenizers: compiled, per Python version) in every image. Host-side it
needs nothing in the sandbox, works on every backend (it drives our :class:`Sandbox` like the
``shell`` agent does) and still reaches its model only through the run's gateway (host URL +
per-run token, never the provider key).

How: the pinned ``mini-swe-agent`` wheel is downloaded on first use and unpacked once into the
agent cache (:func:`layer.ensure_host_layer`); each run starts
``python -m rollouts.agents.installed.mini_swe_child`` (its own process group) with that
directory on ``PYTHONPATH``. The child runs mini-swe-agent's ``DefaultAgent`` with
``LitellmTextbasedModel`` and the shipped ``mini_textbased.yaml`` prompts; every action comes
back to this process over a pipe and runs in the sandbox under ``timeout -k``. At the agent
deadline the child's process group is killed. Its trajectory (``mini-swe-agent-1.1`` format) is
kept as ``agent/mini-swe-agent.traj.json``.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from pydantic import Field

from rollouts.agents.base import AgentContext, AgentResult
from rollouts.agents.installed.base import Endpoint, InstalledAgent, InstalledOptions
from rollouts.agents.installed.layer import Package, ensure_host_layer
from rollouts.errors import ConfigError
from rollouts.store import atomic_write

DEFAULT_VERSION = "2.4.6"
_REPO_ROOT = Path(__file__).resolve().parents[3]


class MiniSweOptions(InstalledOptions):
    """``agent_options`` of ``mini-swe-agent``."""

    version: str = Field(DEFAULT_VERSION, min_length=1, description="PyPI version of `mini-swe-agent`.")
    step_limit: int = Field(30, ge=1, le=10_000, description="Model calls at most (then status `limit`).")
    command_timeout_sec: float = Field(120, gt=0, le=86_400, description="Timeout of each action (s).")
    config: str = Field("mini_textbased", min_length=1,
                        description="A config shipped with mini-swe-agent (text protocol: `mini_textbased`).")
    model_kwargs: dict[str, Any] = Field(
        {}, description="Extra litellm arguments, e.g. `{temperature = 0.7}`.")


class MiniSweAgent(InstalledAgent):
    """mini-swe-agent, host-side (see module docstring)."""

    name = "mini-swe-agent"
    Options = MiniSweOptions
    session_log_name = "mini-swe-agent.traj.json"

    def packages(self, version: str) -> list[Package]:
        return [Package("mini-swe-agent", version, (("minisweagent/", "minisweagent/"),))]

    def prepare(self, backend, raw_options: dict, image: str, log) -> tuple[tuple[str, str], ...]:
        """Phase ``agent_setup``: the unpacked wheel on the host; nothing to mount."""
        opts = self.Options.model_validate(raw_options)
        ensure_host_layer(self.name, opts.version, self.packages(opts.version), log)
        return ()

    def final_message(self, session_log: str) -> str:
        if not session_log.strip():
            return ""
        msgs = json.loads(session_log).get("messages") or []
        for m in reversed(msgs):
            if m.get("role") == "assistant" and isinstance(m.get("content"), str):
                return m["content"]
        return ""

    def run(self, ctx: AgentContext) -> AgentResult:
        opts: MiniSweOptions = self.options(ctx)
        endpoint = ctx.gateway
        if not isinstance(endpoint, Endpoint) or not endpoint.host_base_url:
            raise ConfigError(f"agent {self.name} needs the model gateway's host URL (ctx.gateway), got {endpoint!r}")
        site = ensure_host_layer(self.name, opts.version, self.packages(opts.version), ctx.log)
        out_dir = ctx.run_dir / "agent"
        out_dir.mkdir(parents=True, exist_ok=True)
        traj = out_dir / self.session_log_name
        cfg = {"task": ctx.task.instruction.strip(), "model_name": f"openai/{endpoint.model}",
               "api_base": endpoint.host_base_url + "/v1", "cwd": ctx.workdir, "config": opts.config,
               "step_limit": opts.step_limit, "wall_time_sec": max(1, int(ctx.remaining())),
               "command_timeout_sec": opts.command_timeout_sec, "output_path": str(traj),
               "model_kwargs": opts.model_kwargs}
        cfg_path = out_dir / "mini-swe-agent.config.json"
        atomic_write(cfg_path, json.dumps(cfg, indent=1))
        env = {k: v for k, v in os.environ.items() if not _secretish(k)}
        env.update(PYTHONPATH=os.pathsep.join([str(site), str(_REPO_ROOT)]), ROLLOUTS_GATEWAY_TOKEN=endpoint.token,
                   MSWEA_SILENT_STARTUP="1", MSWEA_GLOBAL_CONFIG_DIR=str(out_dir / "mswea-config"),
                   LITELLM_LOCAL_MODEL_COST_MAP="True", NO_PROXY="*", no_proxy="*")
        stderr = open(out_dir / "stderr.log", "wb")
        proc = subprocess.Popen([sys.executable, "-m", "rollouts.agents.installed.mini_swe_child", str(cfg_path)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, env=env,
                                text=True, start_new_session=True)
        try:
            done, steps, timed_out = self._serve(ctx, proc, opts)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            stderr.close()
        err_tail = (out_dir / "stderr.log").read_text(errors="replace")[-4000:]
        ctx.log(err_tail)
        final = self.final_message(traj.read_text()) if traj.is_file() else ""
        status = (done or {}).get("exit_status", "")
        notes = (f"# Agent notes\n\nmini-swe-agent {opts.version} ended: {status or 'killed'}.\n\n"
                 f"## Last message\n\n{final.strip()}\n")
        if timed_out or status == "TimeExceeded":
            return AgentResult("timeout", notes=notes, steps=steps)
        if done is None:
            return AgentResult("error", notes=notes, steps=steps, exit_code=proc.returncode,
                               error=f"mini-swe-agent exited with {proc.returncode}: {err_tail[-600:]}")
        if status == "LimitsExceeded":
            return AgentResult("limit", notes=notes, steps=steps, exit_code=0)
        return AgentResult("completed", notes=notes, steps=steps, exit_code=0)

    def _serve(self, ctx: AgentContext, proc: subprocess.Popen, opts: MiniSweOptions
               ) -> tuple[dict | None, int, bool]:
        """Answer the child's exec requests until it is done, dies or the deadline passes.
        Returns (the done message or None, actions run, timed out)."""
        lines: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        steps = 0
        while True:
            left = ctx.remaining()
            if left <= 0:
                return None, steps, True
            try:
                line = lines.get(timeout=min(left, 5.0))
            except queue.Empty:
                continue
            if line is None:
                return None, steps, False
            msg = json.loads(line)
            if msg.get("op") == "done":
                return msg, steps, False
            steps += 1
            ctx.log(f"[step {steps}] $ {msg['command']}")
            t = max(1.0, min(float(msg.get("timeout") or opts.command_timeout_sec), ctx.remaining()))
            r = ctx.sandbox.exec(msg["command"], timeout=t, cwd=msg.get("cwd") or ctx.workdir, env=ctx.env,
                                 output_limit=256 * 1024)
            ctx.log(r.output.rstrip()[:4000])
            info = "The command timed out and was killed." if r.timed_out else ""
            assert proc.stdin is not None
            proc.stdin.write(json.dumps({"output": r.output, "returncode": r.exit_code, "exception_info": info}) + "\n")
            proc.stdin.flush()


def _secretish(name: str) -> bool:
    """Provider credentials of the host never reach the agent process (it has the run token)."""
    up = name.upper()
    return any(s in up for s in ("KEY", "TOKEN", "SECRET", "PASSWORD", "CREDENTIAL"))
