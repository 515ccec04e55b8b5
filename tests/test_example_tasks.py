"""The example prepared tasks under data/tasks/prepared/, checked without Docker.

For every task: ``load_task`` validates it; the hidden tests give reward 0.0 on the untouched
workspace (a do-nothing agent); and the reference solution, graded the way the harness does it
(solve.sh runs in a git-committed copy of the workspace, its ``git diff`` is applied to a fresh
copy, then ``tests/test.sh`` runs), gives reward 1.0. ``test.sh`` reads ``TESTS_DIR``,
``LOGS_DIR`` and ``WORKSPACE`` (defaults /tests, /logs/verifier, /workspace), so it can run here
against temp dirs; ``python3`` on PATH is this venv's interpreter (it has pytest).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from rollouts.task import load_task

ROOT = Path(__file__).resolve().parents[1]
PREPARED = ROOT / "data" / "tasks" / "prepared"
TASKS = ["fix_bug_stats", "implement_slugify", "shell_hello_file", "long_context_lookup"]

GIT = ["git", "-c", "user.name=rollouts-test", "-c", "user.email=test@example.invalid", "-c", "commit.gpgsign=false"]

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "GIT_"))}
    env.pop("PYTHONPATH", None)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "/usr/bin:/bin")
    env["GIT_CONFIG_GLOBAL"] = os.devnull
    env["GIT_CONFIG_NOSYSTEM"] = "1"
    env.update(extra)
    return env


def _run(argv: list[str], cwd: Path, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, env=_env(**env), capture_output=True, text=True, timeout=timeout)


def _git(ws: Path, *args: str) -> str:
    r = _run([*GIT, *args], ws)
    assert r.returncode == 0, f"git {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}"
    return r.stdout


def _workspace_copy(task, dest: Path) -> Path:
    """The task's workspace, copied and committed as the base commit (as in the sandbox)."""
    shutil.copytree(task.path(task.meta.workspace), dest)
    _git(dest, "init", "-q")
    _git(dest, "add", "-A")
    _git(dest, "commit", "-q", "--allow-empty", "-m", "base")
    return dest


def _grade(task, ws: Path, tmp: Path) -> dict:
    """Run the task's verifier against ``ws``; the reward.json it wrote."""
    tests = tmp / "tests"
    logs = tmp / "logs" / "verifier"
    shutil.copytree(task.path(task.meta.tests.dir), tests)
    logs.mkdir(parents=True)
    assert task.meta.tests.command == "bash /tests/test.sh"
    r = _run(
        ["bash", str(tests / "test.sh")],
        ws,
        timeout=task.meta.timeouts.verifier_sec,
        TESTS_DIR=str(tests),
        LOGS_DIR=str(logs),
        WORKSPACE=str(ws),
        UNTRUSTED_SAME_USER="1",  # outside a sandbox: no privilege drop (tests/untrusted.py)
    )
    reward_file = logs / "reward.json"
    assert reward_file.is_file(), f"verifier wrote no reward.json:\n{r.stdout}\n{r.stderr}"
    result = json.loads(reward_file.read_text())
    assert set(result) == {"reward", "tests_passed", "tests_total"}, result
    assert result["tests_total"] > 0, f"no tests ran:\n{r.stdout}\n{r.stderr}"
    result["_output"] = r.stdout + r.stderr
    return result


@pytest.fixture(params=TASKS)
def task(request):
    return load_task(PREPARED / request.param)


def test_task_is_valid(task):
    meta = task.meta
    assert meta.name == task.dir.name
    assert meta.schema_version == 1
    assert meta.description
    assert meta.metadata.keys() >= {"category", "difficulty"}
    assert meta.network is False
    assert meta.timeouts.agent_sec == 300 and meta.timeouts.verifier_sec == 60
    assert (meta.resources.cpus, meta.resources.memory_mb, meta.resources.pids) == (1, 512, 256)
    assert meta.solution == "solution/solve.sh"
    assert task.instruction.strip()
    for script in (task.dir / "tests" / "test.sh", task.dir / "solution" / "solve.sh"):
        assert script.stat().st_mode & stat.S_IXUSR, f"{script} is not executable"
    assert any(task.path(meta.workspace).iterdir()), "workspace is empty"
    assert list((task.dir / "tests").glob("test_*.py")), "no hidden test files"


def test_untouched_workspace_scores_zero(task, tmp_path):
    ws = _workspace_copy(task, tmp_path / "workspace")
    result = _grade(task, ws, tmp_path)
    assert result["reward"] == 0.0, result["_output"]
    assert result["tests_passed"] < result["tests_total"]


def test_reference_solution_scores_one(task, tmp_path):
    # The oracle run: solve.sh in the agent's workspace, cwd = workspace.
    agent_ws = _workspace_copy(task, tmp_path / "agent" / "workspace")
    solution_dir = task.path(task.meta.solution).parent
    r = _run(
        ["bash", str(task.path(task.meta.solution))],
        agent_ws,
        timeout=task.meta.timeouts.agent_sec,
        SOLUTION_DIR=str(solution_dir),
    )
    assert r.returncode == 0, f"solve.sh failed:\n{r.stdout}\n{r.stderr}"
    _git(agent_ws, "add", "-A")
    diff = _git(agent_ws, "diff", "--cached", "--binary", "HEAD")
    assert diff.strip(), "solve.sh changed nothing"

    # Grading: a fresh copy at the base commit, the agent's diff applied.
    grade_ws = _workspace_copy(task, tmp_path / "grade" / "workspace")
    (tmp_path / "agent.diff").write_text(diff)
    _git(grade_ws, "apply", "--binary", str(tmp_path / "agent.diff"))
    # Files an agent might leave behind in the workspace must not influence the verifier.
    (grade_ws / "conftest.py").write_text("raise RuntimeError('workspace conftest.py was loaded')\n")
    (grade_ws / "pytest.ini").write_text("[pytest]\naddopts = --collect-only\n")

    result = _grade(task, grade_ws, tmp_path / "grade")
    assert result["reward"] == 1.0, result["_output"]
    assert result["tests_passed"] == result["tests_total"]


def test_verifier_partial_credit_is_binary(tmp_path):
    """A partly right answer: some hidden tests pass, the reward stays 0.0."""
    task = load_task(PREPARED / "shell_hello_file")
    ws = _workspace_copy(task, tmp_path / "workspace")
    (ws / "greeting.txt").write_text("Hello World!\n")
    result = _grade(task, ws, tmp_path)
    assert result["reward"] == 0.0
    assert (result["tests_passed"], result["tests_total"]) == (1, 2)


def test_untrusted_helper_copies_are_identical():
    """Tasks are self-contained, so each Python task carries its own copy of tests/untrusted.py
    (the agent's module runs as nobody in a child process); the copies must not drift apart."""
    copies = sorted((ROOT / "data/tasks/prepared").glob("*/tests/untrusted.py"))
    assert len(copies) >= 2
    assert len({c.read_bytes() for c in copies}) == 1
