"""Fault injection against the real Docker engine and the real harness in a subprocess:
kill -9 + resume, SIGINT, runaway agents (never-ending, fork bomb, memory hog, 1 GB of output),
flaky and failing model endpoints, and an unreachable Docker daemon for one attempt."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil
import pytest

from tests.conftest import CLI, ROOT

pytestmark = [pytest.mark.docker]
TASK = ROOT / "data/tasks/prepared/shell_hello_file"


def make_task(tmp: Path, name: str, solve: str, **meta_updates) -> Path:
    """A copy of shell_hello_file whose reference solution is ``solve`` (the 'agent' under test)."""
    d = tmp / name
    shutil.copytree(TASK, d)
    (d / "solution" / "solve.sh").write_text("#!/bin/bash\n" + solve + "\n")
    meta = json.loads((d / "tb_meta.json").read_text())
    meta["name"] = name
    for k, v in meta_updates.items():
        meta[k] = {**meta.get(k, {}), **v} if isinstance(v, dict) else v
    (d / "tb_meta.json").write_text(json.dumps(meta))
    return d


def write_config(tmp: Path, name: str, entries: list[str], parallel: int = 2, extra: str = "") -> Path:
    body = f'name = "{name}"\nparallel = {parallel}\n{extra}\n'
    for e in entries:
        body += f"\n[[tasks]]\n{e}\n"
    p = tmp / f"{name}.toml"
    p.write_text(body)
    return p


def containers(rollout_id: str) -> list[str]:
    out = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=rollouts.rollout_id={rollout_id}"],
                         capture_output=True, text=True, check=True).stdout
    return out.split()


def manifest_of(data: Path, name: str) -> dict:
    rdir = sorted((data / "rollouts" / name).glob("2*"))[-1]
    return json.loads((rdir / "manifest.json").read_text())


def wait_for(pred, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _running_manifest(data: Path, name: str, min_done: int = 0):
    try:
        m = manifest_of(data, name)
    except (IndexError, FileNotFoundError, json.JSONDecodeError):
        return None
    done = sum(r["status"] == "completed" for r in m["results"])
    running = sum(r["status"] == "running" for r in m["results"])
    return m if (running and done >= min_done) else None


def test_kill9_then_resume_runs_everything_exactly_once(tmp_path, base_image):
    slow = make_task(tmp_path, "slow", "sleep 4; echo 'hello world' > greeting.txt")
    cfg = write_config(tmp_path, "crash", [f'prepared_dir = "{slow}"\nagent = "oracle"\nrollouts = 5'])
    data = tmp_path / "data"
    proc = subprocess.Popen([*CLI, "--data-dir", str(data), "run", str(cfg)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    m = wait_for(lambda: _running_manifest(data, "crash", min_done=1), 180, "a finished and a running run")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    rid = m["rollout_id"]
    m = manifest_of(data, "crash")  # valid JSON after kill -9 (atomic writes)
    # a run's final state is written at once to task_results/ (the manifest itself is rewritten
    # at most every 0.5 s): both count as "finished before the crash"
    results = data / "rollouts" / "crash" / rid / "task_results"
    done = {p.stem: json.loads(p.read_text()) for p in results.glob("*.json")}
    finished_before = {r["run_id"] for r in m["results"] if r["status"] == "completed"}
    finished_before |= {k for k, v in done.items() if v["status"] == "completed"}
    assert finished_before and len(finished_before) < 5
    # clean --dry-run lists the orphans, clean removes them
    p = subprocess.run([*CLI, "--data-dir", str(data), "clean", "--dry-run"], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    p = subprocess.run([*CLI, "--data-dir", str(data), "clean"], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert containers(rid) == []
    t_before = {k: done[k]["finished_at"] for k in finished_before}
    p = subprocess.run([*CLI, "--data-dir", str(data), "run", str(cfg), "--resume"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    m2 = manifest_of(data, "crash")
    assert m2["rollout_id"] == rid and m2["status"] == "completed"
    assert [r["status"] for r in m2["results"]] == ["completed"] * 5
    assert all(r["reward"] == 1.0 for r in m2["results"])
    for r in m2["results"]:  # finished runs were kept as they were, not re-run
        if r["run_id"] in t_before:
            assert r["finished_at"] == t_before[r["run_id"]]
    print(f"\nkill -9 with {len(finished_before)}/5 runs finished; resume re-ran {len(m2['resumes'][0]['reran'])}")
    assert len(m2["resumes"]) == 1 and set(m2["resumes"][0]["reran"]) == {
        r["run_id"] for r in m2["results"]} - finished_before
    assert containers(rid) == []


def test_resume_refuses_when_a_task_changed(tmp_path, base_image):
    task = make_task(tmp_path, "t", "echo 'hello world' > greeting.txt")
    cfg = write_config(tmp_path, "changed", [f'prepared_dir = "{task}"\nagent = "oracle"'])
    data = tmp_path / "data"
    p = subprocess.run([*CLI, "--data-dir", str(data), "run", str(cfg)], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    (task / "instruction.md").write_text("something else\n")
    p = subprocess.run([*CLI, "--data-dir", str(data), "run", str(cfg), "--resume"], cwd=ROOT,
                       capture_output=True, text=True)
    assert p.returncode == 2 and "changed since the rollout started" in p.stderr
    assert "Traceback" not in p.stderr


def test_sigint_cancels_within_10s_and_leaves_nothing(tmp_path, base_image):
    slow = make_task(tmp_path, "forever", "sleep 1000", timeouts={"agent_sec": 900})
    cfg = write_config(tmp_path, "cancel", [f'prepared_dir = "{slow}"\nagent = "oracle"\nrollouts = 4'])
    data = tmp_path / "data"
    proc = subprocess.Popen([*CLI, "--data-dir", str(data), "run", str(cfg)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    m = wait_for(lambda: _running_manifest(data, "cancel"), 120, "a running run")
    time.sleep(1.0)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 130, out + err
    print(f"\nSIGINT -> exit 130 after {elapsed:.2f} s")
    assert elapsed < 10, elapsed
    m = manifest_of(data, "cancel")
    assert m["status"] == "cancelled"
    assert [r["status"] for r in m["results"]] == ["cancelled"] * 4
    assert "Traceback" not in err
    time.sleep(1)
    assert containers(m["rollout_id"]) == []


def test_runaway_agents_are_stopped_and_siblings_complete(tmp_path, base_image):
    tasks = {
        "never_ends": ("sleep 100000", {}),
        "fork_bomb": ("bomb() { bomb | bomb & }; bomb; sleep 100000", {}),
        "memory_hog": ("python3 -c 'a = bytearray(2 * 1024**3)'; echo 'hello world' > greeting.txt", {}),
        "gigabyte_out": ("head -c 1000000000 /dev/zero | tr '\\0' a; echo 'hello world' > greeting.txt", {}),
        "honest": ("echo 'hello world' > greeting.txt", {}),
    }
    entries = []
    for name, (solve, _meta) in tasks.items():
        d = make_task(tmp_path, name, solve, resources={"memory_mb": 256, "pids": 64})
        entries.append(f'prepared_dir = "{d}"\nagent = "oracle"\nenvironment_variables = {{ TIMEOUT_SEC = "20" }}')
    cfg = write_config(tmp_path, "runaway", entries, parallel=3)
    data = tmp_path / "data"
    proc = subprocess.Popen([*CLI, "--data-dir", str(data), "run", str(cfg)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    ps = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            peak = max(peak, ps.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.1)
    out, err = proc.communicate()
    m = manifest_of(data, "runaway")
    st = {r["task_name"]: r for r in m["results"]}
    assert st["never_ends"]["status"] == "agent_timeout" and st["never_ends"]["reward"] == 0.0
    # the bomb holds every pid, so whether its `sleep` ever forks (timeout), the script ends early
    # (completed) or bash itself fails to fork and exits non-zero (the oracle's solution failed: an
    # agent error) is chance; every way the bomb is stopped, collection succeeds and the run is a
    # counted 0 — never infra, never a harness error
    bomb = st["fork_bomb"]
    assert (bomb["status"] in ("agent_timeout", "completed")
            or (bomb["status"] == "error" and bomb["error_kind"] == "agent")), bomb
    assert bomb["reward"] == 0.0
    assert st["memory_hog"]["status"] in ("completed", "error") and st["memory_hog"]["reward"] == 1.0
    assert st["gigabyte_out"]["reward"] == 1.0
    log = (Path(st["gigabyte_out"]["run_dir"]) / "logs" / "agent.log").stat().st_size
    assert log < 4 * 1024 * 1024  # the 1 GB of output was capped, not stored
    assert st["honest"]["status"] == "completed" and st["honest"]["reward"] == 1.0
    assert peak < 400 * 1024 * 1024, f"harness peak RSS {peak / 2**20:.0f} MiB"
    print(f"\nharness peak RSS during runaway agents: {peak / 2**20:.0f} MiB")
    assert containers(m["rollout_id"]) == []


class _ScriptedModel(BaseHTTPRequestHandler):
    """OpenAI-compatible /v1/chat/completions with a scripted failure sequence."""

    script: list[str] = []
    seen: list[str] = []

    def log_message(self, *a):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        step = self.script.pop(0) if self.script else "ok"
        self.seen.append(step)
        if step == "drop":
            self.connection.shutdown(2)
            self.connection.close()
            return
        if step in ("429", "500", "401"):
            body = json.dumps({"error": {"message": f"scripted {step}", "type": "x"}}).encode()
            self.send_response(int(step))
            if step == "429":
                self.send_header("Retry-After", "1")
        else:
            content = "Done.\n```bash\necho COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT\n```"
            body = json.dumps({
                "id": "x", "object": "chat.completion", "created": 0, "model": "scripted",
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": content}}],
                "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
            }).encode()
            self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def scripted_server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _ScriptedModel)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()


@pytest.mark.parametrize("script, ok", [(["429", "500", "drop"], True), (["401"], False)])
def test_flaky_and_failing_model_endpoints(tmp_path, base_image, scripted_server, script, ok):
    _ScriptedModel.script, _ScriptedModel.seen = list(script), []
    cfg = write_config(tmp_path, "flaky", [f'prepared_dir = "{TASK}"\nmodel = "scripted"\nagent = "shell"'])
    data = tmp_path / "data"
    env = {**os.environ, "OPENAI_BASE_URL": f"http://127.0.0.1:{scripted_server.server_address[1]}/v1",
           "OPENAI_API_KEY": "sk-test-notreal-123456"}
    t0 = time.monotonic()
    p = subprocess.run([*CLI, "--data-dir", str(data), "run", str(cfg)], cwd=ROOT, capture_output=True,
                       text=True, env=env, timeout=300)
    run = manifest_of(data, "flaky")["results"][0]
    if ok:
        assert p.returncode == 0, p.stdout + p.stderr
        assert run["status"] == "completed" and run["usage"]["calls"] == 1
        assert _ScriptedModel.seen == ["429", "500", "drop", "ok"]
    else:
        assert p.returncode == 1
        assert run["status"] == "error" and run["error_kind"] == "model" and "401" in run["error"]
        assert _ScriptedModel.seen == ["401"]  # not retried
        assert time.monotonic() - t0 < 60
        assert "sk-test-notreal-123456" not in p.stdout + p.stderr + json.dumps(run)


def test_unreachable_daemon_is_an_infra_error_and_retried(tmp_path, base_image, monkeypatch):
    """The first sandbox of the rollout talks to a Docker socket that does not exist (a real
    docker-py connection error): the run is recorded as an infra failure, retried, and the rollout
    completes; the failed attempt's folder and error are kept."""
    import docker
    from tenacity import wait_none

    from rollouts.config import load_config
    from rollouts.runner import Runner
    from rollouts.sandbox.docker import DockerBackend, DockerSandbox
    from rollouts.store import Store

    task = make_task(tmp_path, "t", "echo 'hello world' > greeting.txt")
    cfg = load_config(write_config(tmp_path, "infra", [f'prepared_dir = "{task}"\nagent = "oracle"\nrollouts = 2'],
                                   extra="max_retries = 2"))
    backend = DockerBackend()
    broken = docker.DockerClient(base_url="unix:///nonexistent/docker.sock", version="1.41", timeout=5)
    calls = {"n": 0}
    real_create = backend.create

    def create(spec):
        calls["n"] += 1
        return DockerSandbox(broken, spec) if calls["n"] == 1 else real_create(spec)

    monkeypatch.setattr(backend, "create", create)
    runner = Runner(cfg, Store(tmp_path / "data"))
    runner.retry_wait = wait_none()  # tenacity: no back-off in the test
    runner._backends["docker"] = backend
    runner.new_manifest()
    m = runner.run()
    assert m.status == "completed"
    assert [r.status for r in m.results] == ["completed", "completed"]
    failed = [r for r in m.results if r.attempts]
    assert len(failed) == 1 and "container failed to start" in failed[0].attempts[0].error
    assert Path(failed[0].attempts[0].dir, "error.txt").is_file()
    assert containers(m.rollout_id) == []
