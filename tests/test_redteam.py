"""Red team: held-in attacks on grading, one or more per class of issue 10, in fresh and shared mode.

Each attack is a file ``tests/redteam/<mode>_<name>.sh``: the ``solution/solve.sh`` of a copy of
``fix_bug_stats`` (``# mode: shared`` switches the copy to shared-mode grading, ``# stop: agent``
to keep-services), run by the ``oracle`` agent through the real CLI — an adversarial agent.
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
    return dict(re.findall(r"^# (class|mode|expect|stop): (.+)$", path.read_text(), flags=re.M))


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
        d = _make_task(tmp, a.stem, "fix_bug_stats", h["mode"], a.read_text(), h.get("stop"))
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
        print(f"  {name:40} {t.get('agent', 0):6.1f}s {t.get('collect', 0):5.1f}s {t.get('verifier', 0):5.1f}s {rec['status']:16} reward={rec['reward']!s:5} kind={rec['error_kind']!s:8} "
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


def test_every_class_is_attacked_in_both_modes():
    classes = {header(a)["class"].split(" (")[0] for a in ATTACKS}
    assert len(classes) >= 7, classes
    assert {header(a)["mode"] for a in ATTACKS} == {"fresh", "shared"}
    for a in ATTACKS:
        assert header(a)["expect"] in ("zero", "agent", "limitation"), a
