"""Red team: held-in attacks on grading, one or more per class of issue 10, in fresh and shared mode.

Each attack is a file ``tests/redteam/<mode>_<name>.sh``: the ``solution/solve.sh`` of a copy of
a shipped task (``# task:``, default ``fix_bug_stats``, whose tests run the agent's module through
the untrusted runner; attacks on collection and the toolchain use the cheaper ``shell_hello_file``;
``# mode: shared`` switches the copy to shared-mode grading, ``# stop: agent`` to keep-services),
run by the ``oracle`` agent through the real CLI — an adversarial agent.
Header ``# expect:``

- ``zero``  — the run completes and scores 0.0 (the attack is simply ineffective);
- ``agent`` — the run is a counted agent failure (status error, error_kind agent: grading
  refused to keep going without its guarantee);
- ``limitation`` — a documented residual risk of a weaker integrity label: only the label is
  asserted (the attack may score; the label says the task's grading is agent-controlled).

Whatever the expectation, no attack may score above 0 with an ``isolated`` or
``trusted-toolchain`` label, and none may end as ``infra`` (a run that leaves the denominators is
a spoof too). The honest baselines run in the same rollout: the oracle of every shipped task
scores 1.0 and ``nop`` 0.0, in fresh and in shared mode. Attack helpers next to the scripts
(``ptrace_inject.py``) and the real reference solution (``reference.sh``) are copied into each
attack's solution directory. Add an attack = add a file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PREPARED = ROOT / "data" / "tasks" / "prepared"
REDTEAM = Path(__file__).resolve().parent / "redteam"
# REDTEAM_ONLY=substring runs only the matching attacks (while writing one)
ATTACKS = [a for a in sorted(REDTEAM.glob("*.sh")) if os.environ.get("REDTEAM_ONLY", "") in a.stem]
HONEST = [(t.name, "oracle", "fresh") for t in sorted(PREPARED.iterdir()) if (t / "tb_meta.json").is_file()] + [
    ("fix_bug_stats", "nop", "fresh"),
    ("fix_bug_stats", "oracle", "shared"),
    ("fix_bug_stats", "nop", "shared"),
]

pytestmark = [pytest.mark.docker]


def header(path: Path) -> dict[str, str]:
    """``# key: value`` lines of an attack script."""
    return dict(re.findall(r"^# (class|mode|expect|stop|task): (.+)$", path.read_text(), flags=re.M))


def _make_task(tmp: Path, name: str, src: str, mode: str, solve: str | None, stop: str | None = None) -> Path:
    d = tmp / "tasks" / name
    shutil.copytree(PREPARED / src, d)
    meta = json.loads((d / "tb_meta.json").read_text())
    meta["name"] = name
    meta["tests"] = {**meta["tests"], "mode": mode, **({"stop": stop} if stop else {})}
    meta["timeouts"] = {**meta["timeouts"], "agent_sec": 120, "verifier_sec": 60}
    if solve is not None:
        sol = d / "solution"
        shutil.copy(sol / "solve.sh", sol / "reference.sh")
        shutil.copy(REDTEAM / "ptrace_inject.py", sol / "ptrace_inject.py")
        (sol / "solve.sh").write_text(solve.rstrip() + "\nexit 0\n")
    (d / "tb_meta.json").write_text(json.dumps(meta))
    return d


