"""The real CLI with faults injected for tests/test_outcomes.py, chosen by ``ROLLOUTS_TEST_FAULTS``
(comma-separated): ``boom_agent`` registers agent ``boom`` whose code raises RuntimeError;
``harness`` makes artifact collection raise KeyError (a bug of ours); ``copyout_once`` makes the
first copy-out of the agent's diff fail as the Docker transport would (SandboxError)."""

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
        import rollouts.lifecycle as life

        def broken_collect(*a, **k):
            raise KeyError("injected harness bug")

        life.collect_artifacts = broken_collect
    if "copyout_once" in faults:
        from rollouts.sandbox.docker import DockerSandbox

        real = DockerSandbox.get_file
        state = {"failed": False}

        def get_file(self, path, max_bytes=64 * 1024 * 1024):
            if path.endswith("diff.patch") and not state["failed"]:
                state["failed"] = True
                raise SandboxError(f"copy out of sandbox failed ({path}): injected connection reset")
            return real(self, path, max_bytes)

        DockerSandbox.get_file = get_file


if __name__ == "__main__":
    _install(set(filter(None, os.environ.get("ROLLOUTS_TEST_FAULTS", "").split(","))))
    from rollouts.cli import main

    main()
