"""The verifier: runs a task's hidden tests against what the agent left, and reads the reward.

Contract (Harbor's ``verifier/verifier.py`` convention, tightened): the tests are copied to
``/tests`` only now; ``/logs/verifier/`` is created empty; ``tests.command`` runs in the workspace
under ``timeouts.verifier_sec`` with a fixed ``PATH`` and ``PYTHONNOUSERSITE=1`` /
``PYTHONDONTWRITEBYTECODE=1``. The reward comes only from ``/logs/verifier/reward.txt`` (one float)
or ``/logs/verifier/reward.json`` (named numbers; ``reward`` is primary, other numbers are custom
metrics, a nested ``custom_metrics`` object is accepted too), read as regular files (a symlink
there is ignored) of at most 4 MiB. It is an error, never a pass (:class:`RewardFileError`), when:
no reward file was written (whatever the exit code), a reward file is malformed or outside [0, 1],
the verifier exits non-zero while reporting a positive reward, or it reports full marks while its
JUnit file lists failed tests.

In ``fresh`` mode (the default) grading happens in a new sandbox: workspace at the base commit, the
agent's ``diff.patch`` checked (:func:`check_diff`: no path outside the workspace, none in ``.git``,
none through a symlink the diff creates) and applied (``git apply``, then ``--3way``, then
``patch --fuzz``, as the SWE-bench harness does; git hooks disabled). In both modes, before the
tests are copied in, a workspace symlink that resolves to ``/``, ``/tests``, ``/logs`` or
``/solution`` (or inside them) rejects the run (:class:`UnsafeWorkspaceError`): it could let the
tests read their own expected answers (e.g. ``answer.txt -> /tests/gold.json``).
"""

from __future__ import annotations

import json
import math
import re
import shlex
import tarfile
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rollouts.errors import OutputLimitExceeded, SandboxFileNotFound, VerifierError
from rollouts.sandbox.base import ExecResult, Sandbox

TESTS_DIR = "/tests"
LOGS_DIR = "/logs/verifier"
DIFF_PATH = "/tmp/rollouts_agent.diff"
MAX_REWARD_FILE_BYTES = 4 * 1024 * 1024
# Sandbox paths a workspace symlink may not reach: the hidden tests, the verifier's output, the
# reference solution (and "/", from which all of them are reachable).
PROTECTED_DIRS = (TESTS_DIR, "/logs", "/solution")
VERIFIER_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "PYTHONNOUSERSITE": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
    "BASH_ENV": "",  # no startup file for non-interactive bash / sh
    "ENV": "",
}
# git in the grading sandbox: never run hooks or an fsmonitor, whatever a config says.
GIT = "git -c core.hooksPath=/dev/null -c core.fsmonitor=false"


class RewardFileError(VerifierError):
    """The reward file is malformed, out of range, or contradicts the verifier's exit code."""


class RewardMissingError(RewardFileError):
    """The verifier wrote neither reward.txt nor reward.json."""


class PatchApplyError(VerifierError):
    """The agent's diff did not apply to the base commit in the grading sandbox."""


class UnsafeDiffError(PatchApplyError):
    """The agent's diff touches a path outside the workspace, inside ``.git``, or through a symlink."""


class UnsafeWorkspaceError(VerifierError):
    """The workspace holds a symlink into the hidden tests, the verifier's logs or the solution."""


@dataclass
class Verdict:
    """What grading produced. ``reward`` in [0, 1]; ``metrics`` are named numbers."""

    reward: float
    source: str  # reward.json | reward.txt | exit_code
    exit_code: int
    timed_out: bool
    duration_sec: float
    standard_metrics: dict[str, float] = field(default_factory=dict)
    custom_metrics: dict[str, float] = field(default_factory=dict)
    tests: list[dict[str, Any]] = field(default_factory=list)
    log: str = ""


