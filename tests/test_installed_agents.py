"""Installed agents (codex, claude-code, mini-swe-agent): the layer cache and each agent solving
shell_hello_file against a scripted model endpoint (real HTTP, real wire protocol: Responses,
Anthropic Messages, Chat Completions) in a real Docker sandbox.

The wheels (142 / 178 MB, mini-swe-agent 0.3 MB) are downloaded into the agent cache on first use
(``~/.cache/rollouts/agents``); later runs of the suite reuse them.
"""

from __future__ import annotations

import ipaddress
import json
import multiprocessing
import os
import time
import uuid
from pathlib import Path

import pytest
import tomllib

from rollouts.agents import AgentContext, get_agent
from rollouts.agents.installed import layer as layer_mod
from rollouts.agents.installed.base import Endpoint
from rollouts.agents.installed.codex import CodexAgent, config_toml
from rollouts.gateway.scripted import Reply, ScriptedEndpoint, ToolCall

ROOT = Path(__file__).resolve().parents[1]
TASK = ROOT / "data" / "tasks" / "prepared" / "shell_hello_file"


# ---------------------------------------------------------------------- pure
def test_version_default_and_pinned():
    a = get_agent("codex")
    assert a.pinned_options({}) == {"version": "0.163.0"}
    assert a.pinned_options({"version": "0.160.0"})["version"] == "0.160.0"
    assert get_agent("claude-code").pinned_options({})["version"] == "0.2.189"
    assert get_agent("mini-swe-agent").pinned_options({"step_limit": 3}) == {"step_limit": 3, "version": "2.4.6"}
    assert get_agent("shell").pinned_options({"max_steps": 2}) == {"max_steps": 2}


def test_codex_config_points_only_at_the_gateway():
    ep = Endpoint("http://10.0.0.1:8080", "tok-run", "gpt-x")
    cfg = tomllib.loads(config_toml(ep, CodexAgent.Options(context_window=32768)))
    assert cfg["model"] == "gpt-x" and cfg["model_provider"] == "rollouts"
    prov = cfg["model_providers"]["rollouts"]
    assert prov["base_url"] == "http://10.0.0.1:8080/v1" and prov["wire_api"] == "responses"
    assert prov["env_key"] == "ROLLOUTS_GATEWAY_TOKEN" and "tok-run" not in config_toml(ep, CodexAgent.Options())
    assert cfg["model_context_window"] == 32768 and cfg["approval_policy"] == "never"


def test_session_log_parsing():
    codex = get_agent("codex")
    log = "\n".join(json.dumps(e) for e in [
        {"type": "item.completed", "item": {"type": "command_execution", "command": "ls"}},
        {"type": "item.completed", "item": {"type": "agent_message", "text": "all done"}},
    ]) + '\n{"type": "item.comp'  # torn last line of a killed agent
    assert codex.final_message(log) == "all done" and codex.count_steps(log) == 1
    claude = get_agent("claude-code")
    log = "\n".join(json.dumps(e) for e in [
        {"type": "assistant", "message": {"content": [{"type": "tool_use", "name": "Bash", "input": {}}]}},
        {"type": "result", "result": "finished"},
    ])
    assert claude.final_message(log) == "finished" and claude.count_steps(log) == 1


# ---------------------------------------------------------------------- layer cache
@pytest.fixture(scope="module")
def task_image(docker_client, base_image):
    from rollouts.sandbox.docker import DockerBackend
    from rollouts.task import load_task

    return DockerBackend(docker_client).task_image(load_task(TASK))