@pytest.fixture(scope="module")
def rollout(tmp_path_factory, base_image):
    """Every attack and baseline in one rollout through the real CLI; {name: run record}."""
    tmp = tmp_path_factory.mktemp("redteam")
    body = 'name = "redteam"\nparallel = 2\nmax_retries = 0\n'
    names = []
    scale = "16384" if os.environ.get("ROLLOUTS_SLOW") == "1" else "1024"
    for a in ATTACKS:
        h = header(a)
        d = _make_task(tmp, a.stem, h.get("task", "fix_bug_stats"), h["mode"], a.read_text(), h.get("stop"))
        body += f'\n[[tasks]]\nprepared_dir = "{d}"\nagent = "oracle"\nenvironment_variables = {{ REDTEAM_N = "{scale}" }}\n'
        names.append(a.stem)
    for task, agent, mode in HONEST:
        name = f"honest-{task}-{agent}-{mode}"
        d = _make_task(tmp, name, task, mode, None)
        body += f'\n[[tasks]]\nprepared_dir = "{d}"\nagent = "{agent}"\n'
        names.append(name)
    (tmp / "redteam.toml").write_text(body)
    data = tmp / "data"
    env = {k: v for k, v in os.environ.items() if k not in ("ROLLOUTS_DATA_DIR", "SANDBOX_BACKEND")}
    r = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "eval_rollouts.py"), "--data-dir", str(data), "run",
         str(tmp / "redteam.toml"), "--json"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    assert "Traceback" not in r.stderr + r.stdout, r.stderr[-5000:]
    assert r.returncode in (0, 1), f"exit {r.returncode}\n{r.stderr[-5000:]}"
    rdir = sorted((data / "rollouts" / "redteam").glob("2*"))[-1]
    m = json.loads((rdir / "manifest.json").read_text())
    by_entry = {rec["entry_index"]: rec for rec in m["results"]}
    out = {name: by_entry[i] for i, name in enumerate(names)}
    scored = [n for n in names[: len(ATTACKS)] if (out[n]["reward"] or 0) > 0]
    infra = [n for n in names[: len(ATTACKS)] if out[n]["error_kind"] == "infra"]
    counted = [n for n in names[: len(ATTACKS)] if out[n]["status"] == "error" and out[n]["error_kind"] == "agent"]
    print(f"\nred team: {len(ATTACKS)} attacks: scored={len(scored)} {scored} infra={len(infra)} {infra} "
          f"counted agent failures={len(counted)} completed at 0.0={len(ATTACKS) - len(scored) - len(infra) - len(counted)}")
    for name, rec in out.items():
        t = rec["timings"]
        print(f"  {name:40} {t.get('total', 0):6.1f}s {rec['status']:16} reward={rec['reward']!s:5} kind={rec['error_kind']!s:8} "
              f"integrity={rec.get('integrity')!s:17} {(rec['error'] or '')[:100]}")
    return out


def _attack_params():
    return [pytest.param(a, id=a.stem) for a in ATTACKS]


@pytest.mark.parametrize("attack", _attack_params())
def test_attack_is_a_counted_zero(rollout, attack: Path):
    rec, h = rollout[attack.stem], header(attack)
    assert rec["error_kind"] != "infra", f"{attack.stem} disappeared as infra: {rec['error']}"
    assert rec["error_kind"] not in ("harness", "config"), rec
    if h["expect"] == "limitation":
        assert rec["integrity"] == "agent-controlled", rec
        return
    assert rec["integrity"] == ("isolated" if h["mode"] == "fresh" else "trusted-toolchain"), rec
    assert not rec["reward"], f"{attack.stem} scored {rec['reward']}"
    if h["expect"] == "zero":
        assert rec["status"] == "completed" and rec["reward"] == 0.0, rec
    else:
        assert h["expect"] == "agent"
        assert rec["status"] == "error" and rec["error_kind"] == "agent", rec


@pytest.mark.parametrize("task,agent,mode", HONEST)
def test_honest_baselines(rollout, task, agent, mode):
    rec = rollout[f"honest-{task}-{agent}-{mode}"]
    assert rec["status"] == "completed", rec
    assert rec["reward"] == (1.0 if agent == "oracle" else 0.0), rec
    assert rec["integrity"] == ("isolated" if mode == "fresh" else "trusted-toolchain")


@pytest.mark.skipif(bool(os.environ.get("REDTEAM_ONLY")), reason="REDTEAM_ONLY selects a subset")
def test_every_class_is_attacked_in_both_modes():
    classes = {header(a)["class"].split(" (")[0] for a in ATTACKS}
    assert len(classes) >= 7, classes
    assert {header(a)["mode"] for a in ATTACKS} == {"fresh", "shared"}
    for a in ATTACKS:
        assert header(a)["expect"] in ("zero", "agent", "limitation"), a


# --------------------------------------------------------------------------- stop and integrity units
def _sandbox(docker_client, image: str):
    from rollouts.sandbox.base import LABEL_TOOL, TOOL_NAME, SandboxSpec
    from rollouts.sandbox.docker import DockerBackend

    spec = SandboxSpec(image=image, labels={LABEL_TOOL: TOOL_NAME, "rollouts.test": "redteam"}, lifetime_sec=120)
    return DockerBackend(docker_client).create(spec)


def _procs(sb) -> str:
    """Command lines of every process (without the sandbox's ``timeout``, which a test replaces)."""
    r = sb.exec(["/bin/bash", "-c", "for s in /proc/[0-9]*/cmdline; do /usr/bin/tr '\\0' ' ' < $s; echo; done"],
                timeout=None)
    assert r.ok, r.output
    return r.stdout