def _num(v: Any, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise RewardFileError(f"{where}: expected a finite number, got {v!r}")
    return float(v)


def parse_reward_json(raw: bytes) -> tuple[float, dict[str, float]]:
    """``reward.json`` → (reward, custom metrics). RewardFileError on bad content."""
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RewardFileError(f"reward.json is not valid JSON: {e}") from None
    if not isinstance(obj, dict) or "reward" not in obj:
        raise RewardFileError('reward.json must be an object with a numeric "reward"')
    reward = _num(obj["reward"], "reward.json: reward")
    metrics: dict[str, float] = {}
    for k, v in obj.items():
        if k == "reward":
            continue
        if k in ("custom_metrics", "standard_metrics") and isinstance(v, dict):
            for kk, vv in v.items():
                if isinstance(vv, (int, float)) and not isinstance(vv, bool):
                    metrics[kk] = _num(vv, f"reward.json: {k}.{kk}")
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            metrics[k] = _num(v, f"reward.json: {k}")
    return reward, metrics


def parse_reward_txt(raw: bytes) -> float:
    """``reward.txt`` → reward. RewardFileError unless it holds exactly one number."""
    try:
        return _num(float(raw.decode("utf-8").strip()), "reward.txt")
    except (UnicodeDecodeError, ValueError):
        raise RewardFileError(f"reward.txt must hold one number, got {raw[:80]!r}") from None


def parse_junit(raw: bytes) -> list[dict[str, Any]]:
    """Per-test results from a JUnit XML file: [{name, outcome: passed|failed|error|skipped, time}]."""
    try:
        root = ET.fromstring(raw)
    except ET.ParseError:
        return []
    out = []
    for tc in root.iter("testcase"):
        outcome = "passed"
        for child, name in (("failure", "failed"), ("error", "error"), ("skipped", "skipped")):
            if tc.find(child) is not None:
                outcome = name
        cls = tc.get("classname", "")
        out.append(
            {
                "name": f"{cls}::{tc.get('name')}" if cls else tc.get("name"),
                "outcome": outcome,
                "time": float(tc.get("time") or 0),
            }
        )
    return out


def _read(sandbox: Sandbox, path: str, max_bytes: int = MAX_REWARD_FILE_BYTES) -> bytes | None:
    """A verifier output file, None if absent. Oversized output is the verifier's fault
    (RewardFileError), not an infrastructure failure to retry."""
    try:
        return sandbox.get_file(path, max_bytes=max_bytes)
    except SandboxFileNotFound:
        return None
    except OutputLimitExceeded:
        raise RewardFileError(f"{path} is larger than {max_bytes} bytes") from None


# ----------------------------------------------------------------------------- the agent's diff
_HUNK = re.compile(r"^@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@")
_C_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "t": "\t",
    "n": "\n",
    "v": "\v",
    "f": "\f",
    "r": "\r",
    '"': '"',
    "\\": "\\",
}


def _unquote(s: str) -> str:
    """A path as git writes it: C-quoted (``"a/caf\303\251"``) when it has special characters."""
    s = s.rstrip("\n")
    if not s.startswith('"'):
        return s.split("\t", 1)[0]  # "--- a/x\t2024-01-01 ..." (diff -u timestamps)
    out = bytearray()
    i = 1
    while i < len(s) and s[i] != '"':
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            n = s[i + 1]
            if n in "01234567" and i + 3 < len(s):
                out.append(int(s[i + 1 : i + 4], 8) & 0xFF)
                i += 4
                continue
            out += _C_ESCAPES.get(n, n).encode()
            i += 2
            continue
        out += c.encode("utf-8", "surrogateescape")
        i += 1
    return out.decode("utf-8", "replace")


def _diff_git_paths(rest: str) -> list[str]:
    """Both paths of a ``diff --git a/X b/Y`` line (quoted or not)."""
    rest = rest.strip()
    if rest.startswith('"'):
        m = re.match(r'("(?:[^"\\]|\\.)*")\s+(.*)$', rest)
        return [_unquote(m.group(1)), _unquote(m.group(2))] if m else [rest]
    m = re.match(r"(a/.*) (b/.*)$", rest)
    if m and m.group(1)[2:] == m.group(2)[2:]:
        return [m.group(1), m.group(2)]
    if rest.endswith('"'):
        m = re.match(r'(.*?)\s+("(?:[^"\\]|\\.)*")$', rest)
        if m:
            return [m.group(1), _unquote(m.group(2))]
    return rest.split(" ")  # ambiguous (a rename with spaces): every piece is checked


