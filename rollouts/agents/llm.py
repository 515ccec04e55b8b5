"""``llm``: the plain long-context baseline — one model call with the instruction and the whole context.

For a task made by ``rollouts prepare`` the prompt is ``metadata.prompt_template`` with the
context (``metadata.context_file`` in the workspace, default ``context.txt``) put in place of
``{context}``; for any other task it is the instruction followed by that file, if present. The
context is cut in the middle (head and tail kept, a marker between) so that the prompt fits
``context_window_tokens`` minus the answer budget and a safety margin; the cut is recorded in the
trajectory (``truncation``: tokens before/after, tokenizer). Token counts come from
:func:`rollouts.families.token_counter` (``cl100k_base``, else chars/4), which is not the served
model's own tokenizer: if the server still rejects the prompt as too long, the budget shrinks by
20 % and the call is retried (at most 3 times, each recorded). The reply, stripped, is written to
``answer.txt`` in the workspace (``metadata.answer_file``) with ``sandbox.put_file``; the trajectory
goes to ``<run_dir>/agent/trajectory.json``.

Options (``agent_options``): :class:`LLMAgent.Options`.
"""

from __future__ import annotations

import posixpath
import time
from dataclasses import dataclass

from pydantic import Field

from rollouts import atif_agents
from rollouts.agents.base import Agent, AgentContext, AgentOptions, AgentResult
from rollouts.errors import ContextOverflow, SandboxFileNotFound
from rollouts.families import ANSWER_FILE, CONTEXT_FILE, token_counter, truncate_middle
from rollouts.store import now_iso

SYSTEM = "You are a careful assistant. Answer from the given text only, as briefly as possible."
LOCAL_WINDOW = 8192
REMOTE_WINDOW = 128_000


@dataclass
class TaskIO:
    """What a long-context agent needs from a task: the question, the prompt template (one
    ``{context}``), the context text, and where the answer goes (absolute path in the sandbox)."""

    question: str
    template: str
    context: str
    context_path: str | None
    answer_path: str


def task_io(ctx: AgentContext) -> TaskIO:
    """Read the task's question/context (see the module docstring) from its metadata and sandbox."""
    meta = ctx.task.meta.metadata or {}
    cfile = meta.get("context_file", CONTEXT_FILE)
    cpath = posixpath.join(ctx.workdir, cfile)
    try:
        context = ctx.sandbox.get_file(cpath).decode("utf-8", errors="replace")
    except SandboxFileNotFound:  # no context file: the instruction alone
        context, cpath = "", None
    instruction = ctx.task.instruction.strip()
    question = meta.get("question") or instruction
    template = meta.get("prompt_template") or (
        instruction + "\n\n" + (f"{cfile}:\n{{context}}" if cpath else "{context}")
    )
    return TaskIO(
        question, template, context, cpath, posixpath.join(ctx.workdir, meta.get("answer_file", ANSWER_FILE))
    )


def default_window(model: str | None) -> int:
    """Default context window (tokens) when the options give none: 8192 for the local model."""
    return LOCAL_WINDOW if model == "local" else REMOTE_WINDOW


class LLMAgent(Agent):
    """Plain single-call baseline (see the module docstring)."""

    class Options(AgentOptions):
        """``agent_options`` of ``llm``."""

        context_window_tokens: int | None = Field(
            None, ge=16, le=10_000_000, description="The model's context window; default 8192 for `local`, else 128000."
        )
        max_answer_tokens: int = Field(128, ge=1, le=1_000_000, description="`max_tokens` of the call.")
        temperature: float = Field(0.0, ge=0, le=2, description="Sampling temperature.")
        margin: float = Field(
            0.08, ge=0, lt=1, description="Fraction of the window kept free (tokenizer mismatch, chat template)."
        )

    name = "llm"
    needs_model = True

    def run(self, ctx: AgentContext) -> AgentResult:
        opts = self.options(ctx)
        o = opts.model_dump()
        window = opts.context_window_tokens or default_window(ctx.model)
        max_answer, temperature, margin = opts.max_answer_tokens, opts.temperature, opts.margin
        io = task_io(ctx)
        tc = token_counter()
        overhead = tc.count(SYSTEM) + tc.count(io.template.replace("{context}", "")) + 16
        budget = int(window * (1 - margin)) - max_answer - overhead
        traj = {
            "schema_version": 1,
            "agent": self.name,
            "model": ctx.model,
            "options": o,
            "started_at": now_iso(),
            "question": io.question,
            "attempts": [],
        }
        path = ctx.run_dir / "agent" / "trajectory.json"
        original = tc.count(io.context)
        reply = None
        for attempt in range(1, 4):
            kept = truncate_middle(io.context, max(budget, 0), tc.count)
            traj["truncation"] = {
                "tokenizer": tc.name,
                "window_tokens": window,
                "context_tokens": original,
                "kept_tokens": tc.count(kept),
                "budget_tokens": budget,
                "truncated": kept != io.context,
                "strategy": "middle",
            }
            prompt = io.template.replace("{context}", kept, 1)
            left = ctx.remaining()
            if left <= 1:
                traj["status"] = "timeout"
                atif_agents.save("llm", path, traj)
                return AgentResult(
                    "timeout", notes="# Agent notes\n\nWall-time limit reached before the call.\n"
                )
            t0 = time.monotonic()
            try:
                reply = ctx.client.chat(
                    [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}],
                    max_tokens=max_answer,
                    temperature=temperature,
                    timeout=min(left, 900),
                )
                traj["attempts"].append(
                    {
                        "attempt": attempt,
                        "budget_tokens": budget,
                        "ok": True,
                        "llm_sec": round(time.monotonic() - t0, 3),
                    }
                )
                break
            except ContextOverflow as e:  # the server's tokenizer counts more: shrink and retry
                if attempt == 3:
                    traj.update(status="error", error=str(e))
                    atif_agents.save("llm", path, traj)
                    raise
                traj["attempts"].append(
                    {"attempt": attempt, "budget_tokens": budget, "ok": False, "error": str(e)[:500]}
                )
                ctx.log(f"[llm] prompt too long for the server, shrinking the context budget: {e}")
                budget = int(budget * 0.8)
        assert reply is not None
        answer = (reply.text or "").strip()
        ctx.sandbox.put_file(io.answer_path, answer.encode("utf-8"))
        t = traj["truncation"]
        ctx.log(f"[llm] context {t['context_tokens']} -> {t['kept_tokens']} tokens; answer: {answer[:200]!r}")
        traj.update(
            status="completed",
            response=reply.text,
            answer=answer,
            prompt_tokens=reply.prompt_tokens,
            completion_tokens=reply.completion_tokens,
            finish_reason=reply.finish_reason,
            usage=ctx.client.usage.to_dict(),
            finished_at=now_iso(),
        )
        atif_agents.save("llm", path, traj)
        cut = (
            f"context truncated {t['context_tokens']} → {t['kept_tokens']} tokens ({t['tokenizer']})"
            if t["truncated"]
            else f"whole context sent ({t['context_tokens']} tokens, {t['tokenizer']})"
        )
        notes = f"# Agent notes\n\nOne call; {cut}.\n\n## Answer\n\n{answer}\n"
        return AgentResult("completed", notes=notes, steps=1)
