"""``rlm``: a Recursive Language Model (Zhang, Kraska, Khattab 2025) whose REPL runs in the sandbox.

The model never sees the long context directly: it is the variable ``context`` of a Python REPL.
The model writes ```python blocks, sees their (truncated) output, calls ``llm_query(prompt)`` (a
sub-model call) or ``rlm_query(prompt)`` (a child RLM whose ``context`` is ``prompt``) from its
code, and ends with ``FINAL(answer)`` or ``FINAL_VAR(name)`` written outside code blocks. The
answer is written to ``answer.txt`` in the workspace.
This module is the agent (options, set-up, answer, notes); the loop of one run is
:mod:`rollouts.agents.rlm_loop`.

**Where code runs — the channel.** Model code runs only inside the run's sandbox (network off,
the task's cpu/memory/pid limits), in a persistent REPL process (:mod:`rollouts.agents.rlm_repl`,
stdlib only) started detached by one ``exec``. Host and REPL talk through a file mailbox in
``/tmp/rlm/s<n>/`` using nothing but the :class:`~rollouts.sandbox.base.Sandbox` interface
(``put_file`` / ``exec`` / ``get_file``), so it works on Docker and Modal alike and needs no
network inside the sandbox:

1. the host ``put_file``\\ s ``cell_<k>.py.tmp``; its next poll ``exec`` renames it into place;
2. the host long-polls with one short ``exec`` (a bash loop of ≤ 2 s) that reports ``OUT`` (the
   cell finished: ``out_<k>.json``), ``REQ <file>`` (the cell called ``llm_query``/``rlm_query``
   and is blocked), ``DEAD`` (the REPL died) or ``WAIT``;
3. on ``REQ`` the host reads the request with ``get_file``, makes the model call itself (or runs a
   child RLM — another REPL process in the same sandbox — recursively) and ``put_file``\\ s
   ``resp_<id>.json``; the blocked call in the sandbox picks it up and returns the text.

``max_depth``: 1 = no recursion (``rlm_query`` falls back to ``llm_query``); depth d REPLs may
spawn children while d + 1 < max_depth. Per-cell timeouts are enforced in the REPL (SIGALRM,
paused while a call waits for the host) and, as a backstop, by the host (the REPL is killed and
restarted with a fresh namespace). Usage is counted per depth (root calls at depth 0, a
sub-call made from depth d at d + 1; the ``llm_query`` / ``rlm_query`` counters are kept at
the calling depth) and every call — ``sub_model``'s too — is added to the run's
``ctx.client.usage``. The trajectory (every iteration: the reply, each cell's code, output and
nested sub-calls, children's iterations inside) is saved after every iteration.

Options: :class:`RLMAgent.Options`. ``sub_model`` is served by the same endpoint as the run's model
(its base URL and key). After ``max_iterations`` steps the model gets one more call asking for
FINAL; without one, that reply (fences and an ``Answer:`` label stripped) is the answer
(``answer_source`` = forced, agent status ``limit``).
"""

from __future__ import annotations

import contextlib
from typing import Any

from pydantic import Field

from rollouts.agents.base import Agent, AgentContext, AgentOptions, AgentResult
from rollouts.agents.llm import task_io
from rollouts.agents.rlm_channel import REPL_SOURCE, RLM_DIR
from rollouts.agents.rlm_loop import RLMRun
from rollouts.errors import DeadlineExceeded, ModelError
from rollouts.store import now_iso


class RLMOptions(AgentOptions):
    """``agent_options`` of ``rlm``."""

    max_depth: int = Field(1, ge=1, le=8, description="1 = no recursion; depth d may spawn children while d + 1 < max_depth.")
    max_iterations: int = Field(6, ge=1, le=1000, description="Root iterations (model turns) at most.")
    child_max_iterations: int | None = Field(None, ge=1, le=1000, description="Iterations of a child RLM; default max_iterations.")
    sub_model: str | None = Field(None, min_length=1, description="Model of sub-calls (same endpoint); default the run's model.")
    cell_timeout_sec: float = Field(60, gt=0, le=86_400, description="Timeout of one REPL cell (s).")
    max_reply_tokens: int = Field(512, ge=1, le=1_000_000, description="`max_tokens` of each root call.")
    sub_max_tokens: int = Field(256, ge=1, le=1_000_000, description="`max_tokens` of each sub-call.")
    temperature: float = Field(0.0, ge=0, le=2, description="Sampling temperature.")
    output_chars: int = Field(2000, ge=100, le=1_000_000, description="Characters of a cell's output shown to the model.")
    context_window_tokens: int | None = Field(
        None, ge=16, le=10_000_000, description="Root model's window; default 8192 for `local`, else 128000."
    )
    sub_context_window_tokens: int | None = Field(
        None, ge=16, le=10_000_000, description="Sub-model's window; default as context_window_tokens."
    )
    max_sub_calls: int = Field(40, ge=0, le=100_000, description="llm_query/rlm_query calls per run at most.")


class RLMAgent(Agent):
    """Recursive Language Model agent (see the module docstring)."""

    Options = RLMOptions
    name = "rlm"
    needs_model = True

    def run(self, ctx: AgentContext) -> AgentResult:
        io = task_io(ctx)
        run = RLMRun(ctx, self.name, self.options(ctx))
        run.traj.update(question=io.question, context_path=io.context_path, context_chars=len(io.context))
        ctx.sandbox.put_file(f"{RLM_DIR}/rlm_repl.py", REPL_SOURCE.read_bytes())
        root: dict[str, Any] = {}
        run.traj["root"] = root
        status, error = "completed", None
        try:
            answer, _ = run.solve(io.question, io.context_path, io.context, 0, root)
        except (TimeoutError, DeadlineExceeded):  # the agent's time is up (a cell, or a model call)
            answer, status = root.get("answer"), "timeout"
        except ModelError:
            run.save("error")
            raise
        except RuntimeError as e:  # the REPL could not start
            answer, status, error = None, "error", str(e)
        finally:
            with contextlib.suppress(Exception):  # the sandbox may already be gone
                ctx.sandbox.exec(
                    f"for p in {RLM_DIR}/s*/pid; do kill -9 $(cat $p) 2>/dev/null; done", timeout=30
                )
            if run.sub_client is not ctx.client:
                run.sub_client.close()
        if answer is not None:
            ctx.sandbox.put_file(io.answer_path, answer.encode("utf-8"))
        if status == "completed" and root.get("answer_source") == "forced":
            status = "limit"
        run.traj.update(answer=answer, answer_source=root.get("answer_source"), finished_at=now_iso())
        run.save(status)
        rows = "\n".join(
            f"| {d} | {s['calls']} | {s['prompt_tokens']} | {s['completion_tokens']} | "
            f"{s['cost_usd'] if s['cost_usd'] is not None else '—'} | {s['iterations']} | "
            f"{s['llm_query']} | {s['rlm_query']} |"
            for d, s in sorted(run.by_depth.items())
        )
        notes = (
            f"# Agent notes\n\nRLM (max_depth={run.max_depth}, sub_model={run.sub_model}): "
            f"{len(root.get('iterations', []))} root iteration(s), answer via {root.get('answer_source')}.\n\n"
            f"## Answer\n\n{answer}\n\n## Usage per depth\n\n| depth | calls | prompt tokens | completion tokens "
            f"| cost USD | iterations | llm_query | rlm_query |\n|---|---|---|---|---|---|---|---|\n{rows}\n"
        )
        return AgentResult(status, notes=notes, steps=len(root.get("iterations", [])), error=error)