def _strip_prefix(path: str) -> str:
    return path.split("/", 1)[1] if "/" in path else path


def _unsafe(path: str) -> str | None:
    """Why ``path`` (relative to the workspace, after -p1) is unsafe, or None."""
    if path == "/dev/null":
        return None
    if "\0" in path or "\n" in path:
        return "control characters in a path"
    if path.startswith("/"):
        return "absolute path"
    parts = [p for p in path.split("/") if p]
    if ".." in parts:
        return "path leaves the workspace ('..')"
    if any(p.lower() == ".git" or p.lower().startswith(".git ") for p in parts):
        return "path inside .git"
    return None


def check_diff(diff: bytes) -> list[str]:
    """Every path the diff touches, relative to the workspace; UnsafeDiffError if one is absolute,
    has a ``..`` component, lies in ``.git`` or below a symlink the same diff creates.

    Hunk bodies are skipped by their line counts, binary patches up to the next file header, so
    content lines that look like headers are not misread as paths.
    """
    text = diff.decode("utf-8", "surrogateescape")
    paths: list[str] = []
    links: set[str] = set()
    current: list[str] = []
    old = new = 0
    binary = False
    for line in text.split("\n"):
        if (old > 0 or new > 0) and (line == "" or line[0] in " +-\\"):  # inside a hunk
            tag = line[:1]
            if tag == " " or line == "":
                old, new = old - 1, new - 1
            elif tag == "-":
                old -= 1
            elif tag == "+":
                new -= 1
            continue  # "\\ No newline at end of file" counts for neither side
        old = new = 0  # a hunk that ends early: what follows is a header again
        if line.startswith("diff --git "):
            binary = False
            current = [_strip_prefix(p) for p in _diff_git_paths(line[len("diff --git ") :])]
            paths += current
            continue
        if binary:
            continue
        if line.startswith("GIT binary patch"):
            binary = True
            continue
        m = _HUNK.match(line)
        if m:
            old = int(m.group(1)) if m.group(1) is not None else 1
            new = int(m.group(2)) if m.group(2) is not None else 1
            continue
        for prefix, strip in (
            ("--- ", True),
            ("+++ ", True),
            ("rename from ", False),
            ("rename to ", False),
            ("copy from ", False),
            ("copy to ", False),
            ("Index: ", False),
        ):
            if line.startswith(prefix):
                p = _unquote(line[len(prefix) :])
                if p.startswith("/") and p != "/dev/null":
                    raise UnsafeDiffError(f"the agent's diff names the absolute path {p[:200]!r}")
                paths.append(_strip_prefix(p) if strip and p != "/dev/null" else p)
                break
        else:
            if re.match(r"(new file mode|new mode|index [0-9a-f]+\.\.[0-9a-f]+) 120000\b", line) and current:
                links.update(current)
            elif line.startswith("*** ") or re.match(r"^\d+(,\d+)?[acd]\d+", line):
                raise UnsafeDiffError(
                    "the diff is not in git's unified format (context/ed/normal diffs are refused)"
                )
    for p in paths:
        why = _unsafe(p)
        if why:
            raise UnsafeDiffError(f"the agent's diff touches {p[:200]!r}: {why}")
    for p in paths:
        for link in links:
            if p != link and p.startswith(link.rstrip("/") + "/"):
                raise UnsafeDiffError(
                    f"the agent's diff writes {p[:200]!r} through the symlink {link!r} it creates"
                )
    return [p for p in paths if p != "/dev/null"]


