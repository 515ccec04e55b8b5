"""Installed agents: first-run and cached ``agent_setup`` seconds per agent.

First run: a fresh cache directory (so pip really downloads the wheel from the index, and pip's
own HTTP cache is fresh too) and a layer name of its own (so the volume is really built); the
volume is removed afterwards. Cached: the same call again (index lookup + one Docker API call),
median of 20. Prints one line per agent and a table.

    PYTHONPATH=. .venv/bin/python bench/bench_agent_setup.py [codex claude-code mini-swe-agent]
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(names: list[str]) -> None:
    import docker

    from rollouts.agents import get_agent
    from rollouts.agents.installed import layer
    from rollouts.images import ensure_base_image

    client = docker.from_env()
    image = ensure_base_image(client)
    rows = []
    for name in names:
        agent = get_agent(name)
        version = agent.Options().version
        pkgs = agent.packages(version)
        with tempfile.TemporaryDirectory(prefix="bench-agent-cache-") as cache:
            old = os.environ.get("XDG_CACHE_HOME")
            os.environ["XDG_CACHE_HOME"] = cache
            key = f"{name}-bench{uuid.uuid4().hex[:4]}"
            try:
                t0 = time.monotonic()
                if name == "mini-swe-agent":
                    layer.ensure_host_layer(key, version, pkgs, print)
                else:
                    built = layer.ensure_layer(client, key, version, pkgs, image, print)
                first = time.monotonic() - t0
                idx = json.loads(next((Path(cache) / "rollouts" / "agents" / "layers").glob("*.json")).read_text())
                cached = []
                for _ in range(20):
                    t0 = time.monotonic()
                    if name == "mini-swe-agent":
                        layer.ensure_host_layer(key, version, pkgs, print)
                    else:
                        layer.ensure_layer(client, key, version, pkgs, image, print)
                    cached.append(time.monotonic() - t0)
            finally:
                if name != "mini-swe-agent":
                    client.volumes.get(built.volume).remove(force=True)
                if old is None:
                    os.environ.pop("XDG_CACHE_HOME", None)
                else:
                    os.environ["XDG_CACHE_HOME"] = old
        rows.append((name, version, first, idx["download_sec"], statistics.median(cached) * 1000))
        print(f"{name} {version}: first run {first:.1f} s (download {idx['download_sec']:.1f} s), "
              f"cached {statistics.median(cached) * 1000:.1f} ms (median of 20)", flush=True)
    print("\n| agent | version | first-run agent_setup (s) | of which pip download (s) | cached agent_setup (ms) |")
    print("|---|---|---|---|---|")
    for n, v, f, d, c in rows:
        print(f"| {n} | {v} | {f:.1f} | {d:.1f} | {c:.1f} |")


if __name__ == "__main__":
    main(sys.argv[1:] or ["codex", "claude-code", "mini-swe-agent"])
