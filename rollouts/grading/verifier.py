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

Preparation (diff checked and applied, workspace links guarded, tests installed root-only) is
:mod:`rollouts.grading.prepare`; the guards are :mod:`rollouts.grading.pathguard`. A verifier
helper that cannot keep its guarantee (e.g. the shipped tasks' ``tests/untrusted.py`` cannot drop
privileges to run the agent's code) writes ``/logs/verifier/integrity_error.txt``: the run is then
a counted agent failure (:class:`GradingIntegrityError`), whatever the reward file says.
"""

from __future__ import annotations

import json
import math
import tarfile
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rollouts.errors import (
    GradingIntegrityError,
    OutputLimitExceeded,
    SandboxFileNotFound,
    VerifierError,
)
from rollouts.grading.pathguard import PatchApplyError, UnsafeDiffError, UnsafeWorkspaceError, check_diff
from rollouts.grading.prepare import LOGS_DIR, TESTS_DIR
from rollouts.sandbox.base import ExecResult, Sandbox

__all__ = [
    "PatchApplyError", "UnsafeDiffError", "UnsafeWorkspaceError", "check_diff", "TESTS_DIR", "LOGS_DIR",
]

MAX_REWARD_FILE_BYTES = 4 * 1024 * 1024
# Written by a verifier helper (the shipped tasks' tests/untrusted.py) that could not keep its
# guarantee, e.g. could not drop privileges: the run is a counted failure, never a pass.
INTEGRITY_FILE = "integrity_error.txt"
VERIFIER_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "PYTHONNOUSERSITE": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
    "BASH_ENV": "",  # no startup file for non-interactive bash / sh
    "ENV": "",
    "LD_PRELOAD": "",
    "LD_LIBRARY_PATH": "",
}


class RewardFileError(VerifierError):
    """The reward file is malformed, out of range, or contradicts the verifier's exit code."""


class RewardMissingError(RewardFileError):
    """The verifier wrote neither reward.txt nor reward.json."""


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


def parse_junit(raw: bytes) -> list[dict[str, Any]] | None:
    """Per-test results from a JUnit XML file: [{name, outcome: passed|failed|error|skipped, time
    (seconds)}]; None when it is not well-formed XML (per-test results are optional: the reward
    files decide, and an unreadable junit.xml must not read as "0 tests")."""
    try:
        root = ET.fromstring(raw)
    except ET.ParseError:
        return None
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


def run_verifier(sandbox: Sandbox, task, workdir: str, env: dict[str, str] | None = None) -> Verdict:
    """Run the verifier in a sandbox prepared by :func:`rollouts.grading.prepare.prepare_grading`
    (tests in ``/tests``, empty ``/logs/verifier``) and read the reward (module docstring).

    Raises RewardFileError (missing, malformed or contradictory reward) or GradingIntegrityError
    (a verifier helper reported it could not keep its guarantee); the verifier's output so far is
    on the exception's ``log``. SandboxError on infra failure.
    """
    meta = task.meta
    r: ExecResult = sandbox.exec(
        meta.tests.command,
        timeout=meta.timeouts.verifier_sec,
        cwd=workdir,
        env={**VERIFIER_ENV, **getattr(meta.tests, "env", {}), **(env or {})},
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
        _score(sandbox, r, verdict, exit_checked=getattr(meta.tests, "exit_code", "checked") == "checked")
    except (RewardFileError, GradingIntegrityError) as e:
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


def _score(sandbox: Sandbox, r: ExecResult, verdict: Verdict, exit_checked: bool = True) -> None:
    out = _VerifierOutput(sandbox)
    try:
        _score_from(out, r, verdict, exit_checked)
    finally:
        out.close()


def _score_from(out: _VerifierOutput, r: ExecResult, verdict: Verdict, exit_checked: bool = True) -> None:
    integrity = out.read(INTEGRITY_FILE)
    if integrity is not None:
        raise GradingIntegrityError(
            "a verifier helper could not keep its guarantee: " + integrity.decode("utf-8", "replace")[:1000]
        )
    try:
        junit = out.read("junit.xml", max_bytes=32 * 1024 * 1024)
    except RewardFileError:
        junit = None  # per-test results are optional; a huge file only loses them
    tests = parse_junit(junit) if junit else None
    if tests is not None:
        verdict.tests = tests
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
    if exit_checked and r.exit_code != 0 and verdict.reward > 0:
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
