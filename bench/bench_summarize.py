"""Time ``summarize``, ``compare`` and ``report`` on a synthetic 10,000-run rollout, as whole CLI
commands (a fresh ``python -m rollouts.cli`` process each, like a user's shell), with peak RSS.

Usage: ``.venv/bin/python bench/bench_summarize.py [--runs 10000] [--repeat 5]``

The synthetic manifest (pydantic models from :mod:`rollouts.store`) has 250 tasks x 4 arms
(agent x model, one with agent options) x 10 rollouts = 10,000 runs: binary rewards for most
arms, partial credit for one, ~3% timeouts, ~1% infra errors, token usage and cost (one model
with an unknown price), phase timings and two custom metrics. Two such rollouts (different seeds)
are written to a temporary data dir, then each command runs ``--repeat`` times. Prints per
command the min / median / max wall seconds and the peak RSS in MiB (``ru_maxrss`` of the child
from ``os.wait4``); targets (issue 13): < 1 s and < 200 MiB. Also prints the in-process times of
``summarize()`` and the renderers for reference.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from rollouts.store import Manifest, ManifestTask, RunRecord, Store, Usage

ARMS = [
    ("shell", "gpt-4o", {}, 0.000005, True),
    ("shell", "gpt-4o-mini", {"max_steps": 8, "temperature": 0.2}, 0.0000006, True),
    ("rlm", "qwen-7b", {}, None, True),
    ("llm", "gpt-4o", {}, 0.000005, False),
]


def synthetic_manifest(
    n_runs: int = 10_000, rollouts: int = 10, seed: int = 0, rid: str = "20260101__00-00-00"
) -> Manifest:
    """A completed manifest of about ``n_runs`` runs (tasks = n_runs / (4 arms x rollouts))."""
    rng = np.random.default_rng(seed)
    n_tasks = max(1, n_runs // (len(ARMS) * rollouts))
    tasks, results = [], []
    difficulty = rng.beta(1.5, 1.5, n_tasks)
    for a, (agent, model, opts, price, binary) in enumerate(ARMS):
        skill = 0.3 + 0.15 * a
        for t in range(n_tasks):
            idx = a * n_tasks + t
            name = f"task_{t:04d}"
            tasks.append(
                ManifestTask(
                    index=idx,
                    task_dir=f"data/tasks/prepared/{name}",
                    task_name=name,
                    task_digest="0" * 64,
                    agent=agent,
                    model=model,
                    rollouts=rollouts,
                    backend="docker",
                    agent_options=opts,
                )
            )
            p = float(np.clip(skill + 0.5 - difficulty[t], 0.02, 0.98))
            for i in range(rollouts):
                run_id = f"{rid}-{len(results)}"
                u = rng.random()
                status, kind, reward = "completed", None, None
                if u < 0.01:
                    status, kind = "error", "infra"
                elif u < 0.04:
                    status = "agent_timeout"
                else:
                    reward = (
                        float(rng.random() < p) if binary else round(float(rng.beta(4 * p, 4 * (1 - p))), 3)
                    )
                calls = int(rng.integers(1, 12))
                pt, ct = calls * int(rng.integers(500, 3000)), calls * int(rng.integers(50, 400))
                agent_s = float(rng.gamma(2.0, 20.0))
                timings = {
                    "image": 0.01,
                    "sandbox_start": 0.5,
                    "setup": 0.4,
                    "agent": round(agent_s, 3),
                    "collect": 0.2,
                    "verifier": 3.0,
                }
                timings["total"] = round(sum(timings.values()), 3)
                results.append(
                    RunRecord(
                        run_id=run_id,
                        run_dir=f"data/runs/{run_id}",
                        task_dir=f"data/tasks/prepared/{name}",
                        task_name=name,
                        entry_index=idx,
                        rollout_index=i,
                        agent=agent,
                        model=model,
                        agent_options=opts,
                        status=status,
                        error_kind=kind,
                        reward=reward,
                        metrics={}
                        if reward is None
                        else {
                            "tests_passed": float(rng.integers(0, 10)),
                            "exact_match": reward if binary else 0.0,
                        },
                        timings=timings,
                        usage=Usage(
                            prompt_tokens=pt,
                            completion_tokens=ct,
                            calls=calls,
                            cost_usd=None if price is None else round((pt + 4 * ct) * price, 6),
                        ),
                    )
                )
    return Manifest(
        config="configs/bench.toml",
        config_digest="0" * 64,
        name="bench",
        created_at=rid,
        rollout_id=rid,
        status="completed",
        started_at="2026-01-01T00:00:00.000+00:00",
        finished_at="2026-01-01T06:00:00.000+00:00",
        tool_version="bench",
        host="bench",
        pid=0,
        parallel=16,
        tasks=tasks,
        results=results,
    )


def best_of(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


#: Runs one command and reports on it from a small process of its own: ``ru_maxrss`` survives
#: fork+exec, so a child forked from this (large) benchmark process would report our RSS.
_LAUNCHER = """
import os, subprocess, sys, time
t0 = time.perf_counter()
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
_, status, ru = os.wait4(p.pid, 0)
print(time.perf_counter() - t0, ru.ru_maxrss, ru.ru_utime + ru.ru_stime, os.waitstatus_to_exitcode(status))
"""


def run_cli(args: list[str], cwd: Path) -> tuple[float, float, float, int]:
    """(wall s, peak RSS MiB, CPU s, exit code) of ``python -m rollouts.cli ARGS`` in a new process."""
    out = subprocess.run(
        [sys.executable, "-c", _LAUNCHER, sys.executable, "-m", "rollouts.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    wall, rss_kib, cpu, rc = float(out[0]), int(out[1]), float(out[2]), int(out[3])
    if rc not in (0, 1):
        err = subprocess.run(
            [sys.executable, "-m", "rollouts.cli", *args], cwd=cwd, capture_output=True, text=True
        )
        raise SystemExit(f"rollouts {' '.join(args)} exited {rc}: {err.stderr[-2000:]}")
    return wall, rss_kib / 1024, cpu, rc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    from rollouts.report.html import render_html
    from rollouts.report.markdown import render_markdown
    from rollouts.report.summary import summarize

    t0 = time.perf_counter()
    a = synthetic_manifest(args.runs, seed=0, rid="20260101__00-00-00")
    b = synthetic_manifest(args.runs, seed=1, rid="20260102__00-00-00")
    build = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        store = Store(data)
        store.write_manifest(a)
        store.write_manifest(b)
        mpath = store.rollout_dir(a.name, a.rollout_id) / "manifest.json"
        t_load, _ = best_of(lambda: Manifest.model_validate_json(mpath.read_bytes()), args.repeat)
        t_sum, s = best_of(lambda: summarize(a), args.repeat)
        t_md, md = best_of(lambda: render_markdown(s), args.repeat)
        t_html, html = best_of(lambda: render_html(s, a, out_dir=Path(tmp)), args.repeat)
        print(
            f"runs={len(a.results)} groups={len(s['rows'])} arms={len(s['overall'])} (built in {build:.2f} s)"
        )
        print(f"manifest.json {mpath.stat().st_size / 2**20:.1f} MiB")
        print(
            f"in process (best of {args.repeat}): load {t_load:.3f} s, summarize() {t_sum:.3f} s, "
            f"render_markdown() {t_md:.3f} s ({len(md) / 1024:.0f} KiB), render_html() {t_html:.3f} s "
            f"({len(html) / 1024:.0f} KiB)"
        )
        d = ["--data-dir", str(data)]
        commands = {
            "summarize bench --latest": [*d, "summarize", "bench", "--latest"],
            "summarize bench --latest --json": [*d, "summarize", "bench", "--latest", "--json"],
            "summarize bench --latest --markdown": [*d, "summarize", "bench", "--latest", "--markdown"],
            "summarize (no name)": [*d, "summarize"],
            "compare bench/A bench/B": [*d, "compare", f"bench/{a.rollout_id}", f"bench/{b.rollout_id}"],
            "report bench --latest": [*d, "report", "bench", "--latest", "-o", str(Path(tmp) / "r.html")],
            "--version (start-up floor)": ["--version"],
        }
        print(
            f"CLI commands, {args.repeat} runs each: wall s min / median / max, CPU s median, peak RSS MiB (max);"
            " targets < 1 s wall, < 200 MiB"
        )
        print(
            f"  (load average now: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs)"
        )
        for label, argv in commands.items():
            res = [run_cli(argv, Path(tmp)) for _ in range(args.repeat)]
            walls, cpus = [r[0] for r in res], [r[2] for r in res]
            rss = max(r[1] for r in res)
            # wall time on a shared machine is CPU time stretched by the load; CPU time is what the
            # command costs, and on an idle machine wall ~= CPU (the manifest is in the page cache)
            ok = (
                ("wall OK" if statistics.median(walls) < 1 else "wall OVER")
                + (", cpu OK" if statistics.median(cpus) < 1 else ", cpu OVER")
                + (", rss OK" if rss < 200 else ", rss OVER")
            )
            print(
                f"  {label:38s} {min(walls):.3f} / {statistics.median(walls):.3f} / {max(walls):.3f} s"
                f"   cpu {statistics.median(cpus):.3f} s   {rss:6.1f} MiB   {ok}"
            )


if __name__ == "__main__":
    main()
