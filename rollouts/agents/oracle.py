"""``oracle``: runs the task's reference solution (proves the task is solvable: reward 1.0)."""

from __future__ import annotations

import shlex

from rollouts.agents.base import Agent, AgentContext, AgentResult

SOLUTION_DIR = "/solution"


class OracleAgent(Agent):
    """Copies the directory holding ``tb_meta.solution`` to /solution and runs the script with
    ``bash`` in the workspace, under the agent timeout, removing /solution in the same exec."""

    name = "oracle"

    def run(self, ctx: AgentContext) -> AgentResult:
        sol = ctx.task.meta.solution
        if not sol:
            return AgentResult(status="error", error=f"task {ctx.task.name} has no reference solution")
        src = ctx.task.dir / sol
        # one archive + one exec (issue 13): the script runs, then the solution is removed in the
        # same exec, so it is not part of what the agent "left" (it is outside the repo anyway)
        ctx.sandbox.put_dir(src.parent, SOLUTION_DIR)
        script = f"{SOLUTION_DIR}/{src.name}"
        r = ctx.sandbox.exec(
            f"bash {shlex.quote(script)}; rc=$?; rm -rf {SOLUTION_DIR}; exit $rc",
            timeout=max(1.0, ctx.remaining()), cwd=ctx.workdir,
            env={**ctx.env, **ctx.task.meta.solution_env},  # [solution] env (Harbor)
        )
        ctx.log(f"$ bash {script}\n{r.output}")
        if r.timed_out:  # killed before its own clean-up
            ctx.sandbox.exec(["rm", "-rf", SOLUTION_DIR], timeout=30)
        tail = r.output[-2000:]
        notes = f"Ran the reference solution `{sol}`: exit code {r.exit_code}.\n\n```\n{tail}\n```\n"
        if r.timed_out:
            return AgentResult(status="timeout", notes=notes, steps=1, exit_code=r.exit_code)
        if r.exit_code != 0:
            return AgentResult(status="error", notes=notes, steps=1, exit_code=r.exit_code,
                               error=f"reference solution exited with {r.exit_code}")
        return AgentResult(status="completed", notes=notes, steps=1, exit_code=0)
