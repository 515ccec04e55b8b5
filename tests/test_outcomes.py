"""Run outcomes end to end (real Docker, real CLI in a subprocess, faults injected by
tests/fault_cli.py): an agent whose code raises is an ``agent`` error counted in the
denominators; a bug of ours is ``harness`` (not retried, exit 1, visible in ``summarize``); a
failed copy-out of the diff is infra, retried, and the oracle still scores 1.0."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.docker]
TASK = ROOT / "data/tasks/prepared/shell_hello_file"
FAULT_CLI = [sys.executable, str(ROOT / "tests" / "fault_cli.py")]


def run_cli(tmp: Path, faults: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "ROLLOUTS_TEST_FAULTS": faults, "PYTHONPATH": str(ROOT)}
    env.pop("ROLLOUTS_DATA_DIR", None)
    return subprocess.run([*FAULT_CLI, "--data-dir", str(tmp / "data"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def config(tmp: Path, name: str, entries: list[tuple[str, int]], extra: str = "") -> Path:
    body = f'name = "{name}"\nparallel = 2\nmax_retries = 2\n{extra}\n'
    for agent, n in entries:
        body += f'[[tasks]]\nprepared_dir = "{TASK}"\nagent = "{agent}"\nmodel = "none"\nrollouts = {n}\n'
    p = tmp / f"{name}.toml"
    p.write_text(body)
    return p


def manifest(tmp: Path, name: str) -> dict:
    return json.loads(next((tmp / "data" / "rollouts" / name).glob("2*/manifest.json")).read_text())


def test_failing_agent_is_an_agent_error_in_the_denominators(tmp_path, base_image):
    p = run_cli(tmp_path, "boom_agent", "run", str(config(tmp_path, "boom", [("boom", 2), ("oracle", 1)])))
    assert p.returncode == 1, p.stdout + p.stderr
    runs = manifest(tmp_path, "boom")["results"]
    boom = [r for r in runs if r["agent"] == "boom"]
    assert [(r["status"], r["error_kind"], r["attempts"]) for r in boom] == [("error", "agent", [])] * 2
    assert all("RuntimeError: the agent's own bug" in r["error"] for r in boom)
    assert "agent raised" in Path(boom[0]["run_dir"], "logs", "agent.log").read_text()
    assert [r["reward"] for r in runs if r["agent"] == "oracle"] == [1.0]
    s = run_cli(tmp_path, "boom_agent", "summarize", "boom", "--latest", "--json")
    rows = {r["agent"]: r for r in json.loads(s.stdout)["rows"]}
    assert rows["boom"]["n"] == 2 and rows["boom"]["mean_reward"] == 0.0  # counted, reward 0


def test_harness_fault_is_harness_exit_1_and_shown(tmp_path, base_image):
    p = run_cli(tmp_path, "harness", "run", str(config(tmp_path, "bug", [("oracle", 1)])))
    assert p.returncode == 1, p.stdout + p.stderr
    (run,) = manifest(tmp_path, "bug")["results"]
    assert (run["status"], run["error_kind"], run["attempts"]) == ("error", "harness", [])  # not retried
    assert "KeyError" in run["error"] and "bug of rollouts" in run["error"]
    tb = Path(run["run_dir"], "logs", "harness_error.txt").read_text()
    assert "injected harness bug" in tb and "Traceback" in tb
    s = run_cli(tmp_path, "", "summarize", "bug", "--latest")
    assert s.returncode == 0 and "harness" in s.stdout and "incomplete" in s.stdout, s.stdout


def test_diff_copy_out_failure_is_retried_and_scores(tmp_path, base_image):
    p = run_cli(tmp_path, "copyout_once", "run", str(config(tmp_path, "copyout", [("oracle", 1)])))
    assert p.returncode == 0, p.stdout + p.stderr
    (run,) = manifest(tmp_path, "copyout")["results"]
    assert run["status"] == "completed" and run["reward"] == 1.0
    assert len(run["attempts"]) == 1 and "injected connection reset" in run["attempts"][0]["error"]
    assert Path(run["attempts"][0]["dir"], "error.txt").is_file()


def test_two_rollouts_share_a_machine(tmp_path, base_image, docker_client):
    """Rollout A builds a slow task image; meanwhile rollout B starts (its start-of-run reaper
    runs), ``clean --dry-run`` and ``clean`` run: A's build container names its live owner, so
    nothing of A is touched, and both rollouts complete with the oracle's 1.0."""
    import shutil
    import time
    import uuid

    slow = tmp_path / "slow"
    shutil.copytree(TASK, slow)
    (slow / "environment").mkdir()
    (slow / "environment" / "Dockerfile").write_text(
        f"ARG BASE_IMAGE\nFROM ${{BASE_IMAGE}}\nRUN echo {uuid.uuid4().hex} && sleep 20\n")
    meta = json.loads((slow / "tb_meta.json").read_text())
    meta["name"] = "slow_build"
    meta["environment"]["dockerfile"] = "environment/Dockerfile"
    (slow / "tb_meta.json").write_text(json.dumps(meta))
    cfg_a = tmp_path / "a.toml"
    cfg_a.write_text(f'name = "a"\n[[tasks]]\nprepared_dir = "{slow}"\nagent = "oracle"\n')
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("ROLLOUTS_DATA_DIR", None)
    a = subprocess.Popen([*FAULT_CLI, "--data-dir", str(tmp_path / "data"), "run", str(cfg_a)], cwd=ROOT, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        building = []
        deadline = time.monotonic() + 120
        while not building and time.monotonic() < deadline and a.poll() is None:
            building = docker_client.api.containers(
                all=True, filters={"label": ["rollouts.kind=build", f"rollouts.pid={a.pid}"]})
            time.sleep(0.3)
        assert building, "rollout A's build container never appeared"
        build_id = building[0]["Id"][:12]
        for args in (["clean", "--dry-run"], ["clean"]):
            c = run_cli(tmp_path, "", *args)
            assert c.returncode == 0 and build_id not in c.stdout and "rollout=None" not in c.stdout, c.stdout
        b = run_cli(tmp_path, "", "run", str(config(tmp_path, "b", [("oracle", 1)])))
        assert b.returncode == 0, b.stdout + b.stderr
        out, _ = a.communicate(timeout=300)
    finally:
        if a.poll() is None:
            a.kill()
            a.wait()
    assert a.returncode == 0, out
    assert [r["reward"] for r in manifest(tmp_path, "a")["results"]] == [1.0]
    assert [r["reward"] for r in manifest(tmp_path, "b")["results"]] == [1.0]
    for img in docker_client.images.list(name="rollouts-task-slow_build"):
        docker_client.images.remove(img.id, force=True)
    run_cli(tmp_path, "", "clean")  # A's owner tag (its harness has exited)
