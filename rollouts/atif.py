"""ATIF, the Agent Trajectory Interchange Format (Harbor RFC 0001, ``docs/rfcs/0001-trajectory-format.md``
in laude-institute/harbor), as pydantic models, and the writers of ``agent/trajectory.json``.

Every agent's trajectory is written in ATIF so Harbor's viewer, its converters and SFT/RL
pipelines read it, and so does ``eval-rollouts view``:

- our ``shell``, ``llm`` and ``rlm`` agents: :func:`rollouts.atif_agents.from_native` turns their
  own record into ATIF steps; the record's richer fields go under ``extra`` (root: the agent's
  full native record under ``extra["rollouts"]``; steps: exit codes, timings, sub-calls);
- installed agents: :func:`trajectory_from_exchanges` builds the steps from the model gateway's
  exchange log (one agent step per model call; tool results sent back in the next request become
  that step's observation).

Schema (v1.4; the fields we write exist since v1.2): root ``{schema_version, session_id,
agent {name, version, model_name, extra}, steps[], notes, final_metrics, extra}``; a step
``{step_id (1..n in order), timestamp, source (system | user | agent), model_name,
reasoning_effort, message, reasoning_content, tool_calls[{tool_call_id, function_name,
arguments{}}], observation {results[{source_call_id, content, subagent_trajectory_ref}]},
metrics {prompt_tokens, completion_tokens, cached_tokens, cost_usd, …, extra}, extra}``.
As in Harbor's models, unknown fields are refused, agent-only fields (model_name,
reasoning_*, tool_calls, metrics) appear on agent steps only, and step ids run 1..n.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SCHEMA_VERSION = "ATIF-v1.4"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ToolCall(_Strict):
    """One tool call of an agent step: its id (matched by an observation result's ``source_call_id``), the
    tool's name and its JSON arguments."""

    tool_call_id: str
    function_name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class SubagentTrajectoryRef(_Strict):
    """A sub-agent's own trajectory that an observation result refers to (its session id, optional path)."""

    session_id: str
    trajectory_path: str | None = None
    extra: dict[str, Any] | None = None


class ObservationResult(_Strict):
    """The result of one tool call (``source_call_id``) or a free observation (None): its text content."""

    source_call_id: str | None = None
    content: str | None = None
    subagent_trajectory_ref: list[SubagentTrajectoryRef] | None = None


class Observation(_Strict):
    """What the environment returned to an agent step: one result per tool call."""

    results: list[ObservationResult] = Field(default_factory=list)


class Metrics(_Strict):
    """Per-step LLM metrics. ``prompt_tokens`` includes cached tokens (``cached_tokens`` is the
    subset served from a cache); ``cost_usd`` in US dollars."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    cost_usd: float | None = None
    prompt_token_ids: list[int] | None = None
    completion_token_ids: list[int] | None = None
    logprobs: list[float] | None = None
    extra: dict[str, Any] | None = None


class FinalMetrics(_Strict):
    """Totals over the trajectory: tokens (prompt includes cached), ``total_cost_usd`` in US dollars (None =
    unknown), step count."""

    total_prompt_tokens: int | None = None
    total_completion_tokens: int | None = None
    total_cached_tokens: int | None = None
    total_cost_usd: float | None = None
    total_steps: int | None = None
    extra: dict[str, Any] | None = None


class Agent(_Strict):
    """The agent that produced the trajectory: name, version, model and free ``extra`` (e.g. its options)."""

    name: str
    version: str
    model_name: str | None = None
    extra: dict[str, Any] | None = None


class Step(_Strict):
    """One step (ids 1..n): a ``system``/``user`` message, or an ``agent`` turn with its model, tool calls,
    observation and metrics. ValueError (pydantic ValidationError) when agent-only fields appear on other
    steps."""

    step_id: int = Field(ge=1)
    timestamp: str | None = None
    source: Literal["system", "user", "agent"]
    model_name: str | None = None
    reasoning_effort: str | float | None = None
    message: str = ""
    reasoning_content: str | None = None
    tool_calls: list[ToolCall] | None = None
    observation: Observation | None = None
    metrics: Metrics | None = None
    extra: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _agent_only(self) -> Step:
        if self.source != "agent":
            bad = [f for f in ("model_name", "reasoning_effort", "reasoning_content", "tool_calls", "metrics")
                   if getattr(self, f) is not None]
            if bad:
                raise ValueError(f"step {self.step_id}: {', '.join(bad)} only allowed on agent steps")
        return self


class Trajectory(_Strict):
    """A whole ATIF trajectory (root). ValidationError unless ``schema_version`` is ATIF-v1.x and the step
    ids run 1..n in order."""

    schema_version: str = SCHEMA_VERSION
    session_id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    agent: Agent
    steps: list[Step] = Field(default_factory=list)
    notes: str | None = None
    final_metrics: FinalMetrics | None = None
    extra: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _sequential(self) -> Trajectory:
        if not self.schema_version.startswith("ATIF-v1."):
            raise ValueError(f"schema_version {self.schema_version!r}: expected ATIF-v1.x")
        for i, s in enumerate(self.steps, 1):
            if s.step_id != i:
                raise ValueError(f"steps[{i - 1}].step_id is {s.step_id}, expected {i} (ids run 1..n in order)")
        return self

    def add(self, source: Literal["system", "user", "agent"], message: str = "", **fields: Any) -> Step:
        """Append a step with the next id; returns it. Fields as in :class:`Step`."""
        step = Step(step_id=len(self.steps) + 1, source=source, message=message or "", **fields)
        self.steps.append(step)
        return step

    def totals(self, cost_known: bool = True, extra: dict[str, Any] | None = None) -> FinalMetrics:
        """Set and return ``final_metrics`` summed over the agent steps' metrics (cost None when
        ``cost_known`` is False or any step lacks it)."""
        ms = [s.metrics for s in self.steps if s.metrics is not None]
        costs = [m.cost_usd for m in ms]
        cached = [m.cached_tokens for m in ms if m.cached_tokens is not None]
        self.final_metrics = FinalMetrics(
            total_prompt_tokens=sum(m.prompt_tokens or 0 for m in ms),
            total_completion_tokens=sum(m.completion_tokens or 0 for m in ms),
            total_cached_tokens=sum(cached) if cached else None,
            total_cost_usd=sum(costs) if cost_known and costs and None not in costs else None,
            total_steps=len(self.steps), extra=extra)
        return self.final_metrics


def write(path: Path, traj: Trajectory) -> None:
    """Validate and write ``traj`` atomically (``rollouts.store.atomic_write_json``)."""
    from rollouts.store import atomic_write_json

    atomic_write_json(path, Trajectory.model_validate(traj.model_dump()).model_dump(mode="json", exclude_none=True))


def read(path: Path) -> Trajectory:
    """Parse and validate an ATIF file (pydantic ValidationError names the bad field)."""
    return Trajectory.model_validate_json(Path(path).read_text())


def trajectory_from_exchanges(exchanges: list, *, agent_name: str, agent_version: str,
                              model_name: str | None = None, session_id: str | None = None,
                              notes: str | None = None, extra: dict[str, Any] | None = None) -> Trajectory:
    """The ATIF trajectory of a run from its gateway exchanges (``rollouts.gateway.Exchange``
    objects or their dicts). See :mod:`rollouts.atif_exchanges`."""
    from rollouts.atif_exchanges import from_exchanges

    return from_exchanges(exchanges, agent_name=agent_name, agent_version=agent_version, model_name=model_name,
                          session_id=session_id, notes=notes, extra=extra)