def test_stop_keep_services_kills_the_agents_trees_only(docker_client, base_image):
    """keep-services: a command still running (the agent's tree) dies, a detached daemon lives."""
    import threading

    from rollouts.grading.stop import stop_agent

    with _sandbox(docker_client, base_image) as sb:
        sb.exec("setsid nohup sleep 1001 >/dev/null 2>&1 < /dev/null &", timeout=30)
        res = {}
        t = threading.Thread(target=lambda: res.update(r=sb.exec("sleep 1002 & sleep 1003", timeout=60)))
        t.start()
        for _ in range(50):
            if "sleep 1003" in _procs(sb):
                break
        log = stop_agent(sb, "agent")
        t.join(30)
        assert not t.is_alive() and res["r"].exit_code != 0, res
        left = _procs(sb)
        assert "sleep 1001" in left and "sleep 1002" not in left and "sleep 1003" not in left, left
        assert "detached services keep running" in log
        stop_agent(sb, "all")  # strict: the namespace restarted, the daemon is gone too
        left = _procs(sb)
        assert "sleep 1001" not in left, left


def test_stop_strict_survives_shadowed_tools_and_a_ptraced_main_process(docker_client, base_image):
    """strict: a replaced kill/timeout/bash and a hijacked main process change nothing."""
    from rollouts.grading.stop import stop_agent

    with _sandbox(docker_client, base_image) as sb:
        sb.put_file("/ptrace_inject.py", (REDTEAM / "ptrace_inject.py").read_bytes())
        r = sb.exec("python3 /ptrace_inject.py $(cat /proc/1/task/1/children) 'while :; do sleep 0.1; done'", timeout=30)
        assert r.ok, r.output
        assert "while :" in _procs(sb)
        sb.exec("for b in kill timeout; do printf '#!/bin/sh\\nexit 0\\n' > /usr/local/bin/$b; "
                "chmod +x /usr/local/bin/$b; done", timeout=30)
        stop_agent(sb, "strict")
        left = _procs(sb)
        assert "while :" not in left and "python3" not in left, left


class _ChangedSandbox:
    def __init__(self, paths):
        self.paths = paths

    def changed_paths(self):
        if self.paths is None:
            raise NotImplementedError
        return self.paths


def test_verify_toolchain():
    from rollouts.errors import GradingIntegrityError
    from rollouts.grading.integrity import verify_toolchain

    ok = ["/workspace", "/workspace/a.py", "/usr", "/usr/sbin", "/usr/sbin/docker-init", "/tmp", "/tmp/x", "/root"]
    verify_toolchain(_ChangedSandbox(ok))
    for bad in (["/usr", "/usr/local/bin", "/usr/local/bin/timeout"], ["/etc", "/etc/ld.so.preload"],
                ["/etc/passwd"], ["/usr/lib/python3/dist-packages/_pytest/runner.py"], ["/usr/bin"],
                ["/etc/python3.11", "/etc/python3.11/sitecustomize.py"], ["/lib64"], ["/opt/venv/bin/python"],
                ["/etc/nginx/nginx.conf"], ["/newdir"], ["/root/.local/lib/x.pth"]):
        with pytest.raises(GradingIntegrityError, match=bad[-1]):
            verify_toolchain(_ChangedSandbox(ok + bad))
    with pytest.raises(GradingIntegrityError, match="cannot list"):
        verify_toolchain(_ChangedSandbox(None))


def test_task_labels():
    from rollouts.grading.integrity import task_label
    from rollouts.task import TaskMeta

    def label(**tests):
        return task_label(TaskMeta.model_validate({"schema_version": 1, "name": "t", "tests": tests}))

    assert label() == "isolated"
    assert label(mode="shared") == "trusted-toolchain"
    assert label(mode="shared", stop="agent") == "agent-controlled"
    assert label(mode="shared", toolchain="agent") == "agent-controlled"
    assert label(mode="fresh", toolchain="agent") == "agent-controlled"


def test_a_hung_collection_is_a_counted_failure_not_infra():
    """A replaced ``timeout``/``git`` that never returns: the watchdog outside the sandbox stops it
    and the run fails closed (GradingIntegrityError), instead of waiting for the lifetime backstop
    and ending as infra."""
    import threading

    from rollouts.errors import GradingIntegrityError, SandboxError
    from rollouts.grading.stop import exec_watched

    class Hung:
        def __init__(self):
            self.stopped = threading.Event()

        def exec(self, cmd, **kw):
            assert self.stopped.wait(30), "the watchdog never fired"
            raise SandboxError("sandbox was removed")

        def stop(self):
            self.stopped.set()

    with pytest.raises(GradingIntegrityError, match="collecting"):
        exec_watched(Hung(), "git add -A", "collecting the agent's diff", timeout=-14.8)

    class Broken(Hung):
        def exec(self, cmd, **kw):
            raise SandboxError("connection reset")  # transport, watchdog not fired: infra

    with pytest.raises(SandboxError):
        exec_watched(Broken(), "true", "x", timeout=30)
