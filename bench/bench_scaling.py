"""Parallel scaling with a latency-bound agent: rollouts and the bare-Docker floor side by side.

    .venv/bin/python bench/bench_scaling.py [--runs 8] [--sleep 8] [--parallel 1,2,4,8]

The task is shell_hello_file whose reference solution first sleeps ``--sleep`` seconds (an agent
waiting on a model). For each ``parallel`` P: the floor runs ``--runs`` oracle runs with P threads
(``bench/floor.py``, one docker-py client, as a harness would); ours runs one ``run`` command with
``parallel = P``. Prints walls, speedups over P = 1 and ours/floor at each P, plus our per-phase
medians (sandbox_start and verifier grow when many containers start at once on 2 cores).
"Ours" is the rollout's own wall (manifest started_at → finished_at: the runs), and the whole
command's wall is shown too.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_vs_floor import TASK, ours  # noqa: E402
from bench.floor import floor_run  # noqa: E402


def sleep_task(dest: Path, sleep: float) -> Path:
    """A copy of shell_hello_file whose solution sleeps ``sleep`` seconds first."""
    shutil.copytree(TASK, dest)
    sol = dest / "solution" / "solve.sh"
    sol.write_text(sol.read_text().replace("#!/bin/bash\n", f"#!/bin/bash\nsleep {sleep}\n", 1))
    meta = json.loads((dest / "tb_meta.json").read_text())
    meta["name"] = "shell_hello_sleep"
    (dest / "tb_meta.json").write_text(json.dumps(meta, indent=2))
    return dest


def floor_parallel(client, image: str, task: Path, runs: int, parallel: int) -> dict:
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        timings = list(pool.map(lambda _: floor_run(client, image, task), range(runs)))
    return {"wall": time.monotonic() - t0, "timings": timings}


def _iso(s: str) -> float:
    return datetime.fromisoformat(s).timestamp()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=8)
    ap.add_argument("--sleep", type=float, default=8.0)
    ap.add_argument("--parallel", default="1,2,4,8")
    a = ap.parse_args()
    levels = [int(x) for x in a.parallel.split(",")]
    from rollouts.images import ensure_base_image
    from rollouts.sandbox.docker import docker_client

    client = docker_client()
    image = ensure_base_image(client)
    rows = {}
    with tempfile.TemporaryDirectory(prefix="bench-scaling-") as tmp:
        task = sleep_task(Path(tmp) / "task", a.sleep)
        for i, p in enumerate(levels):
            order = ("floor", "ours") if i % 2 == 0 else ("ours", "floor")
            row = {}
            for side in order:
                if side == "floor":
                    row["floor"] = floor_parallel(client, image, task, a.runs, p)
                else:
                    o = ours(Path(tmp), a.runs, task=task, parallel=p)
                    m = json.loads(next((Path(tmp) / "data" / "rollouts" / "floorbench").glob("*/manifest.json")).read_text())
                    o["rollout_wall"] = _iso(m["finished_at"]) - _iso(m["started_at"])
                    row["ours"] = o
            rows[p] = row
            print(f"parallel {p}: floor {row['floor']['wall']:6.2f} s  ours {row['ours']['rollout_wall']:6.2f} s "
                  f"(whole command {row['ours']['wall']:6.2f} s)", flush=True)  # fmt: skip
    base_f, base_o = rows[levels[0]]["floor"]["wall"], rows[levels[0]]["ours"]["rollout_wall"]
    print(f"\n{a.runs} runs, solution sleeps {a.sleep:g} s; speedup = wall at parallel {levels[0]} / wall at P")
    print("  P   floor wall  speedup   ours wall  speedup   ours/floor speedup   ours sandbox_start  verifier")
    for p in levels:
        f, o = rows[p]["floor"]["wall"], rows[p]["ours"]["rollout_wall"]
        ss = statistics.median(t.get("sandbox_start", 0.0) for t in rows[p]["ours"]["timings"])
        vv = statistics.median(t.get("verifier", 0.0) for t in rows[p]["ours"]["timings"])
        print(f"  {p:<3} {f:9.2f}  {base_f / f:7.2f}   {o:9.2f}  {base_o / o:7.2f}   {(base_o / o) / (base_f / f):17.2f}"
              f"   {ss:17.3f}  {vv:8.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
