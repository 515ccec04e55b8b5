"""One ``rlm`` run's loop: model turns, REPL cells, sub-calls, child RLMs, usage per depth, trajectory.

The agent around it (options, set-up, answer, notes) is :mod:`rollouts.agents.rlm`; sub-calls are
``llm_query`` / ``rlm_query`` made from the model's code."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

from rollouts import atif_agents
from rollouts.agents.base import AgentContext
from rollouts.agents.llm import default_window
from rollouts.agents.rlm_channel import (
    CHILD_QUESTION,
    FENCE_MARK,
    FIRST,
    RLM_DIR,
    STAT_KEYS,
    SYSTEM,
    ReplSession,
    code_blocks,
    parse_final,
)
from rollouts.errors import ContextOverflow, ModelError
from rollouts.families import token_counter, truncate_middle
from rollouts.llm.client import Usage
from rollouts.store import now_iso

if TYPE_CHECKING:
    from rollouts.agents.rlm import RLMOptions


class RLMRun:
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
