"""The task workspace inside a sandbox: a git repo at a fixed base commit, and what the agent left.

The base commit is deterministic (fixed author/committer/date), so the agent sandbox and the
fresh grading sandbox get the same commit id from the same files, and ``diff.patch`` applies
cleanly. ``collect`` writes the spec's ``artifacts/diff.patch``, ``artifacts/repo_info.json``.

The agent owns its sandbox, ``.git`` included, so collection never uses the repo's config,
attributes-driven drivers, hooks or index: see :func:`collect_artifacts`.

Secrets: the values of secret-looking environment variables (and the configured keys) are
replaced by ``***`` in ``diff.patch`` and ``repo_info.json`` on disk. An agent that writes a token
it was given into a workspace file would otherwise leak it into the artifacts. The diff returned
to the caller (and graded) is the unredacted one; ``eval`` re-grades the redacted file, which
differs only where a secret was.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass
from pathlib import Path
from secrets import token_hex
from typing import Any

from rollouts.errors import GradingIntegrityError, OversizeDiffError, SandboxError
from rollouts.redact import REDACTED, is_secret, redact, secret_values
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
COLLECT_TIMEOUT_SEC = 300  # collection's in-sandbox timeout; a watchdog outside adds 15 s
# Collection's git: no system or global config (HOME is the collection's temp dir), no pager,
# no locks on the agent's repo, never a prompt.
COLLECT_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_ATTR_NOSYSTEM": "1",
    "GIT_OPTIONAL_LOCKS": "0",
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_PAGER": "cat",
    "LC_ALL": "C",
    "BASH_ENV": "",
}


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
    for s in sorted({s for s in secrets if is_secret(s)}, key=len, reverse=True):
        data = data.replace(s.encode("utf-8", "surrogateescape"), REDACTED.encode())
    return data


# The one collection script (the agent's diff here, the workdir diff of image-state tasks in
# rollouts.task_runtime): a fresh git dir in a private temp dir borrows only the objects of
# $OBJECTS (alternates); no system/global/repo config is read (COLLECT_ENV and the -c overrides),
# so nothing the agent wrote (config, hooks, filters, fsmonitor) runs or steers it.
_COLLECT = r"""
set -u
T=$(mktemp -d /tmp/rollouts-collect.XXXXXXXXXXXXXXXX) || exit 80
trap 'rm -rf "$T"' EXIT
git -C "$T" init -q >/dev/null 2>&1 || git -C "$T" init -q || exit 81
export GIT_DIR="$T/.git" GIT_INDEX_FILE="$T/index" GIT_WORK_TREE="$W" HOME="$T" XDG_CONFIG_HOME="$T"
printf '%s\n' "$OBJECTS" > "$GIT_DIR/objects/info/alternates" || exit 82
G="git -c core.fsmonitor=false -c core.hooksPath=/dev/null -c core.attributesFile=/dev/null"
$G read-tree "$BASE" || exit 83
$G add -A . || exit 84
$G diff --cached --binary --no-renames --no-ext-diff --no-textconv "$BASE" > "$T/diff" || exit 85
n=$(wc -c < "$T/diff") || exit 86
[ "$n" -le "$CAP" ] || { echo "oversize $n"; exit 87; }
base64 -w0 < "$T/diff" || exit 86
echo; echo "$SEP"
$G diff --cached --numstat --no-renames --no-ext-diff "$BASE" | head -n 1000; echo "$SEP"
if [ -n "$HEAD_FILE" ]; then head -c 300 "$HEAD_FILE" 2>/dev/null; fi; echo; echo "$SEP"
echo "$NONCE"
"""
_COLLECT_STEPS = {
    80: "create a temp dir", 81: "create the collection's git dir", 82: "link the workspace's objects",
    83: "read the base commit (the workspace's .git objects were removed or damaged)",
    84: "git add -A (e.g. a nested repo without commits, an unreadable file)", 85: "git diff",
    86: "encode the diff",
}


@dataclass
class Collected:
    """A collected diff: ``diff`` (raw ``git diff --binary`` bytes), ``files`` (numstat rows
    ``{path, added, removed}``, counts None for binary files, at most 1000 rows) and ``head`` (up
    to 300 bytes of the ``head_file`` asked for, else "")."""

    diff: bytes
    files: list[dict[str, Any]]
    head: str

    def stats(self) -> dict[str, Any]:
        """``{files_changed, insertions, deletions, bytes, files}`` for ``repo_info.json``."""
        return {"files_changed": len(self.files), "insertions": sum(f["added"] or 0 for f in self.files),
                "deletions": sum(f["removed"] or 0 for f in self.files), "bytes": len(self.diff),
                "files": self.files}


def collect_diff(sandbox: Sandbox, workdir: str, base: str, objects: str, what: str,
                 timeout_sec: float = COLLECT_TIMEOUT_SEC, head_file: str | None = None) -> Collected:
    """The diff of ``workdir`` against commit ``base`` (binary-safe, untracked files included, no
    renames), computed in the sandbox by a git that borrows only the objects of the git objects
    dir ``objects`` (see :data:`_COLLECT`), under a watchdog outside the sandbox (``timeout_sec``
    seconds inside, plus its margin). ``what`` names the diff in errors ("the agent's diff").

    Raises OversizeDiffError (diff over :data:`DIFF_MAX_BYTES`; names size and cap) or
    GradingIntegrityError (a step failed or hung, or the output came back incomplete or
    malformed); SandboxError (infra) only if the transport fails.
    """
    from rollouts.grading.stop import exec_watched

    sep, nonce = f"--rollouts-{token_hex(8)}--", f"rollouts-collected-{token_hex(8)}"
    env = {**GIT_ENV, **COLLECT_ENV, "W": workdir.rstrip("/") or "/", "OBJECTS": objects, "BASE": base,
           "CAP": str(DIFF_MAX_BYTES), "SEP": sep, "NONCE": nonce, "HEAD_FILE": head_file or ""}
    limit = DIFF_MAX_BYTES * 4 // 3 + 2 * 1024 * 1024
    r = exec_watched(sandbox, _COLLECT, f"collecting {what}", timeout_sec, env=env, cwd="/", output_limit=limit)
    if r.exit_code == 87:
        size = r.stdout.split()[1] if len(r.stdout.split()) > 1 else "?"
        raise OversizeDiffError(f"{what} is {size} bytes, over the cap of {DIFF_MAX_BYTES} bytes")
    parts = r.stdout.split(sep + "\n")
    if not r.ok or r.truncated or len(parts) != 4 or parts[3].strip() != nonce:
        step = _COLLECT_STEPS.get(r.exit_code, f"finish (exit {r.exit_code})")
        raise GradingIntegrityError(
            f"collecting {what} failed: could not {step}: {r.stderr.strip()[-500:] or r.stdout[-300:]}"
        )
    try:
        diff = base64.b64decode(parts[0].strip(), validate=True)
    except (binascii.Error, ValueError):
        raise GradingIntegrityError(f"collecting {what} failed: the diff came back malformed") from None
    files = []
    for line in parts[1].splitlines():
        cols = line.split("\t")
        if len(cols) == 3:
            add, rem, path = cols
            files.append({"path": path, "added": None if add == "-" else int(add),
                          "removed": None if rem == "-" else int(rem)})
    return Collected(diff=diff, files=files, head=parts[2].strip())


def collect_artifacts(
    sandbox: Sandbox, workdir: str, base: str, artifacts: Path, notes: str, secrets: list[str] | None = None
) -> bytes:
    """Write ``diff.patch`` (vs ``base``, binary-safe, untracked files included, no renames),
    ``notes.md`` and ``repo_info.json`` into ``artifacts``; returns the (unredacted) diff bytes.

    Collection cannot be steered by the agent: git runs with a fresh git dir in a random,
    exclusively created temp dir (``mktemp -d``), the workspace's ``.git`` lends only its
    objects (alternates), no system/global config (``GIT_CONFIG_NOSYSTEM``, ``GIT_CONFIG_GLOBAL=
    /dev/null``, ``HOME`` in the temp dir): so no agent-defined config, hooks, filters, diff
    drivers, textconv or fsmonitor run. Every step's exit status is checked. The diff comes back
    on stdout (base64, one exec, no file to copy out) under a watchdog outside the sandbox.

    Raises OversizeDiffError (diff over :data:`DIFF_MAX_BYTES`; names size and cap) or
    GradingIntegrityError (a step failed or hung: the agent's sandbox is the agent's, so it is a
    counted agent failure); SandboxError (infra) only if the transport fails.
    ``secrets`` (default: the secret-looking variables of this process's environment) are
    redacted from what is written to disk; see the module docstring.
    """
    secrets = secret_values(os.environ) if secrets is None else list(secrets)
    artifacts.mkdir(parents=True, exist_ok=True)
    atomic_write(artifacts / "notes.md", redact(notes or "", secrets))
    w = workdir.rstrip("/") or "/"
    c = collect_diff(sandbox, workdir, base, f"{w}/.git/objects", "the agent's diff", head_file=f"{w}/.git/HEAD")
    diff, head = c.diff, c.head
    info = {
        "schema_version": 1, "base_commit": base, "workdir": workdir,
        "head": head[:300] or None,
        "branch": head[len("ref: refs/heads/"):] if head.startswith("ref: refs/heads/") else None,
        "dirty_files": [f["path"] for f in c.files],
        "diff_stats": c.stats(),
    }
    atomic_write(artifacts / "diff.patch", redact_bytes(diff, secrets))
    atomic_write(
        artifacts / "repo_info.json", redact(json.dumps(info, indent=2, ensure_ascii=False), secrets) + "\n"
    )
    return diff
