"""``eval-rollouts check`` on a 100-task dataset (target: under 3 s), and registry resolution with
the git task cache (second resolution: 0 git fetches).

Generates, in a temp dir: 100 Harbor-format tasks (copies of the app-state fixture, 50 of them
with a Terminal-Bench 1 twin to exercise both formats), a config with one ``[[datasets]]`` entry
and the ``[images]`` mapping; then times ``check`` through the real CLI (a fresh process: import
cost included), median of ``--repeat`` runs. Then a bare git repo holding 20 tasks + a
``registry.json`` resolved twice, printing the git fetches each time.

    python bench/bench_check.py [--tasks 100] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures"
CLI = [sys.executable, str(ROOT / "scripts" / "eval_rollouts.py")]


def make_tasks(root: Path, n: int) -> None:
    for i in range(n):
        if i % 2 == 0:
            d = root / f"hb-{i:03d}"
            shutil.copytree(FIX / "harbor/app-state", d)
            (d / "task.toml").write_text((d / "task.toml").read_text().replace("fixtures/app-state", f"gen/hb-{i:03d}"))
            (d / "instruction.md").write_text(f"Task {i}: uppercase /app/words.txt into /app/upper.txt.\n")
        else:
            d = root / f"tb-{i:03d}"
            shutil.copytree(FIX / "terminal_bench/hello-file", d)
            (d / "task.yaml").write_text((d / "task.yaml").read_text().replace("Hello, world!", f"Hello {i}!"))


def bench_check(tmp: Path, n: int, repeat: int) -> None:
    tasks = tmp / "tasks"
    make_tasks(tasks, n)
    cfg = tmp / "bench.toml"
    cfg.write_text(f'name = "bench_check"\n[[datasets]]\npath = "{tasks}"\nagent = "oracle"\n'
                   '[images]\n"ubuntu:24.04" = "rollouts-base"\n'
                   '"ghcr.io/laude-institute/t-bench/python-3-13:20250620" = "rollouts-base"\n')
    # bytecode caching on (as in any installed copy), even where the shell sets PYTHONDONTWRITEBYTECODE
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["XDG_CACHE_HOME"] = str(tmp / "cache")
    times, cpu = [], []
    for i in range(repeat + 1):
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        p = subprocess.run([*CLI, "check", str(cfg)], capture_output=True, text=True, env=env, cwd=tmp)
        dt = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        if i:
            cpu.append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
        if p.returncode != 0:
            sys.exit(f"check failed (exit {p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
        if i == 0:
            first = dt  # builds the Terminal-Bench views in the cache
        else:
            times.append(dt)
    ok = sum(line.startswith("ok  ") for line in p.stdout.splitlines())
    print(f"check on a {n}-task dataset ({ok} tasks ok; {n // 2} Harbor + {n - n // 2} Terminal-Bench 1):")
    print(f"  first run (cold task-view cache): {first:.2f} s")
    print(f"  median of {repeat} warm runs:      {statistics.median(times):.2f} s wall  "
          f"(min {min(times):.2f}, max {max(times):.2f}; target < 3 s), {statistics.median(cpu):.2f} s CPU")
    print(f"  load average while measuring:    {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    t0 = time.perf_counter()
    subprocess.run([*CLI, "--help"], capture_output=True, env=env, check=True)
    print(f"  (CLI start-up alone, --help:     {time.perf_counter() - t0:.2f} s)")


def git(*args: str, cwd: Path) -> str:
    env = {"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@e", "GIT_COMMITTER_NAME": "b",
           "GIT_COMMITTER_EMAIL": "b@e", "PATH": os.environ["PATH"], "HOME": str(cwd)}
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True, env=env).stdout.strip()


def bench_registry(tmp: Path, n: int = 20) -> None:
    work = tmp / "work"
    make_tasks(work / "tasks", n)
    git("init", "-q", "-b", "main", ".", cwd=work)
    git("add", "-A", cwd=work)
    git("commit", "-qm", "tasks", cwd=work)
    commit = git("rev-parse", "HEAD", cwd=work)
    bare = tmp / "remote.git"
    git("clone", "-q", "--bare", str(work), str(bare), cwd=tmp)
    git("config", "uploadpack.allowFilter", "true", cwd=bare)
    reg = [{"name": "bench", "version": "1", "tasks": [
        {"name": d.name, "git_url": f"file://{bare}", "git_commit_id": commit, "path": f"tasks/{d.name}"}
        for d in sorted((work / "tasks").iterdir())]}]
    (tmp / "registry.json").write_text(json.dumps(reg))
    os.environ["XDG_CACHE_HOME"] = str(tmp / "regcache")
    sys.path.insert(0, str(ROOT))
    from rollouts import datasets

    for label in ("first resolution (empty cache)", "second resolution (cache)"):
        before = datasets.GIT_FETCHES["count"]
        t0 = time.perf_counter()
        exp = datasets.expand_registry(str(tmp / "registry.json"), "bench@1", tmp)
        dt = time.perf_counter() - t0
        print(f"registry.json, {len(exp.tasks)} tasks from a local bare repo, {label}: "
              f"{datasets.GIT_FETCHES['count'] - before} git fetches, {dt:.2f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-check-") as tmp:
        bench_check(Path(tmp), a.tasks, a.repeat)
        bench_registry(Path(tmp))


if __name__ == "__main__":
    main()
