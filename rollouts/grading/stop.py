"""Stopping the agent's processes before shared-mode grading, by something they cannot take over.

Two policies (``tests.stop`` in ``tb_meta.json``: ``all`` = strict, ``agent`` = keep-services):

- ``strict`` (default): every process in the sandbox dies — the backend tears the sandbox's
  whole PID namespace down and starts its main process again, keeping the filesystem
  (:meth:`Sandbox.restart_processes`; Docker: a restart with no grace period). Nothing in the
  sandbox takes part: a shadowed ``kill``/``timeout``/``bash``, a process that ignores signals,
  re-parents itself, or has ptraced PID 1 or the main process, all end with the namespace. A
  backend that cannot do this fails the run closed (:class:`GradingIntegrityError`).
- ``keep-services``: only the agent's own process trees die — processes descending from a
  command the harness executed (``exec`` sessions) — while daemons the agent started and detached
  (re-parented to PID 1) keep running, for Harbor/Terminal-Bench tasks whose deliverable is a
  running server. The kill runs with the sandbox's own shell and ``kill`` (agent-controlled) under
  a watchdog outside the sandbox. **Residual risk**: a detached agent process survives into
  grading and can tamper with the tests, the verifier or its output; such tasks are labelled
  ``agent-controlled`` (rollouts.grading.integrity).

:func:`exec_watched` is the shared watchdog: a command in a sandbox the agent controlled may hang
(a replaced ``timeout``) or lie about its exit; it is bounded from outside (the sandbox is stopped
when the watchdog fires) and every failure is a counted agent failure, never infra.
"""

from __future__ import annotations

import secrets
import threading
from typing import Literal

from rollouts.errors import GradingIntegrityError, SandboxError
from rollouts.sandbox import aioloop
from rollouts.sandbox.base import DEFAULT_OUTPUT_LIMIT, ExecResult, Sandbox

Policy = Literal["strict", "keep-services"]
POLICIES: tuple[str, ...] = ("strict", "keep-services")
# tb_meta.json's ``tests.stop`` spelling -> policy
TASK_STOP = {"all": "strict", "agent": "keep-services", "strict": "strict", "keep-services": "keep-services"}

# bash, run in the sandbox: SIGSTOP then SIGKILL every process whose parent chain ends at an
# exec session root (parent pid 0, not PID 1) other than our own; repeated until none is left
# (a fork between listing and stopping is caught on the next pass). Prints "killed N" per pass.
_KEEP_SERVICES = r"""
me=$$
root_of() { local p=$1 q n=0; while [ "$n" -lt 4096 ]; do q=${pp[$p]:-0}; [ "$q" = 0 ] && { echo "$p"; return; }; p=$q; n=$((n+1)); done; echo 1; }
for pass in 1 2 3 4 5 6 7 8; do
  declare -A pp=()
  for s in /proc/[0-9]*/stat; do
    IFS= read -r line < "$s" 2>/dev/null || continue
    p=${line%% *}; rest=${line##*) }; set -- $rest; pp[$p]=$2
  done
  mine=$(root_of "$me"); victims=()
  for p in "${!pp[@]}"; do
    [ "$p" = 1 ] && continue
    r=$(root_of "$p"); [ "$r" = 1 ] || [ "$r" = "$mine" ] && continue
    victims+=("$p")
  done
  echo "killed ${#victims[@]}"
  [ ${#victims[@]} -eq 0 ] && { echo "$NONCE"; exit 0; }
  kill -STOP "${victims[@]}" 2>/dev/null; kill -KILL "${victims[@]}" 2>/dev/null
  sleep 0.2
done
exit 3
"""


def exec_watched(
    sandbox: Sandbox,
    cmd: str,
    what: str,
    timeout: float,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    output_limit: int = DEFAULT_OUTPUT_LIMIT,
) -> ExecResult:
    """``sandbox.exec(cmd)`` bounded by a watchdog outside the sandbox (``timeout`` + 15 s):
    if it fires, the sandbox is stopped and GradingIntegrityError names ``what``. A transport
    failure while the watchdog had not fired stays SandboxError (infra)."""
    fired = threading.Event()

    def fire() -> None:
        fired.set()
        sandbox.stop()

    timer = aioloop.call_later(timeout + 15, fire)  # no thread per watched exec (issue 13)
    try:
        return sandbox.exec(cmd, timeout=timeout, env=env, cwd=cwd, output_limit=output_limit)
    except SandboxError:
        if fired.is_set():
            raise GradingIntegrityError(
                f"{what} did not finish within {timeout + 15:.0f} s in the agent's sandbox (its toolchain "
                "hangs it?): fail closed"
            ) from None
        raise
    finally:
        timer.cancel()


def stop_agent(sandbox: Sandbox, policy: Policy = "strict") -> str:
    """Stop the agent's processes before grading (module docstring); returns what was done.

    Raises GradingIntegrityError when the policy's guarantee cannot be kept (the backend cannot
    restart the sandbox's processes; the keep-services kill fails, hangs or leaves processes),
    SandboxError if the transport fails, ValueError for an unknown policy. ``policy`` may be
    spelled as in ``tests.stop`` (``all``/``agent``).
    """
    policy = TASK_STOP.get(policy, policy)
    if policy == "strict":
        try:
            sandbox.restart_processes()
        except NotImplementedError:
            raise GradingIntegrityError(
                f"the {type(sandbox).__name__} backend cannot kill every process of a sandbox, which strict "
                'shared-mode grading needs; declare tests.stop = "keep-services" (label agent-controlled)'
            ) from None
        return "stopped every process in the sandbox (PID namespace restarted)\n"
    if policy != "keep-services":
        raise ValueError(f"unknown stop policy {policy!r} (expected one of {POLICIES})")
    nonce = f"rollouts-stopped-{secrets.token_hex(8)}"
    r = exec_watched(sandbox, _KEEP_SERVICES, "stopping the agent's processes", 30, env={"NONCE": nonce})
    if not (r.ok and nonce in r.stdout):
        raise GradingIntegrityError(
            f"could not stop the agent's processes before grading (exit {r.exit_code}): {r.output[-300:]}"
        )
    return "stopped the agent's own process trees; detached services keep running\n" + r.stdout
