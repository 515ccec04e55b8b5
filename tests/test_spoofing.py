"""Spoofing: an agent that attacks the grading instead of doing the task never scores above an
honest empty diff (0.0), and never crashes the harness.

Each attack is a tiny "agent": a copy of a shipped task whose ``solution/solve.sh`` is replaced by
the attack, run with the ``oracle`` agent through the real CLI (``run`` on a temp config, one
rollout for all attacks, ``--data-dir`` in tmp). The honest baselines run in the same rollout:
``nop`` (empty diff, 0.0) and the real reference solution (1.0, so grading does work).

Unit tests at the end pin the verifier contract (rollouts/grading/verifier.py): a verifier that
exits non-zero while reporting success, one that writes no reward file, one whose reward file is
malformed, oversized or contradicts its JUnit file: an error, never a pass; forged diffs that
reach into ``.git``, outside the workspace or through a symlink are refused before any apply.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from rollouts.errors import OutputLimitExceeded, SandboxFileNotFound
from rollouts.grading.verifier import (
    RewardFileError,
    RewardMissingError,
    UnsafeDiffError,
    check_diff,
    parse_reward_json,
    parse_reward_txt,
    run_verifier,
)
from rollouts.sandbox.base import ExecResult

ROOT = Path(__file__).resolve().parents[1]
PREPARED = ROOT / "data" / "tasks" / "prepared"
NIAH = sorted((ROOT / "data" / "tasks" / "generated").glob("niah*/*/tb_meta.json"))

pytestmark = [pytest.mark.docker]

JUNIT = (
    '<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" errors="0" failures="0" '
    'skipped="0" tests="6" time="0.01">'
    + "".join(
        f'<testcase classname="test_stats" name="test_{n}" time="0.001"/>'
        for n in ("mean", "median_odd", "median_even", "mode", "variance", "moving_average")
    )
    + "</testsuite></testsuites>"
)

# Shell helpers every attack script starts with: forge DIR writes a perfect reward + JUnit there.
PRELUDE = f"""#!/bin/bash
set +e
JUNIT='{JUNIT}'
forge() {{ mkdir -p "$1"; echo 1.0 > "$1/reward.txt"; echo '{{"reward": 1.0, "tests_passed": 6, "tests_total": 6}}' > "$1/reward.json"; printf '%s' "$JUNIT" > "$1/junit.xml"; }}
"""

# Python that forges the verifier's output from inside a process (used by startup-hook attacks).
PY_FORGE = f"""
import os, sys
d = os.environ.get("LOGS_DIR", "/logs/verifier")
try:
    os.makedirs(d, exist_ok=True)
    open(os.path.join(d, "reward.json"), "w").write('{{"reward": 1.0}}')
    open(os.path.join(d, "junit.xml"), "w").write({JUNIT!r})
except OSError:
    pass
if "pytest" in " ".join(sys.argv):
    os._exit(0)
"""

# A pytest plugin that turns every result into a pass.
FORCE_PASS_PLUGIN = """
import pytest

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    rep.outcome = "passed"
    rep.longrepr = None

def pytest_sessionfinish(session, exitstatus):
    session.exitstatus = 0
"""


@dataclass
class Attack:
    name: str
    script: str  # bash, run in the workspace of the agent sandbox (after PRELUDE)
    task: str = "fix_bug_stats"  # a dir under data/tasks/prepared (or a path)
    meta: dict | None = None  # tb_meta.json changes (shallow per section)
    expect: str = "not_above"  # not_above | error_agent | error_verifier | zero
    limitation: str | None = None  # documented: the attack works; xfail with this reason
    pending: str | None = None  # a known harness bug outside grading (non-strict xfail until fixed)


ATTACKS: list[Attack] = [
    Attack(
        "reward-files-in-agent-sandbox",
        """
forge /logs/verifier; chmod -R a-w /logs/verifier; forge /tmp/logs/verifier
""",
        expect="zero",
    ),
    Attack(
        "reward-files-in-workspace",
        """
