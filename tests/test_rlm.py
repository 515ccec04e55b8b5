"""The ``rlm`` and ``llm`` agents against the real Docker engine.

A scripted model — a tiny OpenAI-compatible HTTP server in a thread, reached through the real
``openai`` SDK via ``ModelClient(base_url=...)`` — plays the model, so each test controls what
code the "model" writes. Shows that model-written code runs in the container (its hostname, no
network: the host's model server is not reachable from inside), the ``llm_query`` round trip
through the file mailbox, ``FINAL_VAR``, the ``max_depth`` = 1 fallback and a real child RLM at
``max_depth`` = 2, the per-cell timeout, and the plain ``llm`` baseline's recorded truncation.
One short test (``-m llm``) runs the RLM on the embedded local model.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from rollouts.agents import AgentContext, get_agent
from rollouts.agents.rlm_channel import parse_final
from rollouts.atif_agents import native_of  # the agent's record inside its ATIF trajectory
from rollouts.families import QATask, write_task
from rollouts.llm.client import ModelClient
from rollouts.task import load_task

pytestmark = pytest.mark.docker

CONTEXT = "Line one of the haystack.\nThe secret word is xyzzy.\nLine three.\n"


class ScriptedModel:
    """OpenAI-compatible ``/v1/chat/completions`` on 127.0.0.1: ``handler(messages) -> text``."""

    def __init__(self, handler):
        self.handler = handler
        self.requests: list[list[dict]] = []
        self.models: list[str] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server naming
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                msgs = body["messages"]
                outer.requests.append(msgs)
                outer.models.append(body["model"])
                text = outer.handler(msgs)
                pt = sum(len(m["content"]) for m in msgs) // 4
                out = json.dumps(
                    {
                        "id": "x",
                        "object": "chat.completion",
                        "created": 0,
                        "model": body["model"],
                        "choices": [
                            {
                                "index": 0,
                                "finish_reason": "stop",
                                "message": {"role": "assistant", "content": text},
                            }
                        ],
                        "usage": {
                            "prompt_tokens": pt,
                            "completion_tokens": len(text) // 4 + 1,
                            "total_tokens": pt + len(text) // 4 + 1,
                        },
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def client(self) -> ModelClient:
        return ModelClient("scripted", base_url=f"http://127.0.0.1:{self.port}/v1", api_key="test")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def is_root(msgs) -> bool:
    return msgs[0]["role"] == "system" and "Do what the text" not in msgs[1]["content"]


def steps(msgs) -> int:
    """How many assistant turns the conversation already has."""
    return sum(m["role"] == "assistant" for m in msgs)


@pytest.fixture(scope="module")
def base_image():
    from rollouts.images import ensure_base_image
    from rollouts.sandbox.docker import docker_client

    return ensure_base_image(docker_client())


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    d = write_task(
        tmp_path_factory.mktemp("tasks"),
        QATask(
            name="rlm-probe",
            family="niah",
            description="probe",
            question="What is the secret word?",
            prompt_template="{context}\n\nWhat is the secret word?",
            context=CONTEXT,
            gold={"family": "niah", "answers": ["xyzzy"]},
            gold_text="xyzzy",
        ),
    )
    return load_task(d)


@pytest.fixture
def sandbox(base_image, task):
    from rollouts.lifecycle import labels_for
    from rollouts.sandbox.base import SandboxSpec
    from rollouts.sandbox.docker import DockerBackend
    from rollouts.workspace import setup_workspace

    spec = SandboxSpec(
        image=base_image,
        # tool, rollout, run, and this process's pid/host: `clean` and other rollouts' reapers
        # leave it alone while we live, and can find it if we die
        labels=labels_for("test-rlm", f"test-rlm-{time.monotonic_ns()}"),
        network=False,
        memory_mb=512,
        lifetime_sec=600,
    )
    sb = DockerBackend().create(spec)
    try:
        sb.start()
        setup_workspace(sb, task, "/workspace")
        yield sb
    finally:
        sb.stop()


def run_agent(name, sandbox, task, client, tmp_path, budget_sec=300, **options):
    ctx = AgentContext(
        sandbox=sandbox,
        task=task,
        workdir="/workspace",
        run_dir=tmp_path / "run",
        deadline=time.monotonic() + budget_sec,
        options=options,
        model="scripted",
        client=client,
    )
    result = get_agent(name).run(ctx)
    traj = native_of(json.loads((tmp_path / "run" / "agent" / "trajectory.json").read_text()))
    try:
        answer = sandbox.get_file("/workspace/answer.txt").decode()
    except FileNotFoundError:
        answer = None
    return result, traj, answer


def test_parse_final_outside_code_only():
    assert parse_final("```python\nFINAL(no)\n```\nFINAL(yes (really))") == ("FINAL", "yes (really)")
    assert parse_final("```python\nx = 1\n```") is None
    assert parse_final('All done. FINAL_VAR("result")') == ("FINAL_VAR", "result")
    assert parse_final("FINAL('1234567')") == ("FINAL", "1234567")
    assert parse_final("Final(42)") == ("FINAL", "42")  # keywords are case-insensitive
    assert parse_final('FINAL_VAR("a literal answer")') == ("FINAL", "a literal answer")


def test_model_code_runs_in_the_container(sandbox, task, tmp_path):
    probe = (
        "print('HOST:', open('/etc/hostname').read().strip())\n"
        "import socket\n"
        "try:\n"
        "    socket.create_connection(('127.0.0.1', {port}), timeout=3)\n"
        "    print('NET: connected')\n"
        "except OSError as e:\n"
        "    print('NET: failed', type(e).__name__)\n"
        "print('IFACES:', sorted(l.split(':')[0].strip() for l in open('/proc/net/dev').readlines()[2:]))\n"
    )
    model = ScriptedModel(
        lambda m: f"```python\n{probe.format(port=model.port)}```" if steps(m) == 0 else "FINAL(done)"
    )
    try:
        # the scripted server is reachable from the host ...
        socket.create_connection(("127.0.0.1", model.port), timeout=3).close()
        result, traj, answer = run_agent("rlm", sandbox, task, model.client(), tmp_path)
    finally:
        model.close()
    out = traj["root"]["iterations"][0]["cells"][0]["stdout"]
    container_hostname = sandbox.exec("cat /etc/hostname").stdout.strip()
    assert f"HOST: {container_hostname}" in out
    assert container_hostname != socket.gethostname()
    assert container_hostname == sandbox.container.id[:12]
    assert "NET: failed ConnectionRefusedError" in out  # ... but not from inside the sandbox
    assert "IFACES: ['lo']" in out
    assert result.status == "completed" and answer == "done"


@pytest.mark.parametrize("sub_model", [None, "scripted-sub"])
def test_llm_query_round_trip_and_final_var(sandbox, task, tmp_path, sub_model):
    def handler(msgs):
        if msgs[0]["role"] == "user":  # the sub-call made by llm_query
            return "the word is " + ("xyzzy" if "secret word is xyzzy" in msgs[0]["content"] else "?")
        if steps(msgs) == 0:
            return (
                "Let me ask.\n```python\nline = [l for l in context.splitlines() if 'secret' in l][0]\n"
                "ans = llm_query('Read: ' + line).split()[-1]\nprint(ans)\n```"
            )
        return "The answer is in ans.\nFINAL_VAR(ans)"

    model = ScriptedModel(handler)
    try:
        client = model.client()
        opts = {"sub_model": sub_model} if sub_model else {}
        result, traj, answer = run_agent("rlm", sandbox, task, client, tmp_path, **opts)
    finally:
        model.close()
    assert model.models == ["scripted", sub_model or "scripted", "scripted"]  # root, llm_query, root
    cell = traj["root"]["iterations"][0]["cells"][0]
    assert cell["stdout"].strip() == "xyzzy"
    assert cell["sub_calls"][0]["kind"] == "llm" and cell["sub_calls"][0]["response"] == "the word is xyzzy"
    assert answer == "xyzzy" and traj["answer_source"] == "FINAL_VAR"
    assert traj["usage_by_depth"]["0"]["calls"] == 2 and traj["usage_by_depth"]["1"]["calls"] == 1
    assert client.usage.calls == 3  # every call, the sub-model's too, rolled up into the run's usage
    assert result.status == "completed"


def test_max_depth_one_falls_back_and_two_recurses(sandbox, task, tmp_path):
    def handler(msgs):
        if msgs[0]["role"] == "user":
            return "plain sub-LLM answer"
        if not is_root(msgs):  # a child RLM (max_depth = 2)
            return "```python\nprint(context)\n```" if steps(msgs) == 0 else "FINAL(child says hi)"
        if steps(msgs) == 0:
            return "```python\nr = rlm_query('say hi')\nprint(r)\n```"
        return "FINAL_VAR(r)"

    model = ScriptedModel(handler)
    try:
        _, traj1, answer1 = run_agent("rlm", sandbox, task, model.client(), tmp_path / "d1", max_depth=1)
        _, traj2, answer2 = run_agent("rlm", sandbox, task, model.client(), tmp_path / "d2", max_depth=2)
    finally:
        model.close()
    sub1 = traj1["root"]["iterations"][0]["cells"][0]["sub_calls"][0]
    assert sub1["kind"] == "rlm" and "fallback" in sub1 and answer1 == "plain sub-LLM answer"
    sub2 = traj2["root"]["iterations"][0]["cells"][0]["sub_calls"][0]
    child = sub2["child"]
    assert child["depth"] == 1 and child["answer"] == "child says hi"
    assert child["iterations"][0]["cells"][0]["stdout"].strip() == "say hi"  # the prompt is its context
    assert answer2 == "child says hi"
    assert traj2["usage_by_depth"]["1"]["calls"] == 2 and traj2["usage_by_depth"]["0"]["rlm_query"] == 1


def test_cell_timeout_keeps_the_repl(sandbox, task, tmp_path):
    script = ["```python\nx = 41\nwhile True:\n    pass\n```", "```python\nprint(x + 1)\n```", "FINAL(ok)"]
    model = ScriptedModel(lambda m: script[steps(m)])
    try:
        _, traj, answer = run_agent("rlm", sandbox, task, model.client(), tmp_path, cell_timeout_sec=2)
    finally:
        model.close()
    its = traj["root"]["iterations"]
    assert its[0]["cells"][0]["timed_out"] and "TimeoutError" in its[0]["cells"][0]["error"]
    assert its[1]["cells"][0]["stdout"].strip() == "42"
    assert answer == "ok"


def test_agent_deadline_stops_a_running_cell(sandbox, task, tmp_path):
    model = ScriptedModel(lambda m: "```python\nwhile True:\n    pass\n```")
    t0 = time.monotonic()
    try:
        result, traj, answer = run_agent("rlm", sandbox, task, model.client(), tmp_path, budget_sec=12)
    finally:
        model.close()
    assert result.status == "timeout" and answer is None and traj["status"] == "timeout"
    assert time.monotonic() - t0 < 30  # not the 60 s cell timeout
    assert "rlm_repl" not in sandbox.exec("ps -eo args").stdout  # the REPL was killed


def test_llm_baseline_records_truncation(sandbox, task, tmp_path):
    model = ScriptedModel(lambda m: "  xyzzy \n")
    try:
        result, traj, answer = run_agent(
            "llm", sandbox, task, model.client(), tmp_path, context_window_tokens=2000
        )
        prompt = model.requests[0][1]["content"]
        _, traj_small, _ = run_agent(
            "llm",
            sandbox,
            task,
            model.client(),
            tmp_path / "small",
            context_window_tokens=70,
            max_answer_tokens=16,
            margin=0.0,
        )
    finally:
        model.close()
    assert answer == "xyzzy" and result.status == "completed"
    assert traj["truncation"]["truncated"] is False and CONTEXT in prompt
    assert traj_small["truncation"]["truncated"] is True
    assert traj_small["truncation"]["kept_tokens"] < traj_small["truncation"]["context_tokens"]


@pytest.mark.llm
def test_rlm_on_the_local_model(sandbox, task, tmp_path):
    from rollouts.llm.local_server import LocalModelServer

    with LocalModelServer(n_ctx=8192) as srv:
        client = ModelClient("local", base_url=srv.base_url, api_key="local")
        ctx = AgentContext(
            sandbox=sandbox,
            task=task,
            workdir="/workspace",
            run_dir=tmp_path / "run",
            deadline=time.monotonic() + 240,
            model="local",
            client=client,
            options={"max_iterations": 2, "max_reply_tokens": 160, "sub_max_tokens": 32},
        )
        result = get_agent("rlm").run(ctx)
    traj = native_of(json.loads(Path(tmp_path / "run" / "agent" / "trajectory.json").read_text()))
    print(json.dumps(traj["root"], indent=1)[:3000])
    assert result.status in ("completed", "limit")
    assert traj["root"]["iterations"] and client.usage.calls >= 2
    assert traj["usage_by_depth"]["0"]["calls"] >= 2
