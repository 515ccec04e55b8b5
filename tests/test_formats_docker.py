"""Harbor and Terminal-Bench 1 fixtures run natively through the real CLI on real Docker: one
rollout over every fixture (supported and unsupported, --skip-unsupported), oracle and nop, in
parallel. Oracle scores 1.0 and nop 0.0 on every supported task; the unsupported ones are
skipped, recorded in the manifest and named in the summary; a config naming them without the
flag is refused (exit 2); unmapped public base images are reported before anything runs (exit 3)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.docker]

FIX = ROOT / "tests" / "fixtures"
IMAGES = """
[images]
"ubuntu:24.04" = "rollouts-base"
"python:3.13-slim" = "rollouts-base"
"ghcr.io/laude-institute/t-bench/python-3-13:20250620" = "rollouts-base"
"""
DATASETS = "".join(
    f'\n[[datasets]]\npath = "{FIX / d}"\nagent = "{a}"\n'
    for d in ("harbor", "terminal_bench", "harbor-unsupported", "terminal_bench-unsupported")
    for a in ("oracle", "nop")
)
SUPPORTED = sorted(p.name for d in ("harbor", "terminal_bench") for p in (FIX / d).iterdir())


@pytest.fixture(scope="module")
def rollout(tmp_path_factory, base_image):
    import subprocess

    from tests.conftest import CLI

    tmp = tmp_path_factory.mktemp("fmt")
    cfg = tmp / "fixtures.toml"
    cfg.write_text('name = "fmt_fixtures"\nparallel = 6\n' + IMAGES + DATASETS)
    p = subprocess.run([*CLI, "--data-dir", str(tmp / "data"), "run", str(cfg), "--skip-unsupported"],
                       cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    rdir = next((tmp / "data" / "rollouts" / "fmt_fixtures").glob("2*"))
    return {"proc": p, "cfg": cfg, "tmp": tmp, "manifest": json.loads((rdir / "manifest.json").read_text())}


def _runs(m: dict) -> dict[tuple[str, str], dict]:
    return {(r["task_name"].split("/")[-1], r["agent"]): r for r in m["results"]}


def test_oracle_one_and_nop_zero_on_every_supported_fixture(rollout):
    runs = _runs(rollout["manifest"])
    assert sorted({t for t, _ in runs}) == SUPPORTED and len(runs) == 2 * len(SUPPORTED)
    bad = {k: (r["status"], r["reward"], r.get("error")) for k, r in runs.items()
           if (r["status"], r["reward"]) != ("completed", 1.0 if k[1] == "oracle" else 0.0)}
    assert not bad, bad


def test_unsupported_recorded_and_shown(rollout):
    skipped = rollout["manifest"]["skipped"]
    assert len(skipped) == 2 * 7  # 7 unsupported fixtures, named by two entries each (oracle, nop)
    assert {s["task_name"] for s in skipped} == {"fixtures/gpu", "fixtures/allowlist", "fixtures/multi-step",
                                                 "fixtures/windows", "fixtures/mcp", "multi-service", "custom-volume"}
    out = " ".join(rollout["proc"].stdout.split())  # the table wraps long lines
    assert f"ran {len(SUPPORTED)} of {len(SUPPORTED) + 7} tasks; 7 unsupported: fixtures/" in out


def test_harbor_specifics_in_the_run_dirs(rollout):
    runs = _runs(rollout["manifest"])
    art = Path(runs[("artifacts", "oracle")]["run_dir"]) / "artifacts"
    assert (art / "report.txt").read_text() == "report ok\n"
    assert (art / "notes" / "steps.txt").read_text() == "built in one step\n"
    assert (art / "summary.txt").read_text() == "all done\n"  # from /logs/artifacts
    info = json.loads((Path(runs[("own-git-repo", "oracle")]["run_dir"]) / "artifacts/repo_info.json").read_text())
    assert info["snapshot"] == "taken" and info["snapshot_git_dir"].startswith("/var/lib/rollouts/")
    assert [f["path"] for f in info["diff_stats"]["files"]] == ["VERSION"]
    ev = json.loads((Path(runs[("metrics", "oracle")]["run_dir"]) / "evaluation_results.json").read_text())
    assert ev["custom_metrics"] == {"lines_correct": 3.0, "lines_expected": 3.0}
    m = rollout["manifest"]
    t = next(t for t in m["tasks"] if t["task_name"] == "fixtures/app-state")
    assert t["task_format"] == "harbor" and t["images"] == {"ubuntu:24.04": "rollouts-base"}


def test_unsupported_refused_without_the_flag_and_missing_images_reported(rollout, run_cli, tmp_path):
    p = run_cli("run", str(rollout["cfg"]), data_dir=tmp_path / "d")
    assert p.returncode == 2, p.stdout + p.stderr
    assert "14 task(s) cannot run here" in p.stderr and "fixtures/windows" in p.stderr
    p = run_cli("check", str(rollout["cfg"]), "--skip-unsupported", data_dir=tmp_path / "d")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "note: fixtures/metrics asks for 64 CPUs; the engine has" in p.stdout  # and it ran (capped)
    cfg = tmp_path / "noimages.toml"
    cfg.write_text(f'name = "noimg"\n[[datasets]]\npath = "{FIX / "harbor"}"\nagent = "oracle"\n')
    for cmd in ("check", "run"):
        p = run_cli(cmd, str(cfg), data_dir=tmp_path / "d")
        assert p.returncode == 3, p.stdout + p.stderr
        out = p.stdout + p.stderr
        assert "missing image ubuntu:24.04 (no registry; map it in [images]): needed by fixtures/app-state" in out
        assert "missing image python:3.13-slim" in out
    assert not (tmp_path / "d" / "rollouts" / "noimg").exists()  # nothing ran


def test_healthcheck_that_never_passes_fails_the_environment(docker_client, base_image):
    import uuid

    from rollouts.lifecycle import labels_for
    from rollouts.sandbox.base import SandboxSpec
    from rollouts.sandbox.docker import DockerBackend
    from rollouts.task import Healthcheck
    from rollouts.task_runtime import HealthcheckFailed, run_healthcheck

    rid = f"hc-{uuid.uuid4().hex[:8]}"
    sb = DockerBackend(docker_client).create(SandboxSpec(image=base_image, labels=labels_for(rid, f"{rid}-0")))
    try:
        sb.start()
        run_healthcheck(sb, Healthcheck(command="test -d /tmp", interval_sec=0, retries=1), "/")
        hc = Healthcheck(command="echo not yet; false", interval_sec=0.1, start_period_sec=0.3,
                         start_interval_sec=0.1, retries=2)
        with pytest.raises(HealthcheckFailed, match="failed 2 time"):
            run_healthcheck(sb, hc, "/")
    finally:
        sb.stop()


def test_large_workdir_is_not_snapshotted_and_repo_info_says_so(docker_client, base_image, tmp_path, monkeypatch):
    import uuid

    from rollouts import task_runtime
    from rollouts.lifecycle import labels_for
    from rollouts.sandbox.base import SandboxSpec
    from rollouts.sandbox.docker import DockerBackend
    from rollouts.task import load_task

    task = load_task(FIX / "harbor/metrics")  # shared grading, no healthcheck
    rid = f"snap-{uuid.uuid4().hex[:8]}"
    sb = DockerBackend(docker_client).create(SandboxSpec(image=base_image, labels=labels_for(rid, f"{rid}-0")))
    try:
        sb.start()
        sb.exec("mkdir -p /app && cd /app && for i in 1 2 3 4; do echo $i > f$i; done", timeout=30)
        monkeypatch.setattr(task_runtime, "SNAPSHOT_MAX_FILES", 3)
        base = task_runtime.prepare(sb, task, "/app", timeout=60)
        assert base.startswith("skipped:workdir too large to snapshot (4+ files")
        diff = task_runtime.collect(sb, task, "/app", base, tmp_path / "artifacts", "notes", [])
        info = json.loads((tmp_path / "artifacts/repo_info.json").read_text())
        assert diff == b"" and info["snapshot"] == "skipped" and "too large" in info["reason"]
        assert info["captured"] == "nothing (no snapshot)"
        assert sb.exec("test -d /logs/agent && test -d /logs/artifacts", timeout=30).ok
        monkeypatch.setattr(task_runtime, "SNAPSHOT_MAX_FILES", 20_000)
        base = task_runtime.prepare(sb, task, "/app", timeout=60)
        sb.exec("echo changed > /app/f1 && echo new > /app/f5", timeout=30)
        diff = task_runtime.collect(sb, task, "/app", base, tmp_path / "a2", "notes", [])
        assert b"+changed" in diff and b"b/f5" in diff
        assert not sb.exec("test -e /app/.git", timeout=30).ok  # nothing written into the workdir
    finally:
        sb.stop()


def test_eval_regrades_the_separate_mode_task_with_the_recorded_image_mapping(rollout, run_cli):
    p = run_cli("eval", "fmt_fixtures", "--latest", "--json", data_dir=rollout["tmp"] / "data", timeout=600)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    rows = {(r["task"], r.get("agent")): r for r in json.loads(p.stdout)}
    regraded = {k: r for k, r in rows.items() if r["status"] not in ("skipped",) and "separate" in k[0]}
    assert regraded and all(r["reward"] == r["previous_reward"] for r in regraded.values()), rows
