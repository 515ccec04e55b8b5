"""``rlm``: a Recursive Language Model (Zhang, Kraska, Khattab 2025) whose REPL runs in the sandbox.

The model never sees the long context directly: it is the variable ``context`` of a Python REPL.
The model writes ```python blocks, sees their (truncated) output, calls ``llm_query(prompt)`` (a
sub-model call) or ``rlm_query(prompt)`` (a child RLM whose ``context`` is ``prompt``) from its
code, and ends with ``FINAL(answer)`` or ``FINAL_VAR(name)`` written outside code blocks. The
answer is written to ``answer.txt`` in the workspace.

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
import re
import time
from typing import Any

from pydantic import Field

from rollouts import atif_agents
from rollouts.agents.base import Agent, AgentContext, AgentOptions, AgentResult
from rollouts.agents.llm import default_window, task_io
from rollouts.agents.rlm_channel import (
    CHILD_QUESTION,
    FENCE_MARK,
    FIRST,
    REPL_SOURCE,
    RLM_DIR,
    STAT_KEYS,
    SYSTEM,
    ReplSession,
    code_blocks,
    parse_final,
)
from rollouts.errors import ContextOverflow, DeadlineExceeded, ModelError
from rollouts.families import token_counter, truncate_middle
from rollouts.llm.client import Usage
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


class _Run:
    """State of one ``rlm`` agent run: options, clients, per-depth usage, sessions, trajectory."""

    def __init__(self, ctx: AgentContext, agent_name: str, opts: RLMOptions):
        o = opts.model_dump()
        self.ctx, self.o = ctx, o
        self.max_depth = opts.max_depth
        self.max_iter = opts.max_iterations
        self.child_iter = opts.child_max_iterations or self.max_iter
        self.cell_timeout = opts.cell_timeout_sec
        self.max_reply = opts.max_reply_tokens
        self.sub_max = opts.sub_max_tokens
        self.temperature = opts.temperature
        self.obs_chars = opts.output_chars
        self.window = opts.context_window_tokens or default_window(ctx.model)
        self.sub_model = opts.sub_model or ctx.model
        self.sub_window = opts.sub_context_window_tokens or default_window(self.sub_model)
        self.max_sub_calls = opts.max_sub_calls
        self.sub_client = ctx.client
        if self.sub_model != ctx.model:
            from rollouts.llm.client import ModelClient

            c = ctx.client
            self.sub_client = ModelClient(
                self.sub_model,
                base_url=c.base_url,
                api_key=c._client.api_key,
                price_overrides=c.price_overrides,
                deadline=c.deadline,
            )
        self.tc = token_counter()
        self.sessions: list[ReplSession] = []
        self.sub_calls = 0
        self.by_depth: dict[int, dict[str, Any]] = {}
        self.traj: dict[str, Any] = {
            "schema_version": 1,
            "agent": agent_name,
            "model": ctx.model,
            "sub_model": self.sub_model,
            "options": o,
            "started_at": now_iso(),
        }

    # ------------------------------------------------------------------ bookkeeping
    def _stat(self, depth: int) -> dict[str, Any]:
        return self.by_depth.setdefault(depth, {**dict.fromkeys(STAT_KEYS, 0), "cost_usd": 0.0})

    def save(self, status: str) -> None:
        self.traj.update(
            status=status,
            usage=self.ctx.client.usage.to_dict(),
            usage_by_depth={str(k): v for k, v in sorted(self.by_depth.items())},
        )
        atif_agents.save("rlm", self.ctx.run_dir / "agent" / "trajectory.json", self.traj)

    def chat(self, messages: list[dict], depth: int, sub: bool, max_tokens: int):
        """One model call at ``depth`` (the sub-model when ``sub``), counted and rolled up."""
        client = self.sub_client if sub else self.ctx.client
        left = self.ctx.remaining()
        if left <= 5:
            raise TimeoutError("agent wall-time limit reached")
        r = client.chat(messages, max_tokens=max_tokens, temperature=self.temperature, timeout=min(left, 900))
        if client is not self.ctx.client:
            self.ctx.client.usage.add(Usage(r.prompt_tokens, r.completion_tokens, 1, r.cost_usd))
        s = self._stat(depth)
        s["calls"] += 1
        s["prompt_tokens"] += r.prompt_tokens
        s["completion_tokens"] += r.completion_tokens
        s["cost_usd"] = None if s["cost_usd"] is None or r.cost_usd is None else s["cost_usd"] + r.cost_usd
        return r

    def _fit_history(self, messages: list[dict]) -> list[dict]:
        """Drop the oldest iterations (keep system + first user) until the prompt fits the window."""
        budget = int(self.window * 0.9) - self.max_reply

        def size(ms: list[dict]) -> int:
            return sum(int(self.tc.count(m["content"]) * 1.15) + 8 for m in ms)

        msgs = list(messages)
        dropped = 0
        while size(msgs) > budget and len(msgs) > 4:
            del msgs[2:4]
            dropped += 1
        if dropped:
            msgs.insert(
                2,
                {"role": "user", "content": f"[{dropped} earlier step(s) omitted to fit the context window]"},
            )
        return msgs

    # ------------------------------------------------------------------ the loop
    def sub_llm(self, prompt: str, depth: int) -> tuple[str, dict]:
        """An ``llm_query`` at ``depth`` (prompt cut in the middle to fit the sub-model's window)."""
        budget = int(self.sub_window * 0.9) - self.sub_max - 32
        kept = truncate_middle(prompt, budget, self.tc.count)
        rec = {
            "kind": "llm",
            "depth": depth,
            "prompt": prompt[:4000],
            "prompt_chars": len(prompt),
            "truncated": kept != prompt,
        }
        for _ in range(3):
            try:
                r = self.chat([{"role": "user", "content": kept}], depth, True, self.sub_max)
                rec.update(
                    response=r.text,
                    prompt_tokens=r.prompt_tokens,
                    completion_tokens=r.completion_tokens,
                    llm_sec=round(r.duration_sec, 3),
                )
                return r.text, rec
            except ContextOverflow:
                budget = int(budget * 0.75)
                kept = truncate_middle(prompt, budget, self.tc.count)
                rec["truncated"] = True
        raise ModelError("llm_query prompt does not fit the sub-model's context window")

    def on_request(self, req: dict, depth: int):
        """Answer a REPL call made at ``depth``: returns (text, error, trajectory record)."""
        kind = req.get("kind")
        if kind not in ("llm", "rlm"):
            return None, f"unknown call kind {kind!r}", {"kind": kind}
        self._stat(depth)[f"{kind}_query"] += 1
        self.sub_calls += 1
        if self.sub_calls > self.max_sub_calls:
            return (
                None,
                f"sub-call budget exhausted ({self.max_sub_calls} per run)",
                {"kind": kind, "refused": True},
            )
        prompt = req.get("prompt", "")
        if kind == "rlm" and depth + 1 < self.max_depth:
            answer, node = self.solve(CHILD_QUESTION, None, prompt, depth + 1)
            return answer or "", None, {"kind": "rlm", "depth": depth + 1, "child": node}
        text, rec = self.sub_llm(prompt, depth + 1)
        if kind == "rlm":
            rec.update(kind="rlm", fallback="llm_query (max_depth reached)")
        return text, None, rec

    def solve(
        self,
        question: str,
        context_path: str | None,
        context_text: str | None,
        depth: int,
        node: dict | None = None,
    ) -> tuple[str | None, dict]:
        """Run one RLM (root: depth 0) to a FINAL answer; returns (answer or None, trajectory node)."""
        ctx = self.ctx
        n = len(self.sessions)
        if context_path is None:
            context_path = f"{RLM_DIR}/s{n}/context.txt"
            ctx.sandbox.put_file(context_path, (context_text or "").encode("utf-8"))
        text = context_text if context_text is not None else ""
        repl = ReplSession(ctx.sandbox, n, context_path, question, self.cell_timeout, ctx.env, ctx.remaining)
        self.sessions.append(repl)
        repl.start()
        steps = self.max_iter if depth == 0 else self.child_iter
        chunk = max(1000, int((self.sub_window - self.sub_max) * 3))
        # the prompt's example uses recursion where this depth allows it
        query_fn = "rlm_query" if depth + 1 < self.max_depth else "llm_query"
        system = SYSTEM.format(
            obs=self.obs_chars, sub_tokens=self.sub_window - self.sub_max, chunk=chunk, query_fn=query_fn
        )
        head = text[:300] + ("..." if len(text) > 300 else "")
        messages = [
            {"role": "system", "content": system},
            {
                "role": "user",
                "content": FIRST.format(
                    question=question,
                    chars=len(text),
                    tokens=self.tc.count(text),
                    lines=text.count("\n") + 1,
                    head=head,
                    steps=steps,
                ),
            },
        ]
        node = node if node is not None else {}
        node.update(
            depth=depth,
            question=question,
            context_chars=len(text),
            iterations=[],
            answer=None,
            answer_source=None,
        )
        prev_blocks: list[str] = []
        for it in range(1, steps + 2):
            forced = it > steps
            if forced:
                messages[-1] = {
                    "role": "user",
                    "content": messages[-1]["content"] + "\n\nYou have used all your "
                    "steps. Reply now with FINAL(...) around your answer to the question, or FINAL_VAR(name) if a variable "
                    "holds it, and nothing else.",
                }
            t0 = time.monotonic()
            r = self.chat(self._fit_history(messages), depth, depth > 0, self.max_reply)
            reply = r.text or ""
            rec: dict[str, Any] = {
                "iteration": it,
                "forced": forced,
                "response": reply,
                "prompt_tokens": r.prompt_tokens,
                "completion_tokens": r.completion_tokens,
                "llm_sec": round(time.monotonic() - t0, 3),
                "cells": [],
            }
            node["iterations"].append(rec)
            self._stat(depth)["iterations"] += 1
            ctx.log(f"[rlm d{depth} it{it}] {reply.strip()[:300]}")
            obs: list[str] = []
            for i, code in enumerate([] if forced else code_blocks(reply), 1):
                out = repl.run_cell(code, lambda req, d=depth: self.on_request(req, d))
                self._stat(depth)["cells"] += 1
                shown = (out.get("stdout") or "") + (("\n" + out["error"]) if out.get("error") else "")
                rec["cells"].append(
                    {
                        "code": code,
                        "stdout": (out.get("stdout") or "")[:20000],
                        "error": out.get("error"),
                        "timed_out": out.get("timed_out", False),
                        "sec": out.get("sec"),
                        "sub_calls": out.get("sub_calls", []),
                    }
                )
                if len(shown) > self.obs_chars:
                    shown = shown[: self.obs_chars] + f"\n[... {len(shown) - self.obs_chars} more characters]"
                obs.append(f"Output of code block {i}:\n```\n{shown.strip() or '(no output)'}\n```")
                ctx.log(f"[rlm d{depth} it{it} cell{i}] {shown.strip()[:300]}")
            final = parse_final(reply)
            if forced and final is None:  # last chance: accept FINAL(...) written inside a code block too
                final = parse_final(reply.replace("```", ""))
            if final and final[0] == "FINAL_VAR":
                value, err = repl.get_var(final[1])
                if err is None:
                    node.update(answer=value, answer_source="FINAL_VAR")
                    break
                obs.append(f"FINAL_VAR({final[1]}) failed: {err}")
            elif final:
                node.update(answer=final[1], answer_source="FINAL")
                break
            if forced:
                forced_answer = re.sub(
                    r"^\s*(final\s+answer|final|answer)\s*[:\-]\s*",
                    "",
                    FENCE_MARK.sub("", reply).strip(),
                    flags=re.I,
                )
                node.update(answer=forced_answer, answer_source="forced")
                break
            blocks = code_blocks(reply)
            if blocks and blocks == prev_blocks:
                obs.append(
                    "You ran exactly the same code as in your previous step: its output has not changed. "
                    "Use what it printed, try different code, or answer with FINAL(your answer)."
                )
            prev_blocks = blocks
            if not obs:
                obs.append(
                    "Your reply had no ```python code block and no FINAL(...). Write code to inspect "
                    "`context`, or answer with FINAL(your answer)."
                )
            nxt = (
                "This was your last step: answer now with FINAL(your answer)."
                if it == steps
                else (f"Step {it + 1} of {steps}: continue with code, or answer with FINAL(your answer).")
            )
            messages += [
                {"role": "assistant", "content": reply},
                {"role": "user", "content": "\n\n".join(obs + [nxt])},
            ]
            self.save("running")
        self.save("running")
        return node["answer"], node


class RLMAgent(Agent):
    """Recursive Language Model agent (see the module docstring)."""

    Options = RLMOptions
    name = "rlm"
    needs_model = True

    def run(self, ctx: AgentContext) -> AgentResult:
        io = task_io(ctx)
        run = _Run(ctx, self.name, self.options(ctx))
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
