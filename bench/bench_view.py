"""Time to first byte (and to last byte) of the viewer's pages on a synthetic 10,000-run rollout
with 200-step trajectories, served by the real uvicorn server over HTTP on 127.0.0.1.

Usage: ``.venv/bin/python bench/bench_view.py [--runs 10000] [--steps 200] [--repeat 5]``

Data (``tests/view_fixture.build_big``): one rollout of ``--runs`` runs (250 tasks x 4 agent/model
arms x 10 rollouts at 10,000), each run folder with a ``--steps``-step shell trajectory, a diff,
logs and evaluation results (hard links to one copy, so the disk holds them once). Plus one run
whose trajectory is ~5 MB (1,200 steps of 2,000 characters of output). Trajectories are written
as the shell agent writes them (``rollouts.atif_agents.save``: ATIF with the native record).

Printed: for each page, the first request after the server started (it reads and summarises
every rollout in a background thread at start-up; a request that comes first waits for that),
the best of ``--repeat`` warm requests (a manifest is cached until its file changes), in
milliseconds, with the response size; then, right after the manifest changed (as every 0.5 s
while a rollout runs): the rollout list's TTFB (it serves the previous line and re-reads in the
background), the time until it is up to date (parse + ``summarize`` of every run: the true
uncached cost) and the rollout page's TTFB (it re-reads before answering); and the load average
(this machine is shared: figures scale with it). Targets (issue 14): the rollout list < 1 s; a 5 MB
trajectory renders without freezing (the page holds one page of 50 steps).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rollouts.atif_agents import save  # noqa: E402
from rollouts.store import Store  # noqa: E402
from rollouts.view.server import bind, make_server  # noqa: E402
from tests.view_fixture import build_big, shell_trajectory  # noqa: E402


def fetch(port: int, path: str) -> tuple[float, float, int]:
    """(seconds to the first byte, seconds to the last byte, bytes) of one GET over a new connection."""
    s = socket.create_connection(("127.0.0.1", port))
    t0 = time.perf_counter()
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
    first = s.recv(1)
    t1 = time.perf_counter()
    n = len(first)
    while chunk := s.recv(1 << 16):
        n += len(chunk)
    t2 = time.perf_counter()
    s.close()
    if not first.startswith(b"H"):
        raise RuntimeError(f"bad response to {path}")
    return t1 - t0, t2 - t0, n


def browser_timings(port: int, pages: list[tuple[str, str]]) -> None:
    """In headless Chromium (Debian chromium + chromium-driver, if installed): milliseconds from
    navigation start to the load event and the DOM size of each page — whether the page renders
    without freezing, not only how fast the server answers."""
    if not (os.path.exists("/usr/bin/chromium") and os.path.exists("/usr/bin/chromedriver")):
        print("browser: chromium/chromedriver not installed, skipped")
        return
    os.environ["SE_OFFLINE"] = "true"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        opts.add_argument(arg)
    drv = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    try:
        print(f"{'in the browser':42} {'load event':>10} {'DOM nodes':>10}")
        for label, path in pages:
            drv.get(f"http://127.0.0.1:{port}{path}")
            ms = drv.execute_script("const t = performance.getEntriesByType('navigation')[0]; return t.loadEventEnd - t.startTime;")
            nodes = drv.execute_script("return document.getElementsByTagName('*').length;")
            print(f"{label:42} {ms:8.0f}ms {nodes:10d}")
    finally:
        drv.quit()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_view_") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        info = build_big(root, n_runs=a.runs, steps=a.steps)
        big_run = Path(Store(root).run_dir(info["run"])) / "agent" / "trajectory.json"
        five_mb = f"{info['rid']}-1"  # give one run a ~5 MB trajectory (its own file, not a link)
        p5 = Store(root).run_dir(five_mb) / "agent" / "trajectory.json"
        p5.unlink()
        save("shell", p5, shell_trajectory(1200, out_chars=2000))  # ATIF + native record, as written now
        print(f"data: {a.runs} runs x {a.steps}-step trajectories ({big_run.stat().st_size / 1e3:.0f} kB each), "
              f"one {p5.stat().st_size / 1e6:.1f} MB trajectory; built in {time.perf_counter() - t0:.1f} s")
        sock = bind("127.0.0.1", 0)
        port = sock.getsockname()[1]
        srv = make_server(root, sock)
        th = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
        th.start()
        while not srv.started:
            time.sleep(0.02)
        pages = [
            ("rollout list (/)", "/"),
            ("one rollout (page 1 of runs)", f"/r/big/{info['rid']}"),
            ("one rollout, filtered (status + text)", f"/r/big/{info['rid']}?status=completed&q=task_01&page=3"),
            (f"one run ({a.steps}-step trajectory)", f"/run/{info['run']}"),
            ("one run, 5 MB trajectory (page 1)", f"/run/{five_mb}"),
            ("one run, 5 MB trajectory (page 20)", f"/run/{five_mb}?page=20"),
        ]
        manifest = Store(root).rollout_dir("big", info["rid"]) / "manifest.json"
        print(f"{'page':42} {'first TTFB':>10} {'warm TTFB':>10} {'warm total':>11} {'size':>9}")
        for label, path in pages:
            cold = fetch(port, path)
            warm = min((fetch(port, path) for _ in range(a.repeat)), key=lambda r: r[0])
            print(f"{label:42} {cold[0] * 1e3:8.0f}ms {warm[0] * 1e3:8.0f}ms {warm[1] * 1e3:9.0f}ms "
                  f"{warm[2] / 1e3:7.0f}kB")
        # the manifest changed (as while a rollout runs): the list serves its previous line at once
        # and re-reads in the background; the rollout page re-reads before answering
        cat = srv.config.app.state.catalog
        stale, fresh, page = [], [], []
        for _ in range(a.repeat):
            time.sleep(cat.MIN_AGE_SEC + 0.1)
            os.utime(manifest)
            t0 = time.perf_counter()
            stale.append(fetch(port, "/")[0])
            while cat.refreshing():
                time.sleep(0.005)
            fresh.append(time.perf_counter() - t0)
            time.sleep(cat.MIN_AGE_SEC + 0.1)
            os.utime(manifest)
            page.append(fetch(port, f"/r/big/{info['rid']}")[0])
        med = lambda xs: sorted(xs)[len(xs) // 2] * 1e3  # noqa: E731
        print(f"after the manifest changed (median of {a.repeat}):")
        print(f"  rollout list TTFB (previous line served) {med(stale):8.0f}ms")
        print(f"  rollout list up to date after            {med(fresh):8.0f}ms  (parse + summarize of {a.runs} runs)")
        print(f"  one rollout page TTFB (re-read first)    {med(page):8.0f}ms")
        browser_timings(port, [("rollout list", "/"), ("one rollout", f"/r/big/{info['rid']}"),
                               (f"one run ({a.steps} steps)", f"/run/{info['run']}"),
                               ("one run, 5 MB trajectory", f"/run/{five_mb}")])
        print(f"load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        srv.should_exit = True
        th.join(timeout=10)


if __name__ == "__main__":
    main()