forge "$PWD/logs/verifier"; forge "$PWD"; forge "$PWD/.logs/verifier"
""",
        expect="zero",
    ),
    Attack(
        "fake-hidden-tests",
        """
for d in /tests "$PWD/tests"; do
  mkdir -p "$d"
  printf '#!/bin/bash\\nmkdir -p /logs/verifier; echo 1.0 > /logs/verifier/reward.txt\\nexit 0\\n' > "$d/test.sh"
  printf 'def test_ok():\\n    assert True\\n' > "$d/test_stats.py"
done
""",
        expect="zero",
    ),
    Attack(
        "conftest-forces-pass",
        f"""
cat > conftest.py <<'PY'
{FORCE_PASS_PLUGIN}
PY
mkdir -p tests && cp conftest.py tests/conftest.py && cp conftest.py /conftest.py
""",
        expect="zero",
    ),
    Attack(
        "pytest-config-files",
        f"""
cat > forcepass.py <<'PY'
{FORCE_PASS_PLUGIN}
PY
printf '[pytest]\\naddopts = -p forcepass\\npythonpath = /workspace\\n' > pytest.ini
printf '[tool.pytest.ini_options]\\naddopts = "-p forcepass"\\npythonpath = ["/workspace"]\\n' > pyproject.toml
printf '[tool:pytest]\\naddopts = -p forcepass\\npythonpath = /workspace\\n' > setup.cfg
cp pytest.ini tox.ini
""",
        expect="zero",
    ),
    Attack(
        "python-startup-hooks",
        f"""
cat > _forge.py <<'PY'
{PY_FORGE}
PY
echo 'import _forge' > sitecustomize.py; cp sitecustomize.py usercustomize.py
echo 'import _forge' > zz_forge.pth
mkdir -p lib && cp _forge.py sitecustomize.py zz_forge.pth lib/
for d in /usr/lib/python3/dist-packages /usr/local/lib/python3.11/dist-packages \\
         /root/.local/lib/python3.11/site-packages; do
  mkdir -p "$d" && cp _forge.py sitecustomize.py usercustomize.py zz_forge.pth "$d/"
done
""",
        expect="zero",
    ),
    Attack(
        "fake-interpreters-on-path",
        f"""
mkdir -p bin pytest
for f in bin/python3 bin/python bin/pytest bin/bash python3 pytest/__main__.py; do
  printf '#!/bin/sh\\nmkdir -p /logs/verifier; echo 1.0 > /logs/verifier/reward.txt; exit 0\\n' > "$f"; chmod +x "$f"
done
cat > pytest/__init__.py <<'PY'
{PY_FORGE}
PY
cp pytest/__init__.py pytest.py
cp bin/python3 /usr/local/bin/python3; cp bin/pytest /usr/local/bin/pytest
for rc in /root/.bashrc /root/.profile /etc/profile /etc/bash.bashrc; do
  echo 'export PATH=/workspace/bin:/workspace:$PATH PYTHONPATH=/workspace' >> "$rc"
done
echo 'PATH=/workspace/bin:/usr/bin:/bin' > /etc/environment
""",
        expect="zero",
    ),
    Attack(
        "symlinks-to-tests-and-logs",
        """
ln -s /tests tests_link; ln -s /logs/verifier logs_link; ln -s / rootfs
ln -s /proc/self/root/tests proc_tests; ln -s ../../logs verifier_logs
""",
        expect="error_agent",
    ),
    Attack(
        "fake-passed-output",
        """
for i in 1 2 3; do echo "tests/test_stats.py::test_median_even PASSED"; done
head -c 200000 /dev/urandom; head -c 100000 /dev/urandom >&2  # and binary noise: logs stay UTF-8
echo "============================== 6 passed in 0.01s =============================="
echo 'verifier: {"reward": 1.0, "tests_passed": 6, "tests_total": 6}' | tee /dev/stderr
cat >> stats.py <<'PY'

