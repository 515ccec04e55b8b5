"""Scale of the harness on the Modal backend: N runs at ``parallel = P`` through the real Runner.

Usage: ``.venv/bin/python bench/bench_modal_scale.py [--runs 5000] [--parallel 1000]
[--create 1.0] [--rtt 0.1]``

Runs the shipped task ``shell_hello_file`` with the ``oracle`` agent (agent sandbox + a fresh
grading sandbox per run) on the in-process fake of the Modal SDK from
``tests/test_modal_adapter.py``, with Modal-like latencies (``--create`` seconds per
``Sandbox.create``, ``--rtt`` seconds per exec / file call / terminate). Nothing leaves the machine.
Prints wall time, run statuses, and the harness's peak OS threads, RSS and open file descriptors
(psutil, sampled every 50 ms), and the peak number of sandboxes alive at once. Modal runs are
cooperative (greenlets on one loop thread, ``rollouts/sandbox/aioloop.py``): the target is
<= 64 threads and <= 300 MiB at parallel 1000 over 5,000 runs.

The manifest is rewritten by the runner's coalescing writer (``rollouts.run.manifest.ManifestWriter``:
at most every second, backing off when a write is slow); ``manifest_writes`` counts the rewrites.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5000)
    ap.add_argument("--parallel", type=int, default=1000)
    ap.add_argument("--create", type=float, default=1.0, help="seconds per Sandbox.create")
    ap.add_argument("--rtt", type=float, default=0.1, help="seconds per exec / file call / terminate")
    a = ap.parse_args()
    from tests.test_modal_adapter import run_scale

    latency = {"create": a.create, "exec": a.rtt, "fs": a.rtt, "terminate": a.rtt}
    with tempfile.TemporaryDirectory(prefix="bench-modal-") as tmp:
        out = run_scale(Path(tmp), runs=a.runs, parallel=a.parallel, latency=latency)
    out.pop("manifest")
    out["latency"] = latency
    for k, v in out.items():
        print(f"{k:24} {v}")


if __name__ == "__main__":
    main()