def apply_diff(sandbox: Sandbox, workdir: str, diff: bytes) -> str:
    """Check (:func:`check_diff`) and apply the agent's diff in ``workdir``; returns the log.
    UnsafeDiffError / PatchApplyError if it is unsafe or nothing applies it."""
    if not diff.strip():
        return "empty diff: nothing to apply\n"
    check_diff(diff)
    sandbox.put_file(DIFF_PATH, diff)
    log = ""
    for cmd in (
        f"{GIT} apply --binary --whitespace=nowarn {DIFF_PATH}",
        f"{GIT} apply --binary --3way --whitespace=nowarn {DIFF_PATH}",
        f"patch -p1 --batch --fuzz=3 --no-backup-if-mismatch -i {DIFF_PATH}",
    ):
        r = sandbox.exec(cmd, timeout=120, cwd=workdir)
        log += f"$ {cmd}\n{r.output}(exit {r.exit_code})\n"
        if r.ok:
            sandbox.exec(["rm", "-f", DIFF_PATH], timeout=30)
            return log
    raise PatchApplyError("the agent's diff did not apply to the base commit:\n" + log[-2000:])


def _is_protected(target: str) -> bool:
    t = target.rstrip("/") or "/"
    if t == "/":
        return True
    return any(t == d or t.startswith(d + "/") or d.startswith(t + "/") for d in PROTECTED_DIRS)


def check_workspace_links(sandbox: Sandbox, workdir: str) -> None:
    """UnsafeWorkspaceError if a symlink in the workspace (outside ``.git``) resolves to ``/`` or
    to, inside or above ``/tests``, ``/logs`` or ``/solution``."""
    q = shlex.quote(workdir.rstrip("/"))
    script = (
        f"if [ -L {q} ]; then printf 'WORKDIR\\0%s\\0' \"$(readlink -m -- {q})\"; exit 0; fi; "
        f"cd {q} && find . -xdev -path ./.git -prune -o -type l -print0 | "
        'while IFS= read -r -d \'\' l; do printf \'%s\\0%s\\0\' "$l" "$(readlink -m -- "$l")"; done'
    )
    r = sandbox.exec(script, timeout=120)
    if r.exit_code != 0 or r.truncated:
        raise UnsafeWorkspaceError(
            f"cannot check the workspace's symlinks (exit {r.exit_code}"
            f"{', output truncated' if r.truncated else ''}): {r.stderr[-300:]}"
        )
    items = r.stdout.split("\0")
    if items[0] == "WORKDIR":
        raise UnsafeWorkspaceError(
            f"the workspace {workdir} is itself a symlink (to {items[1][:200]!r}): refused"
        )
    for link, target in zip(items[0::2], items[1::2], strict=False):
        if _is_protected(target):
            raise UnsafeWorkspaceError(
                f"workspace symlink {link[2:][:200]!r} resolves to {target[:200]!r}, a path the grader owns "
                "(hidden tests, verifier logs or solution): refused"
            )


def run_verifier(sandbox: Sandbox, task, workdir: str, env: dict[str, str] | None = None) -> Verdict:
    """Copy the hidden tests in, run the verifier, read the reward (see module docstring).

    Raises RewardFileError (missing, malformed or contradictory reward) or UnsafeWorkspaceError;
    the verifier's output so far is on the exception's ``log``. SandboxError on infra failure.
    """
    meta = task.meta
    check_workspace_links(sandbox, workdir)
    # /logs too: it may be a symlink; one exec for both (each round trip costs ~75 ms)
    sandbox.exec(f"rm -rf {TESTS_DIR} /logs && mkdir -p -m 0755 {LOGS_DIR}", timeout=30)
    sandbox.put_dir(task.dir / meta.tests.dir, TESTS_DIR)
    r: ExecResult = sandbox.exec(
        meta.tests.command,
        timeout=meta.timeouts.verifier_sec,
        cwd=workdir,
        env={**VERIFIER_ENV, **(env or {})},
    )
    log = f"$ {meta.tests.command}\n{r.output}\n(exit {r.exit_code}{', timed out' if r.timed_out else ''}, {r.duration_sec:.2f}s)\n"
    verdict = Verdict(
        reward=0.0,
        source="exit_code",
        exit_code=r.exit_code,
        timed_out=r.timed_out,
        duration_sec=r.duration_sec,
        log=log,
    )
    try:
        _score(sandbox, r, verdict)
    except RewardFileError as e:
        e.log = log
        raise
    return verdict