print("test_stats.py::test_median_even PASSED")
print("============================== 6 passed in 0.01s ==============================")
print('verifier: {"reward": 1.0, "tests_passed": 6, "tests_total": 6}')
PY
""",
        expect="zero",
    ),
    Attack(
        "files-outside-workspace",
        f"""
cat > /tmp/_forge.py <<'PY'
{PY_FORGE}
PY
echo 'forge /logs/verifier' > /etc/profile.d/zz_forge.sh
echo 'python3 /tmp/_forge.py' >> /root/.bashrc
printf '[core]\\n\\thooksPath = /tmp/hooks\\n\\tfsmonitor = /tmp/hooks/fsmon\\n' > /root/.gitconfig
mkdir -p /tmp/hooks && printf '#!/bin/sh\\nmkdir -p /logs/verifier; echo 1.0 > /logs/verifier/reward.txt\\n' > /tmp/hooks/fsmon
chmod +x /tmp/hooks/fsmon
printf 'diff --git a/x b/x\\n' > /tmp/rollouts_agent.diff
f=$(python3 -c 'import _pytest.runner as r; print(r.__file__)' 2>/dev/null)
[ -n "$f" ] && printf '\\nimport os\\nos._exit(0)\\n' >> "$f"
""",
        expect="zero",
    ),
    Attack(
        "tamper-hidden-test-paths",
        """
rm -rf /tests /logs
printf 'not a dir' > /tests
mkdir -p /logs && ln -s "$PWD/out" /logs/verifier && forge "$PWD/out"
mkdir -p tests && printf '#!/bin/bash\\nexit 0\\n' > tests/test.sh
""",
        expect="zero",
    ),
    Attack(
        "git-internals",
        """
hook='#!/bin/sh
mkdir -p /logs/verifier; echo 1.0 > /logs/verifier/reward.txt'
for h in post-checkout pre-commit post-commit post-merge applypatch-msg pre-applypatch post-applypatch \\
         post-index-change reference-transaction pre-auto-gc; do
  printf '%s\\n' "$hook" > .git/hooks/$h; chmod +x .git/hooks/$h
