"""The real CLI with faults injected for tests/test_outcomes.py, chosen by ``ROLLOUTS_TEST_FAULTS``
(comma-separated): ``boom_agent`` registers agent ``boom`` whose code raises RuntimeError;
``harness`` makes artifact collection raise KeyError (a bug of ours); ``copyout_once`` makes the
first copy-out of the agent's diff (the collection exec) fail as the Docker transport would
(SandboxError)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rollouts.agents import REGISTRY  # noqa: E402
from rollouts.agents.base import Agent, AgentContext, AgentResult  # noqa: E402
from rollouts.errors import SandboxError  # noqa: E402


class BoomAgent(Agent):
    """An agent whose own code fails."""

    name = "boom"

    def run(self, ctx: AgentContext) -> AgentResult:
        raise RuntimeError("the agent's own bug")


def _install(faults: set[str]) -> None:
    if "boom_agent" in faults:
        REGISTRY["boom"] = "tests.fault_cli:BoomAgent"
    if "harness" in faults:
        from rollouts import task_runtime

        def broken_collect(*a, **k):
            raise KeyError("injected harness bug")

        task_runtime.collect = broken_collect
    if "copyout_once" in faults:  # the diff comes out on the collection exec's stdout
        from rollouts.sandbox.docker import DockerSandbox

        real = DockerSandbox.exec
        state = {"failed": False}

        def exec_(self, cmd, **kw):
            if (kw.get("env") or {}).get("NONCE", "").startswith("rollouts-collected-") and not state["failed"]:
                state["failed"] = True
                raise SandboxError("exec failed: injected connection reset while copying out the diff")
            return real(self, cmd, **kw)

        DockerSandbox.exec = exec_

if __name__ == "__main__":
    _install(set(filter(None, os.environ.get("ROLLOUTS_TEST_FAULTS", "").split(","))))
    from rollouts.cli import main

    main()