def test_second_use_installs_nothing(docker_client, task_image, monkeypatch):
    agent = CodexAgent()
    pkgs = agent.packages("0.163.0")
    first = layer_mod.ensure_layer(docker_client, "codex", "0.163.0", pkgs, task_image, print, show_progress=False)

    def forbidden(*a, **k):
        raise AssertionError(f"a cached layer must not run pip or build: {a}")

    monkeypatch.setattr(layer_mod.subprocess, "Popen", forbidden)  # no pip
    monkeypatch.setattr(layer_mod, "write_layer_tar", forbidden)  # no copy
    monkeypatch.setattr(docker_client.volumes, "create", forbidden)  # no volume
    t0 = time.monotonic()
    again = layer_mod.ensure_layer(docker_client, "codex", "0.163.0", pkgs, task_image, print)
    print(f"cached agent_setup: {(time.monotonic() - t0) * 1000:.1f} ms (figures: bench/bench_agent_setup.py)")
    assert again == first


MINI = layer_mod.Package("mini-swe-agent", "2.4.6", (("minisweagent/", "minisweagent/"),))  # a 0.3 MB wheel


def _build(args) -> tuple[str, int]:
    cache, agent, image = args
    os.environ["XDG_CACHE_HOME"] = cache
    import docker

    built = []
    lay = layer_mod.ensure_layer(docker.from_env(), agent, "2.4.6", [MINI], image,
                                 lambda s: built.append(s) if "built" in s else None, show_progress=False)
    return lay.volume, len(built)


def test_parallel_first_runs_build_once(docker_client, task_image, tmp_path):
    """4 processes ask for the same new layer at once (a fresh cache: own index and locks; an
    agent name of its own: own volume; the small mini-swe-agent wheel, the mechanism is the same
    for every agent): one downloads and builds, the others wait and reuse it."""
    agent = f"partest-{uuid.uuid4().hex[:6]}"
    try:
        with multiprocessing.get_context("spawn").Pool(4) as pool:
            out = pool.map(_build, [(str(tmp_path), agent, task_image)] * 4)
        assert len({v for v, _ in out}) == 1
        assert sum(n for _, n in out) == 1, out  # exactly one process built it
        vols = docker_client.volumes.list(filters={"label": layer_mod.LABEL_LAYER})
        assert [v.name for v in vols if agent in v.name] == [out[0][0]]
        wheels = list((tmp_path / "rollouts" / "agents" / "wheels").rglob("*.whl"))
        assert len(wheels) == 1  # downloaded once
    finally:
        for v in docker_client.volumes.list(filters={"label": layer_mod.LABEL_LAYER}):
            if agent in v.name:
                v.remove(force=True)


