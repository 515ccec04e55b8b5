"""``shell``: the built-in model agent, driven from the host through the openai SDK.

The loop follows mini-swe-agent: one long-lived sandbox, every action is one independent
``bash -c`` exec with a timeout, and the run ends when a command's output starts with the
sentinel line. A text protocol (one fenced ``bash`` block per reply), not function calling, so it
works with every OpenAI-compatible server, small local ones included. The trajectory is saved
(atomically) after every step to ``<run_dir>/agent/trajectory.json``.

Options (``agent_options`` in the config): :class:`ShellAgent.Options`.
"""

from __future__ import annotations

import re
import time

from pydantic import Field

from rollouts import atif_agents
from rollouts.agents.base import Agent, AgentContext, AgentOptions, AgentResult
from rollouts.store import now_iso

SENTINEL = "COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT"
_BLOCK = re.compile(r"```(?:bash|sh|shell)?[ \t]*\n(.*?)```", re.DOTALL)

SYSTEM_PROMPT = """You are an expert software engineer working in a Linux shell.
You solve the task by running shell commands, ONE command per reply.
Reply format: one short sentence of reasoning, then exactly one command in a fenced block:

```bash
<command>
```

You will see the command's output. Files you create or change in {workdir} are your answer.
When the task is done, reply with exactly this command and nothing else:

```bash
echo {sentinel}
```"""

USER_PROMPT = """Task:
{instruction}

The working directory is {workdir}. Start with a command."""

FORMAT_ERROR = (
    "Your reply must contain exactly one command in a ```bash fenced block. "
    "If the task is done, reply with:\n```bash\necho " + SENTINEL + "\n```"
)


def parse_action(text: str) -> str | None:
    """The single shell command in ``text`` (first fenced block), or None if there is none."""
    blocks = _BLOCK.findall(text)
    if not blocks:
        return None
    cmd = blocks[0].strip()
    return cmd or None


def format_observation(exit_code: int, output: str, limit: int, timed_out: bool) -> str:
    """What the model sees of a command's result: exit code and head+tail of the output."""
    if len(output) > limit:
        half = limit // 2
        output = f"{output[:half]}\n[... {len(output) - limit} characters elided ...]\n{output[-half:]}"
    head = "The command timed out and was killed.\n" if timed_out else ""
    return f"{head}<exit_code>{exit_code}</exit_code>\n<output>\n{output}\n</output>"


class ShellAgent(Agent):
    """Host-driven shell agent (see module docstring)."""

    class Options(AgentOptions):
        """``agent_options`` of ``shell``."""

        max_steps: int = Field(20, ge=1, le=10_000, description="Model turns at most (then status `limit`).")
        max_total_tokens: int = Field(200_000, ge=1, description="Prompt + completion tokens of the run at most.")
        max_reply_tokens: int = Field(512, ge=1, le=1_000_000, description="`max_tokens` of each model call.")
        temperature: float = Field(0.0, ge=0, le=2, description="Sampling temperature.")
        command_timeout_sec: float = Field(120, gt=0, le=86_400, description="Timeout of each shell command (s).")
        observation_chars: int = Field(
            4000, ge=100, le=1_000_000, description="Characters of a command's output shown to the model (head + tail)."
        )

    name = "shell"
    needs_model = True

    def run(self, ctx: AgentContext) -> AgentResult:
        opts = self.options(ctx)
        o = opts.model_dump()
        max_steps, max_total_tokens, max_reply = opts.max_steps, opts.max_total_tokens, opts.max_reply_tokens
        temperature, cmd_timeout, obs_chars = opts.temperature, opts.command_timeout_sec, opts.observation_chars
        messages = [
            {"role": "system", "content": SYSTEM_PROMPT.format(workdir=ctx.workdir, sentinel=SENTINEL)},
            {"role": "user", "content": USER_PROMPT.format(instruction=ctx.task.instruction.strip(), workdir=ctx.workdir)},
        ]
        traj_path = ctx.run_dir / "agent" / "trajectory.json"
        steps: list[dict] = []
        traj = {"schema_version": 1, "agent": self.name, "model": ctx.model, "options": o, "steps": steps,
                "messages": messages, "started_at": now_iso()}

        def save(status: str) -> None:
            traj["status"] = status
            traj["usage"] = ctx.client.usage.to_dict()
            atif_agents.save("shell", traj_path, traj)

        last_text = ""
        for step in range(1, max_steps + 1):
            left = ctx.remaining()
            if left <= 1:
                save("timeout")
                return AgentResult("timeout", notes=_notes(last_text, "wall-time limit reached"), steps=step - 1)
            if ctx.client.usage.prompt_tokens + ctx.client.usage.completion_tokens >= max_total_tokens:
                save("limit")
                return AgentResult("limit", notes=_notes(last_text, "token limit reached"), steps=step - 1)
            t0 = time.monotonic()
            reply = ctx.client.chat(messages, max_tokens=max_reply, temperature=temperature, timeout=min(left, 600))
            text = reply.text or ""
            last_text = text
            messages.append({"role": "assistant", "content": text})
            rec = {"step": step, "response": text, "prompt_tokens": reply.prompt_tokens,
                   "completion_tokens": reply.completion_tokens, "llm_sec": round(time.monotonic() - t0, 3)}
            cmd = parse_action(text)
            if cmd is None:
                if SENTINEL in text:
                    rec["action"] = None
                    steps.append(rec)
                    save("completed")
                    return AgentResult("completed", notes=_notes(text, "agent submitted"), steps=step)
                messages.append({"role": "user", "content": FORMAT_ERROR})
                rec["format_error"] = True
                steps.append(rec)
                save("running")
                continue
            ctx.log(f"[step {step}] $ {cmd}")
            timeout = max(1.0, min(cmd_timeout, ctx.remaining()))
            r = ctx.sandbox.exec(cmd, timeout=timeout, cwd=ctx.workdir, env=ctx.env, output_limit=256 * 1024)
            ctx.log(r.output.rstrip()[:4000])
            rec.update(action=cmd, exit_code=r.exit_code, output=r.output[:obs_chars * 2],
                       timed_out=r.timed_out, exec_sec=round(r.duration_sec, 3))
            steps.append(rec)
            if r.stdout.lstrip().splitlines()[:1] == [SENTINEL]:
                save("completed")
                return AgentResult("completed", notes=_notes(text, "agent submitted"), steps=step)
            messages.append({"role": "user", "content": format_observation(r.exit_code, r.output, obs_chars, r.timed_out)})
            save("running")
            if r.timed_out and ctx.remaining() <= 1:
                save("timeout")
                return AgentResult("timeout", notes=_notes(text, "wall-time limit reached"), steps=step)
        save("limit")
        return AgentResult("limit", notes=_notes(last_text, f"step limit ({max_steps}) reached"), steps=max_steps)


def _notes(last_text: str, how: str) -> str:
    return f"# Agent notes\n\nEnded: {how}.\n\n## Last message\n\n{last_text.strip()}\n"
