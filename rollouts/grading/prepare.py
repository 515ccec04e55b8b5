"""Grading preparation in one archive and one exec (issue 13), fail closed (issue 10).

One archive puts a stage directory at a random, new path (``/.rollouts-grading-<128 bit>``: it
cannot be pre-planted): the hidden tests, the agent's diff (fresh mode) and the link guard. One
exec then, in order, stopping at the first failure:

1. applies the diff in the workspace (fresh mode; ``git apply``, then ``--3way``; hooks and
   fsmonitor off) — the diff was checked on the host first (:func:`pathguard.check_diff`) and
   there is no ``patch --fuzz`` fallback (it follows symlinks git refuses);
2. runs the link guard (:data:`pathguard.LINK_GUARD`) over the workspace;
3. replaces ``/tests`` and ``/logs`` (whatever they are: files, links) with the staged tests,
   owned by root and readable by root only (``0700``), and an empty ``/logs/verifier``.

Every step's exit status is checked; each failure names itself and maps to a typed error: the
diff does not apply → :class:`PatchApplyError`, a link is refused → :class:`UnsafeWorkspaceError`
(both counted agent failures), any other step → :class:`GradingIntegrityError`. Only a failing
transport (``SandboxError``) is infra.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
from pathlib import Path

from rollouts.errors import GradingIntegrityError, VerifierError
from rollouts.grading.pathguard import (
    LINK_GUARD,
    LINK_GUARD_REFUSED,
    PatchApplyError,
    check_diff,
    link_guard_error,
)
from rollouts.sandbox.base import Sandbox

TESTS_DIR = "/tests"
LOGS_DIR = "/logs/verifier"
# git in the grading sandbox: never run hooks or an fsmonitor, whatever a config says.
GIT = "git -c core.hooksPath=/dev/null -c core.fsmonitor=false"
PREP_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LC_ALL": "C",
    "BASH_ENV": "",
    "ENV": "",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "LD_PRELOAD": "",
}
# exit code -> step that failed (the script's own codes; LINK_GUARD_REFUSED is the guard's)
_STEPS = {
    90: "enter the workspace",
    91: "apply the diff",
    92: "run the link guard",
    93: "remove /tests and /logs",
    94: "install the hidden tests",
    95: "create /logs/verifier",
    96: "run the link guard: the task image has no python3",
}


def _script(stage: str, workdir: str, with_diff: bool) -> str:
    from shlex import quote

    s, w = quote(stage), quote(workdir)
    lines = ["set -u", f"S={s}; W={w}"]
    if with_diff:
        lines += [
            'cd "$W" || exit 90',
            f'{GIT} apply --binary --whitespace=nowarn "$S/diff.patch" 2>&1 || '
            f'{GIT} apply --binary --3way --whitespace=nowarn "$S/diff.patch" 2>&1 || exit 91',
        ]
    lines += [
        'python3 -I -S "$S/guard.py" "$W"; rc=$?',
        f"case $rc in 0) ;; {LINK_GUARD_REFUSED}) exit $rc;; 127) exit 96;; *) exit 92;; esac",
        f"rm -rf {TESTS_DIR} /logs || exit 93",
        f'mv "$S/tests" {TESTS_DIR} && chown -R 0:0 {TESTS_DIR} && chmod 0700 {TESTS_DIR} || exit 94',
        f"mkdir -p -m 0755 /logs {LOGS_DIR} && chmod 0755 /logs {LOGS_DIR} || exit 95",
        'rm -rf "$S"',
        "echo rollouts-prep-ok",
    ]
    return "\n".join(lines) + "\n"


def prepare_grading(sandbox: Sandbox, task, workdir: str, diff: bytes | None, timeout: float = 300) -> str:
    """Apply ``diff`` (None in shared mode), guard the workspace's links, install the hidden tests
    and an empty ``/logs/verifier``: one archive + one exec. Returns the log.

    Raises UnsafeDiffError / PatchApplyError / UnsafeWorkspaceError / GradingIntegrityError
    (counted agent failures), VerifierError if the task's tests dir is missing, SandboxError
    (infra) if the transport fails.
    """
    with_diff = bool(diff and diff.strip())
    if with_diff:
        check_diff(diff)
    src = task.dir / task.meta.tests.dir
    if not src.is_dir():
        raise VerifierError(f"{task.dir}/tb_meta.json: tests.dir {task.meta.tests.dir!r} is not a directory")
    stage = f"/.rollouts-grading-{secrets.token_hex(16)}"
    with tempfile.TemporaryDirectory(prefix="rollouts-stage-") as tmp:
        root = Path(tmp)
        shutil.copytree(src, root / "tests", symlinks=True)
        (root / "guard.py").write_text(LINK_GUARD)
        if with_diff:
            (root / "diff.patch").write_bytes(diff)
        sandbox.put_dir(root, stage)
    r = sandbox.exec(_script(stage, workdir, with_diff), timeout=timeout, env=PREP_ENV)
    log = ("$ git apply <agent diff>\n" if with_diff else "") + r.output
    if r.ok and r.stdout.rstrip().endswith("rollouts-prep-ok"):
        return log
    if r.exit_code == LINK_GUARD_REFUSED:
        raise link_guard_error(r.stdout)
    if r.exit_code == 91:
        raise PatchApplyError("the agent's diff did not apply to the base commit:\n" + r.output[-2000:])
    step = _STEPS.get(r.exit_code, f"finish (exit {r.exit_code}{', timed out' if r.timed_out else ''})")
    if r.exit_code == 96:
        raise VerifierError(f"grading preparation could not {step}: {r.output[-500:]}")
    raise GradingIntegrityError(f"grading preparation could not {step}: {r.output[-500:]}")
