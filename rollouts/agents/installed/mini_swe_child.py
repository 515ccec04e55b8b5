"""The mini-swe-agent process (host side) of the ``mini-swe-agent`` agent; not imported by rollouts.

Run as ``python -m rollouts.agents.installed.mini_swe_child CONFIG.json`` with the pinned
mini-swe-agent on ``PYTHONPATH`` and the gateway token in ``ROLLOUTS_GATEWAY_TOKEN``. It builds
mini-swe-agent's own ``DefaultAgent`` + ``LitellmTextbasedModel`` (text protocol: one fenced
``mswea_bash_command`` block per reply, so models without tool calling work) from its shipped
``mini_textbased.yaml``, with an environment whose ``execute`` asks the parent, over this
process's stdin/stdout (one JSON object per line), to run the command in the run's sandbox:

    child → parent  {"op": "exec", "command": str, "cwd": str, "timeout": float}
    parent → child  {"output": str, "returncode": int, "exception_info": str}
    child → parent  {"op": "done", "exit_status": str, "submission": str, "n_calls": int}

Everything else the process prints goes to stderr. The trajectory is saved by mini-swe-agent
itself after every step to the config's ``output_path``.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path
from typing import Any


class BudgetExhausted(Exception):
    """The gateway refused a request: the run's token/cost budget is used up."""


def main(argv: list[str]) -> int:
    cfg = json.loads(Path(argv[1]).read_text())
    proto_out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # stray prints (rich banners, litellm) go to stderr, not into the protocol
    sys.stdout = sys.stderr
    os.environ.setdefault("MSWEA_SILENT_STARTUP", "1")
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ["MSWEA_COST_TRACKING"] = "ignore_errors"  # the gateway meters cost

    import litellm
    import yaml
    from minisweagent.agents.default import DefaultAgent
    from minisweagent.config import get_config_path
    from minisweagent.exceptions import Submitted
    from minisweagent.models.litellm_textbased_model import LitellmTextbasedModel

    class SandboxEnvironment:
        """mini-swe-agent Environment protocol; commands run in the parent's sandbox."""

        def __init__(self, cwd: str, timeout: float, env: dict[str, str]):
            self.config = {"cwd": cwd, "timeout": timeout, "env": env}

        def execute(self, action: dict, cwd: str = "", *, timeout: int | None = None) -> dict[str, Any]:
            req = {"op": "exec", "command": action.get("command", ""), "cwd": cwd or self.config["cwd"],
                   "timeout": timeout or self.config["timeout"]}
            proto_out.write(json.dumps(req) + "\n")
            line = sys.stdin.readline()
            if not line:
                raise SystemExit("parent closed the channel")
            out = json.loads(line)
            lines = out.get("output", "").lstrip().splitlines(keepends=True)
            if lines and lines[0].strip() == "COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT" and out["returncode"] == 0:
                sub = "".join(lines[1:])
                raise Submitted({"role": "exit", "content": sub, "extra": {"exit_status": "Submitted", "submission": sub}})
            return out

        def get_template_vars(self, **kwargs) -> dict[str, Any]:
            return {**self.config, **platform.uname()._asdict(), **kwargs}

        def serialize(self) -> dict:
            return {"info": {"config": {"environment": self.config, "environment_type": "rollouts.sandbox"}}}

    shipped = yaml.safe_load(get_config_path(cfg["config"]).read_text())
    agent_cfg = {**shipped.get("agent", {}), "step_limit": cfg["step_limit"], "cost_limit": 0,
                 "wall_time_limit_seconds": int(cfg["wall_time_sec"]), "output_path": Path(cfg["output_path"])}
    agent_cfg.pop("mode", None)  # interactive-agent setting
    model_cfg = shipped.get("model", {})
    model_kwargs = {**model_cfg.get("model_kwargs", {}), "api_base": cfg["api_base"],
                    "api_key": os.environ["ROLLOUTS_GATEWAY_TOKEN"], **cfg.get("model_kwargs", {})}
    model = LitellmTextbasedModel(**{**model_cfg, "model_name": cfg["model_name"], "model_kwargs": model_kwargs,
                                     "cost_tracking": "ignore_errors"})
    # The gateway refuses a request over the run's budget (429 insufficient_quota, "do not
    # retry"); mini-swe-agent would retry a 429 ten times with back-off: stop at once instead.
    query = model._query

    def _query(messages, **kwargs):
        try:
            return query(messages, **kwargs)
        except litellm.exceptions.RateLimitError as e:
            if "insufficient_quota" in str(e) or "budget of this run" in str(e):
                raise BudgetExhausted(str(e)) from None
            raise

    model._query = _query
    model.abort_exceptions = [*model.abort_exceptions, BudgetExhausted]
    env = SandboxEnvironment(cfg["cwd"], cfg["command_timeout_sec"], shipped.get("environment", {}).get("env", {}))
    agent = DefaultAgent(model, env, **agent_cfg)
    result = agent.run(cfg["task"])
    proto_out.write(json.dumps({"op": "done", "exit_status": result.get("exit_status", ""),
                                "submission": result.get("submission", ""), "n_calls": agent.n_calls}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
