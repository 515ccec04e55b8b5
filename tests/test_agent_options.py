"""Typed agent options: each agent's ``Options`` model is what ``agent_options`` may hold; bad
tables are exit 2 at ``check`` and at ``run`` before any container (Docker unreachable here on
purpose: reaching it would be exit 3), and the README's options table equals the models."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rollouts.agents import REGISTRY, AgentOptions, agent_class, options_table, validate_options
from rollouts.config import load_config
from rollouts.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
TASK = ROOT / "data" / "tasks" / "prepared" / "shell_hello_file"


def test_every_agent_declares_a_forbidding_options_model():
    for name in REGISTRY:
        model = agent_class(name).Options
        assert issubclass(model, AgentOptions), name
        assert model.model_config["extra"] == "forbid", name
        for key, f in model.model_fields.items():
            assert f.description, f"{name}.Options.{key} has no description"
        model()  # every option has a default


def test_readme_table_equals_the_models():
    text = (ROOT / "README.md").read_text()
    m = re.search(r"<!-- agent-options:start -->\n(.*?)<!-- agent-options:end -->", text, re.DOTALL)
    assert m, "README lacks the agent-options block"
    assert m.group(1) == options_table(), "README agent options differ from the Options models: paste options_table()"
    for name in REGISTRY:
        assert f"| `{name}` |" in text


@pytest.mark.parametrize("agent,opts,key,words", [
    ("shell", {"max_steps": "ten"}, "max_steps", "expected an integer (got 'ten')"),
    ("shell", {"max_steps": 0}, "max_steps", "expected a value ≥ 1"),
    ("shell", {"temperature": "hot"}, "temperature", "expected a number"),
    ("shell", {"max_stepz": 3}, "max_stepz", "unknown option for agent 'shell' (known: max_steps"),
    ("rlm", {"max_depth": 2.5}, "max_depth", "expected an integer"),
    ("rlm", {"sub_model": 3}, "sub_model", "expected a string"),
    ("nop", {"anything": 1}, "anything", "known: none"),
    ("llm", {"margin": 1.0}, "margin", "expected a value < 1"),
])
def test_validate_options_messages(agent, opts, key, words):
    ok, bad, msg = validate_options(agent, opts)
    assert ok is None and bad == key and words in msg


def test_valid_options_and_defaults():
    o, _, _ = validate_options("shell", {"max_steps": 3, "temperature": 1})
    assert o.max_steps == 3 and o.temperature == 1.0 and o.observation_chars == 4000
    o, _, _ = validate_options("rlm", {})
    assert o.max_depth == 1 and o.child_max_iterations is None


def _config(tmp_path: Path, options: str, where: str = "task") -> Path:
    task = tmp_path / "task"
    shutil.copytree(TASK, task)
    tasks = "".join(f'[[tasks]]\nprepared_dir = "{task}"\nagent = "shell"\nmodel = "local"\n' for _ in range(3))
    tasks += f'[[tasks]]\nprepared_dir = "{task}"\nagent = "shell"\nmodel = "local"\n'
    if where == "task":
        tasks += f"agent_options = {options}\n"
        head = ""
    else:
        head = f'[defaults]\nagent_options = {options}\n'
    cfg = tmp_path / "bench.toml"
    cfg.write_text(f'name = "opts"\n{head}{tasks}')
    return cfg


def test_load_config_names_entry_and_key(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = _config(tmp_path, '{ max_steps = "ten" }')
    with pytest.raises(ConfigError) as e:
        load_config(cfg, agents=tuple(REGISTRY))
    assert e.value.field == "tasks[3].agent_options.max_steps" and e.value.file == str(cfg)
    assert str(e.value).endswith("tasks[3].agent_options.max_steps: expected an integer (got 'ten')")
    cfg = _config(tmp_path / "d", "{ bogus = 1 }", where="defaults")
    with pytest.raises(ConfigError) as e:
        load_config(cfg, agents=tuple(REGISTRY))
    assert e.value.field == "defaults.agent_options.bogus"


@pytest.mark.parametrize("command", ["check", "run"])
def test_cli_exit_2_before_any_container(tmp_path, command):
    cfg = _config(tmp_path, '{ max_steps = "ten" }')
    data = tmp_path / "data"
    env = {"PATH": "/usr/bin:/bin", "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock", "HOME": str(tmp_path)}
    p = subprocess.run([sys.executable, str(ROOT / "scripts" / "eval_rollouts.py"), "--data-dir", str(data),
                        command, str(cfg)], cwd=tmp_path, env={**env, "PYTHONPATH": str(ROOT)},
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    assert f"{cfg}: tasks[3].agent_options.max_steps: expected an integer (got 'ten')" in p.stderr
    assert "Traceback" not in p.stderr
    assert not (data / "rollouts").exists() or not any((data / "rollouts").iterdir())