def test_clean_removes_stale_layers_only(docker_client, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # a cache of its own: clean touches only its layers
    tag = uuid.uuid4().hex[:6]
    mine = {layer_mod.LABEL_TOOL: "rollouts", layer_mod.LABEL_CACHE: layer_mod.cache_id()}
    live, stale, other = (f"rollouts-agent-{n}-{tag}" for n in ("live", "stale", "othercache"))
    docker_client.volumes.create(live, labels={**mine, layer_mod.LABEL_LAYER: "live"})
    docker_client.volumes.create(stale, labels={**mine, layer_mod.LABEL_LAYER: "stale"})  # e.g. an older digest
    docker_client.volumes.create(other, labels={layer_mod.LABEL_TOOL: "rollouts", layer_mod.LABEL_LAYER: "x",
                                                layer_mod.LABEL_CACHE: "another-cache"})
    idx = layer_mod.cache_root() / "layers"
    idx.mkdir(parents=True)
    (idx / "live.json").write_text(json.dumps({"volume": live}))
    try:
        assert layer_mod.clean_layers(docker_client, dry_run=True) == [stale]
        assert docker_client.volumes.get(stale)
        assert layer_mod.clean_layers(docker_client) == [stale]
        names = {v.name for v in docker_client.volumes.list(filters={"name": tag})}
        assert names == {live, other}
        assert layer_mod.clean_layers(docker_client, all_layers=True) == [live]
        assert not (idx / "live.json").exists()
    finally:
        for v in docker_client.volumes.list(filters={"name": tag}):
            v.remove(force=True)


# ---------------------------------------------------------------------- agents end to end
COMMAND = "printf 'hello world\\n' > greeting.txt"
FINAL = "Created greeting.txt containing hello world."


def _shell_call(tools: list[dict]) -> ToolCall | None:
    """A call of the agent's own shell tool (Codex: exec_command / shell_command / shell;
    Claude Code: Bash), read from the tools the request declares, as a real model would."""
    for t in tools:
        fn = t.get("function") or t
        name, schema = fn.get("name"), fn.get("parameters") or fn.get("input_schema") or {}
        props = schema.get("properties") or {}
        if name == "exec_command" and "cmd" in props:
            return ToolCall(name, {"cmd": COMMAND})
        if name in ("shell_command", "Bash") and "command" in props:
            return ToolCall(name, {"command": COMMAND, "description": "write greeting.txt"})
        if name == "shell" and (props.get("command") or {}).get("type") == "array":
            return ToolCall(name, {"command": ["bash", "-lc", COMMAND]})
    return None


def scripted_reply(protocol: str, body: dict) -> Reply:
    """The fixed script, in whatever protocol the gateway forwards: a shell tool call that writes
    the file, then a final message. Text-protocol agents (no tools: mini-swe-agent) get the
    command in a ```mswea_bash_command block, then the submit sentinel."""
    msgs = body.get("messages") or []
    answered = any(m.get("role") == "tool" or (isinstance(m.get("content"), list) and any(
        isinstance(c, dict) and c.get("type") == "tool_result" for c in m["content"])) for m in msgs)
    if body.get("tools"):
        call = None if answered else _shell_call(body["tools"])
        return Reply(tool_calls=(call,)) if call else Reply(text=FINAL)
    seen = any("<returncode>" in str(m.get("content")) for m in msgs if m.get("role") == "user")
    cmd = "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT" if seen else COMMAND
    return Reply(text=f"THOUGHT: one step.\n\n```mswea_bash_command\n{cmd}\n```")


def _run_agent(name, upstream_kind, reply, docker_client, task_image, run_dir, deadline_sec=120.0, check=None):
    """Run agent ``name`` once on shell_hello_file in a sandbox, through a real Gateway in front of
    a ScriptedEndpoint speaking ``upstream_kind``. ``check(sb, res)`` runs before the sandbox
    stops. Returns (AgentResult, the run's exchanges, its usage)."""
    from rollouts.gateway import Gateway, RunLimits, UpstreamSpec
    from rollouts.lifecycle import labels_for
    from rollouts.sandbox.base import SandboxSpec
    from rollouts.sandbox.docker import DockerBackend
    from rollouts.task import load_task
    from rollouts.workspace import setup_workspace

    backend = DockerBackend(docker_client)
    task = load_task(TASK)
    agent = get_agent(name)
    volumes = agent.prepare(backend, {}, task_image, print)
    ipam = docker_client.networks.get("bridge").attrs["IPAM"]["Config"][0]
    bridge = ipam.get("Gateway") or str(ipaddress.ip_network(ipam["Subnet"])[1])
    with ScriptedEndpoint(reply, api_key="sk-real-upstream") as up:
        base = up.openai_base_url if upstream_kind == "openai" else up.anthropic_base_url
        with Gateway(UpstreamSpec(upstream_kind, base, "scripted", api_key="sk-real-upstream"), host=bridge) as gw:
            g = gw.register_run("r1", RunLimits(), log_path=run_dir / "agent" / "gateway_exchanges.jsonl")
            spec = SandboxSpec(image=task_image, labels=labels_for("test", f"test-{name}"), network=True,
                               volumes=volumes, lifetime_sec=300, memory_mb=2048)
            with backend.create(spec) as sb:
                setup_workspace(sb, task, "/workspace", timeout=60)
                ctx = AgentContext(sandbox=sb, task=task, workdir="/workspace", run_dir=run_dir,
                                   deadline=time.monotonic() + deadline_sec, model="scripted", log=print,
                                   gateway=Endpoint(g.anthropic_base_url, g.token, g.model_name,
                                                    host_base_url=g.anthropic_base_url))
                t0 = time.monotonic()
                res = agent.run(ctx)
                print(f"{name}: {time.monotonic() - t0:.1f} s, {res}")
                if check:
                    check(sb, res)
            return res, gw.exchanges("r1"), gw.usage("r1")


@pytest.mark.parametrize("name,upstream_kind,protocol", [
    ("codex", "openai", "responses"),           # Responses -> Chat translated by the gateway
    ("claude-code", "anthropic", "messages"),   # Messages passed through
    ("claude-code", "openai", "messages"),      # Messages -> Chat translated
    ("mini-swe-agent", "openai", "chat"),
])
def test_agent_solves_hello_file_through_gateway(name, upstream_kind, protocol, docker_client, task_image, tmp_path):
    def check(sb, res):
        assert res.status == "completed", res
        assert sb.exec(["cat", "/workspace/greeting.txt"], timeout=10).stdout == "hello world\n"
        if name != "mini-swe-agent":  # the layer is mounted read-only
            assert not sb.exec(["touch", "/opt/rollouts-agent/x"], timeout=10).ok

    res, ex, usage = _run_agent(name, upstream_kind, scripted_reply, docker_client, task_image, tmp_path, check=check)
    assert len(ex) >= 2 and {e.protocol for e in ex} == {protocol} and all(e.status_code == 200 for e in ex)
    assert usage.prompt_tokens > 0 and res.steps >= 1
    assert (tmp_path / "agent" / get_agent(name).session_log_name).stat().st_size > 0
    if name != "mini-swe-agent":
        assert FINAL in res.notes
        own = tmp_path / "agent" / get_agent(name).session_dirs[0][1]  # the CLI's own session files
        assert any(f.suffix == ".jsonl" for f in own.rglob("*")), list(own.rglob("*"))


@pytest.mark.parametrize("name", ["codex", "claude-code", "mini-swe-agent"])
def test_agent_killed_at_its_deadline(name, docker_client, task_image, tmp_path):
    """A model that never answers in time: the agent's whole process tree in the sandbox is
    killed at the deadline (timeout -k, own process group) and the run is a timeout."""
    def slow(protocol, body):
        return Reply(text=FINAL, delay_sec=10)

    def check(sb, res):
        assert res.status == "timeout", res
        left = sb.exec("ps -eo args | grep -c '^/opt/rollouts-agent' || true", timeout=10).stdout.strip()
        assert left == "0", sb.exec("ps -ef", timeout=10).stdout

    _run_agent(name, "openai", slow, docker_client, task_image, tmp_path, deadline_sec=5, check=check)


# ---------------------------------------------------------------------- a whole rollout
ROLLOUT = """
name = "installed"
parallel = 3

[[tasks]]
prepared_dir = "{task}"
agent = "codex"
model = "gpt-scripted"

[[tasks]]
prepared_dir = "{task}"
agent = "claude-code"
model = "claude-scripted"

[[tasks]]
prepared_dir = "{task}"
agent = "mini-swe-agent"
model = "gpt-scripted"

[[tasks]]
prepared_dir = "{task}"
agent = "codex"
model = "gpt-scripted"
agent_options = {{ max_total_tokens = 200 }}

[[tasks]]
prepared_dir = "{task}"
agent = "mini-swe-agent"
model = "gpt-scripted"
agent_options = {{ max_total_tokens = 200 }}
"""


def test_rollout_of_installed_agents(run_cli, tmp_path, base_image):
    """`run` end to end: each agent in its sandbox on the rollout's internal gateway network,
    the scripted upstream behind the gateway (which injects the real key), graded by the task's
    hidden tests; a 200-token budget ends as `limit` with the request refused."""
    key = f"sk-test-{uuid.uuid4().hex}"
    cfg = tmp_path / "installed.toml"
    cfg.write_text(ROLLOUT.format(task=TASK))
    with ScriptedEndpoint(scripted_reply, api_key=key) as up:
        env = {"OPENAI_BASE_URL": up.openai_base_url, "OPENAI_API_KEY": key,
               "ANTHROPIC_BASE_URL": up.anthropic_base_url, "ANTHROPIC_API_KEY": key}
        t0 = time.monotonic()
        p = run_cli("run", str(cfg), env=env, timeout=600)
        print(f"rollout of 5 runs: {time.monotonic() - t0:.1f} s")
    data = tmp_path / "data"
    m = json.loads(next((data / "rollouts" / "installed").glob("2*/manifest.json")).read_text())
    res = {(r["agent"], r["agent_options"].get("max_total_tokens")): r for r in m["results"]}
    for agent in ("codex", "claude-code", "mini-swe-agent"):
        r = res[(agent, None)]
        assert r["status"] == "completed" and r["reward"] == 1.0, (agent, r, p.stdout[-2000:], p.stderr[-2000:])
        assert r["usage"]["prompt_tokens"] > 0 and r["usage"]["calls"] >= 2
        assert r["agent_options"]["version"] and "agent_setup" in r["timings"]
        run_dir = Path(r["run_dir"])
        traj = json.loads((run_dir / "agent" / "trajectory.json").read_text())
        assert traj["schema_version"].startswith("ATIF-v1.") and traj["agent"]["name"] == agent
        assert sum(1 for s in traj["steps"] if s["source"] == "agent") >= 2
        # in-sandbox agents' tokens are bound to their sandbox's address; the host-side loop's is not
        bound = "token is accepted only from the sandbox's address" in (run_dir / "logs" / "agent.log").read_text()
        assert bound == (agent != "mini-swe-agent"), agent
    for agent in ("codex", "mini-swe-agent"):
        lim = res[(agent, 200)]
        assert lim["status"] == "limit" and lim["reward"] == 0.0, lim
        ex = [json.loads(x) for x in (Path(lim["run_dir"]) / "agent" / "gateway_exchanges.jsonl").read_text().splitlines()]
        refused = sum(1 for e in ex if e.get("refused") == "limit")
        print(agent, "refused requests:", refused)
        assert 1 <= refused <= 3  # the refusal ends the agent; it is not retried ten times with back-off
    # the real key reached the upstream (the scripted endpoint refuses others) and nothing on disk
    for f in data.rglob("*"):
        if f.is_file():
            assert key not in f.read_text(errors="replace"), f


# ---------------------------------------------------------------------- the local model (slow)
@pytest.mark.slow
@pytest.mark.timeout(3600)  # ~13 min at a load average of 20 on 2 cores (bench/bench_installed_local.py)
def test_installed_agents_on_the_local_model(run_cli, tmp_path, base_image):
    """Each agent on `model = "local"` (Qwen2.5-Coder-0.5B, 32k context) through the gateway:
    status completed or limit, tokens counted by the gateway, an ATIF trajectory with at least one
    model exchange. Minutes per agent on 2 cores; figures: bench/bench_installed_local.py."""
    p = run_cli("run", str(ROOT / "configs" / "installed_agents_local.toml"), timeout=3600)
    m = json.loads(next((tmp_path / "data" / "rollouts" / "installed_agents_local").glob("2*/manifest.json")).read_text())
    assert len(m["results"]) == 3, p.stdout + p.stderr
    for r in m["results"]:
        print(r["agent"], r["status"], r["reward"], r["usage"], r["timings"])
        assert r["status"] in ("completed", "limit"), (r, p.stdout[-3000:])
        assert r["usage"]["prompt_tokens"] + r["usage"]["completion_tokens"] > 0
        traj = json.loads((Path(r["run_dir"]) / "agent" / "trajectory.json").read_text())
        assert sum(1 for s in traj["steps"] if s["source"] == "agent") >= 1
