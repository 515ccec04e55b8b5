"""The task workspace inside a sandbox: a git repo at a fixed base commit, and what the agent left.

The base commit is deterministic (fixed author/committer/date), so the agent sandbox and the
fresh grading sandbox get the same commit id from the same files, and ``diff.patch`` applies
cleanly. ``collect`` writes the spec's ``artifacts/diff.patch``, ``artifacts/repo_info.json``.

The agent owns its sandbox, ``.git`` included, so collection never trusts the repo's config: git
runs with hooks and fsmonitor off, ``GIT_DIR``/``GIT_WORK_TREE`` pinned to the workspace, and the
diff is made without external diff drivers or textconv (``--no-ext-diff --no-textconv``), so it is
git's own rendering of the files, not something a ``diff.external`` script printed.

Secrets: the values of secret-looking environment variables (and the configured keys) are
replaced by ``***`` in ``diff.patch`` and ``repo_info.json`` on disk. An agent that writes a token
it was given into a workspace file would otherwise leak it into the artifacts. The diff returned
to the caller (and graded) is the unredacted one; ``eval`` re-grades the redacted file, which
differs only where a secret was.
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

from rollouts.errors import SandboxError
from rollouts.redact import REDACTED, redact, secret_values
from rollouts.sandbox.base import Sandbox
from rollouts.store import atomic_write

GIT_ENV = {
    "GIT_AUTHOR_NAME": "rollouts",
    "GIT_AUTHOR_EMAIL": "rollouts@localhost",
    "GIT_COMMITTER_NAME": "rollouts",
    "GIT_COMMITTER_EMAIL": "rollouts@localhost",
    "GIT_AUTHOR_DATE": "2000-01-01T00:00:00+0000",
    "GIT_COMMITTER_DATE": "2000-01-01T00:00:00+0000",
}
DIFF_MAX_BYTES = 32 * 1024 * 1024
# Overrides for anything the agent may have put in .git/config or ~/.gitconfig that would run a
# program or change what "the diff" means.
SAFE_GIT = (
    "git -c core.hooksPath=/dev/null -c core.fsmonitor=false -c core.untrackedCache=false "
    "-c core.pager=cat -c color.ui=false -c core.quotePath=true"
)


def setup_workspace(sandbox: Sandbox, task, workdir: str, timeout: float = 120) -> str:
    """Copy the task's workspace into ``workdir`` and commit it; returns the base commit sha.

    Raises SandboxError if git fails (an infrastructure problem: the base image has git).
    A task whose state comes from the image (``environment.state = "image"``) is left as the
    image has it (returns ""): the harness never commits into such a workdir (see
    ``rollouts.task_runtime``).
    """
    if task.meta.environment.state == "image":
        return ""
    if task.meta.workspace:
        sandbox.put_dir(task.dir / task.meta.workspace, workdir)
    else:
        sandbox.exec(["mkdir", "-p", workdir], timeout=30)
    script = (
        "set -e; git init -q -b main . 2>/dev/null || git init -q .; "
        "git add -A; git commit -q --allow-empty --no-gpg-sign -m 'rollouts: base'; git rev-parse HEAD"
    )
    r = sandbox.exec(script, timeout=timeout, cwd=workdir, env=GIT_ENV)
    if r.exit_code != 0:
        raise SandboxError(f"workspace setup failed (exit {r.exit_code}): {r.output.strip()[-500:]}")
    return r.stdout.strip().splitlines()[-1]


def redact_bytes(data: bytes, secrets: list[str]) -> bytes:
    """``data`` with every secret (UTF-8 encoded) replaced by ``***``, longest first."""
    for s in sorted({s for s in secrets if s}, key=len, reverse=True):
        data = data.replace(s.encode("utf-8", "surrogateescape"), REDACTED.encode())
    return data


def collect_artifacts(
    sandbox: Sandbox, workdir: str, base: str, artifacts: Path, notes: str, secrets: list[str] | None = None
) -> bytes:
    """Write ``diff.patch`` (vs ``base``, binary-safe, untracked files included), ``notes.md`` and
    ``repo_info.json`` into ``artifacts``; returns the (unredacted) diff bytes.

    The diff is capped at 32 MiB (SandboxError above it would hide work, so the cap is recorded
    in repo_info and the diff is cut). Works even if the agent committed or switched branches.
    ``secrets`` (default: the secret-looking variables of this process's environment) are
    redacted from what is written to disk; see the module docstring.
    """
    secrets = secret_values(os.environ) if secrets is None else list(secrets)
    artifacts.mkdir(parents=True, exist_ok=True)
    atomic_write(artifacts / "notes.md", redact(notes or "", secrets))
    b = shlex.quote(base)
    g = SAFE_GIT
    script = (
        f"{g} add -A >/dev/null 2>&1; "
        f"{g} diff --cached --binary --no-ext-diff --no-textconv {b} > /tmp/rollouts_diff.patch; echo rc=$?; "
        f"{g} diff --cached --numstat --no-ext-diff --no-textconv {b} | head -1000; echo '--status--'; "
        f"{g} status --porcelain | head -1000; "
        f"echo '--branch--'; {g} rev-parse --abbrev-ref HEAD; {g} rev-parse HEAD"
    )
    env = {**GIT_ENV, "GIT_DIR": f"{workdir.rstrip('/')}/.git", "GIT_WORK_TREE": workdir}
    r = sandbox.exec(script, timeout=120, cwd=workdir, env=env)
    info: dict = {"schema_version": 1, "base_commit": base, "workdir": workdir}
    diff = b""
    if "rc=0" not in r.stdout:
        info["error"] = f"git diff failed: {r.output.strip()[-500:]}"
    else:
        try:
            diff = sandbox.get_file("/tmp/rollouts_diff.patch", max_bytes=DIFF_MAX_BYTES)
        except SandboxError as e:
            info["error"] = str(e)
            info["diff_truncated"] = True
        numstat, _, rest = r.stdout.split("rc=0", 1)[1].partition("--status--")
        status, _, branch = rest.partition("--branch--")
        files = []
        for line in numstat.strip().splitlines():
            parts = line.split("\t")
            if len(parts) == 3:
                add, rem, path = parts
                files.append(
                    {
                        "path": path,
                        "added": None if add == "-" else int(add),
                        "removed": None if rem == "-" else int(rem),
                    }
                )
        blines = branch.strip().splitlines()
        info.update(
            branch=blines[0] if blines else None,
            head_commit=blines[1] if len(blines) > 1 else None,
            dirty_files=[ln[3:] for ln in status.strip().splitlines() if len(ln) > 3],
            diff_stats={
                "files_changed": len(files),
                "insertions": sum(f["added"] or 0 for f in files),
                "deletions": sum(f["removed"] or 0 for f in files),
                "bytes": len(diff),
                "files": files,
            },
        )
    atomic_write(artifacts / "diff.patch", redact_bytes(diff, secrets))
    atomic_write(
        artifacts / "repo_info.json", redact(json.dumps(info, indent=2, ensure_ascii=False), secrets) + "\n"
    )
    return diff

