"""Quick-run flags of ``run``: what ran is what was asked (checked in the manifest), and
``--dry-run`` starts nothing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from rollouts.config import load_config
from rollouts.errors import ConfigError
from rollouts.selection import Selection, apply_selection, planned_runs
from tests.conftest import ROOT

EXAMPLE = ROOT / "configs" / "example.toml"

CONFIG = """
name = "quick"
parallel = 1

[[tasks]]
prepared_dir = "{root}/data/tasks/prepared/shell_hello_file"
agent = "oracle"
rollouts = 3

[[tasks]]
prepared_dir = "{root}/data/tasks/prepared/fix_bug_stats"
agent = "oracle"

[[tasks]]
prepared_dir = "{root}/data/tasks/prepared/shell_hello_file"
agent = "nop"
"""


@pytest.fixture
def cfg_file(tmp_path) -> Path:
    p = tmp_path / "quick.toml"
    p.write_text(CONFIG.format(root=ROOT))
    return p


def test_filters_keep_config_indices_and_order():
    cfg = load_config(EXAMPLE)
    before = [e.rollouts for e in cfg.entries]
    out = apply_selection(cfg, Selection(tasks=["shell*", "fix_*"], agents=["nop"], rollouts=4, parallel=7))
    assert [(e.index, e.task.name, e.agent, e.rollouts) for e in out.entries] == [
        (4, "fix_bug_stats", "nop", 4), (6, "shell_hello_file", "nop", 4)]
    assert out.parallel == 7 and out.total_runs == 8
    assert cfg.parallel == 2 and [e.rollouts for e in cfg.entries] == before  # the config is untouched
    runs = planned_runs(out)
    assert [(r["i"], r["task"], r["rollout"]) for r in runs][:2] == [(0, "fix_bug_stats", 0), (1, "fix_bug_stats", 1)]


def test_max_tasks_after_filters_and_model_filter():
    cfg = load_config(EXAMPLE)
    out = apply_selection(cfg, Selection(max_tasks=2))
    assert [e.index for e in out.entries] == [0, 1]
    local = apply_selection(cfg, Selection(models=["local"], max_tasks=1))
    assert [(e.model, e.agent) for e in local.entries] == [("local", "shell")]


def test_selection_applies_after_datasets_expansion(tmp_path):
    cfg_path = tmp_path / "ds.toml"
    cfg_path.write_text(f'name = "ds"\n[[datasets]]\npath = "{ROOT}/data/tasks/prepared"\nagent = "oracle"\n')
    cfg = load_config(cfg_path)
    names = [e.task.name for e in cfg.entries]
    assert len(names) >= 4 and "shell_hello_file" in names  # one entry per task of the directory
    out = apply_selection(cfg, Selection(tasks=["*_*"], max_tasks=2, rollouts=2))
    assert [e.task.name for e in out.entries] == [n for n in names if "_" in n][:2]
    assert [r["where"] for r in planned_runs(out)] == ["datasets[0]"] * 4


def test_filter_that_leaves_nothing_is_a_config_error():
    with pytest.raises(ConfigError, match=r"--task nope\*: no \[\[tasks\]\] entry left.*have: fix_bug_stats"):
        apply_selection(load_config(EXAMPLE), Selection(tasks=["nope*"]))
    with pytest.raises(ConfigError, match="--agent codex"):
        apply_selection(load_config(EXAMPLE), Selection(agents=["codex"]))


def test_dry_run_prints_runs_and_starts_nothing(run_cli, cfg_file, tmp_path):
    data = tmp_path / "data"
    # an unreachable Docker endpoint: any engine call would fail, so success proves none was made
    p = run_cli("run", str(cfg_file), "--dry-run", "--task", "shell_*", "--rollouts", "2",
                data_dir=data, env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert p.returncode == 0, p.stderr
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("run ")]
    assert len(lines) == 4 and all("task=shell_hello_file" in ln for ln in lines)
    assert "agent=oracle" in lines[0] and "agent=nop" in lines[3]
    assert "dry run: 4 run(s) of 2 entries" in p.stdout
    assert not data.exists()  # no rollout folder, no manifest
    j = run_cli("run", str(cfg_file), "--dry-run", "--json", "--agent", "nop", data_dir=data)
    doc = json.loads(j.stdout)
    assert doc["selection"] == {"agents": ["nop"]} and [r["agent"] for r in doc["runs"]] == ["nop"]


@pytest.mark.docker
def test_quick_run_flags_recorded_and_obeyed(run_cli, cfg_file, tmp_path, base_image):
    data = tmp_path / "data"
    p = run_cli("run", str(cfg_file), "--task", "shell_hello_*", "--agent", "oracle", "--rollouts", "2",
                "--parallel", "2", "--max-tasks", "1", data_dir=data, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    m = json.loads(next((data / "rollouts" / "quick").glob("2*/manifest.json")).read_text())
    assert m["selection"] == {"parallel": 2, "rollouts": 2, "max_tasks": 1, "tasks": ["shell_hello_*"],
                              "agents": ["oracle"]}
    assert m["parallel"] == 2
    assert [(t["index"], t["task_name"], t["agent"], t["rollouts"]) for t in m["tasks"]] == [
        (0, "shell_hello_file", "oracle", 2)]
    assert [(r["task_name"], r["agent"], r["status"], r["reward"]) for r in m["results"]] == [
        ("shell_hello_file", "oracle", "completed", 1.0)] * 2
    assert sorted(os.listdir(data / "runs")) == [r["run_id"] for r in m["results"]]
    r = run_cli("run", "quick", "--resume", "--task", "x", data_dir=data)
    assert r.returncode == 2 and "only --parallel" in r.stderr
