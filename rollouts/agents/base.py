"""The agent interface: what acts in a run's sandbox between setup and collection.

An agent gets an :class:`AgentContext` (the started sandbox, the task, limits, a model client when
it needs one) and returns an :class:`AgentResult`. Adding an agent: one module in this package and
one line in ``REGISTRY`` (``rollouts/agents/__init__.py``).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rollouts.sandbox.base import Sandbox


@dataclass
class AgentContext:
    """Everything an agent may use. ``deadline`` is a ``time.monotonic()`` value (seconds)."""

    sandbox: Sandbox
    task: Any  # rollouts.task.Task
    workdir: str
    run_dir: Path
    deadline: float
    env: dict[str, str] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
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
    """Base class. ``needs_model``: whether a model client must be built for it."""

    name: str = ""
    needs_model: bool = False

    @abstractmethod
    def run(self, ctx: AgentContext) -> AgentResult:
        """Act in ``ctx.sandbox`` until done or ``ctx.deadline``. Raises SandboxError on infra
        failure (the runner retries), ModelError on a non-transient model failure."""