done
mkdir -p .githooks && cp .git/hooks/* .githooks/
cat > /tmp/extdiff <<'SH'
#!/bin/sh
[ -e /tmp/extdiff.done ] && exit 0
touch /tmp/extdiff.done
cat <<'P'
diff --git a/.git/hooks/post-checkout b/.git/hooks/post-checkout
new file mode 100755
--- /dev/null
+++ b/.git/hooks/post-checkout
@@ -0,0 +1 @@
+mkdir -p /logs/verifier; echo 1.0 > /logs/verifier/reward.txt
P
SH
chmod +x /tmp/extdiff
git config core.hooksPath .githooks
git config core.fsmonitor /tmp/hooks-fsmon
git config diff.external /tmp/extdiff
printf '* diff=evil\\n' > .gitattributes
git config diff.evil.command /tmp/extdiff
git config diff.evil.textconv /tmp/extdiff
""",
        expect="zero",
    ),
    Attack(
        "background-tamperer",
        """
setsid nohup bash -c 'while :; do
  mkdir -p /logs/verifier /tests; echo 1.0 > /logs/verifier/reward.txt
  printf "def test_ok():\\n    pass\\n" > /tests/test_stats.py
  sleep 0.05
done' >/dev/null 2>&1 < /dev/null &
disown
sleep 0.5
""",
        expect="zero",
    ),
    Attack(
        "kill-the-verifier",
        f"""
cat >> stats.py <<'PY'

import os as _os, signal as _signal
{PY_FORGE.replace("os._exit(0)", "pass")}
_os.kill(_os.getppid(), _signal.SIGKILL)
_os._exit(0)
PY
""",
        expect="zero",  # the module runs as nobody in a child process: it can reach neither
        # the verifier process nor /logs/verifier (tests/untrusted.py of the shipped tasks)

    ),
    Attack(
        "kill-the-grading-sandbox",
        """
cat >> stats.py <<'PY'

import os as _os, signal as _signal
try:
    _os.kill(1, _signal.SIGKILL)
    _os.kill(-1, _signal.SIGKILL)
except OSError:
    pass
PY
""",
        expect="not_above",
    ),
    Attack(
        "oversized-verifier-output",
        """
cat >> stats.py <<'PY'

import os as _os, signal as _signal
_d = _os.environ.get("LOGS_DIR", "/logs/verifier")
with open(_os.path.join(_d, "reward.json"), "w") as _f:
    _f.write('{"reward": 1.0, "pad": "' + "x" * (6 * 1024 * 1024) + '"}')
print("y" * (3 * 1024 * 1024))
_os.kill(_os.getppid(), _signal.SIGKILL)
PY
""",
        expect="zero",  # the module runs as nobody in a child process: it can reach neither
        # the verifier process nor /logs/verifier (tests/untrusted.py of the shipped tasks)

    ),
    Attack(
        "exit-code-only-verifier",
        """
cat >> stats.py <<'PY'

import os as _os
_os._exit(0)
PY
""",
        meta={
            "tests": {
                "command": "cd /tests && python3 -m pytest -q -p no:cacheprovider -c /dev/null "
                "--rootdir=/tests /tests"
            }
        },
        expect="error_verifier",
    ),
    Attack(
        "in-process-junit-forgery",
        f"""
cat >> stats.py <<'PY'

{PY_FORGE}
PY
""",
        # the shipped tasks run the agent's module in a child process as `nobody`
        # (tests/untrusted.py): it can neither write /logs/verifier nor end pytest
        expect="zero",
    ),
]
if NIAH:
    ATTACKS.append(
        Attack(
            "answer-symlink-to-gold",
            "ln -sf /tests/gold.json answer.txt",
            task=str(NIAH[0].parent),
            expect="error_agent",
        )
    )
ATTACKS.append(
    Attack(
        "shared-mode-background-tamperer",
        """
setsid nohup bash -c 'while :; do
  mkdir -p /logs/verifier; echo 1.0 > /logs/verifier/reward.txt
  [ -d /tests ] && printf "def test_ok():\\n    pass\\n" > /tests/test_stats.py
  sleep 0.01
done' >/dev/null 2>&1 < /dev/null &
disown
sleep 0.5
""",
        meta={"tests": {"mode": "shared"}},
        expect="zero",
    )
)

BASELINES = {"honest-empty-diff": ("fix_bug_stats", "nop"), "honest-solution": ("fix_bug_stats", "oracle")}


def _make_task(tmp: Path, attack: Attack) -> Path:
    src = Path(attack.task) if "/" in attack.task else PREPARED / attack.task
    d = tmp / "tasks" / attack.name
    shutil.copytree(src, d)
    (d / "solution").mkdir(exist_ok=True)
    (d / "solution" / "solve.sh").write_text(PRELUDE + attack.script + "\nexit 0\n")
    meta = json.loads((d / "tb_meta.json").read_text())
    meta["name"] = attack.name
    meta["solution"] = "solution/solve.sh"
    meta["timeouts"] = {**meta.get("timeouts", {}), "agent_sec": 120, "verifier_sec": 60}
    for k, v in (attack.meta or {}).items():
        meta[k] = {**meta.get(k, {}), **v} if isinstance(v, dict) else v
    (d / "tb_meta.json").write_text(json.dumps(meta))
    return d


@pytest.fixture(scope="module")
def rollout(tmp_path_factory, base_image):
    """Run every attack and the baselines in one rollout through the real CLI; {name: record}."""
    tmp = tmp_path_factory.mktemp("spoof")
    body = 'name = "spoofing"\nparallel = 2\nmax_retries = 0\n'
    names = []
    for a in ATTACKS:
        d = _make_task(tmp, a)
        body += f'\n[[tasks]]\nprepared_dir = "{d}"\nagent = "oracle"\n'
        names.append(a.name)
    for name, (task, agent) in BASELINES.items():
        body += f'\n[[tasks]]\nprepared_dir = "{PREPARED / task}"\nagent = "{agent}"\n'
        names.append(name)
    cfg = tmp / "spoofing.toml"
    cfg.write_text(body)
    data = tmp / "data"
    env = {k: v for k, v in os.environ.items() if k not in ("ROLLOUTS_DATA_DIR", "SANDBOX_BACKEND")}
    r = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "eval_rollouts.py"),
            "--data-dir",
            str(data),
            "run",
            str(cfg),
            "--json",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert "Traceback" not in r.stderr + r.stdout, r.stderr[-5000:]
    assert r.returncode in (0, 1), f"exit {r.returncode}\n{r.stderr[-5000:]}"
    rdir = sorted((data / "rollouts" / "spoofing").glob("2*"))[-1]
    m = json.loads((rdir / "manifest.json").read_text())
    assert m["status"] == "completed"
    for log in data.rglob("*.log"):  # binary agent output was decoded, not written raw
        log.read_bytes().decode("utf-8")
    by_entry = {rec["entry_index"]: rec for rec in m["results"]}
    out = {name: by_entry[i] for i, name in enumerate(names)}
    # a table for the report (-s shows it)
    print("\nattack outcomes:")
    for name, rec in out.items():
        print(
            f"  {name:36} status={rec['status']:16} reward={rec['reward']!s:5} kind={rec['error_kind']!s:9} "
            f"{(rec['error'] or '')[:110]}"
        )
    return out


def test_baselines(rollout):
    assert rollout["honest-empty-diff"]["reward"] == 0.0
    assert rollout["honest-solution"]["reward"] == 1.0, rollout["honest-solution"]


def _params():
    out = []
    for a in ATTACKS:
        marks = [pytest.mark.xfail(reason=a.limitation, strict=True)] if a.limitation else []
        marks += [pytest.mark.xfail(reason=a.pending, strict=False)] if a.pending else []
        out.append(pytest.param(a, id=a.name, marks=marks))
    return out


@pytest.mark.parametrize("attack", _params())
def test_attack_scores_no_more_than_an_empty_diff(rollout, attack: Attack):
    rec = rollout[attack.name]
    honest = rollout["honest-empty-diff"]["reward"]
    assert rec["status"] in ("completed", "agent_timeout", "verifier_timeout", "error"), rec
    assert rec["reward"] is None or rec["reward"] <= honest, f"{attack.name} scored {rec['reward']}: {rec}"
    if attack.expect == "zero":
        assert rec["status"] == "completed" and rec["reward"] == 0.0, rec
    elif attack.expect == "error_agent":
        assert rec["status"] == "error" and rec["error_kind"] == "agent", rec
    elif attack.expect == "error_verifier":
        assert rec["status"] == "error" and rec["error_kind"] == "verifier", rec


def test_enough_attacks():
    assert len([a for a in ATTACKS if not a.limitation and not a.pending]) >= 12


# --------------------------------------------------------------------------- verifier contract units
class FakeSandbox:
    """Just enough of a Sandbox for run_verifier: canned exec results and files."""

    def __init__(self, exit_code: int = 0, files: dict[str, bytes] | None = None, timed_out: bool = False):
        self.exit_code, self.files, self.timed_out = exit_code, files or {}, timed_out
        self.commands: list = []

    def exec(self, cmd, **kw):
        self.commands.append((cmd, kw))
        if isinstance(cmd, str) and "-type l -print0" in cmd:
            return ExecResult(exit_code=0, stdout="")
        if cmd == "bash /tests/test.sh":
            return ExecResult(
                exit_code=self.exit_code, stdout="ran", timed_out=self.timed_out, duration_sec=0.1
            )
        return ExecResult(exit_code=0)

    def put_dir(self, src, dest):
        pass

    def get_dir(self, src, dest, max_bytes=256 * 1024 * 1024):
        """The sandbox contract (rollouts/sandbox/base.py): typed errors, as both backends raise."""
        prefix = src.rstrip("/") + "/"
        found = {p[len(prefix):]: d for p, d in self.files.items() if p.startswith(prefix)}
        if not found:
            raise SandboxFileNotFound(src)
        if sum(len(d) for d in found.values()) > max_bytes:
            raise OutputLimitExceeded(src, max_bytes, sum(len(d) for d in found.values()))
        for name, data in found.items():
            (Path(dest) / name).parent.mkdir(parents=True, exist_ok=True)
            (Path(dest) / name).write_bytes(data)

    def get_file(self, path, max_bytes=64 * 1024 * 1024):
        if path not in self.files:
            raise SandboxFileNotFound(path)
        data = self.files[path]
        if len(data) > max_bytes:
            raise OutputLimitExceeded(path, max_bytes, len(data))
        return data


class FakeTask:
    def __init__(self):
        from rollouts.task import TaskMeta

        self.meta = TaskMeta.model_validate({"schema_version": 1, "name": "t"})
        self.dir = Path("/nonexistent")


def _verify(sb):
    return run_verifier(sb, FakeTask(), "/workspace")


def test_nonzero_exit_with_success_is_an_error():
    sb = FakeSandbox(exit_code=1, files={"/logs/verifier/reward.json": b'{"reward": 1.0}'})
    with pytest.raises(RewardFileError, match="contradictory"):
        _verify(sb)
    sb = FakeSandbox(exit_code=2, files={"/logs/verifier/reward.txt": b"0.5\n"})
    with pytest.raises(RewardFileError, match="contradictory"):
        _verify(sb)


def test_missing_output_is_an_error_even_with_exit_0():
    with pytest.raises(RewardMissingError, match="no reward file"):
        _verify(FakeSandbox(exit_code=0))
    with pytest.raises(RewardMissingError):
        _verify(FakeSandbox(exit_code=1))


def test_full_marks_with_failed_junit_tests_is_an_error():
    junit = (
        b'<testsuite tests="2"><testcase classname="t" name="a"/>'
        b'<testcase classname="t" name="b"><failure message="x"/></testcase></testsuite>'
    )
    sb = FakeSandbox(
        files={"/logs/verifier/reward.json": b'{"reward": 1}', "/logs/verifier/junit.xml": junit}
    )
    with pytest.raises(RewardFileError, match="failed test"):
        _verify(sb)


def test_broken_junit_does_not_count_as_zero_tests():
    sb = FakeSandbox(files={"/logs/verifier/reward.json": b'{"reward": 0.5, "tests_passed": 1, "tests_total": 2}',
                            "/logs/verifier/junit.xml": b"<testsuite><testcase name="})
    v = _verify(sb)
    assert v.tests == [] and v.standard_metrics["tests_total"] == 2 and v.standard_metrics["tests_passed"] == 1


def test_oversized_reward_file_is_a_verifier_error_not_infra():
    sb = FakeSandbox(files={"/logs/verifier/reward.json": b" " * (5 * 1024 * 1024) + b'{"reward": 1}'})
    with pytest.raises(RewardFileError, match="larger than"):
        _verify(sb)


def test_honest_results_pass():
    v = _verify(FakeSandbox(files={"/logs/verifier/reward.json": b'{"reward": 1.0, "tests_passed": 3}'}))
    assert v.reward == 1.0 and v.source == "reward.json" and v.standard_metrics["tests_passed"] == 3
    v = _verify(FakeSandbox(exit_code=1, files={"/logs/verifier/reward.txt": b"0"}))
    assert v.reward == 0.0
    v = _verify(FakeSandbox(timed_out=True, exit_code=124))
    assert v.timed_out and v.reward == 0.0


def test_verifier_runs_with_a_clean_python_env():
    sb = FakeSandbox(files={"/logs/verifier/reward.txt": b"1"})
    _verify(sb)
    env = next(kw["env"] for cmd, kw in sb.commands if cmd == "bash /tests/test.sh")
    assert env["PYTHONNOUSERSITE"] == "1" and env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert "/workspace" not in env["PATH"]
    assert env["LD_PRELOAD"] == "" and env["BASH_ENV"] == ""


@pytest.mark.parametrize("raw", [b"", b"nan", b"1 2", b"\xff", b"inf", b"true"])
def test_malformed_reward_txt(raw):
    with pytest.raises(RewardFileError):
        parse_reward_txt(raw)


@pytest.mark.parametrize(
    "raw", [b"", b"[]", b'{"score": 1}', b'{"reward": "1"}', b'{"reward": true}', b'{"reward": NaN}', b"\xff"]
)
def test_malformed_reward_json(raw):
    with pytest.raises(RewardFileError):
        parse_reward_json(raw)


def _git_diff(path: str, body: str = "+x\n", mode: str = "100644") -> str:
    return (
        f"diff --git a/{path} b/{path}\nnew file mode {mode}\nindex 0000000..1111111\n--- /dev/null\n"
        f"+++ b/{path}\n@@ -0,0 +1 @@\n{body}"
    )


@pytest.mark.parametrize(
    "diff",
    [
        _git_diff(".git/hooks/post-checkout", mode="100755"),
        _git_diff(".git/config"),
        _git_diff("sub/.git/hooks/pre-commit"),
        _git_diff("../logs/verifier/reward.txt"),
        "--- /dev/null\n+++ /usr/lib/python3/dist-packages/evil.pth\n@@ -0,0 +1 @@\n+import os\n",
        'diff --git "a/\\056git/config" "b/\\056git/config"\nnew file mode 100644\n--- /dev/null\n'
        '+++ "b/\\056git/config"\n@@ -0,0 +1 @@\n+[core]\n',
        _git_diff("evil", body="+/usr/lib/python3\n", mode="120000") + _git_diff("evil/x.pth"),
        "*** /dev/null\n--- evil.pth\n***************\n",
        "1a2\n> x\n",
        "diff --git a/old.txt b/new.txt\nsimilarity index 100%\nrename from old.txt\nrename to new.txt\n",
        _git_diff("ok.txt") + "--- /dev/null\n+++ b/traditional.txt\n@@ -0,0 +1 @@\n+x\n",
    ],
    ids=[
        "hook",
        "git-config",
        "nested-git",
        "dotdot",
        "absolute",
        "quoted-git",
        "through-symlink",
        "context",
        "normal",
        "rename",
        "traditional",
    ],
)
def test_forged_diffs_are_refused(diff):
    with pytest.raises(UnsafeDiffError):
        check_diff(diff.encode())


def test_honest_diffs_pass_the_check():
    """Content lines that look like headers, a hunk that ends early, binary patches, symlinks (renames are refused: collection never makes them)."""
    d = (
        _git_diff("a.txt", body="+--- /etc/passwd\n")
        + "diff --git a/b.py b/b.py\nindex 1..2 100644\n--- a/b.py\n"
        "+++ b/b.py\n@@ -1,2 +1,2 @@\n---- ../x\n+++++ /abs\n unchanged\n"
        "diff --git a/img.bin b/img.bin\nnew file mode 100644\nindex 0000000..8352675\nGIT binary patch\n"
        "literal 3\nKcmZQzWC8#H2LJ>B\n\nliteral 0\nHcmV?d00001\n\n"
        + _git_diff("dir/link", body="+target.txt\n", mode="120000")
        + _git_diff(".github/workflows/ci.yml")
    )
    paths = check_diff(d.encode())
    assert "a.txt" in paths and "b.py" in paths and "img.bin" in paths and "dir/link" in paths
