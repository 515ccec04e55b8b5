"""``run -v`` on a terminal: the live table of runs in progress (phase and last step read from the
run folder), long-phase bars, the completed count and mean reward; plain lines without a TTY."""

from __future__ import annotations

import io
import time

from rich.console import Console

from rollouts.store import PHASE_MARK, RunRecord, atomic_write
from rollouts.ui import LiveRuns, Progress, run_phase


def _rec(tmp_path, i: int, task: str = "fix_bug_stats", **kw) -> RunRecord:
    rid = f"20260101__00-00-00-{i}"
    return RunRecord(run_id=rid, run_dir=str(tmp_path / rid), task_dir="t", task_name=task, entry_index=0,
                     rollout_index=i, agent="shell", model="gpt-4o", **kw)


def test_run_phase_from_the_run_folder(tmp_path):
    d = tmp_path / "r"
    assert run_phase(d) == ("before step 1", "")
    atomic_write(d / "logs" / "agent.log", "building rollouts-task-x:abc from Dockerfile\nStep 1/3\n")
    assert run_phase(d) == ("image build", "")
    atomic_write(d / "logs" / "agent.log", "building rollouts-task-x:abc from Dockerfile\nbuilt rollouts-task-x:abc\n")
    assert run_phase(d) == ("before step 1", "")
    atomic_write(d / "logs" / "agent.log", "built x\ndownloading openai-codex-cli-bin==0.163.0 (first use…)\n")
    assert run_phase(d) == ("agent layer", "")
    atomic_write(d / "logs" / "agent.log", "built x\ndownloading a==1\nagent layer rollouts-agent-x built: 9 files in 3.0 s\n")
    assert run_phase(d) == ("before step 1", "")
    atomic_write(d / "logs" / "agent.log", "built x\n[step 1] $ ls\nfile\n[step 2] $ pytest -q\n1 passed\n")
    assert run_phase(d) == ("agent", "[step 2] $ pytest -q")
    (d / "artifacts").mkdir()
    assert run_phase(d)[0] == "grading"
    # with the runner's phase markers (rollouts.store.PHASE_MARK) every phase is named, in order
    log = ""
    for key, shown in (("image", "image"), ("sandbox_start", "sandbox start"), ("setup", "workspace setup"),
                       ("agent", "agent"), ("collect", "collecting"), ("verifier", "grading")):
        log += f"{PHASE_MARK}{key}\n"
        atomic_write(d / "logs" / "agent.log", log)
        assert run_phase(d)[0] == shown, key
        if key == "agent":
            log += "[step 1] $ ls\n"
            atomic_write(d / "logs" / "agent.log", log)
            assert run_phase(d) == ("agent", "[step 1] $ ls")
    atomic_write(d / "logs" / "agent.log", f"{PHASE_MARK}image\nbuilding rollouts-task-x:abc from Dockerfile\n")
    assert run_phase(d)[0] == "image build"  # a long phase inside a marked one shows as itself


def _text(live: LiveRuns) -> str:
    c = Console(record=True, width=200, file=io.StringIO())
    c.print(live.render())
    return c.export_text()


def test_live_table_rows_bars_and_mean(tmp_path):
    live = LiveRuns(Console(file=io.StringIO()), total=4)
    a, b = _rec(tmp_path, 0), _rec(tmp_path, 1, task="implement_slugify")
    atomic_write(tmp_path / a.run_id / "logs" / "agent.log", "[step 3] $ cat stats.py\n")
    atomic_write(tmp_path / b.run_id / "logs" / "agent.log", "building rollouts-task-y:1 from Dockerfile\n")
    live.event("log", None, "starting the local model server (llama.cpp)")
    live.event("start", a, "")
    live.event("start", b, "")
    out = _text(live)
    assert "runs in progress (2)" in out
    assert "fix_bug_stats" in out and "agent" in out and "[step 3] $ cat stats.py" in out
    assert "implement_slugify: image build" in out and "local model server starting" in out
    assert "completed 0/4 · mean reward so far —" in out
    live.event("log", None, "local model server ready at http://127.0.0.1:1234")
    a.status, a.reward = "completed", 1.0
    live.event("end", a, "")
    c = _rec(tmp_path, 2, status="agent_timeout", reward=0.0)
    live.event("start", c, "")
    live.event("end", c, "")
    d = _rec(tmp_path, 3, status="error", error_kind="infra")
    live.event("start", d, "")
    live.event("end", d, "")  # infra errors are not scored (as in summarize)
    out = _text(live)
    assert "runs in progress (1)" in out and "local model server" not in out
    assert "completed 3/4 · mean reward so far 0.500 over 2 scored run(s)" in out


def test_narrow_terminal_shortens_the_last_step_first(tmp_path):
    live = LiveRuns(Console(file=io.StringIO(), width=80), total=1)
    r = _rec(tmp_path, 0, task="shell_hello_file")
    atomic_write(tmp_path / r.run_id / "logs" / "agent.log", "[step 1] $ " + "echo hello " * 20 + "\n")
    live.event("start", r, "")
    c = Console(record=True, width=80, file=io.StringIO())
    c.print(live.render())
    out = c.export_text()
    assert "shell_hello_f" in out and "agent" in out and "[step 1] $ echo" in out and "…" in out


def test_live_view_only_with_a_tty_and_v(tmp_path):
    buf = io.StringIO()
    plain = Progress(Console(file=buf, width=160), total=1, verbosity=1, tty=False)
    plain.start()
    assert plain.live is None
    r = _rec(tmp_path, 0)
    plain.event("start", r, "")
    r.status, r.reward = "completed", 1.0
    plain.event("end", r, "")
    plain.stop()
    assert "run 20260101__00-00-00-0 started: task=fix_bug_stats" in buf.getvalue()
    assert "finished: status=completed reward=1" in buf.getvalue()
    term = io.StringIO()
    tty = Progress(Console(file=term, force_terminal=True, width=160), total=1, verbosity=1, tty=True)
    tty.start()
    assert tty.live is not None
    tty.event("start", _rec(tmp_path, 1), "")
    time.sleep(0.7)  # at least one refresh of the live display
    tty.stop()
    assert tty.live is None and "runs in progress (1)" in term.getvalue()
