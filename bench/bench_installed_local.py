"""Installed agents end to end on the embedded local model: one run of shell_hello_file per agent
(``configs/installed_agents_local.toml``: codex, claude-code, mini-swe-agent through the gateway,
Qwen2.5-Coder-0.5B with 32k context). Prints per agent: status, reward, gateway-metered tokens and
calls, agent_setup / agent / total seconds, and the load average (other work on the machine
slows the 2-core model a lot).

    PYTHONPATH=. .venv/bin/python bench/bench_installed_local.py [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default=None, help="keep the rollout here (default: a temp dir)")
    ap.add_argument("--config", default=str(ROOT / "configs" / "installed_agents_local.toml"))
    a = ap.parse_args()
    data = Path(a.data_dir or tempfile.mkdtemp(prefix="bench-installed-local-"))
    load0 = os.getloadavg()[0]
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, str(ROOT / "scripts" / "eval_rollouts.py"), "--data-dir", str(data),
                        "run", a.config], cwd=ROOT, capture_output=True, text=True)
    wall = time.monotonic() - t0
    found = sorted(data.glob("rollouts/*/2*/manifest.json"))
    if not found:
        sys.exit(f"no manifest (exit {p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    m = json.loads(found[-1].read_text())
    print(f"rollout {m['rollout_id']}: exit {p.returncode}, {wall:.0f} s wall, load average "
          f"{load0:.1f} -> {os.getloadavg()[0]:.1f} (2 cores)")
    print("\n| agent | version | status | reward | prompt tok | completion tok | calls | agent_setup s | agent s | total s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in m["results"]:
        u, t = r.get("usage") or {}, r.get("timings") or {}
        print(f"| {r['agent']} | {r['agent_options'].get('version')} | {r['status']} | {r.get('reward')} | "
              f"{u.get('prompt_tokens')} | {u.get('completion_tokens')} | {u.get('calls')} | "
              f"{t.get('agent_setup')} | {t.get('agent')} | {t.get('total')} |")
    print(f"\nruns: {data / 'runs'}")


if __name__ == "__main__":
    main()
