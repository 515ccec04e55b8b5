"""Scale of the harness on the Modal backend: N runs at ``parallel = P`` through the real Runner.

Usage: ``.venv/bin/python bench/bench_modal_scale.py [--runs 5000] [--parallel 1000]
[--create 1.0] [--rtt 0.1] [--coalesce-manifest SEC]``

Runs the shipped task ``shell_hello_file`` with the ``oracle`` agent (agent sandbox + a fresh
grading sandbox per run) on the in-process fake of the Modal SDK from
``tests/test_modal_adapter.py``, with Modal-like latencies (``--create`` seconds per
``Sandbox.create``, ``--rtt`` seconds per exec / file call / terminate). Nothing leaves the machine.
Prints wall time, run statuses, and the harness's peak OS threads, RSS and open file descriptors
(psutil, sampled every 50 ms), and the peak number of sandboxes alive at once. Modal runs are
cooperative (greenlets on one loop thread, ``rollouts/sandbox/aioloop.py``): the target is
<= 64 threads and <= 300 MiB at parallel 1000 over 5,000 runs.

``--coalesce-manifest SEC`` simulates a change recommended for the runner/store (not shipped):
the manifest and the live status file rewritten at most every SEC seconds (and at the end)
instead of after every run state change.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def coalesce_manifest_writes(period: float) -> None:
    """Monkeypatch Store so the manifest/status files are rewritten at most every ``period`` s
    (always when the manifest has ``finished_at``, i.e. the final save)."""
    from rollouts.store import Store

    orig_manifest, orig_status = Store.write_manifest, Store.write_status
    last = {"manifest": 0.0, "status": 0.0}
    lock = threading.Lock()

    def due(kind: str, manifest) -> bool:
        with lock:
            now = time.monotonic()
            if manifest.finished_at or now - last[kind] >= period:
                last[kind] = now
                return True
            return False

    Store.write_manifest = lambda self, m: due("manifest", m) and orig_manifest(self, m)
    Store.write_status = lambda self, m, extra=None: due("status", m) and orig_status(self, m, extra)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5000)
    ap.add_argument("--parallel", type=int, default=1000)
    ap.add_argument("--create", type=float, default=1.0, help="seconds per Sandbox.create")
    ap.add_argument("--rtt", type=float, default=0.1, help="seconds per exec / file call / terminate")
    ap.add_argument("--coalesce-manifest", type=float, default=None, metavar="SEC")
    a = ap.parse_args()
    from tests.test_modal_adapter import run_scale

    if a.coalesce_manifest is not None:
        coalesce_manifest_writes(a.coalesce_manifest)
    latency = {"create": a.create, "exec": a.rtt, "fs": a.rtt, "terminate": a.rtt}
    with tempfile.TemporaryDirectory(prefix="bench-modal-") as tmp:
        out = run_scale(Path(tmp), runs=a.runs, parallel=a.parallel, latency=latency)
    out.pop("manifest")
    out["latency"] = latency
    out["coalesce_manifest_sec"] = a.coalesce_manifest
    for k, v in out.items():
        print(f"{k:24} {v}")


if __name__ == "__main__":
    main()
