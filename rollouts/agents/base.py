"""The agent interface: what acts in a run's sandbox between setup and collection.

An agent gets an :class:`AgentContext` (the started sandbox, the task, limits, a model client when
it needs one) and returns an :class:`AgentResult`. Adding an agent: one module in this package and
one line in ``REGISTRY`` (``rollouts/agents/__init__.py``).

**Options.** Every agent class declares a class attribute ``Options``: a subclass of
:class:`AgentOptions` (pydantic, unknown keys refused, strict types) whose fields — with type,
range (``Field(ge=..., le=...)``), default and a docstring/description — are exactly what the
config's ``agent_options`` table may hold for it. ``check`` and ``run`` validate every table
against it before any container starts (:func:`rollouts.agents.validate_options`); inside
``run`` the agent reads ``self.options(ctx)`` (the validated instance), never the raw dict.
The README's options table is rendered from these models (``tests/test_agent_options.py``).
Pattern::

    class MyAgent(Agent):
        class Options(AgentOptions):
            max_steps: int = Field(20, ge=1, le=10_000, description="Model turns at most.")
        name = "my"

        def run(self, ctx):
            o = self.options(ctx)          # MyAgent.Options
            ...
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from rollouts.sandbox.base import Sandbox


class AgentOptions(BaseModel):
    """Base of every agent's ``Options``: unknown keys are errors, no coercion ("3" is not a
    number, 1 is not true), no inf/nan; frozen (an agent cannot change its own options)."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


@dataclass
class AgentContext:
    """Everything an agent may use. ``deadline`` is a ``time.monotonic()`` value (seconds)."""

    sandbox: Sandbox
    task: Any  # rollouts.task.Task
    workdir: str
    run_dir: Path
    deadline: float
    env: dict[str, str] = field(default_factory=dict)
    options: AgentOptions | dict[str, Any] = field(default_factory=dict)  # validated by Agent.options
    model: str | None = None
    client: Any = None  # rollouts.llm.client.ModelClient when the agent needs a model
    gateway: Any = None  # installed agents: rollouts.agents.installed.base.Endpoint (URL + run token)
    log: Callable[[str], None] = lambda s: None

    def remaining(self) -> float:
        """Seconds left before the agent timeout (may be <= 0)."""
        return self.deadline - time.monotonic()


@dataclass
class AgentResult:
    """How the agent phase ended. ``status``: completed (the agent stopped by itself), timeout
    (wall-time limit), limit (step/token limit reached: graded like completed), error."""

    status: Literal["completed", "timeout", "limit", "error"] = "completed"
    notes: str = ""
    steps: int = 0
    error: str | None = None
    exit_code: int | None = None


class Agent(ABC):
    """Base class. ``needs_model``: whether a model client must be built for it; ``Options``:
    the pydantic model of its ``agent_options`` (none by default: any key is refused)."""

    name: str = ""
    needs_model: bool = False
    uses_gateway: bool = False  # installed agents: model calls through the per-run gateway (ctx.gateway)
    calls_from_sandbox: bool = False  # with uses_gateway: every model call comes from the run's sandbox
    Options: ClassVar[type[AgentOptions]] = AgentOptions

    def options(self, ctx: AgentContext) -> Any:
        """``ctx.options`` as this agent's ``Options`` instance (a dict is validated here:
        pydantic ``ValidationError`` if it does not fit — ``check`` refuses such configs first)."""
        if isinstance(ctx.options, self.Options):
            return ctx.options
        return self.Options.model_validate(ctx.options)

    def prepare(self, backend: Any, options: dict[str, Any], image: str, log: Callable[[str], None]
                ) -> tuple[tuple[str, str], ...]:
        """Phase ``agent_setup``, before the sandbox starts: make the agent's files ready and
        return the read-only volumes to mount, ``((volume, path), ...)``. Default: nothing
        (installed agents build their layer here: ``rollouts/agents/installed/``)."""
        return ()

    def pinned_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """The options recorded on the run (installed agents add their resolved ``version``)."""
        return options

    @abstractmethod
    def run(self, ctx: AgentContext) -> AgentResult:
        """Act in ``ctx.sandbox`` until done or ``ctx.deadline``. Raises SandboxError on infra
        failure (the runner retries), ModelError on a non-transient model failure."""
