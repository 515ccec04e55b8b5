"""Console output of ``run``: the spec's quiet mode (status polling + spinner), ``-v`` progress
lines, ``-vv`` full container output. Plain lines, no spinner, when stdout is not a TTY; colour
off when ``NO_COLOR`` is set (rich honours it).

With a TTY, ``-v`` adds a live table (:class:`LiveRuns`, rich ``Live``) of the runs in progress —
task, agent, model, phase, elapsed, last step — above the completed count and the mean reward so
far; long phases (a task image build, the local model server starting) show a progress bar. The
phase and last step are read from the run folder (see :func:`run_phase`), so the table needs no
more from the runner than its start/end/log events.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from pathlib import Path

from rich.console import Console, Group
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from rollouts.store import PHASE_MARK, RunRecord

PREFIX = "[rollouts]"


def make_console(stderr: bool = False) -> Console:
    """A rich console; when output is not a terminal (CI logs, pipes) it is 160 columns wide so
    tables are not squeezed to 80."""
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else 160
    return Console(stderr=stderr, highlight=False, width=width)


class Progress:
    """Receives runner events and prints them at the chosen verbosity (0, 1, 2)."""

    def __init__(self, console: Console, total: int, verbosity: int = 0, tty: bool | None = None):
        self.console = console
        self.total = total
        self.verbosity = verbosity
        self.done = 0
        self._lock = threading.Lock()
        self._status = None
        self.tty = (console.is_terminal and sys.stdout.isatty()) if tty is None else tty
        self.live: LiveRuns | None = None

    def line(self, msg: str) -> None:
        """Print ``msg`` as plain text (no rich markup), one line at a time across threads."""
        with self._lock:
            self.console.print(msg, markup=False)

    def start(self) -> None:
        """Show progress: the live table of running runs (``-v`` on a terminal), a spinner with the
        completed count (default on a terminal) or one count line (not a terminal)."""
        if self.verbosity >= 1 and self.tty:
            self.live = LiveRuns(self.console, self.total)
            self.live.start()
        if self.verbosity == 0 and self.tty:
            self._status = self.console.status(self._text())
            self._status.start()
        elif self.verbosity == 0:
            self.line(self._text())

    def _text(self) -> str:
        return f"Running tasks... {self.done}/{self.total} completed"

    def stop(self) -> None:
        """Take down the live table and spinner (idempotent)."""
        if self.live is not None:
            self.live.stop()
            self.live = None
        if self._status is not None:
            self._status.stop()
            self._status = None

    def event(self, kind: str, rec: RunRecord | None, message: str) -> None:
        """A runner event (``start``/``end`` of a run, ``log`` line; ``rec`` None for harness-wide
        lines): passed to the live table, printed by verbosity, counted toward the completed total."""
        if self.live is not None:
            self.live.event(kind, rec, message)
        if kind == "log":
            if self.verbosity >= 1 or rec is None:
                self.line(f"{PREFIX} {(rec.run_id + ': ') if rec else ''}{message}")
            return
        if rec is None:
            return
        if kind == "start" and self.verbosity >= 1:
            self.line(f"{PREFIX} run {rec.run_id} started: task={rec.task_name} agent={rec.agent} model={rec.model}")
        if kind == "end":
            with self._lock:
                self.done += 1
            reward = "—" if rec.reward is None else f"{rec.reward:g}"
            if self.verbosity == 0:
                self.line(f"✓ Task {rec.run_id} completed ({rec.status})" if rec.status != "error"
                          else f"✗ Task {rec.run_id} completed (error: {rec.error_kind})")
                if self._status is not None:
                    self._status.update(self._text())
                else:
                    self.line(self._text())
            else:
                extra = f" error={rec.error_kind}: {rec.error[:200]}" if rec.error else ""
                self.line(f"{PREFIX} run {rec.run_id} finished: status={rec.status} reward={reward} "
                          f"time={rec.timings.get('total', 0):.1f}s tokens={rec.usage.prompt_tokens}+"
                          f"{rec.usage.completion_tokens} ({self.done}/{self.total}){extra}")

    def echo(self, run_id: str, line: str) -> None:
        """-vv: every line of container output."""
        for ln in line.splitlines() or [""]:
            self.line(f"  {run_id} | {ln}")


# ------------------------------------------------------------------------------------ live table
_STEP_LINE = re.compile(r"^(\[(step \d+|rlm [^\]]+|llm)\]|\$ )")  # shell/rlm/llm steps; oracle's "$ bash …"
#: Phases whose duration is open-ended enough to deserve a progress bar, with the agent.log lines
#: that open and close them (rollouts/images.py; the installed agents' layer, agents/installed/layer.py).
_LONG_MARKERS = (
    ("image build", ("building ", "importing "), lambda ln: ln.startswith("built ")),
    ("agent layer", ("downloading ",), lambda ln: ln.startswith("agent layer ") and " built" in ln),
)
LONG_PHASES = tuple(p for p, _, _ in _LONG_MARKERS)


# a phase marker (rollouts.store.PHASE_MARK) → the live table's name for it
PHASE_NAMES = {"image": "image", "agent_setup": "agent setup", "sandbox_start": "sandbox start",
               "setup": "workspace setup", "agent": "agent", "collect": "collecting", "verifier": "grading"}


def run_phase(run_dir: Path) -> tuple[str, str]:
    """(phase, last step) of a run in progress, from the last 32 KB of its ``logs/agent.log``:
    ``image build`` / ``agent layer`` while a task image build / an installed agent's layer
    download has not finished; else the newer of the last phase marker (``PHASE_MARK``, named by
    :data:`PHASE_NAMES`) and the last agent step (``[step N]``, ``[rlm …]``, ``[llm]``, ``$ cmd``:
    ``agent``). Without either (a log from before phase markers, or none yet): ``grading`` once
    artifacts are collected, ``agent`` once a trajectory exists, else ``before step 1``. The last
    step is the newest step line of the log."""
    run_dir = Path(run_dir)
    log = run_dir / "logs" / "agent.log"
    tail = ""
    try:
        with open(log, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 32768))
            tail = f.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        pass
    lines = tail.splitlines()
    current, last = None, ""  # current: from phase markers (and the steps after one)
    for ln in lines:
        if ln.startswith(PHASE_MARK):
            key = ln[len(PHASE_MARK):].strip()
            current = PHASE_NAMES.get(key, key)
        elif _STEP_LINE.match(ln):
            last = ln[:80]
            current = "agent" if current is not None else None
    open_phases = []
    for phase, starts, ends in _LONG_MARKERS:
        begun = [i for i, ln in enumerate(lines) if ln.startswith(starts)]
        done = [i for i, ln in enumerate(lines) if ends(ln)]
        if begun and (not done or done[-1] < begun[-1]):
            open_phases.append((begun[-1], phase))
    if open_phases:
        return max(open_phases)[1], last
    if current is not None:
        return current, last
    if (run_dir / "artifacts").is_dir():
        return "grading", last
    if last or (run_dir / "agent" / "trajectory.json").is_file():
        return "agent", last
    return "before step 1", last


class LiveRuns:
    """The ``run -v`` live view on a terminal (see the module docstring). Thread-safe: events
    come from the runner's worker threads; rich refreshes the display twice a second."""

    MAX_ROWS = 30

    def __init__(self, console: Console, total: int):
        from rich.live import Live

        self.console, self.total = console, total
        self._lock = threading.Lock()
        self.running: dict[str, tuple[RunRecord, float, dict[str, float]]] = {}
        self.finished = 0
        self.rewards: list[float] = []
        self.model_since: float | None = None
        self._phase_cache: dict[str, tuple[float, tuple[str, str]]] = {}
        self._live = Live(console=console, get_renderable=self.render, refresh_per_second=2, transient=True)

    def start(self) -> None:
        """Start redrawing the table (twice a second, cleared when stopped)."""
        self._live.start()

    def stop(self) -> None:
        """Stop redrawing and remove the table from the terminal."""
        self._live.stop()

    def event(self, kind: str, rec: RunRecord | None, message: str) -> None:
        """Runner events: ``start``/``end`` of a run, ``log`` lines (the local model server)."""
        from rollouts.report.summary import counted

        with self._lock:
            if kind == "log" and rec is None:
                if message.startswith("starting the local model server"):
                    self.model_since = time.monotonic()
                elif message.startswith("local model server ready"):
                    self.model_since = None
            elif kind == "start" and rec is not None:
                self.running[rec.run_id] = (rec, time.monotonic(), {})
            elif kind == "end" and rec is not None:
                self.running.pop(rec.run_id, None)
                self.finished += 1
                if counted(rec):
                    self.rewards.append(rec.reward or 0.0)

    def _phase(self, rec: RunRecord) -> tuple[str, str]:
        now = time.monotonic()
        hit = self._phase_cache.get(rec.run_id)
        if hit is None or now - hit[0] > 1.0:
            hit = (now, run_phase(Path(rec.run_dir)))
            self._phase_cache[rec.run_id] = hit
        return hit[1]

    def render(self) -> Group:
        """The table of runs in progress, long-phase bars, and the completed / mean reward line."""
        with self._lock:
            running = sorted(self.running.values(), key=lambda x: x[1])
            finished, rewards, model_since = self.finished, list(self.rewards), self.model_since
        now = time.monotonic()
        t = Table(title=f"runs in progress ({len(running)})", title_justify="left", expand=False)
        # on a narrow terminal the last step gives way first; the other columns keep readable widths
        narrow = self.console.width < 110
        for col in ("run", "task", "agent", "model", "phase", "elapsed"):
            t.add_column(col, overflow="ellipsis", no_wrap=True, max_width=14 if narrow and col != "phase" else 32)
        t.add_column("last step", overflow="ellipsis", max_width=70)  # wrappable: collapses first
        bars = []
        for rec, since, seen in running[: self.MAX_ROWS]:
            phase, last = self._phase(rec)
            seen.setdefault(phase, now)
            t.add_row(rec.run_id.rsplit("-", 1)[-1], rec.task_name, rec.agent, rec.model, phase,
                      f"{now - since:.0f}s", Text(last, no_wrap=True, overflow="ellipsis"))
            if phase in LONG_PHASES:
                bars.append((f"{rec.task_name}: {phase}", now - seen[phase]))
        if len(running) > self.MAX_ROWS:
            t.add_row("…", f"{len(running) - self.MAX_ROWS} more", "", "", "", "", "")
        parts: list = [t]
        if model_since is not None:
            bars.append(("local model server starting", now - model_since))
        for label, sec in bars:
            row = Table.grid(padding=(0, 1))
            row.add_row(Text(label), ProgressBar(total=None, width=30, pulse=True), Text(f"{sec:.0f}s"))
            parts.append(row)
        mean = f"{sum(rewards) / len(rewards):.3f} over {len(rewards)} scored run(s)" if rewards else "—"
        parts.append(Text(f"completed {finished}/{self.total} · mean reward so far {mean}"))
        return Group(*parts)
