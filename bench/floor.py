"""The bare-Docker floor of one oracle run: docker-py doing exactly the containers, copies and execs
one run needs, and nothing else (no labels, manifest, logs, retries, safety checks).

Agent container: start; the workspace in (one archive) and committed (one exec); the solution in
(one archive) and run (one exec); the diff back on stdout (one exec); remove. Grading container:
start; the workspace in and committed; the diff and the hidden tests in (one archive); apply +
verifier + reward on stdout (one exec); remove. Same image, init, limits and network mode as
``rollouts/sandbox/docker.py``. Used by ``bench_vs_floor.py`` and ``bench_scaling.py``.
"""

from __future__ import annotations

import io
import json
import os
import socket
import tarfile
import time
from pathlib import Path

import docker

GIT_ENV = {"GIT_AUTHOR_NAME": "f", "GIT_AUTHOR_EMAIL": "f@x", "GIT_COMMITTER_NAME": "f",
           "GIT_COMMITTER_EMAIL": "f@x", "GIT_AUTHOR_DATE": "2000-01-01T00:00:00+0000",
           "GIT_COMMITTER_DATE": "2000-01-01T00:00:00+0000"}  # fmt: skip
COMMIT = "git init -q -b main . && git add -A && git commit -q -m base && git rev-parse HEAD"


def _tar(files: dict[str, bytes], dirs: tuple[str, ...] = ()) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in dirs:
            ti = tarfile.TarInfo(d)
            ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(ti)
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode = len(data), 0o755
            tar.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def _files(root: Path, prefix: str) -> dict[str, bytes]:
    return {f"{prefix}/{p.relative_to(root)}": p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _exec(client: docker.DockerClient, cid: str, cmd: str, cwd: str = "/", env: dict | None = None) -> tuple[int, bytes]:
    ex = client.api.exec_create(cid, ["bash", "-c", cmd], workdir=cwd, environment=env)
    out = client.api.exec_start(ex["Id"])
    return client.api.exec_inspect(ex["Id"])["ExitCode"], out


def _start(client: docker.DockerClient, image: str, meta: dict):
    res = meta.get("resources") or {}
    # The labels only keep other rollouts processes' cleanup (build leftovers, dead harnesses)
    # off these containers: the base image's own labels would make them look like leftovers.
    labels = {"rollouts.rollout_id": "floor-bench", "rollouts.pid": str(os.getpid()), "rollouts.host": socket.gethostname()}
    return client.containers.run(
        image, ["sleep", "infinity"], detach=True, init=True, network_mode="none", working_dir="/", labels=labels,
        nano_cpus=int(res.get("cpus", 1) * 1e9), mem_limit=f"{res.get('memory_mb', 1024)}m",
        memswap_limit=f"{res.get('memory_mb', 1024)}m", pids_limit=res.get("pids", 512),
    )  # fmt: skip


def floor_run(client: docker.DockerClient, image: str, task_dir: Path, sleep_sec: float = 0.0) -> dict[str, float]:
    """One oracle run of the task at ``task_dir`` (shell_hello_file layout); returns phase seconds
    (sandbox_start, setup, agent, collect, verifier, total) like a run's ``timings``.
    ``sleep_sec``: the solution sleeps that long first (the latency-bound agent of bench_scaling)."""
    meta = json.loads((task_dir / "tb_meta.json").read_text())
    wd = meta["environment"]["workdir"]
    ws = _tar(_files(task_dir / meta["workspace"], wd.strip("/")), dirs=(wd.strip("/"),))
    sol_path = task_dir / meta["solution"]
    sol = _tar({"solution/" + sol_path.name: sol_path.read_bytes()}, dirs=("solution",))
    t: dict[str, float] = {}
    t0 = start = time.monotonic()

    def lap(name: str) -> None:
        nonlocal t0
        now = time.monotonic()
        t[name] = now - t0
        t0 = now

    c = _start(client, image, meta)
    lap("sandbox_start")
    c.put_archive("/", ws)
    rc, out = _exec(client, c.id, COMMIT, wd, GIT_ENV)
    base = out.decode().split()[-1]
    lap("setup")
    c.put_archive("/", sol)
    pre = f"sleep {sleep_sec}; " if sleep_sec else ""
    rc, _ = _exec(client, c.id, f"{pre}bash /solution/{sol_path.name}", wd)
    lap("agent")
    rc, diff = _exec(client, c.id, f"git add -A && git diff --cached --binary {base}", wd, GIT_ENV)
    lap("collect")
    c.remove(force=True)
    g = _start(client, image, meta)
    g.put_archive("/", ws)
    _exec(client, g.id, COMMIT, wd, GIT_ENV)
    tests = _files(task_dir / meta["tests"]["dir"], "tests")
    g.put_archive("/", _tar({**tests, "agent.diff": diff}, dirs=("tests",)))
    rc, out = _exec(client, g.id, f"git apply /agent.diff && {meta['tests']['command']} >/dev/null 2>&1; "
                                  "cat /logs/verifier/reward.json", wd)  # fmt: skip
    g.remove(force=True)
    lap("verifier")
    t["total"] = time.monotonic() - start
    last = (out.decode(errors="replace").strip().splitlines() or [""])[-1]
    if not last.startswith("{") or json.loads(last)["reward"] != 1.0:
        raise RuntimeError(f"floor run did not score 1.0 (exit {rc}): {out[-500:]!r}")
    return t