class _VerifierOutput:
    """``/logs/verifier`` copied out in ONE archive transfer (instead of one per file), then read
    from the host copy with the same size rules as :func:`_read`."""

    def __init__(self, sandbox: Sandbox):
        self.sandbox = sandbox
        self._tmp = tempfile.TemporaryDirectory(prefix="rollouts-verifier-")
        self.dir: Path | None = Path(self._tmp.name)
        try:
            sandbox.get_dir(LOGS_DIR, self.dir, max_bytes=64 * 1024 * 1024)
        except SandboxFileNotFound:
            self.dir = None
        except OutputLimitExceeded:
            self.dir = None  # too big to copy whole: fall back to reading file by file
        except (tarfile.TarError, OSError):
            self.dir = None  # e.g. a symlink out of the folder: read the files one by one

    def read(self, name: str, max_bytes: int = MAX_REWARD_FILE_BYTES) -> bytes | None:
        if self.dir is None:
            return _read(self.sandbox, f"{LOGS_DIR}/{name}", max_bytes=max_bytes)
        p = self.dir / name
        if p.is_symlink() or not p.is_file():
            return None
        if p.stat().st_size > max_bytes:
            raise RewardFileError(f"{LOGS_DIR}/{name} is larger than {max_bytes} bytes")
        return p.read_bytes()

    def close(self) -> None:
        self._tmp.cleanup()


def _score(sandbox: Sandbox, r: ExecResult, verdict: Verdict) -> None:
    out = _VerifierOutput(sandbox)
    try:
        _score_from(out, r, verdict)
    finally:
        out.close()


def _score_from(out: _VerifierOutput, r: ExecResult, verdict: Verdict) -> None:
    try:
        junit = out.read("junit.xml", max_bytes=32 * 1024 * 1024)
    except RewardFileError:
        junit = None  # per-test results are optional; a huge file only loses them
    if junit:
        verdict.tests = parse_junit(junit)
        verdict.standard_metrics["tests_total"] = float(len(verdict.tests))
        verdict.standard_metrics["tests_passed"] = float(sum(t["outcome"] == "passed" for t in verdict.tests))
    if r.timed_out:
        return  # reward 0: the runner records verifier_timeout
    raw_json = out.read("reward.json")
    raw_txt = None if raw_json is not None else out.read("reward.txt")
    if raw_json is not None:
        verdict.reward, verdict.custom_metrics = parse_reward_json(raw_json)
        verdict.source = "reward.json"
    elif raw_txt is not None:
        verdict.reward = parse_reward_txt(raw_txt)
        verdict.source = "reward.txt"
    else:
        raise RewardMissingError(
            f"the verifier wrote no reward file ({LOGS_DIR}/reward.txt or reward.json; exit code "
            f"{r.exit_code}): no output is an error, not a pass"
        )
    if not 0.0 <= verdict.reward <= 1.0:
        raise RewardFileError(f"{verdict.source}: reward {verdict.reward} is outside [0, 1]")
    if r.exit_code != 0 and verdict.reward > 0:
        raise RewardFileError(
            f"verifier exited with {r.exit_code} but {verdict.source} reports reward {verdict.reward}: "
            "contradictory result treated as an error"
        )
    failed = [t["name"] for t in verdict.tests if t["outcome"] in ("failed", "error")]
    if verdict.reward >= 1.0 and failed:
        raise RewardFileError(
            f"{verdict.source} reports full marks but junit.xml lists {len(failed)} failed test(s) "
            f"({', '.join(str(n) for n in failed[:3])}): contradictory result treated as an error"
        )
    for k in ("tests_passed", "tests_total"):
        if k in verdict.custom_metrics and k not in verdict.standard_metrics:
            verdict.standard_metrics[k] = verdict.custom_metrics.pop(k)
        else:
            verdict.custom_metrics.pop(k, None)
    verdict.standard_metrics["reward"] = verdict.reward
