"""Path guards of fresh-mode grading: what the agent's diff may touch, and where workspace
symlinks may lead. Both fail closed (:class:`UnsafeDiffError`, :class:`UnsafeWorkspaceError`,
counted agent failures) and both are linear in the size of their input.

**The diff** (:func:`check_diff`): git itself lists what a diff touches — ``git apply --numstat -z``
(one NUL-terminated entry per path) and ``git apply --summary`` (C-quoted paths; ``create mode
120000`` marks a symlink the diff creates) run on the host, outside any repository, with no
system/global config (so no second hand-written patch parser and nothing of the agent's steers
it). Refused: input git does not read as a patch or not in git's own format, renames/copies (our collection never produces
them: ``--no-renames``), absolute paths, ``..`` components, anything in ``.git``, and any path
below a symlink the same diff creates (checked per ancestor against a set: O(total path length)).

**Workspace links** (:data:`LINK_GUARD`, run inside the grading sandbox by a trusted Python — the
clean image's in fresh mode; in shared mode only after the toolchain was verified unchanged):
every symlink under the workspace (``.git`` included) is resolved component by component with
``lstat``/``readlink`` — nothing is ever *followed* by the kernel, so magic links such as
``/proc/1/cwd`` are never entered — and refused when any step of the chain (at any depth, through
links inside or outside the workspace) reaches ``/``, ``/proc``, ``/sys``, ``/dev``, ``/tests``,
``/logs`` or ``/solution``, or loops. Resolved prefixes are memoised, so the walk is linear in the
number of links plus their depth (one lstat per distinct prefix).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from rollouts.errors import EnvironmentNotReady, GradingIntegrityError

# The grader's own paths and the kernel's: no workspace link may lead into or above them.
PROTECTED_PREFIXES = ("/proc", "/sys", "/dev", "/tests", "/logs", "/solution")
# Exit code of LINK_GUARD when it refuses a link (its stdout names it).
LINK_GUARD_REFUSED = 86


class PatchApplyError(GradingIntegrityError):
    """The agent's diff did not apply to the base commit in the grading sandbox. The diff was
    collected from the agent's own repository, so only the agent can make it unappliable: a
    counted agent failure."""


class UnsafeDiffError(PatchApplyError):
    """The agent's diff touches a path outside the workspace, inside ``.git``, or through a symlink."""


class UnsafeWorkspaceError(GradingIntegrityError):
    """A workspace symlink leads into the hidden tests, the logs, the solution or the kernel's
    filesystems (or loops)."""


def _unquote(s: str) -> str:
    """A path as git's ``--summary`` writes it: C-quoted (``"caf\\303\\251"``) when special."""
    if not (len(s) >= 2 and s[0] == '"' and s[-1] == '"'):
        return s
    out, i, body = bytearray(), 0, s[1:-1]
    esc = {"a": 7, "b": 8, "t": 9, "n": 10, "v": 11, "f": 12, "r": 13, '"': 34, "\\": 92}
    while i < len(body):
        c = body[i]
        if c == "\\" and i + 1 < len(body):
            n = body[i + 1]
            if n in "01234567":
                out.append(int(body[i + 1 : i + 4], 8) & 0xFF)
                i += 4
                continue
            out.append(esc.get(n, ord(n)))
            i += 2
            continue
        out += c.encode("utf-8", "surrogateescape")
        i += 1
    return out.decode("utf-8", "surrogateescape")


def _git_apply(args: list[str], diff: bytes) -> bytes:
    """``git apply ARGS -`` on the host, outside any repository, no system/global config."""
    with tempfile.TemporaryDirectory(prefix="rollouts-guard-") as tmp:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": tmp,
            "XDG_CONFIG_HOME": tmp,
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_CEILING_DIRECTORIES": str(Path(tmp).parent),
            "LC_ALL": "C",
        }
        try:
            from rollouts.sandbox import aioloop  # a cooperative run waits for git off the loop thread

            p = aioloop.blocking(
                subprocess.run, ["git", "apply", *args, "-"], input=diff, cwd=tmp, env=env, capture_output=True,
                timeout=300,
            )
        except FileNotFoundError:
            raise EnvironmentNotReady("git is not installed on this machine (needed to check diffs)") from None
    if p.returncode != 0:
        raise UnsafeDiffError(
            "git does not read the agent's diff as a patch: "
            + p.stderr.decode("utf-8", "replace").strip()[-500:]
        )
    return p.stdout


def _why_unsafe(path: str) -> str | None:
    if not path or "\0" in path:
        return "empty path or NUL in a path"
    if path.startswith("/"):
        return "absolute path"
    parts = path.split("/")
    if ".." in parts:
        return "path leaves the workspace ('..')"
    if any(p.lower() == ".git" or p.lower().startswith(".git ") or p.lower().startswith(".git~") for p in parts):
        return "path inside .git"
    return None


