"""The main job end to end through the real CLI: real Docker, real local model, real grading.

One small rollout (oracle, nop and the shell agent with the embedded model on one shipped task)
is run once per module; the tests then check the spec's files, lines and snippets against it.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.conftest import CLI, ROOT

pytestmark = [pytest.mark.docker]

CONFIG = """
name = "e2e"
parallel = 2

[[tasks]]
prepared_dir = "data/tasks/prepared/shell_hello_file"
agent = "oracle"

[[tasks]]
prepared_dir = "data/tasks/prepared/fix_bug_stats"
agent = "nop"

[[tasks]]
prepared_dir = "data/tasks/prepared/shell_hello_file"
model = "local"
agent_options = { max_steps = 2, max_reply_tokens = 96 }
environment_variables = { "TIMEOUT_SEC" = "120" }
"""


@pytest.fixture(scope="module")
def rollout(tmp_path_factory, base_image):
    tmp = tmp_path_factory.mktemp("e2e")
    cfg = tmp / "e2e.toml"
    cfg.write_text(CONFIG)
    data = tmp / "data"
    p = subprocess.run([*CLI, "--data-dir", str(data), "run", str(cfg)], cwd=ROOT,
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout + p.stderr
    rdir = next((data / "rollouts" / "e2e").glob("2*"))
    return {"proc": p, "data": data, "rollout_dir": rdir, "cfg": cfg,
            "manifest": json.loads((rdir / "manifest.json").read_text())}


def test_status_lines_as_in_spec(rollout):
    out = rollout["proc"].stdout
    assert "[rollouts] config=" in out and "name=e2e tasks=3 parallel=2" in out
    assert f"[rollouts] output={rollout['rollout_dir']}" in out
    assert "[rollouts] Running in quiet mode - use -vv for full output" in out
    assert "[rollouts] Starting 3 tasks with parallel=2" in out
    rid = rollout["manifest"]["rollout_id"]
    for i in range(3):
        assert f"✓ Task {rid}-{i} completed (" in out
    assert "✓ All 3 tasks completed!" in out


def test_outputs_where_the_spec_puts_them(rollout):
    rdir, data, m = rollout["rollout_dir"], rollout["data"], rollout["manifest"]
    assert (rdir / "runs.txt").read_text().split() == [r["run_dir"] for r in m["results"]]
    assert len(list((rdir / "task_results").glob("*.json"))) == 3
    assert (data / "rollouts" / "e2e" / "latest").resolve() == rdir.resolve()
    assert (data / "rollouts" / "temp" / f"rollout_e2e__{m['rollout_id']}.json").is_file()
    for r in m["results"]:
        run = Path(r["run_dir"])
        assert run.parent == data / "runs"
        for f in ("artifacts/diff.patch", "artifacts/notes.md", "artifacts/repo_info.json",
                  "evaluation_results.json", "scoring_results.md", "logs/eval.log"):
            assert (run / f).is_file(), f
    for key in ("config", "name", "created_at", "results", "config_digest", "tool_version"):
        assert key in m
    for r in m["results"]:
        for key in ("task_dir", "run_id", "run_dir", "status", "launch_rc", "reward", "timings", "usage"):
            assert key in r


def test_rewards_oracle_nop_and_local_model(rollout):
    oracle, nop, model = rollout["manifest"]["results"]
    assert oracle["status"] == "completed" and oracle["reward"] == 1.0
    assert nop["status"] == "completed" and nop["reward"] == 0.0
    assert model["status"] in ("completed", "agent_timeout")
    assert model["usage"]["calls"] >= 1 and model["usage"]["prompt_tokens"] > 0
    assert model["usage"]["completion_tokens"] > 0
    atif = json.loads((Path(model["run_dir"]) / "agent" / "trajectory.json").read_text())
    assert atif["schema_version"].startswith("ATIF-v1.") and atif["agent"]["name"] == "shell"
    assert [s["source"] for s in atif["steps"][:2]] == ["system", "user"]
    assert atif["final_metrics"]["total_prompt_tokens"] == model["usage"]["prompt_tokens"]
    traj = atif["extra"]["rollouts"]  # the shell agent's own record
    assert 1 <= len(traj["steps"]) <= 2
    patch = (Path(oracle["run_dir"]) / "artifacts" / "diff.patch").read_text()
    assert "greeting.txt" in patch and "+hello world" in patch
    ev = json.loads((Path(oracle["run_dir"]) / "evaluation_results.json").read_text())
    assert ev["total_score"] == 1.0 and "standard_metrics" in ev and "custom_metrics" in ev
    assert {t["outcome"] for t in ev["tests"]} == {"passed"}


def test_spec_custom_analysis_snippet_runs(rollout):
    snippet = textwrap.dedent(f"""
        import json
        from pathlib import Path
        rollout_dir = Path({str(rollout["rollout_dir"])!r})
        manifest = json.loads((rollout_dir / "manifest.json").read_text())
        for result in manifest["results"]:
            run_dir = Path(result["run_dir"])
            if (run_dir / "evaluation_results.json").exists():
                eval_data = json.loads((run_dir / "evaluation_results.json").read_text())
                print(f"Task: {{result['task_dir']}}")
                print(f"Score: {{eval_data.get('total_score', 'N/A')}}")
                print("---")
    """)
    p = subprocess.run(["python3", "-c", snippet], capture_output=True, text=True, check=True)
    assert p.stdout.count("Score: ") == 3 and "Score: 1.0" in p.stdout


def test_summarize_json_and_table(rollout):
    data = str(rollout["data"])
    p = subprocess.run([*CLI, "--data-dir", data, "summarize", "e2e", "--latest", "--json"], cwd=ROOT,
                       capture_output=True, text=True, check=True)
    s = json.loads(p.stdout)
    assert s["schema_version"] == 1 and s["total_runs"] == 3
    by_agent = {r["agent"]: r for r in s["rows"]}
    assert by_agent["oracle"]["mean_reward"] == 1.0 and by_agent["nop"]["mean_reward"] == 0.0
    rid = rollout["manifest"]["rollout_id"]
    p = subprocess.run([*CLI, "--data-dir", data, "summarize", "e2e", "--rollout", rid], cwd=ROOT,
                       capture_output=True, text=True, check=True)
    assert "oracle" in p.stdout and "shell_hello_file" in p.stdout
    p = subprocess.run([*CLI, "--data-dir", data, "summarize", "e2e"], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 2 and "--latest" in p.stderr


def test_eval_regrades_in_fresh_containers(rollout):
    data = str(rollout["data"])
    run_dir = Path(rollout["manifest"]["results"][0]["run_dir"])
    before = json.loads((run_dir / "evaluation_results.json").read_text())["graded_at"]
    p = subprocess.run([*CLI, "--data-dir", data, "eval", "e2e", "--latest", "--json"], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    rows = {r["run_id"]: r for r in json.loads(p.stdout)}
    assert rows[run_dir.name]["reward"] == 1.0 and rows[run_dir.name]["status"] == "completed"
    after = json.loads((run_dir / "evaluation_results.json").read_text())["graded_at"]
    assert after != before


def test_no_container_left(rollout):
    rid = rollout["manifest"]["rollout_id"]
    out = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=rollouts.rollout_id={rid}"],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""
