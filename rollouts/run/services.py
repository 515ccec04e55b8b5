"""What a rollout needs besides sandboxes, checked before any run and started once: model keys
and backend constraints of its agents, the local model server (one slot per run in flight) and
the model gateways of installed agents."""

from __future__ import annotations

from collections.abc import Callable

from rollouts.agents import get_agent
from rollouts.config import BenchmarkConfig
from rollouts.errors import ConfigError

# Installed agents' prompts (Codex, Claude Code) are many thousands of tokens: 32k (Qwen2.5's
# context) per slot for them.
INSTALLED_SLOT_CTX = 32768


def check_agents(config: BenchmarkConfig) -> None:
    """Before any run: a model key for every remote model an agent needs (EnvironmentNotReady,
    exit 3), and installed agents only on the docker backend (ConfigError, exit 2)."""
    prices = config.pricing or None
    if problems := agent_backend_problems(config):
        raise ConfigError(problems[0][1], file=str(config.path), field=problems[0][0])
    for e in config.entries:
        agent = get_agent(e.agent)
        if e.model != "local" and agent.needs_model:
            from rollouts.llm.client import ModelClient

            ModelClient(e.model, price_overrides=prices).close()  # no key -> exit 3
        if e.model != "local" and agent.uses_gateway:
            from rollouts.gateway import UpstreamSpec

            UpstreamSpec.for_model(e.model)  # no key -> exit 3


def _where(entry) -> str:
    """Where an entry comes from in the config: ``tasks[i]`` or ``datasets[i]``."""
    return entry.where or f"tasks[{entry.index}]"


def agent_backend_problems(config: BenchmarkConfig) -> list[tuple[str, str]]:
    """(field, message) per entry whose agent its backend cannot run: installed agents (their
    layer is a Docker volume, their model gateway a Docker network) on any backend but docker."""
    return [(f"{_where(e)}.backend", f"agent {e.agent!r} runs on the docker backend only for now (its "
             f"layer is a Docker volume), not {e.backend!r}")
            for e in config.entries if get_agent(e.agent).uses_gateway and e.backend != "docker"]


def grading_problems(config: BenchmarkConfig) -> list[tuple[str, str]]:
    """(field, message) per entry whose grading its backend cannot do: trusted-toolchain grading
    (shared mode, strict stop, toolchain verified from outside: rollouts.grading.integrity) on a
    backend whose sandboxes cannot list their changed paths. Run anyway, every run would fail the
    toolchain check as an agent error — a wrong 0, not a result — so it is refused before any run."""
    from rollouts.grading.integrity import task_label
    from rollouts.sandbox import backend_class

    out = []
    for e in config.entries:
        if task_label(e.task.meta) == "trusted-toolchain" and not backend_class(e.backend).lists_changed_paths:
            out.append((f"{_where(e)}.backend",
                        f"task {e.task.name!r} is graded in its agent's sandbox with a verified toolchain "
                        f"(trusted-toolchain), which needs a backend that lists a sandbox's changed paths "
                        f"(docker), not {e.backend!r}: use backend = \"docker\", or grade it fresh "
                        f"(tests.mode = \"fresh\", isolated) or with the agent's toolchain "
                        f"(tests.toolchain = \"agent\", agent-controlled)"))
    return out


def check_grading(config: BenchmarkConfig, grade: bool = True) -> None:
    """ConfigError (exit 2) naming the first entry of :func:`grading_problems`; nothing to check
    when runs are not graded (``--no-eval``)."""
    problems = grading_problems(config) if grade else []
    if problems:
        field, msg = problems[0]
        more = f" (and {len(problems) - 1} more entr{'y' if len(problems) == 2 else 'ies'})" if len(problems) > 1 else ""
        raise ConfigError(msg + more, file=str(config.path), field=field)


def start_local_model(config: BenchmarkConfig, log: Callable[[str], None]):
    """The local model server when an entry's agent uses ``model = "local"`` (started, ready),
    else None: ``rollout_slots(parallel)`` slots, so runs do not queue for the model behind each
    other (a queue wait would count against their agent time)."""
    local = [get_agent(e.agent) for e in config.entries if e.model == "local"]
    if not any(a.needs_model or a.uses_gateway for a in local):
        return None
    from rollouts.llm.local_server import SLOT_CTX, LocalModelServer, rollout_slots

    n = rollout_slots(config.parallel)
    slot_ctx = INSTALLED_SLOT_CTX if any(a.uses_gateway for a in local) else SLOT_CTX
    log(f"starting the local model server (llama.cpp, Qwen2.5-Coder-0.5B, {n} slot(s))")
    server = LocalModelServer(n_ctx=slot_ctx * n, n_parallel=n)
    server.start()
    log(f"local model server ready at {server.base_url}")
    return server


def make_gateways(config: BenchmarkConfig, docker_client: Callable[[], object], rollout_id: str,
                  local_base_url: Callable[[], str]):
    """The rollout's gateways for installed agents (None when no entry has one)."""
    if not any(get_agent(e.agent).uses_gateway for e in config.entries):
        return None
    from rollouts.agents.installed.runtime import AgentGateways

    return AgentGateways(docker_client(), rollout_id, local_base_url=local_base_url, prices=config.pricing or None)