def check_diff(diff: bytes) -> list[str]:
    """Every path ``diff`` touches (workspace-relative, as git reads them); UnsafeDiffError if
    git cannot read it, it renames/copies, or a path is absolute, has ``..``, lies in ``.git``
    or below a symlink the diff creates. Linear in the size of the diff.

    Raises EnvironmentNotReady if ``git`` is missing on the host.
    """
    if not diff.strip():
        return []
    numstat = _git_apply(["--numstat", "-z"], diff)
    summary = _git_apply(["--summary"], diff).decode("utf-8", "surrogateescape")
    paths: list[str] = []
    for entry in numstat.split(b"\0"):
        if not entry:
            continue
        fields = entry.split(b"\t", 2)
        if len(fields) != 3 or not fields[2]:
            raise UnsafeDiffError(f"unexpected entry in git's listing of the diff: {entry[:200]!r}")
        paths.append(fields[2].decode("utf-8", "surrogateescape"))
    # Only git's own format (what collection produces): a traditional "--- x / +++ y" diff is
    # read by git with -p1 guesses. "diff --git " cannot begin a hunk or base85 line.
    headers = diff.count(b"\ndiff --git ") + diff.startswith(b"diff --git ")
    if headers < len(paths):
        raise UnsafeDiffError("the diff is not in git's format (every file needs a 'diff --git' header): refused")
    links: set[str] = set()
    for line in summary.splitlines():
        s = line.strip()
        if s.startswith(("rename ", "copy ")):
            raise UnsafeDiffError(f"the diff renames or copies ({s[:200]!r}); collection never does: refused")
        if s.startswith("create mode 120000 "):
            links.add(_unquote(s[len("create mode 120000 ") :]).rstrip("/"))
    for p in paths:
        why = _why_unsafe(p)
        if why:
            raise UnsafeDiffError(f"the agent's diff touches {p[:200]!r}: {why}")
    if links:
        for p in paths:
            parts = p.split("/")
            for i in range(1, len(parts)):
                anc = "/".join(parts[:i])
                if anc in links:
                    raise UnsafeDiffError(
                        f"the agent's diff writes {p[:200]!r} through the symlink {anc[:200]!r} it creates"
                    )
    return paths


# Run inside the sandbox as ``python3 -I -S - WORKDIR`` (source on stdin or as a file). Prints
# "ok N" (N links checked) or, exit LINK_GUARD_REFUSED, "refused\0LINK\0WHY".
LINK_GUARD = r'''
import os, sys
PROTECTED = %(protected)r
MAX_HOPS = 40
def protected(p):
    return any(p == d or p.startswith(d + "/") for d in PROTECTED)
memo = {}
def join(base, target):
    return target if target.startswith("/") else base.rstrip("/") + "/" + target
def resolve(path, hops):
    # Walk ``path`` one component at a time as the kernel would ("." skipped, ".." applied to
    # what is resolved so far), replacing symlinks by their targets (readlink: never followed),
    # refusing a protected prefix at every step. Every resolved prefix is memoised, so links
    # sharing directories cost one lstat each.
    if hops > MAX_HOPS:
        raise ValueError("is a symlink chain too long or looping")
    cur = "/"
    parts = path.split("/")
    for i, c in enumerate(parts):
        if c in ("", "."):
            continue
        if c == "..":
            cur = os.path.dirname(cur) or "/"
            continue
        nxt = cur.rstrip("/") + "/" + c
        if nxt in memo:
            cur = memo[nxt]
            continue
        if protected(nxt):
            raise ValueError("reaches " + nxt)
        try:
            st = os.lstat(nxt)
        except OSError:  # missing: the rest is lexical (nothing there to follow)
            cur = os.path.normpath(os.path.join(nxt, *[x for x in parts[i + 1:] if x]))
            if protected(cur):
                raise ValueError("reaches " + cur)
            return cur
        if (st.st_mode & 0o170000) == 0o120000:
            res = resolve(join(cur, os.readlink(nxt)), hops + 1)
        else:
            res = nxt
        memo[nxt] = res
        cur = res
    return cur
root = os.path.normpath(sys.argv[1])
n = 0
try:
    if os.path.islink(root):
        raise ValueError("(the workspace itself) is a symlink")
    stack = [root]
    while stack:
        d = stack.pop()
        with os.scandir(d) as it:
            for e in it:
                if e.is_symlink():
                    n += 1
                    try:
                        if resolve(join(d, os.readlink(e.path)), 1) == "/":
                            raise ValueError("reaches /")
                    except ValueError as err:
                        sys.stdout.write("refused\0" + e.path + "\0" + str(err))
                        sys.exit(%(refused)d)
                elif e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
except ValueError as e:
    sys.stdout.write("refused\0" + root + "\0" + str(e))
    sys.exit(%(refused)d)
except RecursionError:
    sys.stdout.write("refused\0" + root + "\0is a symlink chain too deep")
    sys.exit(%(refused)d)
sys.stdout.write("ok %%d\n" %% n)
''' % {"protected": PROTECTED_PREFIXES, "refused": LINK_GUARD_REFUSED}  # noqa: UP031


def link_guard_error(stdout: str) -> UnsafeWorkspaceError:
    """The error for LINK_GUARD's refusal output."""
    parts = stdout.split("\0")
    link, why = (parts[1], parts[2]) if len(parts) >= 3 else ("?", stdout[-300:])
    return UnsafeWorkspaceError(
        f"workspace symlink {link[:200]!r} {why[:200]}: a path the grader or the kernel owns "
        "(/, /proc, /sys, /dev, hidden tests, logs, solution) or a loop: refused"
    )
